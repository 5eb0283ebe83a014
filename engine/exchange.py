"""The matching engine: order types, states and lifecycle around one book per instrument.

``Exchange.process`` takes one command and returns the events it caused. It
reads no clock and does no I/O: time is the command's ``ts_ns``; order ids and
trade ids are counters, so the same commands always give the same events.

Division of labour: engine.book keeps queue order and does the matching walk
(price-time priority, icebergs, self-trade prevention); this module decides
what may reach the book (instrument status, price band, order-type rules,
client_order_id idempotence, the risk gate) and what happens around it (stops,
GTD expiry, IOC remainders, replaces, closing at the last trading time).
A command is validated fully before anything changes, so it either runs or
changes nothing.
"""
from __future__ import annotations

import hashlib
import heapq
from collections import deque
from typing import Callable, Iterable

import msgspec
from sortedcontainers import SortedList

from engine.book import OrderBook
from engine.contracts import Instrument
from engine.messages import (
    BookLevelChanged, CancelAll, CancelOrder, CancelReason, InstrumentStatus,
    InstrumentStatusChanged, MatchRecord, OrderAccepted, OrderCancelled, OrderDuplicate,
    OrderExpired, OrderReduced, OrderRejected, OrderReplaced, OrderStatus, OrderTriggered,
    OrderType, PlaceOrder, RejectReason, ReplaceOrder, SelfTradePrevention,
    SetInstrumentStatus, SetReferencePrice, Side, TimeInForce, Timer, Trade,
)
from engine.risk import PermissiveRisk, RiskGate

#: Closed orders stay retrievable (by id and client_order_id) at least this long.
RETENTION_NS = 7 * 24 * 3600 * 10**9

FILL = MatchRecord.FILL
STP_CANCEL_MAKER = MatchRecord.STP_CANCEL_MAKER
STP_DECREMENT = MatchRecord.STP_DECREMENT
LIVE = (OrderStatus.UNTRIGGERED, OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)


class Order(msgspec.Struct, gc=False):
    """The engine's record of one order, live or closed.

    Quantities in lots: ``qty`` = ``filled_qty`` + ``leaves_qty`` + what was
    cancelled or expired. A replace sets ``qty`` (leaves = qty - filled); a
    self-trade decrement lowers it (OrderReduced).
    """
    order_id: int
    account_id: int
    symbol: str
    side: Side
    order_type: OrderType
    tif: TimeInForce
    price: int | None
    stop_price: int | None
    qty: int
    filled_qty: int
    leaves_qty: int
    status: OrderStatus
    display_qty: int | None
    post_only: bool
    stp: SelfTradePrevention
    expire_at_ns: int | None
    client_order_id: str | None
    request: PlaceOrder
    closed_ns: int | None = None


class Rejected(Exception):
    """A command failed validation; becomes one OrderRejected event. Never leaves this module."""

    def __init__(self, reason: RejectReason, detail: str, field: str | None = None):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.field = field


class Market:
    """One instrument's live state: its book, status, last trade, band and stops."""

    def __init__(self, instrument: Instrument, book: OrderBook) -> None:
        self.instrument = instrument
        self.symbol = instrument.symbol
        self.book = book
        self.status = InstrumentStatus.OPEN
        self.last_price: int | None = None
        self.reference_price = instrument.reference_price
        self.book_seq = 0
        self.volume = 0
        # Untriggered stops, earliest to trigger first: buys by rising stop
        # price, sells by falling stop price, then by order id.
        self.buy_stops = SortedList()
        self.sell_stops = SortedList()
        self._set_band()

    def set_reference(self, price: int) -> None:
        self.reference_price = price
        self._set_band()

    def set_last(self, price: int) -> None:
        self.last_price = price
        self._set_band()

    def _set_band(self) -> None:
        # Band around the last trade, else the settlement/reference price;
        # the width rounds down, so the band never exceeds its stated fraction.
        ref = self.last_price if self.last_price is not None else self.reference_price
        width = ref * self.instrument.band_bps // 10_000
        self.band_low = max(1, ref - width)
        self.band_high = ref + width


class Exchange:
    """The deterministic order path for a set of instruments.

    Args:
        instruments: What is listed; each gets its own book, status open.
        risk: The pre-trade check and post-trade sink (clearing); permissive if None.
        book_factory: Builds a book; tests pass the pure-Python reference book.
        check_invariants: Books verify themselves after every mutation (tests).
    """

    def __init__(self, instruments: Iterable[Instrument], risk: RiskGate | None = None, *,
                 book_factory: Callable[..., OrderBook] = OrderBook,
                 check_invariants: bool = False) -> None:
        self.risk = risk if risk is not None else PermissiveRisk()
        self.markets: dict[str, Market] = {}
        for inst in instruments:
            if inst.symbol in self.markets:
                raise ValueError(f"instrument {inst.symbol} listed twice")
            self.markets[inst.symbol] = Market(inst, book_factory(check_invariants=check_invariants))
        self.orders: dict[int, Order] = {}
        self._by_client: dict[tuple[int, str], int] = {}
        self._live: dict[int, dict[int, Order]] = {}      # account -> live orders by id
        self._expiries: list[tuple[int, int]] = []         # heap of (expire_at_ns, order_id)
        self._closings = sorted((m.instrument.last_trading_ns, s) for s, m in self.markets.items())
        self._closed: deque[tuple[int, int]] = deque()     # (closed_ns, order_id), oldest first
        self._next_order_id = 1
        self._next_trade_id = 1
        self._dirty: list[Market] = []

    # -- The one entry point -------------------------------------------------

    def process(self, cmd) -> list:
        """Apply one command and return the events it caused, in order.

        Args:
            cmd: An engine.messages command; prices in ticks, quantities in lots.

        Returns:
            A new list owned by the caller. Book level changes come last, one per
            level touched, each with the next ``book_seq`` of its instrument.
        """
        events: list = []
        ts = cmd.ts_ns
        self._advance(ts, events)
        kind = type(cmd)
        try:
            if kind is PlaceOrder:
                self._place(cmd, events)
            elif kind is CancelOrder:
                order = self._find(cmd.account_id, cmd.order_id, cmd.client_order_id)
                self._cancel(order, cmd.reason, ts, events)
            elif kind is ReplaceOrder:
                self._replace(cmd, events)
            elif kind is CancelAll:
                self._cancel_all(cmd, events)
            elif kind is SetInstrumentStatus:
                self._set_status(self._market(cmd.symbol), cmd.status, ts, events)
            elif kind is SetReferencePrice:
                self._market(cmd.symbol).set_reference(cmd.price)
            elif kind is not Timer:
                raise TypeError(f"not an engine command: {kind.__name__}")
        except Rejected as r:
            events.append(OrderRejected(
                getattr(cmd, "account_id", 0), r.reason, r.detail, r.field,
                getattr(cmd, "client_order_id", None), getattr(cmd, "order_id", None), ts))
        for market in self._dirty:
            self._publish_levels(market, ts, events)
        self._dirty.clear()
        self.risk.apply(events)
        return events

    # -- Queries ---------------------------------------------------------------

    def order(self, order_id: int) -> Order | None:
        return self.orders.get(order_id)

    def order_by_client_id(self, account_id: int, client_order_id: str) -> Order | None:
        order_id = self._by_client.get((account_id, client_order_id))
        return None if order_id is None else self.orders[order_id]

    def open_orders(self, account_id: int, symbol: str | None = None) -> list[Order]:
        """Return the account's live orders (resting or untriggered), oldest first."""
        live = self._live.get(account_id, {}).values()
        return [o for o in live if symbol is None or o.symbol == symbol]

    def state_hash(self) -> str:
        """Return a digest of all state; equal for engines fed the same commands."""
        state = [
            self._next_order_id, self._next_trade_id,
            sorted(self.orders.items()),
            [(s, m.status, m.last_price, m.reference_price, m.book_seq, m.volume,
              m.book.orders(1), m.book.orders(-1), list(m.buy_stops), list(m.sell_stops))
             for s, m in sorted(self.markets.items())],
        ]
        return hashlib.sha256(msgspec.msgpack.encode(state)).hexdigest()

    # -- Place -----------------------------------------------------------------

    def _place(self, cmd: PlaceOrder, events: list) -> None:
        if cmd.client_order_id is not None:
            existing = self.order_by_client_id(cmd.account_id, cmd.client_order_id)
            if existing is not None:
                if msgspec.structs.replace(cmd, ts_ns=existing.request.ts_ns) != existing.request:
                    raise Rejected(RejectReason.DUPLICATE_CLIENT_ORDER_ID,
                                   f"client_order_id {cmd.client_order_id!r} is order "
                                   f"{existing.order_id}, placed with other parameters",
                                   "client_order_id")
                events.append(OrderDuplicate(existing.order_id, cmd.account_id,
                                             cmd.client_order_id, cmd.ts_ns))
                return
        market = self._market(cmd.symbol)
        self._require_open(market)
        limit = self._validate_place(market, cmd)
        reject = self.risk.check(cmd.account_id, cmd.symbol, cmd.side, limit, cmd.qty,
                                 cmd.reduce_only, None)
        if reject is not None:
            raise Rejected(reject[0], reject[1])
        book = market.book
        side = cmd.side
        otype = cmd.order_type
        stop = otype is OrderType.STOP_LIMIT or otype is OrderType.STOP_MARKET
        if stop:
            if market.last_price is not None and self._stop_hit(side, cmd.stop_price,
                                                                market.last_price):
                raise Rejected(RejectReason.STOP_WOULD_TRIGGER,
                               f"stop_price {cmd.stop_price} is already reached by the "
                               f"last trade {market.last_price}", "stop_price")
        elif cmd.post_only and book.would_take(side, limit):
            raise Rejected(RejectReason.POST_ONLY_WOULD_TAKE,
                           "a post-only order may not take liquidity", "price")
        elif cmd.tif is TimeInForce.FOK and not book.fillable(side, limit, cmd.qty,
                                                              cmd.account_id, cmd.stp):
            raise Rejected(RejectReason.FOK_NOT_FILLABLE,
                           f"{cmd.qty} lots cannot all fill at {limit} or better", "qty")
        elif otype is OrderType.MARKET and not book.would_take(side, limit):
            raise Rejected(RejectReason.NO_LIQUIDITY,
                           "no opposite order inside the price band", "type")

        order = Order(self._next_order_id, cmd.account_id, cmd.symbol, side, otype, cmd.tif,
                      cmd.price, cmd.stop_price, cmd.qty, 0, cmd.qty,
                      OrderStatus.UNTRIGGERED if stop else OrderStatus.OPEN,
                      cmd.display_qty, cmd.post_only, cmd.stp, cmd.expire_at_ns,
                      cmd.client_order_id, cmd)
        self._next_order_id += 1
        self.orders[order.order_id] = order
        if cmd.client_order_id is not None:
            self._by_client[(cmd.account_id, cmd.client_order_id)] = order.order_id
        live = self._live.get(cmd.account_id)
        if live is None:
            live = self._live[cmd.account_id] = {}
        live[order.order_id] = order
        if cmd.expire_at_ns is not None:
            heapq.heappush(self._expiries, (cmd.expire_at_ns, order.order_id))
        events.append(OrderAccepted(order.order_id, cmd.account_id, cmd.symbol, side, otype,
                                    cmd.tif, cmd.price, cmd.stop_price, cmd.qty,
                                    cmd.client_order_id, cmd.ts_ns))
        if stop:
            if side is Side.BUY:
                market.buy_stops.add((cmd.stop_price, order.order_id))
            else:
                market.sell_stops.add((-cmd.stop_price, order.order_id))
            return
        self._execute(market, order, limit, cmd.ts_ns, events)

    def _validate_place(self, market: Market, cmd: PlaceOrder) -> int:
        """Check everything about a new order that needs no book; return its limit in ticks."""
        inst = market.instrument
        otype = cmd.order_type
        tif = cmd.tif
        priced = otype is OrderType.LIMIT or otype is OrderType.STOP_LIMIT
        stop = otype is OrderType.STOP_LIMIT or otype is OrderType.STOP_MARKET
        if priced and cmd.price is None:
            raise Rejected(RejectReason.INVALID_PARAMS, f"a {otype.name.lower()} order needs a price", "price")
        if not priced and cmd.price is not None:
            raise Rejected(RejectReason.INVALID_PARAMS, f"a {otype.name.lower()} order takes no price", "price")
        if stop and cmd.stop_price is None:
            raise Rejected(RejectReason.INVALID_PARAMS, "a stop order needs a stop_price", "stop_price")
        if not stop and cmd.stop_price is not None:
            raise Rejected(RejectReason.INVALID_PARAMS, "only stop orders take a stop_price", "stop_price")
        if not inst.min_qty <= cmd.qty <= inst.max_qty:
            raise Rejected(RejectReason.INVALID_QUANTITY,
                           f"qty must be {inst.min_qty}..{inst.max_qty}", "qty")
        if (tif is TimeInForce.GTD) != (cmd.expire_at_ns is not None):
            raise Rejected(RejectReason.INVALID_PARAMS,
                           "expire_at goes with tif gtd, and only with it", "expire_at")
        if tif is TimeInForce.GTD and cmd.expire_at_ns <= cmd.ts_ns:
            raise Rejected(RejectReason.INVALID_PARAMS, "expire_at is not in the future", "expire_at")
        if otype is OrderType.MARKET and tif is TimeInForce.GTD:
            raise Rejected(RejectReason.INVALID_PARAMS,
                           "a market order is immediate: tif ioc or fok", "tif")
        if stop and tif is TimeInForce.FOK:
            raise Rejected(RejectReason.INVALID_PARAMS,
                           "fok is decided on arrival; a stop order arrives later", "tif")
        immediate = not priced or tif is TimeInForce.IOC or tif is TimeInForce.FOK
        if cmd.post_only and (immediate or stop):
            raise Rejected(RejectReason.INVALID_PARAMS,
                           "post_only goes with resting limit orders only", "post_only")
        if cmd.display_qty is not None:
            if immediate or stop:
                raise Rejected(RejectReason.INVALID_PARAMS,
                               "display_qty goes with resting limit orders only", "display_qty")
            if not inst.min_qty <= cmd.display_qty < cmd.qty:
                raise Rejected(RejectReason.INVALID_QUANTITY,
                               f"display_qty must be {inst.min_qty}..qty-1", "display_qty")
        if priced and not stop:
            self._check_band(market, cmd.price, "price")
        if priced:
            return cmd.price
        # Market orders and stop-markets are protected by the band edge.
        return market.band_high if cmd.side is Side.BUY else market.band_low

    @staticmethod
    def _check_band(market: Market, price: int, field: str) -> None:
        if not market.band_low <= price <= market.band_high:
            raise Rejected(RejectReason.PRICE_OUT_OF_BAND,
                           f"{field} must be within {market.band_low}..{market.band_high} ticks",
                           field)

    # -- Matching around the book ----------------------------------------------

    def _execute(self, market: Market, order: Order, limit: int, ts: int, events: list) -> None:
        """Match a live order as taker, then rest or cancel its remainder; fire stops."""
        self._take(market, order, limit, ts, events)
        if market.last_price is not None and (market.buy_stops or market.sell_stops):
            self._fire_stops(market, ts, events)

    def _take(self, market: Market, order: Order, limit: int, ts: int, events: list) -> None:
        book = market.book
        side = order.side
        stp_cancelled = 0
        traded = False
        if book.would_take(side, limit):
            orders = self.orders
            for kind, maker_id, maker_account, price, qty, maker_leaves in book.match(
                    side, limit, order.leaves_qty, order.account_id, order.stp):
                maker = orders[maker_id]
                if kind == FILL:
                    traded = True
                    market.last_price = price
                    market.volume += qty
                    order.filled_qty += qty
                    order.leaves_qty -= qty
                    maker.filled_qty += qty
                    maker.leaves_qty = maker_leaves
                    events.append(Trade(self._next_trade_id, market.symbol, price, qty, side,
                                        maker_id, maker_account, maker_leaves,
                                        order.order_id, order.account_id, order.leaves_qty, ts))
                    self._next_trade_id += 1
                    if maker_leaves == 0:
                        self._close(maker, OrderStatus.FILLED, ts)
                    else:
                        maker.status = OrderStatus.PARTIALLY_FILLED
                elif kind == STP_CANCEL_MAKER:
                    maker.leaves_qty = 0
                    self._close(maker, OrderStatus.CANCELLED, ts)
                    events.append(OrderCancelled(maker_id, maker_account, market.symbol,
                                                 CancelReason.SELF_TRADE, qty, ts))
                elif kind == STP_DECREMENT:
                    order.leaves_qty -= qty
                    maker.leaves_qty = maker_leaves
                    # Rulebook: decrement lowers the order quantity of the side that
                    # survives; a side brought to zero is cancelled.
                    for o, leaves in ((maker, maker_leaves), (order, order.leaves_qty)):
                        if leaves:
                            o.qty -= qty
                            events.append(OrderReduced(o.order_id, o.account_id, market.symbol,
                                                       qty, leaves, ts))
                        else:
                            self._close(o, OrderStatus.CANCELLED, ts)
                            events.append(OrderCancelled(o.order_id, o.account_id, market.symbol,
                                                         CancelReason.SELF_TRADE, qty, ts))
                else:                                  # the taker stops: self-trade
                    stp_cancelled = qty
            if traded:
                market.set_last(market.last_price)
            self._dirty_market(market)
        if stp_cancelled:
            order.leaves_qty = 0
            self._close(order, OrderStatus.CANCELLED, ts)
            events.append(OrderCancelled(order.order_id, order.account_id, market.symbol,
                                         CancelReason.SELF_TRADE, stp_cancelled, ts))
        elif order.leaves_qty == 0:
            if order.status in LIVE:          # not already closed by a decrement
                self._close(order, OrderStatus.FILLED, ts)
        elif order.order_type is OrderType.LIMIT or order.order_type is OrderType.STOP_LIMIT:
            if order.tif is TimeInForce.IOC or order.tif is TimeInForce.FOK:
                self._cancel_remainder(market, order, ts, events)
            else:
                book.add(order.order_id, order.account_id, side, order.price, order.leaves_qty,
                         order.display_qty or 0)
                order.status = (OrderStatus.PARTIALLY_FILLED if order.filled_qty
                                else OrderStatus.OPEN)
                self._dirty_market(market)
        else:
            self._cancel_remainder(market, order, ts, events)

    def _cancel_remainder(self, market: Market, order: Order, ts: int, events: list) -> None:
        qty = order.leaves_qty
        order.leaves_qty = 0
        self._close(order, OrderStatus.CANCELLED, ts)
        events.append(OrderCancelled(order.order_id, order.account_id, market.symbol,
                                     CancelReason.IOC_REMAINDER, qty, ts))

    @staticmethod
    def _stop_hit(side: Side, stop_price: int, last: int) -> bool:
        return last >= stop_price if side is Side.BUY else last <= stop_price

    def _fire_stops(self, market: Market, ts: int, events: list) -> None:
        """Trigger every stop the last trade reached, oldest order first, until none is left.

        A triggered stop's own trades move the last price, so triggering repeats.
        """
        while True:
            last = market.last_price
            fired = []
            while market.buy_stops and market.buy_stops[0][0] <= last:
                fired.append(market.buy_stops.pop(0)[1])
            while market.sell_stops and -market.sell_stops[0][0] >= last:
                fired.append(market.sell_stops.pop(0)[1])
            if not fired:
                return
            for order_id in sorted(fired):
                order = self.orders[order_id]
                order.status = OrderStatus.OPEN
                events.append(OrderTriggered(order_id, order.account_id, market.symbol,
                                             market.last_price, ts))
                if order.order_type is OrderType.STOP_LIMIT:
                    limit = order.price
                    if not market.band_low <= limit <= market.band_high:
                        qty = order.leaves_qty
                        order.leaves_qty = 0
                        self._close(order, OrderStatus.CANCELLED, ts)
                        events.append(OrderCancelled(order_id, order.account_id, market.symbol,
                                                     CancelReason.OUT_OF_BAND, qty, ts))
                        continue
                else:
                    limit = market.band_high if order.side is Side.BUY else market.band_low
                self._take(market, order, limit, ts, events)

    # -- Cancel and replace --------------------------------------------------------

    def _find(self, account_id: int, order_id: int | None, client_order_id: str | None) -> Order:
        """Return the account's order named by id or client_order_id; another's is unknown."""
        if (order_id is None) == (client_order_id is None):
            raise Rejected(RejectReason.INVALID_PARAMS,
                           "name the order by order_id or client_order_id, one of them",
                           "order_id")
        if order_id is not None:
            order = self.orders.get(order_id)
            if order is None or order.account_id != account_id:
                raise Rejected(RejectReason.UNKNOWN_ORDER, f"no order {order_id}", "order_id")
        else:
            order = self.order_by_client_id(account_id, client_order_id)
            if order is None:
                raise Rejected(RejectReason.UNKNOWN_ORDER,
                               f"no order with client_order_id {client_order_id!r}",
                               "client_order_id")
        if order.status not in LIVE:
            raise Rejected(RejectReason.ORDER_CLOSED,
                           f"order {order.order_id} is {order.status.name.lower()}", "order_id")
        return order

    def _cancel(self, order: Order, reason: CancelReason, ts: int, events: list) -> None:
        market = self.markets[order.symbol]
        self._unrest(market, order)
        qty = order.leaves_qty
        order.leaves_qty = 0
        self._close(order, OrderStatus.CANCELLED, ts)
        events.append(OrderCancelled(order.order_id, order.account_id, order.symbol,
                                     reason, qty, ts))

    def _unrest(self, market: Market, order: Order) -> None:
        """Take a live order out of the book or the stop lists."""
        if order.status is OrderStatus.UNTRIGGERED:
            if order.side is Side.BUY:
                market.buy_stops.remove((order.stop_price, order.order_id))
            else:
                market.sell_stops.remove((-order.stop_price, order.order_id))
        else:
            market.book.cancel(order.order_id)
            self._dirty_market(market)

    def _cancel_all(self, cmd: CancelAll, events: list) -> None:
        if cmd.symbol is not None:
            self._market(cmd.symbol)
        for order in self.open_orders(cmd.account_id, cmd.symbol):
            self._cancel(order, cmd.reason, cmd.ts_ns, events)

    def _replace(self, cmd: ReplaceOrder, events: list) -> None:
        order = self._find(cmd.account_id, cmd.order_id, cmd.client_order_id)
        market = self.markets[order.symbol]
        self._require_open(market)
        if cmd.price is None and cmd.qty is None:
            raise Rejected(RejectReason.INVALID_PARAMS, "a replace needs a price or a qty", "price")
        if cmd.price is not None and order.price is None:
            raise Rejected(RejectReason.INVALID_PARAMS,
                           f"a {order.order_type.name.lower()} order has no price to replace",
                           "price")
        price = order.price if cmd.price is None else cmd.price
        qty = order.qty if cmd.qty is None else cmd.qty
        inst = market.instrument
        if not inst.min_qty <= qty <= inst.max_qty or qty <= order.filled_qty:
            raise Rejected(RejectReason.INVALID_QUANTITY,
                           f"qty must be {max(inst.min_qty, order.filled_qty + 1)}.."
                           f"{inst.max_qty}", "qty")
        resting = order.status is not OrderStatus.UNTRIGGERED
        if resting and price != order.price:
            self._check_band(market, price, "price")
            if order.post_only and market.book.would_take(order.side, price):
                raise Rejected(RejectReason.POST_ONLY_WOULD_TAKE,
                               "a post-only order may not take liquidity", "price")
        leaves = qty - order.filled_qty
        reject = self.risk.check(order.account_id, order.symbol, order.side,
                                 price if price is not None else order.stop_price,
                                 leaves, order.request.reduce_only, order.order_id)
        if reject is not None:
            raise Rejected(reject[0], reject[1])
        # Rulebook: a lower quantity at the same price keeps time priority;
        # a new price or a higher quantity loses it.
        keep = price == order.price and leaves <= order.leaves_qty
        if resting and leaves != order.leaves_qty and keep:
            market.book.reduce(order.order_id, leaves)
            self._dirty_market(market)
        elif resting and not keep:
            market.book.cancel(order.order_id)
            self._dirty_market(market)
        order.price = price
        order.qty = qty
        order.leaves_qty = leaves
        events.append(OrderReplaced(order.order_id, order.account_id, order.symbol,
                                    price if price is not None else 0, qty, leaves, keep,
                                    cmd.ts_ns))
        if resting and not keep:
            self._execute(market, order, price, cmd.ts_ns, events)

    # -- Instrument status, time -----------------------------------------------------

    def _set_status(self, market: Market, status: InstrumentStatus, ts: int,
                    events: list) -> None:
        if market.status in (InstrumentStatus.CLOSED, InstrumentStatus.SETTLED) and \
                not (market.status is InstrumentStatus.CLOSED and status is InstrumentStatus.SETTLED):
            raise Rejected(RejectReason.INSTRUMENT_NOT_TRADING,
                           f"{market.symbol} is {market.status.name.lower()} for good", "symbol")
        if status is InstrumentStatus.SETTLED and market.status is not InstrumentStatus.CLOSED:
            raise Rejected(RejectReason.INVALID_PARAMS, "only a closed instrument settles", "status")
        market.status = status
        if status is InstrumentStatus.CLOSED:
            for account_id in sorted(self._live):
                for order in self.open_orders(account_id, market.symbol):
                    self._cancel(order, CancelReason.INSTRUMENT_CLOSED, ts, events)
        events.append(InstrumentStatusChanged(market.symbol, status, ts))

    def _advance(self, ts: int, events: list) -> None:
        """Let time reach ts: expire GTD orders, close instruments, forget old closed orders."""
        expiries = self._expiries
        while expiries and expiries[0][0] <= ts:
            _, order_id = heapq.heappop(expiries)
            order = self.orders.get(order_id)
            if order is not None and order.status in LIVE:
                market = self.markets[order.symbol]
                self._unrest(market, order)
                qty = order.leaves_qty
                order.leaves_qty = 0
                self._close(order, OrderStatus.EXPIRED, ts)
                events.append(OrderExpired(order_id, order.account_id, order.symbol, qty, ts))
        while self._closings and self._closings[0][0] <= ts:
            _, symbol = self._closings.pop(0)
            market = self.markets[symbol]
            if market.status not in (InstrumentStatus.CLOSED, InstrumentStatus.SETTLED):
                self._set_status(market, InstrumentStatus.CLOSED, ts, events)
        closed = self._closed
        while closed and closed[0][0] + RETENTION_NS <= ts:
            _, order_id = closed.popleft()
            order = self.orders.pop(order_id)
            if order.client_order_id is not None:
                del self._by_client[(order.account_id, order.client_order_id)]
        for market in self._dirty:
            self._publish_levels(market, ts, events)
        self._dirty.clear()

    # -- Small helpers ----------------------------------------------------------------

    def _market(self, symbol: str) -> Market:
        market = self.markets.get(symbol)
        if market is None:
            raise Rejected(RejectReason.UNKNOWN_INSTRUMENT, f"no instrument {symbol!r}", "symbol")
        return market

    @staticmethod
    def _require_open(market: Market) -> None:
        if market.status is not InstrumentStatus.OPEN:
            raise Rejected(RejectReason.INSTRUMENT_NOT_TRADING,
                           f"{market.symbol} is {market.status.name.lower()}", "symbol")

    def _close(self, order: Order, status: OrderStatus, ts: int) -> None:
        order.status = status
        order.closed_ns = ts
        del self._live[order.account_id][order.order_id]
        self._closed.append((ts, order.order_id))

    def _dirty_market(self, market: Market) -> None:
        if market not in self._dirty:
            self._dirty.append(market)

    def _publish_levels(self, market: Market, ts: int, events: list) -> None:
        symbol = market.symbol
        for side, price, qty, count in market.book.changes():
            market.book_seq += 1
            events.append(BookLevelChanged(symbol, market.book_seq, Side(side), price, qty,
                                           count, ts))
