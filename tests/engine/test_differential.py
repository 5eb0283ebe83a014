"""The compiled book and the reference book, driven by long random command streams.

Both run under the same Exchange, so every order type, self-trade mode,
replace, stop and expiry goes through each book; their events must be equal
one for one. Each exchange has a risk gate that keeps positions, so
reduce-only orders are enforced and their makers stop the match walk. After
every step: the book is not crossed at rest, quantity is conserved for every
order, resting quantity equals the engine's leaves, each instrument's
book_seq has no gaps, no reduce-only fill grew its account's |position|, an
accepted fill-or-kill filled whole, the gate got each event once, and the
live reduce-only orders fit their positions.
"""
from __future__ import annotations

from collections import defaultdict

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from harness import SYMBOL, T0, instrument
from engine.book import OrderBook
from engine.exchange import LIVE, Exchange
from engine.messages import (
    BookLevelChanged, CancelAll, CancelOrder, InstrumentStatus, OrderAccepted, OrderCancelled,
    OrderExpired, OrderStatus, OrderType, PlaceOrder, ReplaceOrder, SelfTradePrevention,
    SetInstrumentStatus, Side, TimeInForce, Timer, Trade,
)
from oracle import PositionGate, ReferenceBook

sides = st.sampled_from([Side.BUY, Side.SELL])
prices = st.integers(995, 1005)          # narrow, so that orders actually cross
qtys = st.integers(1, 8)
accounts = st.integers(1, 3)             # few accounts, so self-trades happen
stps = st.sampled_from(list(SelfTradePrevention))
client_ids = st.sampled_from([None] * 6 + ["a", "b", "c", "d"])
reduce_only = st.sampled_from([False, False, True])


class BooksAgree(RuleBasedStateMachine):
    """Exchange on OrderBook and Exchange on ReferenceBook emit identical events."""

    def __init__(self) -> None:
        super().__init__()
        self.fast = Exchange([instrument()], PositionGate(), book_factory=OrderBook,
                             check_invariants=True)
        self.slow = Exchange([instrument()], PositionGate(), book_factory=ReferenceBook)
        self.ts = T0
        self.removed: dict[int, int] = defaultdict(int)   # order id -> cancelled/expired/reduced
        self.traded: dict[int, int] = defaultdict(int)
        self.book_seq = 0
        self.last_trade = None
        self.prints: list[int] = []

    def both(self, make) -> None:
        self.ts += 1_000
        cmd = make(self.ts)
        gate = self.fast.risk
        positions = dict(gate.positions)
        handed = len(gate.log)
        fast = self.fast.process(cmd)
        slow = self.slow.process(cmd)
        assert fast == slow, (cmd, fast, slow)
        assert gate.log[handed:] == fast, "the gate got an event twice, or missed one"
        self.prints = [e.price for e in fast if type(e) is Trade]
        for e in fast:
            kind = type(e)
            if kind is OrderCancelled or kind is OrderExpired:
                self.removed[e.order_id] += e.qty
            elif kind is Trade:
                self.last_trade = e.price
                self.traded[e.maker_order_id] += e.qty
                self.traded[e.taker_order_id] += e.qty
                for account, order_id, side in (
                        (e.maker_account_id, e.maker_order_id, -e.aggressor),
                        (e.taker_account_id, e.taker_order_id, e.aggressor)):
                    before = positions.get((account, SYMBOL), 0)
                    after = positions[(account, SYMBOL)] = before + side * e.qty
                    if self.fast.orders[order_id].reduce_only:
                        assert abs(after) < abs(before) and after * before >= 0, \
                            f"reduce-only order {order_id} took {before} to {after}"
            elif kind is BookLevelChanged:
                assert e.book_seq == self.book_seq + 1, "book_seq gap"
                self.book_seq = e.book_seq
            elif kind is OrderAccepted and e.tif is TimeInForce.FOK:
                assert self.fast.orders[e.order_id].status is OrderStatus.FILLED, \
                    "a fill-or-kill filled in part"

    def known_ids(self):
        return sorted(self.fast.orders) or [1]

    @rule(side=sides, price=prices, qty=qtys, account=accounts, stp=stps,
          tif=st.sampled_from([TimeInForce.GTC, TimeInForce.GTC, TimeInForce.IOC,
                               TimeInForce.FOK, TimeInForce.GTD]),
          post_only=st.booleans(), iceberg=st.one_of(st.none(), st.integers(1, 3)),
          client_order_id=client_ids, expire_in=st.integers(1, 20), reduce_only=reduce_only)
    def limit(self, side, price, qty, account, stp, tif, post_only, iceberg, client_order_id,
              expire_in, reduce_only):
        resting = tif in (TimeInForce.GTC, TimeInForce.GTD)
        self.both(lambda ts: PlaceOrder(
            ts_ns=ts, account_id=account, symbol=SYMBOL, side=side, price=price, qty=qty,
            tif=tif, stp=stp, client_order_id=client_order_id,
            post_only=post_only and resting,
            display_qty=iceberg if resting and iceberg and iceberg < qty else None,
            expire_at_ns=ts + expire_in * 1_000 if tif is TimeInForce.GTD else None,
            reduce_only=reduce_only))

    @rule(side=sides, qty=qtys, account=accounts, stp=stps,
          tif=st.sampled_from([TimeInForce.IOC, TimeInForce.FOK]), reduce_only=reduce_only)
    def market(self, side, qty, account, stp, tif, reduce_only):
        self.both(lambda ts: PlaceOrder(ts_ns=ts, account_id=account, symbol=SYMBOL, side=side,
                                        qty=qty, order_type=OrderType.MARKET, tif=tif, stp=stp,
                                        reduce_only=reduce_only))

    @rule(side=sides, stop=prices, price=prices, qty=qtys, account=accounts,
          limit=st.booleans(), reduce_only=reduce_only)
    def stop(self, side, stop, price, qty, account, limit, reduce_only):
        self.both(lambda ts: PlaceOrder(
            ts_ns=ts, account_id=account, symbol=SYMBOL, side=side, qty=qty, stop_price=stop,
            order_type=OrderType.STOP_LIMIT if limit else OrderType.STOP_MARKET,
            price=price if limit else None, reduce_only=reduce_only))

    @rule(account=accounts, other=accounts, side=sides, price=prices, qty=qtys)
    def cross(self, account, other, side, price, qty):
        """Another account rests an order and this one takes it: positions to reduce."""
        self.both(lambda ts: PlaceOrder(ts_ns=ts, account_id=other, symbol=SYMBOL,
                                        side=Side(-side), price=price, qty=qty))
        self.both(lambda ts: PlaceOrder(ts_ns=ts, account_id=account, symbol=SYMBOL, side=side,
                                        price=price, qty=qty, tif=TimeInForce.IOC))

    @rule(account=accounts, price=prices, qty=qtys, stop=prices,
          kind=st.sampled_from(["gtc", "gtc", "iceberg", "ioc", "fok", "stop"]))
    def reduce_position(self, account, price, qty, stop, kind):
        """A reduce-only order on the side that closes the account's position (most of
        those the other rules draw are refused: they add, or the account is flat)."""
        side = Side.SELL if self.fast.risk.position(account, SYMBOL) > 0 else Side.BUY
        tif = {"ioc": TimeInForce.IOC, "fok": TimeInForce.FOK}.get(kind, TimeInForce.GTC)
        self.both(lambda ts: PlaceOrder(
            ts_ns=ts, account_id=account, symbol=SYMBOL, side=side, price=price, qty=qty,
            tif=tif, display_qty=2 if kind == "iceberg" and qty > 2 else None,
            order_type=OrderType.STOP_LIMIT if kind == "stop" else OrderType.LIMIT,
            stop_price=stop if kind == "stop" else None, reduce_only=True))

    @rule(account=accounts, taker=accounts, prices=st.lists(prices, min_size=2, max_size=2),
          qtys=st.lists(qtys, min_size=3, max_size=3), tif=st.sampled_from(list(TimeInForce)))
    def sweep_behind_own_order(self, account, taker, prices, qtys, tif):
        """An account closing its position rests an ordinary order and then a reduce-only
        one on that side, and another account's taker walks through both: the walk stops
        at the reduce-only order after the ordinary one moved the position."""
        position = self.fast.risk.position(account, SYMBOL)
        side = Side.SELL if position > 0 else Side.BUY
        for price, qty, reduce_only in ((prices[0], qtys[0], False), (prices[1], qtys[1], True)):
            self.both(lambda ts: PlaceOrder(ts_ns=ts, account_id=account, symbol=SYMBOL,
                                            side=side, price=price, qty=qty,
                                            reduce_only=reduce_only))
        worst = max(prices) if side is Side.SELL else min(prices)
        self.both(lambda ts: PlaceOrder(
            ts_ns=ts, account_id=taker, symbol=SYMBOL, side=Side(-side), price=worst,
            qty=qtys[2] * 2, tif=TimeInForce.IOC if tif is TimeInForce.GTD else tif,
            stp=SelfTradePrevention.CANCEL_OLDEST))

    @rule(data=st.data(), account=accounts)
    def cancel(self, data, account):
        order_id = data.draw(st.sampled_from(self.known_ids()))
        self.both(lambda ts: CancelOrder(ts_ns=ts, account_id=account, order_id=order_id))

    @rule(data=st.data(), price=st.one_of(st.none(), prices), qty=st.one_of(st.none(), qtys))
    def replace(self, data, price, qty):
        order_id = data.draw(st.sampled_from(self.known_ids()))
        owner = self.fast.orders[order_id].account_id if order_id in self.fast.orders else 1
        self.both(lambda ts: ReplaceOrder(ts_ns=ts, account_id=owner, order_id=order_id,
                                          price=price, qty=qty))

    @rule(account=accounts)
    def cancel_all(self, account):
        self.both(lambda ts: CancelAll(ts_ns=ts, account_id=account))

    @rule(steps=st.integers(1, 10))
    def timer(self, steps):
        self.ts += steps * 1_000
        self.both(lambda ts: Timer(ts_ns=ts))

    @precondition(lambda self: self.fast.markets[SYMBOL].status is InstrumentStatus.OPEN)
    @rule()
    def halt_and_resume(self):
        for status in (InstrumentStatus.HALTED, InstrumentStatus.OPEN):
            self.both(lambda ts: SetInstrumentStatus(ts_ns=ts, symbol=SYMBOL, status=status))

    @invariant()
    def book_is_never_crossed(self):
        book = self.fast.markets[SYMBOL].book
        bid, ask = book.best_bid(), book.best_ask()
        assert bid is None or ask is None or bid < ask

    @invariant()
    def last_price_is_the_last_trades(self):
        assert self.fast.markets[SYMBOL].last_price == self.last_trade

    @invariant()
    def no_stop_waits_past_a_print_that_reached_it(self):
        """Every trade of the last command was checked against every waiting stop."""
        for order in self.fast.orders.values():
            if order.status is OrderStatus.UNTRIGGERED and self.prints:
                if order.side is Side.BUY:
                    assert max(self.prints) < order.stop_price
                else:
                    assert min(self.prints) > order.stop_price

    @invariant()
    def quantity_is_conserved(self):
        """qty = filled + cancelled (incl. expired, self-trade) + resting, for every order."""
        for order in self.fast.orders.values():
            assert order.qty == order.filled_qty + order.leaves_qty + self.removed[order.order_id]
            assert order.filled_qty == self.traded[order.order_id]
            assert (order.leaves_qty > 0) == (order.status in LIVE)

    @invariant()
    def reduce_only_orders_fit_their_positions(self):
        """Live reduce-only orders: none on the side that would add to |position|, and on
        the closing side no more lots than the position."""
        held = defaultdict(int)
        for order in self.fast.orders.values():
            if order.reduce_only and order.status in LIVE:
                held[(order.account_id, int(order.side))] += order.leaves_qty
        for (account, side), lots in held.items():
            position = self.fast.risk.position(account, SYMBOL)
            assert side * position < 0 and lots <= abs(position), (account, side, lots, position)

    @invariant()
    def resting_quantity_is_the_engines_leaves(self):
        book = self.fast.markets[SYMBOL].book
        resting = {o[0]: o[3] + o[4] for side in (1, -1) for o in book.orders(side)}
        live = {o.order_id: o.leaves_qty for o in self.fast.orders.values()
                if o.status in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)}
        assert resting == live

    def teardown(self):
        # Same orders, same queues, same counters: the whole state agrees too.
        assert self.fast.state_hash() == self.slow.state_hash()


BooksAgree.TestCase.settings = settings(
    max_examples=300, stateful_step_count=100, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestBooksAgree = BooksAgree.TestCase
