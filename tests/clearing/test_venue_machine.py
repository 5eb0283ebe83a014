"""The house and the engine together under every kind of order, index move, crash,
settlement, the delivery period and final settlement, driven by hypothesis: money and
lots are conserved, the fund and the fee account never go below zero, margin kept
incrementally equals the from-scratch computation, clearing's open orders are the
engine's, reduce-only orders fit their positions, a withdrawal keeps initial margin, a
covered deficit leaves its account at what was left uncovered, and the same commands
replayed give the same state.
"""
from __future__ import annotations

import datetime

from hypothesis import event, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from clearing.index import IndexParams
from clearing.ledger import FeeSchedule
from clearing.margin import requirement
from clearing.messages import (
    CollateralMoved, DefaultCovered, Deposit, FixIndex, InstrumentSettled, Liquidation, MarkStep,
    Settle, SubmitObservation, Withdraw,
)
from engine.contracts import date_to_ns
from engine.messages import (
    CancelOrder, OrderType, PlaceOrder, ReplaceOrder, Side, TimeInForce,
)
from composed import DAY, FEE, HOUR, INSURANCE, Venue, of, params

MAR, APR = "H100-2027-03", "H100-2027-04"
SYMBOLS = (MAR, APR)
ACCOUNTS = (1, 2, 3, 4)            # 1 and 2 deep-pocketed, 3 and 4 thin
LIMIT = 60


def venue() -> Venue:
    return Venue(params(index=IndexParams(min_providers=1), position_limit=LIMIT,
                        fees=FeeSchedule(maker_centi_bps=-100, taker_centi_bps=100)),
                 symbols=SYMBOLS, t0=date_to_ns(datetime.date(2027, 1, 25)))


ORDER_KINDS = {
    "limit": lambda price: dict(price=price),
    "ioc": lambda price: dict(price=price, tif=TimeInForce.IOC),
    "market": lambda price: dict(order_type=OrderType.MARKET, tif=TimeInForce.IOC),
    "stop": lambda price: dict(order_type=OrderType.STOP_MARKET, stop_price=price),
    "stop_limit": lambda price: dict(order_type=OrderType.STOP_LIMIT, stop_price=price,
                                     price=price),
    "reduce_only": lambda price: dict(price=price, reduce_only=True),
}


class VenueMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.v = venue()
        self.log: list[tuple] = []          # every command, to replay
        for account, amount in ((1, 10**13), (2, 10**13), (3, 3_000_000_000),
                                (4, 2_000_000_000), (INSURANCE, 500_000_000)):
            self.clear(Deposit, account_id=account, amount=amount)

    def clear(self, kind, **kw):
        at = kw.pop("at", 0)
        self.log.append(("clear", kind, dict(kw), at, self.v.ts))
        events = self.v.clear(kind, at=at, **kw)
        for seen in (Liquidation, DefaultCovered, InstrumentSettled):
            if of(events, seen):
                event(seen.__name__)
        led = self.v.house.ledger
        for e in of(events, DefaultCovered):
            assert led.accounts[e.account_id].collateral == -e.uncovered
        return events

    def engine(self, kind, **kw):
        self.log.append(("engine", kind, dict(kw), 0, self.v.ts))
        return self.v.engine(kind, **kw)

    @rule(account=st.sampled_from(ACCOUNTS), symbol=st.sampled_from(SYMBOLS),
          side=st.sampled_from([Side.BUY, Side.SELL]), qty=st.integers(1, 30),
          offset=st.integers(-250, 250), kind=st.sampled_from(sorted(ORDER_KINDS)),
          iceberg=st.booleans())
    def place(self, account, symbol, side, qty, offset, kind, iceberg):
        kw = ORDER_KINDS[kind](self.v.ex.markets[symbol].band_centre + offset)
        if iceberg and kind == "limit" and qty > 1:
            kw["display_qty"] = max(1, qty // 3)
        self.engine(PlaceOrder, account_id=account, symbol=symbol, side=side, qty=qty, **kw)

    @rule(data=st.data())
    def replace_or_cancel(self, data):
        live = [o for a in ACCOUNTS for o in self.v.ex.open_orders(a)]
        if not live:
            return
        order = data.draw(st.sampled_from(live))
        if data.draw(st.booleans()):
            self.engine(CancelOrder, account_id=order.account_id, order_id=order.order_id)
            return
        price = None if order.price is None else order.price + data.draw(st.integers(-100, 100))
        qty = data.draw(st.integers(1, 40)) if price is None or data.draw(st.booleans()) else None
        self.engine(ReplaceOrder, account_id=order.account_id, order_id=order.order_id,
                    price=price, qty=qty)

    @rule(account=st.sampled_from((3, 4)), symbol=st.sampled_from(SYMBOLS),
          lots=st.integers(3, 12), fall=st.integers(5, 40), inside=st.integers(0, 150),
          side=st.sampled_from([Side.BUY, Side.SELL]))
    def crash(self, account, symbol, lots, fall, inside, side):
        """A thin account takes a position in a book deep enough to mark it, the index
        moves against it and the mark follows, the liquidation trades into a bid (or offer)
        toward the band's edge, and the next settlement realizes what is left."""
        centre = self.v.ex.markets[symbol].band_centre
        self.observe(centre)
        self.engine(PlaceOrder, account_id=1, symbol=symbol, side=-side, qty=40, price=centre)
        self.engine(PlaceOrder, account_id=account, symbol=symbol, side=side, qty=lots,
                    price=centre, tif=TimeInForce.IOC)
        for maker, quote_side, away in ((2, Side.BUY, -10), (1, Side.SELL, 10)):
            self.engine(PlaceOrder, account_id=maker, symbol=symbol, side=quote_side, qty=20,
                        price=centre + away)
        self.mark()                                   # the basis from the book
        m = self.v.ex.markets[symbol]
        self.engine(PlaceOrder, account_id=2, symbol=symbol, side=-side, qty=40,
                    price=m.band_low + inside if side is Side.BUY else m.band_high - inside)
        self.observe(centre * (100 - fall * side) // 100)
        self.mark()
        self.mark()
        self.settle(1)

    @rule(price=st.integers(1400, 2800))
    def observe(self, price):
        self.clear(SubmitObservation, provider_id=81, gpu_class="H100", price=price, hours=10,
                   observed_ns=self.v.ts + 1, at=self.v.ts + 1)

    @rule()
    def mark(self):
        self.clear(MarkStep)

    @rule()
    def fix(self):
        self.clear(FixIndex)

    @rule(hours=st.integers(0, 30))
    def settle(self, hours):
        self.v.ts += hours * HOUR
        events = self.clear(Settle)
        assert sum(e.amount for e in of(events, CollateralMoved)
                   if e.reason == "variation_margin") == 0

    @rule(days=st.integers(1, 12))
    def advance(self, days):
        """On past the last trading day and the end of delivery (final settlement)."""
        self.v.ts += days * DAY
        self.clear(MarkStep)

    @rule(account=st.sampled_from(ACCOUNTS), amount=st.integers(1, 10**10))
    def withdraw(self, account, amount):
        if of(self.clear(Withdraw, account_id=account, amount=amount), CollateralMoved):
            risk = self.v.house.risk
            assert min(risk.equity(account), self.v.collateral(account)) >= \
                risk.margin(account)[1]

    @invariant()
    def conserved(self):
        led = self.v.house.ledger
        assert sum(a.collateral for a in led.accounts.values()) == led.deposited
        for symbol in SYMBOLS:
            assert sum(p.qty for a in led.accounts.values()
                       if (p := a.positions.get(symbol))) == 0
        assert led.accounts[INSURANCE].collateral >= 0 and led.accounts[FEE].collateral >= 0

    @invariant()
    def margin_is_the_references(self):
        risk, led = self.v.house.risk, self.v.house.ledger
        for account in ACCOUNTS:
            positions = ({s: p.qty for s, p in led.accounts[account].positions.items()}
                         if account in led.accounts else {})
            orders = [(o.symbol, o.side, o.leaves, o.price)
                      for o in risk.by_account.get(account, {}).values()]
            assert requirement(risk.legs, positions, orders, risk.params_by_class) == \
                risk.margin(account)

    @invariant()
    def clearing_sees_the_engines_orders(self):
        engine = {o.order_id: (o.account_id, o.leaves_qty)
                  for a in ACCOUNTS for o in self.v.ex.open_orders(a)}
        assert {i: (o.account_id, o.leaves) for i, o in self.v.house.risk.orders.items()} == \
            engine

    @invariant()
    def reduce_only_orders_fit_their_positions(self):
        for account in ACCOUNTS:
            for symbol in SYMBOLS:
                position = self.v.position(account, symbol) if account in \
                    self.v.house.ledger.accounts else 0
                for side in (1, -1):
                    held = sum(o.leaves_qty for o in self.v.ex.open_orders(account, symbol)
                               if o.reduce_only and int(o.side) == side)
                    assert held <= (abs(position) if side * position < 0 else 0)

    def teardown(self):
        """The same commands, replayed on a fresh venue, give the same state."""
        again = venue()
        for where, kind, kw, at, ts in self.log:
            again.ts = ts
            if where == "clear":
                again.clear(kind, at=at, **kw)
            else:
                again.engine(kind, **kw)
        assert again.ex.state_hash() == self.v.ex.state_hash()

        def ledger(v):
            return {i: (a.collateral, {s: (p.qty, p.cost, p.settled_qty, p.day_cash)
                                       for s, p in a.positions.items()})
                    for i, a in v.house.ledger.accounts.items()}
        assert ledger(again) == ledger(self.v)


TestVenueMachine = VenueMachine.TestCase
TestVenueMachine.settings = settings(max_examples=60, stateful_step_count=50, deadline=None)
