# engine/exchange.pyx: order types, states and lifecycle around one book per instrument.
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

Reduce-only (DESIGN.md §4): with a risk gate, which knows positions, a
reduce-only order may only ever shrink |position|. Placed, triggered, or
replaced to a larger quantity, it is cut to the room its position leaves
after the account's other live reduce-only orders on that side in that
instrument (refused, or cancelled once triggered, when there is none). A
match stops before a reduce-only maker (engine.book) to fit it to its
account's position as the fills so far have left it. After each command,
the reduce-only orders of accounts whose position moved are fitted again:
those on the side that would now add are cancelled, those on the closing
side cut to the position, newest first. The gate is handed the command's
events before each position it is asked for, so it answers as of that point.

It is compiled so that the order path works on C fields of ``Order`` and
``Market``; the events it returns are the msgspec Structs of engine.messages,
built once, positionally.
"""
import hashlib
import heapq
from collections import deque
from operator import attrgetter

import msgspec
from sortedcontainers import SortedList

from engine.book cimport OrderBook
from engine.messages import (
    BookLevelChanged, CancelAll, CancelOrder, CancelReason, DelistInstrument,
    InstrumentDelisted, InstrumentListed, InstrumentStatus, InstrumentStatusChanged,
    ListInstrument, MatchRecord, PlaceStrip, StripExecuted, OrderAccepted, OrderCancelled, OrderDuplicate,
    OrderExpired, OrderReduced, OrderRejected, OrderReplaced, OrderStatus, OrderTriggered,
    OrderType, PlaceOrder, RejectReason, ReplaceOrder, SetInstrumentStatus,
    SetReferencePrice, Side, TimeInForce, Timer, Trade,
)
from engine.contracts import StripError, SymbolError, strip_symbols
from engine.prices import stop_market_margin_price
from engine.risk import PermissiveRisk

cimport cython

from libc.stdint cimport INT64_MAX, int64_t

#: Closed orders stay retrievable (by id and client_order_id) at least this long.
RETENTION_NS = 7 * 24 * 3600 * 10**9
cdef int64_t RETENTION = RETENTION_NS
#: With an archive attached, closed orders stay in memory this long, then in the archive.
RECENT_NS = 5 * 60 * 10**9

# Enum members as module constants: the order path compares them with `is`.
cdef object BUY = Side.BUY, SELL = Side.SELL
cdef dict SIDES = {1: Side.BUY, -1: Side.SELL}
cdef object LIMIT = OrderType.LIMIT, MARKET = OrderType.MARKET
cdef object STOP_LIMIT = OrderType.STOP_LIMIT, STOP_MARKET = OrderType.STOP_MARKET
cdef object GTC = TimeInForce.GTC, GTD = TimeInForce.GTD
cdef object IOC = TimeInForce.IOC, FOK = TimeInForce.FOK
cdef object UNTRIGGERED = OrderStatus.UNTRIGGERED, OPEN = OrderStatus.OPEN
cdef object PARTIALLY_FILLED = OrderStatus.PARTIALLY_FILLED, FILLED = OrderStatus.FILLED
cdef object CANCELLED = OrderStatus.CANCELLED, EXPIRED = OrderStatus.EXPIRED
cdef object IS_OPEN = InstrumentStatus.OPEN, IS_CLOSED = InstrumentStatus.CLOSED
cdef object IS_SETTLED = InstrumentStatus.SETTLED, IS_HALTED = InstrumentStatus.HALTED
cdef object C_SELF_TRADE = CancelReason.SELF_TRADE, C_IOC = CancelReason.IOC_REMAINDER
cdef object C_CLOSED = CancelReason.INSTRUMENT_CLOSED, C_BAND = CancelReason.OUT_OF_BAND
cdef object C_RANGE = CancelReason.OUT_OF_RANGE, C_REDUCE_ONLY = CancelReason.REDUCE_ONLY
cdef tuple COMMANDS = (PlaceOrder, CancelOrder, ReplaceOrder, CancelAll, Timer,
                      ListInstrument, DelistInstrument, PlaceStrip,
                       SetInstrumentStatus, SetReferencePrice)
cdef int FILL = MatchRecord.FILL
cdef int STP_CANCEL_MAKER = MatchRecord.STP_CANCEL_MAKER
cdef int STP_DECREMENT = MatchRecord.STP_DECREMENT
cdef int HALT = MatchRecord.REDUCE_ONLY_HALT

# The order path reads a command's fields with one astuple() call: a C-level
# getattr per field costs several times more. The field order is checked here.
astuple = msgspec.structs.astuple
assert PlaceOrder.__struct_fields__ == (
    "account_id", "symbol", "side", "qty", "order_type", "price", "stop_price", "tif",
    "expire_at_ns", "post_only", "reduce_only", "display_qty", "client_order_id", "stp",
    "liquidation", "ts_ns")
assert CancelOrder.__struct_fields__ == (
    "account_id", "order_id", "client_order_id", "reason", "ts_ns")

#: Statuses of an order that is still working (resting or waiting for its trigger).
LIVE = (OrderStatus.UNTRIGGERED, OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)


@cython.no_gc          # refers to no container that could lead back to it
cdef class Order:
    """The engine's record of one order, live or closed.

    Quantities in lots: ``qty`` = ``filled_qty`` + ``leaves_qty`` + what was
    cancelled or expired. A replace sets ``qty`` (leaves = qty - filled); a
    self-trade decrement, or a reduce-only order's cut to its position, lowers it
    (OrderReduced). Read-only outside the engine.
    """

    def __repr__(self):
        return (f"Order({self.order_id}, account={self.account_id}, {self.symbol}, "
                f"{self.side.name} {self.order_type.name} {self.tif.name}, price={self.price}, "
                f"stop={self.stop_price}, qty={self.qty}, filled={self.filled_qty}, "
                f"leaves={self.leaves_qty}, {self.status.name})")

    def as_tuple(self):
        """Return every field, for hashing and comparing state."""
        return (self.order_id, self.account_id, self.symbol, self.side, self.order_type,
                self.tif, self.price, self.stop_price, self.qty, self.filled_qty,
                self.leaves_qty, self.status, self.display_qty, self.post_only, self.reduce_only,
                self.stp,
                self.expire_at_ns, self.client_order_id, self.request, self.closed_ns)


class Rejected(Exception):
    """A command failed validation; becomes one OrderRejected event. Never leaves this module."""

    def __init__(self, reason, detail, field=None, order_id=None, symbol=None):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.field = field
        self.order_id = order_id      # the order the command named, once it was found
        self.symbol = symbol          # the strip leg it is about


cdef class Market:
    """One instrument's live state: its book, status, last trade, band and stops."""

    def __init__(self, instrument, book):
        self.instrument = instrument
        self.symbol = instrument.symbol
        self.book = book
        self._fast = book if type(book) is OrderBook else None
        self._n_stops = 0
        self.status = IS_OPEN
        self.halt_reason = None
        self.last_price = None
        self.reference_price = instrument.reference_price
        self.band_centre = instrument.reference_price
        self._print_low = INT64_MAX
        self._print_high = 0
        self.book_seq = 0
        self.volume = 0
        self._band_bps = instrument.band_bps
        self.min_qty = instrument.min_qty
        self.max_qty = instrument.max_qty
        # Untriggered stops, earliest to trigger first: buys by rising stop
        # price, sells by falling stop price, then by order id.
        self.buy_stops = SortedList()
        self.sell_stops = SortedList()
        self._set_band()

    def set_reference(self, int64_t price):
        """Take a new settlement price: the band's centre until the next trade."""
        self.reference_price = price
        self.band_centre = price
        self._set_band()

    # The book calls of the order path: straight through the C vtable for the
    # compiled book, a Python call for any other (the tests' reference book).
    cdef bint _would_take(self, int side, int64_t limit) except -1:
        if self._fast is not None:
            return self._fast.would_take(side, limit)
        return self.book.would_take(side, limit)

    cdef list _match(self, int side, int64_t limit, int64_t qty, int64_t account_id, int stp,
                     int64_t passed):
        if self._fast is not None:
            return self._fast.match(side, limit, qty, account_id, stp, passed)
        return self.book.match(side, limit, qty, account_id, stp, passed)

    cdef _add(self, int64_t order_id, int64_t account_id, int side, int64_t price,
              int64_t qty, int64_t display, bint reduce_only):
        if self._fast is not None:
            self._fast.add(order_id, account_id, side, price, qty, display, reduce_only)
        else:
            self.book.add(order_id, account_id, side, price, qty, display, reduce_only)

    cdef _cancel(self, int64_t order_id):
        cdef int64_t cancelled
        if self._fast is not None:
            cancelled = self._fast.cancel(order_id)
        else:
            cancelled = self.book.cancel(order_id)
        if cancelled == 0:
            raise AssertionError(f"order {order_id} is live but not in the {self.symbol} book")

    cdef bint _can_hold(self, int64_t price) except -1:
        if self._fast is not None:
            return self._fast.can_hold(price)
        return self.book.can_hold(price)

    cdef list _changes(self):
        if self._fast is not None:
            return self._fast.changes()
        return self.book.changes()

    cdef void _set_band(self):
        # Band around its centre: the last trade, or the settlement/reference
        # price if that came later. The width rounds down, so the band never
        # exceeds its stated fraction.
        cdef int64_t width = self.band_centre * self._band_bps // 10_000
        self.band_low = max(1, self.band_centre - width)
        self.band_high = self.band_centre + width


cdef class Exchange:
    """The deterministic order path for a set of instruments.

    Args:
        instruments: What is listed; each gets its own book, status open.
        risk: The pre-trade check and post-trade sink (clearing); permissive if None.
        book_factory: Builds a book; tests pass the pure-Python reference book.
        check_invariants: Books verify themselves after every mutation (tests).
    """

    def __init__(self, instruments, risk=None, *, book_factory=OrderBook,
                 bint check_invariants=False):
        # No gate (None) skips the calls; PermissiveRisk would only say yes.
        self.risk = risk if risk is not None else PermissiveRisk()
        self._risk_gated = risk is not None
        self._book_factory = book_factory
        self._check_invariants = check_invariants
        self.markets = {}
        for inst in instruments:
            if inst.symbol in self.markets:
                raise ValueError(f"instrument {inst.symbol} listed twice")
            self.markets[inst.symbol] = Market(inst, book_factory(check_invariants=check_invariants))
        self.orders = {}
        self._by_client = {}
        self._live = {}
        self._reducing = {}
        self._applied = 0
        self._expiries = []
        self._closings = sorted((m.instrument.last_trading_ns, s) for s, m in self.markets.items())
        self._closed = deque()
        self._keep_ns = RETENTION
        self.archive = None
        self.forgotten = None
        self._next_order_id = 1
        self._next_strip_id = 1
        self._strip_checked = False
        self._next_trade_id = 1
        self._last_ts = 0
        self._gtd_live = 0
        self._dirty = []
        self._reset_deadline()

    def attach_archive(self, archive):
        """Keep closed orders in memory for ``RECENT_NS`` only, then hand them over.

        Each order forgotten is appended to ``forgotten`` (its owner moves it to the
        archive after the command); a client_order_id, or an order named by a cancel
        or a replace, not found in memory is then looked up with
        ``archive.closed_order(account_id, order_id, client_order_id, below)`` (the newest
        with that client_order_id placed before the next order id), which returns a
        record with ``order_id``, ``closed_ns``, ``status`` (lower case) and ``request``,
        or None; those in ``forgotten`` are looked at first (not in the archive yet).
        Only records of orders placed before now and closed within ``RETENTION_NS``
        count, so an archive that holds more (filled by a later run) answers a replay
        as it answered the live run. Attach before the first command, for good: how
        long orders stay in memory is part of the state.
        """
        self.archive = archive
        if self.forgotten is None:
            self.forgotten = []
        self._keep_ns = RECENT_NS

    # -- The one entry point -------------------------------------------------

    def process(self, cmd):
        """Apply one command and return the events it caused, in order.

        Args:
            cmd: An engine.messages command; prices in ticks, quantities in lots.

        Returns:
            A new list owned by the caller: first what the passage of time caused
            (expiries, closings), then the command's own events, then the
            reduce-only orders it cut or cancelled; book level changes close each
            part, one per level touched, each with the next ``book_seq`` of its
            instrument. A command stamped before the previous one is rejected:
            time only moves forward. The risk gate has been handed every event
            (in parts, if the command asked it for a position).
        """
        cdef list events = []
        kind = type(cmd)
        if kind not in COMMANDS:
            raise TypeError(f"not an engine command: {kind.__name__}")
        ts = cmd.ts_ns              # one int object, shared by every event of the command
        cdef Market market
        self._applied = 0
        try:
            if <int64_t>ts < self._last_ts:
                raise Rejected(RejectReason.INVALID_PARAMS,
                               f"ts_ns {ts} is before the previous command's {self._last_ts}",
                               "ts_ns")
            self._last_ts = ts
            if <int64_t>ts >= self._next_deadline:
                self._advance(ts, events)
            if kind is PlaceOrder:
                self._place(cmd, events)
            elif kind is CancelOrder:
                account_id, order_id, client_order_id, reason, _ = astuple(cmd)
                self._cancel(self._find(account_id, order_id, client_order_id), reason, ts,
                             events)
            elif kind is ReplaceOrder:
                self._replace(cmd, events)
            elif kind is CancelAll:
                self._cancel_all(cmd, events)
            elif kind is SetInstrumentStatus:
                self._set_status(self._market(cmd.symbol), cmd.status, ts, events, cmd.reason)
            elif kind is SetReferencePrice:
                self._market(cmd.symbol).set_reference(cmd.price)
            elif kind is PlaceStrip:
                self._place_strip(cmd, events)
            elif kind is ListInstrument:
                self._list(cmd.instrument, ts, events)
            elif kind is DelistInstrument:
                self._delist(self._market(cmd.symbol), ts, events)
        except Rejected as r:
            events.append(OrderRejected(
                getattr(cmd, "account_id", 0), r.reason, r.detail, r.field,
                getattr(cmd, "client_order_id", None),
                r.order_id if r.order_id is not None else getattr(cmd, "order_id", None), ts,
                r.symbol))
        if self._reducing:
            self._fit_reducing(ts, events)
        if self._dirty:
            self._publish_levels(ts, events)
        if self._risk_gated:
            if self._applied == 0:
                self.risk.apply(events)
            elif self._applied < len(events):
                self.risk.apply(events[self._applied:])
        return events

    # -- Queries ---------------------------------------------------------------

    def order(self, order_id):
        """Return the order with this id (live, or closed within retention), or None."""
        return self.orders.get(order_id)

    def order_by_client_id(self, account_id, client_order_id):
        """Return the account's order with this client_order_id, or None."""
        order_id = self._by_client.get((account_id, client_order_id))
        return None if order_id is None else self.orders[order_id]

    def open_orders(self, account_id, symbol=None):
        """Return the account's live orders (resting or untriggered), oldest first."""
        live = self._live.get(account_id)
        if live is None:
            return []
        return [o for o in live.values() if symbol is None or (<Order>o).symbol == symbol]

    def open_order_count(self, account_id):
        """Return how many live orders (resting or untriggered) the account has."""
        live = self._live.get(account_id)
        return 0 if live is None else len(live)

    def timer_due(self, ts):
        """Whether a Timer at ``ts`` would do anything but move the clock: a GTD order
        expires, an instrument reaches its last trading time, a closed order is forgotten."""
        return <int64_t>ts >= self._next_deadline

    def state_hash(self):
        """Return a digest of all state; equal for engines fed the same commands."""
        cdef Market m
        state = [
            self._next_order_id, self._next_trade_id, self._last_ts, self._next_strip_id,
            [o.as_tuple() for _, o in sorted(self.orders.items())],
            sorted(self._by_client.items()), sorted(self._expiries),
            sorted((a, sorted(mine)) for a, mine in self._reducing.items()),
            [(<Order>o).order_id for o in self._closed],
            [(s, m.status, m.halt_reason, m.last_price, m.reference_price, m.band_centre, m.band_low,
              m.band_high, m.book_seq, m.volume, m.book.orders(1), m.book.orders(-1),
              list(m.buy_stops), list(m.sell_stops))
             for s, m in sorted(self.markets.items())],
        ]
        return hashlib.sha256(msgspec.msgpack.encode(state)).hexdigest()

    # -- Place -----------------------------------------------------------------

    cdef _place(self, object cmd, list events):
        cdef Order existing, order
        cdef int64_t account_id, qty, limit
        (account_id, symbol, side, qty, otype, price, stop_price, tif, expire_at, post_only,
         reduce_only, display, client_order_id, stp, liquidation, ts) = astuple(cmd)
        if client_order_id is not None:
            existing_id = self._by_client.get((account_id, client_order_id))
            if existing_id is not None:
                existing = self.orders[existing_id]
                request = existing.request
            else:
                archived = self._archived(account_id, None, client_order_id, ts)
                if archived is not None:
                    existing_id, _, _, request = archived
            if existing_id is not None:
                if msgspec.structs.replace(cmd, ts_ns=request.ts_ns) != request:
                    raise Rejected(RejectReason.DUPLICATE_CLIENT_ORDER_ID,
                                   f"client_order_id {client_order_id!r} is order "
                                   f"{existing_id}, placed with other parameters",
                                   "client_order_id")
                events.append(OrderDuplicate(existing_id, account_id, client_order_id, ts))
                return
        cdef Market market = self._market(symbol)
        if market.status is not IS_OPEN:
            raise _not_trading(market)
        cdef bint priced = otype is LIMIT or otype is STOP_LIMIT
        cdef bint stop = otype is STOP_LIMIT or otype is STOP_MARKET
        _validate_place(market, otype, priced, stop, tif, price, stop_price, qty, expire_at,
                        ts, post_only, display, liquidation)
        if priced:
            limit = price
            if not stop and (tif is GTC or tif is GTD) and not market._can_hold(limit):
                raise _too_far(market, limit)
        else:
            # Market orders and stop-markets are protected by the band edge.
            limit = market.band_high if side is BUY else market.band_low
        if reduce_only and self._risk_gated:
            # Cut to the room the position leaves; the cut quantity is the order's.
            room, position, held = self._room(account_id, market.symbol,
                                              1 if side is BUY else -1, None, events)
            if room == 0:
                raise _no_room(side, position, held)
            if qty > room:
                qty = room
                if display is not None and display >= qty:
                    display = None
        if stop:
            if market.last_price is not None and _stop_hit(side, stop_price, market.last_price):
                raise Rejected(RejectReason.STOP_WOULD_TRIGGER,
                               f"stop_price {stop_price} is already reached by the "
                               f"last trade {market.last_price}", "stop_price")
        elif post_only and market._would_take(side, limit):
            raise Rejected(RejectReason.POST_ONLY_WOULD_TAKE,
                           "a post-only order may not take liquidity", "price")
        elif tif is FOK and not market.book.fillable(
                side, limit, qty, account_id, stp,
                self._caps(market, -1 if side is BUY else 1, events) if self._reducing else None):
            raise Rejected(RejectReason.FOK_NOT_FILLABLE,
                           f"{qty} lots cannot all fill at {limit} or better", "qty")
        elif otype is MARKET and not market._would_take(side, limit):
            raise Rejected(RejectReason.NO_LIQUIDITY,
                           "no opposite order inside the price band", "type")
        # Clearing last: it is asked only about orders the engine would take (a strip's legs
        # it was asked about together).
        if self._risk_gated and not self._strip_checked:
            reject = self.risk.check(
                account_id, market.symbol, side,
                stop_market_margin_price(side, stop_price, market._band_bps)
                if otype is STOP_MARKET else limit, qty, liquidation, None)
            if reject is not None:
                raise Rejected(reject[0], reject[1])

        order = Order.__new__(Order)
        order_id = self._next_order_id     # boxed once for the dicts and the event
        order.order_id = order_id
        self._next_order_id += 1
        order.account_id = account_id
        order.symbol = market.symbol
        order.side = side
        order._side = 1 if side is BUY else -1
        order.order_type = otype
        order.tif = tif
        order.price = price
        order.stop_price = stop_price
        order.qty = qty
        order.filled_qty = 0
        order.leaves_qty = qty
        order.status = UNTRIGGERED if stop else OPEN
        order._live = True
        order.display_qty = display
        order.post_only = post_only
        order.reduce_only = reduce_only
        order.stp = stp
        order.expire_at_ns = expire_at
        order.client_order_id = client_order_id
        # Only a client_order_id repeat compares against the request: keep it for those.
        order.request = cmd if client_order_id is not None else None
        order.closed_ns = None
        self.orders[order_id] = order
        if client_order_id is not None:
            self._by_client[(account_id, client_order_id)] = order_id
        live = self._live.get(account_id)
        if live is None:
            live = self._live[account_id] = {}
        live[order_id] = order
        if reduce_only and self._risk_gated:
            mine = self._reducing.get(account_id)
            if mine is None:
                mine = self._reducing[account_id] = {}
            mine[order_id] = order
        if expire_at is not None:
            self._gtd_live += 1
            heapq.heappush(self._expiries, (expire_at, order_id))
            if expire_at < self._next_deadline:
                self._next_deadline = expire_at
        events.append(OrderAccepted(order_id, account_id, market.symbol, side, otype, tif,
                                    price, stop_price, qty, client_order_id, ts))
        if stop:
            if side is BUY:
                market.buy_stops.add((stop_price, order.order_id))
            else:
                market.sell_stops.add((-stop_price, order.order_id))
            market._n_stops += 1
            return
        self._execute(market, order, limit, ts, events)

    # -- Matching around the book ----------------------------------------------

    cdef _execute(self, Market market, Order order, int64_t limit, object ts, list events):
        """Match a live order as taker, then rest or cancel its remainder; fire stops."""
        market._print_high = 0
        market._print_low = INT64_MAX
        self._take(market, order, limit, ts, events)
        if market._n_stops and market._print_high:
            self._fire_stops(market, ts, events)

    cdef _take(self, Market market, Order order, int64_t limit, object ts, list events):
        """Match the order as taker up to limit, apply each record, then rest or cancel the rest.

        Fill prices widen the market's print range, which _fire_stops reads. A
        walk that stops before a reduce-only maker goes on once it is fitted.
        """
        cdef int side = order._side
        cdef int64_t qty, maker_leaves, price, last_fill = 0, passed = 0
        cdef bint stp_cancelled = False
        cdef int kind
        cdef Order maker, o, halted
        if market._would_take(side, limit):
            orders = self.orders
            while True:
                halted = None
                for record in market._match(side, limit, order.leaves_qty, order.account_id,
                                            order.stp, passed):
                    kind, maker_id, maker_account, price, qty, maker_leaves = record
                    maker = orders[maker_id]
                    if kind == FILL:
                        last_fill = price
                        if price > market._print_high:
                            market._print_high = price
                        if price < market._print_low:
                            market._print_low = price
                        market.volume += qty
                        order.filled_qty += qty
                        order.leaves_qty -= qty
                        maker.filled_qty += qty
                        maker.leaves_qty = maker_leaves
                        events.append(Trade(self._next_trade_id, market.symbol, price, qty,
                                            order.side, maker_id, maker_account, maker_leaves,
                                            order.order_id, order.account_id, order.leaves_qty,
                                            ts))
                        self._next_trade_id += 1
                        if maker_leaves == 0:
                            self._close(maker, FILLED, ts)
                        else:
                            maker.status = PARTIALLY_FILLED
                    elif kind == STP_CANCEL_MAKER:
                        maker.leaves_qty = 0
                        self._close(maker, CANCELLED, ts)
                        events.append(OrderCancelled(maker_id, maker_account, market.symbol,
                                                     C_SELF_TRADE, qty, ts))
                    elif kind == STP_DECREMENT:
                        order.leaves_qty -= qty
                        maker.leaves_qty = maker_leaves
                        # Rulebook: decrement lowers the order quantity of the side that
                        # survives; a side brought to zero is cancelled.
                        for o in (maker, order):
                            if o.leaves_qty:
                                o.qty -= qty
                                events.append(OrderReduced(o.order_id, o.account_id,
                                                           market.symbol, qty, o.leaves_qty, ts))
                            else:
                                self._close(o, CANCELLED, ts)
                                events.append(OrderCancelled(o.order_id, o.account_id,
                                                             market.symbol, C_SELF_TRADE, qty,
                                                             ts))
                    elif kind == HALT:                     # a reduce-only maker: fit it
                        halted = maker
                    else:                                  # the taker stops: self-trade
                        stp_cancelled = True
                if halted is None:
                    break
                passed = self._fit_maker(market, halted, ts, events)
            if last_fill:
                market.last_price = last_fill
                market.band_centre = last_fill
                market._set_band()
            self._dirty_market(market)
        if stp_cancelled:
            self._cancel_remainder_for(market, order, C_SELF_TRADE, ts, events)
        elif order.leaves_qty == 0:
            if order._live:                   # not already closed by a decrement
                self._close(order, FILLED, ts)
        elif (order.order_type is LIMIT or order.order_type is STOP_LIMIT) and \
                order.tif is not IOC and order.tif is not FOK:
            market._add(order.order_id, order.account_id, side, order.price, order.leaves_qty,
                        order.display_qty or 0, order.reduce_only and self._risk_gated)
            order.status = PARTIALLY_FILLED if order.filled_qty else OPEN
            self._dirty_market(market)
        else:
            self._cancel_remainder_for(market, order, C_IOC, ts, events)

    cdef _fire_stops(self, Market market, object ts, list events):
        """Trigger every stop that a print of this command reached, oldest order first.

        Every print counts, not only the last: a sweep through 1001 and 1003
        reaches a sell stop at 1002. A triggered stop's own trades print too,
        so triggering repeats until a round fires nothing.
        """
        cdef Order order
        cdef int64_t limit, high, low
        while True:
            high = market._print_high
            low = market._print_low
            market._print_high = 0
            market._print_low = INT64_MAX
            fired = []
            while market.buy_stops and market.buy_stops[0][0] <= high:
                fired.append(market.buy_stops.pop(0)[1])
            while market.sell_stops and -market.sell_stops[0][0] >= low:
                fired.append(market.sell_stops.pop(0)[1])
            if not fired:
                return
            market._n_stops -= len(fired)
            for order_id in sorted(fired):
                order = self.orders[order_id]
                order.status = OPEN
                events.append(OrderTriggered(order_id, order.account_id, market.symbol,
                                             high if order.side is BUY else low, ts))
                if order.reduce_only and self._risk_gated:
                    room = self._room(order.account_id, market.symbol, order._side, order,
                                      events)[0]
                    if order.leaves_qty > room:
                        self._cut(market, order, order.leaves_qty - room, False, ts, events)
                        if not order._live:
                            continue
                if order.order_type is STOP_LIMIT:
                    limit = order.price
                    if not market.band_low <= limit <= market.band_high:
                        self._cancel_remainder_for(market, order, C_BAND, ts, events)
                        continue
                    if not market._can_hold(limit):
                        self._cancel_remainder_for(market, order, C_RANGE, ts, events)
                        continue
                else:
                    limit = market.band_high if order.side is BUY else market.band_low
                self._take(market, order, limit, ts, events)

    cdef _cancel_remainder_for(self, Market market, Order order, object reason, object ts,
                               list events):
        cdef int64_t qty = order.leaves_qty
        order.leaves_qty = 0
        self._close(order, CANCELLED, ts)
        events.append(OrderCancelled(order.order_id, order.account_id, market.symbol,
                                     reason, qty, ts))

    # -- Reduce-only ---------------------------------------------------------------

    cdef _sync(self, list events):
        # Hand the gate this command's events it has not had yet, so that it can
        # answer position() as of now; process() hands over the rest.
        cdef Py_ssize_t n = len(events)
        if self._applied < n:
            self.risk.apply(events[self._applied:])
            self._applied = n

    cdef int64_t _closing(self, int64_t account_id, str symbol, int side, list events) except -1:
        """Return the lots an order of ``side`` could close of the account's position now:
        its size if ``side`` shrinks it, else 0."""
        self._sync(events)
        return _closing_lots(side, self.risk.position(account_id, symbol))

    cdef tuple _room(self, int64_t account_id, str symbol, int side, Order replaced,
                     list events):
        """Return (room, position, held): the lots a reduce-only order of ``side`` may hold,
        the account's position, and the leaves of its other live reduce-only orders on that
        side of ``symbol`` (untriggered stops too; not ``replaced``, the order itself)."""
        self._sync(events)
        cdef int64_t position = self.risk.position(account_id, symbol), held = 0
        cdef int64_t closing = _closing_lots(side, position)
        cdef Order o
        mine = self._reducing.get(account_id)
        if mine is not None:
            for o in mine.values():
                if o is not replaced and o._side == side and o.symbol == symbol:
                    held += o.leaves_qty
        return closing - held if closing > held else 0, position, held

    cdef dict _caps(self, Market market, int side, list events):
        """Return OrderBook.fillable's caps for the reduce-only orders resting on ``side``:
        account_id -> what its position lets them close. None when there are none."""
        cdef dict caps = None
        cdef Order o
        for account_id, mine in self._reducing.items():
            for o in mine.values():
                if o._side == side and o.symbol == market.symbol and o.status is not UNTRIGGERED:
                    if caps is None:
                        caps = {}
                    caps[account_id] = self._closing(account_id, market.symbol, side, events)
                    break
        return caps

    cdef int64_t _fit_maker(self, Market market, Order maker, object ts, list events) except -1:
        """Cut a reduce-only maker the walk stopped at to what its position leaves now.

        Returns:
            Its order id, for the walk to pass it, or 0 if it is gone.
        """
        cdef int64_t closing = self._closing(maker.account_id, market.symbol, maker._side, events)
        if maker.leaves_qty > closing:
            self._cut(market, maker, maker.leaves_qty - closing, True, ts, events)
        return maker.order_id if maker._live else 0

    cdef _cut(self, Market market, Order order, int64_t lots, bint held, object ts,
              list events):
        """Take ``lots`` off a reduce-only order its position no longer covers.

        Lowered, it keeps its priority (OrderReduced); with nothing left it is
        cancelled (reason reduce_only). ``held``: it is in the book or the stop
        lists (not a stop just triggered).
        """
        cdef int64_t leaves = order.leaves_qty - lots
        if leaves <= 0:
            if held:
                self._unrest(market, order)
            self._cancel_remainder_for(market, order, C_REDUCE_ONLY, ts, events)
            return
        if held and order.status is not UNTRIGGERED:
            market.book.reduce(order.order_id, leaves)
            self._dirty_market(market)
        order.qty -= lots
        order.leaves_qty = leaves
        events.append(OrderReduced(order.order_id, order.account_id, market.symbol, lots,
                                   leaves, ts))

    cdef _fit_reducing(self, object ts, list events):
        """Fit the reduce-only orders of every account whose position this command moved.

        Those on the side that would now add to |position| are cancelled; those
        on the closing side are cut, newest first, until their leaves add up to
        no more than the position.
        """
        cdef dict reducing = self._reducing
        cdef set moved = set()
        cdef int64_t position, excess
        cdef Order o
        for ev in events:
            if type(ev) is Trade:
                if ev.maker_account_id in reducing:
                    moved.add((ev.maker_account_id, ev.symbol))
                if ev.taker_account_id in reducing:
                    moved.add((ev.taker_account_id, ev.symbol))
        if not moved:
            return
        self._sync(events)
        for account_id, symbol in sorted(moved):
            mine = reducing.get(account_id)
            if mine is None:
                continue
            position = self.risk.position(account_id, symbol)
            newest_first = sorted([o for o in mine.values() if o.symbol == symbol],
                                  key=attrgetter("order_id"), reverse=True)
            excess = -abs(position)
            for o in newest_first:
                if _closing_lots(o._side, position):
                    excess += o.leaves_qty
            market = self.markets[symbol]
            for o in newest_first:
                if not _closing_lots(o._side, position):
                    self._cut(market, o, o.leaves_qty, True, ts, events)
                elif excess > 0:
                    lots = min(excess, o.leaves_qty)
                    excess -= lots
                    self._cut(market, o, lots, True, ts, events)

    # -- Cancel and replace --------------------------------------------------------

    cdef Order _find(self, int64_t account_id, object order_id, object client_order_id):
        """Return the account's order named by id or client_order_id; another's is unknown."""
        cdef Order order
        if (order_id is None) == (client_order_id is None):
            raise Rejected(RejectReason.INVALID_PARAMS,
                           "name the order by order_id or client_order_id, one of them",
                           "order_id")
        if order_id is not None:
            found = self.orders.get(order_id)
            if found is not None and (<Order>found).account_id != account_id:
                found = None
        else:
            found = self.order_by_client_id(account_id, client_order_id)
        if found is None:
            archived = self._archived(account_id, order_id, client_order_id, self._last_ts)
            if archived is not None:
                raise Rejected(RejectReason.ORDER_CLOSED,
                               f"order {archived[0]} is {archived[2]}", "order_id",
                               archived[0])
            if order_id is not None:
                raise Rejected(RejectReason.UNKNOWN_ORDER, f"no order {order_id}", "order_id")
            raise Rejected(RejectReason.UNKNOWN_ORDER,
                           f"no order with client_order_id {client_order_id!r}",
                           "client_order_id")
        order = found
        if not order._live:
            raise Rejected(RejectReason.ORDER_CLOSED,
                           f"order {order.order_id} is {order.status.name.lower()}", "order_id",
                           order.order_id)
        return order

    cdef object _archived(self, int64_t account_id, object order_id, object client_order_id,
                          object ts):
        """(order_id, closed_ns, status name, request) of the account's order that left
        memory, if it counts now (attach_archive), else None. This command may itself have
        let it go: the orders in ``forgotten`` reach the archive only after the command."""
        cdef Order order, newest = None
        if self.archive is None:
            return None
        for order in self.forgotten:
            if order.account_id == account_id and (
                    order.order_id == order_id if order_id is not None
                    else order.client_order_id == client_order_id):
                if newest is None or order.order_id > newest.order_id:
                    newest = order
        if newest is not None:
            return (newest.order_id, newest.closed_ns, newest.status.name.lower(),
                    newest.request)
        found = self.archive.closed_order(account_id, order_id, client_order_id,
                                          self._next_order_id)
        if found is None or found.order_id >= self._next_order_id \
                or <int64_t>found.closed_ns + RETENTION <= <int64_t>ts:
            return None
        return (found.order_id, found.closed_ns, found.status, found.request)

    cdef _cancel(self, Order order, object reason, object ts, list events):
        cdef Market market = self.markets[order.symbol]
        self._unrest(market, order)
        self._cancel_remainder_for(market, order, reason, ts, events)

    cdef _unrest(self, Market market, Order order):
        """Take a live order out of the book or the stop lists."""
        if order.status is UNTRIGGERED:
            if order.side is BUY:
                market.buy_stops.remove((order.stop_price, order.order_id))
            else:
                market.sell_stops.remove((-order.stop_price, order.order_id))
            market._n_stops -= 1
        else:
            market._cancel(order.order_id)
            self._dirty_market(market)

    cdef _cancel_all(self, object cmd, list events):
        if cmd.symbol is not None:
            self._market(cmd.symbol)
        for order in self.open_orders(cmd.account_id, cmd.symbol):
            self._cancel(order, cmd.reason, cmd.ts_ns, events)

    cdef _replace(self, object cmd, list events):
        cdef Order order = self._find(cmd.account_id, cmd.order_id, cmd.client_order_id)
        try:
            self._modify(order, cmd, events)
        except Rejected as r:
            r.order_id = order.order_id     # named by client_order_id, it still has an id
            raise

    cdef _modify(self, Order order, object cmd, list events):
        cdef Market market = self.markets[order.symbol]
        if market.status is not IS_OPEN:
            raise _not_trading(market)
        if cmd.price is None and cmd.qty is None:
            raise Rejected(RejectReason.INVALID_PARAMS, "a replace needs a price or a qty", "price")
        if cmd.price is not None and order.price is None:
            raise Rejected(RejectReason.INVALID_PARAMS,
                           f"a {order.order_type.name.lower()} order has no price to replace",
                           "price")
        price = order.price if cmd.price is None else cmd.price
        cdef int64_t qty = order.qty if cmd.qty is None else cmd.qty
        if not market.min_qty <= qty <= market.max_qty or qty <= order.filled_qty:
            raise Rejected(RejectReason.INVALID_QUANTITY,
                           f"qty must be {max(market.min_qty, order.filled_qty + 1)}.."
                           f"{market.max_qty}", "qty")
        cdef bint resting = order.status is not UNTRIGGERED
        if resting and price != order.price:
            _check_band(market, price, "price")
            # The order itself leaves first, so alone in the book it may go anywhere.
            if not market._can_hold(price) and len(market.book) > 1:
                raise _too_far(market, price)
            if order.post_only and market._would_take(order._side, price):
                raise Rejected(RejectReason.POST_ONLY_WOULD_TAKE,
                               "a post-only order may not take liquidity", "price")
        cdef int64_t leaves = qty - order.filled_qty
        if order.reduce_only and self._risk_gated and leaves > order.leaves_qty:
            room, position, held = self._room(order.account_id, order.symbol, order._side, order,
                                              events)
            if room == 0:             # the position moved outside the engine's commands
                raise _no_room(order.side, position, held)
            if leaves > room:
                leaves = room
                qty = order.filled_qty + leaves
        if self._risk_gated:
            # Only an untriggered stop-market has no price and can be replaced.
            reject = self.risk.check(order.account_id, order.symbol, order.side,
                                     price if price is not None else stop_market_margin_price(
                                         order._side, order.stop_price, market._band_bps),
                                     leaves, False, order.order_id)
            if reject is not None:
                raise Rejected(reject[0], reject[1])
        # Rulebook: a lower quantity at the same price keeps time priority;
        # a new price or a higher quantity loses it.
        cdef bint keep = price == order.price and leaves <= order.leaves_qty
        if resting and leaves != order.leaves_qty and keep:
            market.book.reduce(order.order_id, leaves)
            self._dirty_market(market)
        elif resting and not keep:
            market._cancel(order.order_id)
            self._dirty_market(market)
        order.price = price
        order.qty = qty
        order.leaves_qty = leaves
        events.append(OrderReplaced(order.order_id, order.account_id, order.symbol,
                                    price, qty, leaves, keep, cmd.ts_ns))
        if resting and not keep:
            self._execute(market, order, price, cmd.ts_ns, events)

    # -- Strips ------------------------------------------------------------------------

    def strip_quote(self, symbols, side, qty):
        """What a strip of up to ``qty`` lots per leg would fill now inside the bands, for
        anyone (no own orders, no limit): (lots, [(symbol, hours, ticks x lots), ...]).

        Raises:
            ValueError: with ``reason``, ``field`` and ``symbol`` as a refused strip's.
        """
        try:
            filled, legs, _ = self._plan_strip(list(symbols), 1 if side is BUY else -1, qty,
                                               None, 0, 0, [])
        except Rejected as r:
            error = ValueError(r.detail)
            error.reason, error.field, error.symbol = r.reason, r.field, r.symbol
            raise error from None
        return filled, legs

    cdef tuple _plan_strip(self, list symbols, int side, int64_t qty, object limit,
                           int64_t account_id, int stp, list events):
        """The largest equal quantity, up to ``qty``, that every leg fills now inside its band
        and, with a ``limit``, whose hours-weighted average price meets it (compared exactly:
        sum of hours x cost against limit x lots x sum of hours). Returns (lots, legs as
        (symbol, hours, ticks x lots at that size), the worst price each leg reaches).

        The average is monotone in the size (each leg's best lots come first), so the sizes
        that meet the limit are a prefix and a binary search finds the largest.
        """
        cdef Market market
        try:
            strip_symbols(symbols)
        except (StripError, SymbolError) as exc:
            raise Rejected(RejectReason.INVALID_STRIP if isinstance(exc, StripError)
                           else RejectReason.UNKNOWN_INSTRUMENT, str(exc), "symbols")
        markets = []
        for symbol in symbols:
            found = self.markets.get(symbol)
            if found is None:
                raise Rejected(RejectReason.UNKNOWN_INSTRUMENT, f"no instrument {symbol!r}",
                               "symbols", symbol=symbol)
            market = found
            if market.status is not IS_OPEN:
                error = _not_trading(market)
                error.field, error.symbol = "symbols", symbol
                raise error
            if not market.min_qty <= qty <= market.max_qty:
                raise Rejected(RejectReason.INVALID_QUANTITY,
                               f"qty must be {market.min_qty}..{market.max_qty} in {symbol}",
                               "qty", symbol=symbol)
            markets.append(market)
        sweeps = []
        most = qty
        for market in markets:
            fills = market.book.sweep(
                side, market.band_high if side == 1 else market.band_low, qty, account_id,
                stp, self._caps(market, -side, events) if self._reducing else None)
            sweeps.append(fills)
            most = min(most, sum([lots for _, lots in fills]))
        hours = [(<Market>m).instrument.contract_hours for m in markets]
        total_hours = sum(hours)

        low, high = 0, most
        while low < high:
            mid = (low + high + 1) // 2
            if limit is None or _strip_meets(sweeps, hours, total_hours, mid, limit, side):
                low = mid
            else:
                high = mid - 1
        paid = _strip_cost(sweeps, low)
        return (low, [(m.symbol, h, p) for m, h, (p, _) in zip(markets, hours, paid)],
                [w for _, w in paid])

    cdef _place_strip(self, object cmd, list events):
        """All or none across the legs: plan against every book first, ask clearing about
        the legs together, then trade each leg as an IOC order at the worst price its plan
        reaches, which fills exactly the planned lots (the plan replays the match)."""
        cdef int side = 1 if cmd.side is BUY else -1
        cdef int64_t account_id = cmd.account_id
        if cmd.tif is not FOK and cmd.tif is not IOC:
            raise Rejected(RejectReason.INVALID_PARAMS, "a strip is fok or ioc", "tif")
        cid = cmd.client_order_id
        if cid is not None and ((account_id, cid) in self._by_client
                                or self._archived(account_id, None, cid, cmd.ts_ns) is not None):
            raise Rejected(RejectReason.DUPLICATE_CLIENT_ORDER_ID,
                           f"client_order_id {cid!r} is already used", "client_order_id")
        filled, legs, worst = self._plan_strip(list(cmd.symbols), side, cmd.qty, cmd.price,
                                               account_id, int(cmd.stp), events)
        if cmd.tif is FOK and filled < cmd.qty:
            raise Rejected(RejectReason.STRIP_NOT_FILLABLE,
                           f"{cmd.qty} lots cannot fill in every leg within the average price "
                           f"limit now (at most {filled})", "qty")
        if filled and self._risk_gated:
            reject = self.risk.check_strip(account_id, cmd.side,
                                           [(s, filled, paid) for s, _, paid in legs])
            if reject is not None:
                raise Rejected(reject[0], reject[1])
        ts = cmd.ts_ns
        strip_id = self._next_strip_id
        self._next_strip_id += 1
        out = []
        if filled:
            self._strip_checked = True
            try:
                for n, ((symbol, hours, paid), limit) in enumerate(zip(legs, worst)):
                    order_id = self._next_order_id
                    self._place(PlaceOrder(
                        ts_ns=ts, account_id=account_id, symbol=symbol, side=cmd.side,
                        qty=filled, price=limit, tif=IOC, stp=cmd.stp,
                        client_order_id=cid if n == 0 else None), events)
                    order = self.orders[order_id]
                    if (<Order>order).filled_qty != filled:
                        raise AssertionError(f"strip leg {symbol} filled "
                                             f"{(<Order>order).filled_qty} of {filled}")
                    out.append((symbol, order_id, hours, paid))
            finally:
                self._strip_checked = False
        else:
            out = [(symbol, None, hours, 0) for symbol, hours, _ in legs]
        events.append(StripExecuted(strip_id, account_id, cid, cmd.side, cmd.qty, cmd.price,
                                    cmd.tif, filled, out, ts))

    # -- Instrument status, time -----------------------------------------------------

    cdef _set_status(self, Market market, object status, object ts, list events,
                     object reason=None):
        if (market.status is IS_CLOSED and status is not IS_SETTLED) or market.status is IS_SETTLED:
            raise Rejected(RejectReason.INSTRUMENT_NOT_TRADING,
                           f"{market.symbol} is {market.status.name.lower()} for good", "symbol")
        if status is IS_SETTLED and market.status is not IS_CLOSED:
            raise Rejected(RejectReason.INVALID_PARAMS, "only a closed instrument settles", "status")
        market.status = status
        market.halt_reason = (reason or "halted by operations") if status is IS_HALTED else None
        if status is IS_CLOSED:
            for account_id in sorted(self._live):
                for order in self.open_orders(account_id, market.symbol):
                    self._cancel(order, C_CLOSED, ts, events)
        events.append(InstrumentStatusChanged(market.symbol, status, ts, market.halt_reason))

    cdef _list(self, object instrument, object ts, list events):
        """A new contract: open, or closed at once if its last trading time has passed."""
        symbol = instrument.symbol
        if symbol in self.markets:
            raise Rejected(RejectReason.INVALID_PARAMS, f"{symbol} is already listed", "symbol")
        cdef Market market = Market(instrument,
                                    self._book_factory(check_invariants=self._check_invariants))
        self.markets[symbol] = market
        events.append(InstrumentListed(symbol, ts))
        if <int64_t>ts >= <int64_t>instrument.last_trading_ns:
            self._set_status(market, IS_CLOSED, ts, events)
        else:
            self._closings.append((instrument.last_trading_ns, symbol))
            self._closings.sort()
            self._reset_deadline()

    cdef _delist(self, Market market, object ts, list events):
        """Only a settled contract leaves: it has no orders, and clearing is done with it."""
        if market.status is not IS_SETTLED:
            raise Rejected(RejectReason.INVALID_PARAMS,
                           f"{market.symbol} is {market.status.name.lower()}; only a settled "
                           "contract is delisted", "symbol")
        del self.markets[market.symbol]
        events.append(InstrumentDelisted(market.symbol, ts))

    cdef _advance(self, object ts, list events):
        """Let time reach ts: expire GTD orders, close instruments, forget old closed orders."""
        cdef Order order
        cdef Market market
        expiries = self._expiries
        while expiries and expiries[0][0] <= ts:
            _, order_id = heapq.heappop(expiries)
            found = self.orders.get(order_id)
            if found is not None and (<Order>found)._live:
                order = found
                market = self.markets[order.symbol]
                self._unrest(market, order)
                qty = order.leaves_qty
                order.leaves_qty = 0
                self._close(order, EXPIRED, ts)
                events.append(OrderExpired(order_id, order.account_id, order.symbol, qty, ts))
        while self._closings and self._closings[0][0] <= ts:
            _, symbol = self._closings.pop(0)
            found = self.markets.get(symbol)          # None: closed early, settled, delisted
            if found is None:
                continue
            market = found
            if market.status is not IS_CLOSED and market.status is not IS_SETTLED:
                self._set_status(market, IS_CLOSED, ts, events)
        closed = self._closed
        forgotten = self.forgotten
        while closed and (<Order>closed[0]).closed_ns + self._keep_ns <= ts:
            order = closed.popleft()
            del self.orders[order.order_id]
            if order.client_order_id is not None:
                del self._by_client[(order.account_id, order.client_order_id)]
            if forgotten is not None:
                forgotten.append(order)
        if self._dirty:
            self._publish_levels(ts, events)
        self._reset_deadline()

    cdef _rebuild_expiries(self):
        # Closed GTD orders leave their heap entries behind until expire_at;
        # once they outnumber the live ones, keep only the live ones' entries.
        orders = self.orders
        expiries = [entry for entry in self._expiries
                    if (found := orders.get(entry[1])) is not None and (<Order>found)._live]
        heapq.heapify(expiries)
        self._expiries = expiries

    cdef _reset_deadline(self):
        cdef int64_t deadline = INT64_MAX
        if self._expiries:
            deadline = min(deadline, self._expiries[0][0])
        if self._closings:
            deadline = min(deadline, self._closings[0][0])
        if self._closed:
            deadline = min(deadline, (<Order>self._closed[0]).closed_ns + self._keep_ns)
        self._next_deadline = deadline

    # -- Small helpers ----------------------------------------------------------------

    cdef Market _market(self, object symbol):
        market = self.markets.get(symbol)
        if market is None:
            raise Rejected(RejectReason.UNKNOWN_INSTRUMENT, f"no instrument {symbol!r}", "symbol")
        return market

    cdef _close(self, Order order, object status, object ts):
        order.status = status
        order.closed_ns = ts
        order._live = False
        del self._live[order.account_id][order.order_id]
        if order.reduce_only:
            mine = self._reducing.get(order.account_id)
            if mine is not None:
                del mine[order.order_id]
                if not mine:
                    del self._reducing[order.account_id]
        if order.expire_at_ns is not None:
            self._gtd_live -= 1
            if len(self._expiries) > 2 * self._gtd_live + 64:
                self._rebuild_expiries()
        cdef int64_t forget_at = <int64_t>ts + self._keep_ns
        if not self._closed and forget_at < self._next_deadline:
            self._next_deadline = forget_at
        self._closed.append(order)

    cdef _dirty_market(self, Market market):
        if not market._dirty:
            market._dirty = True
            self._dirty.append(market)

    cdef _publish_levels(self, object ts, list events):
        # One BookLevelChanged per level touched, per market touched, in order.
        cdef Market market
        for market in self._dirty:
            market._dirty = False
            for side, price, qty, count in market._changes():
                market.book_seq += 1
                events.append(BookLevelChanged(market.symbol, market.book_seq, SIDES[side],
                                               price, qty, count, ts))
        self._dirty.clear()


cdef _validate_place(Market market, object otype, bint priced, bint stop, object tif,
                     object price, object stop_price, int64_t qty, object expire_at,
                     int64_t ts, bint post_only, object display, bint liquidation):
    """Check everything about a new order that needs no book. A liquidation order may be
    below the product's min_qty: a position a partial fill left smaller must still close."""
    if priced and price is None:
        raise Rejected(RejectReason.INVALID_PARAMS,
                       f"a {otype.name.lower()} order needs a price", "price")
    if not priced and price is not None:
        raise Rejected(RejectReason.INVALID_PARAMS,
                       f"a {otype.name.lower()} order takes no price", "price")
    if stop and stop_price is None:
        raise Rejected(RejectReason.INVALID_PARAMS, "a stop order needs a stop_price",
                       "stop_price")
    if not stop and stop_price is not None:
        raise Rejected(RejectReason.INVALID_PARAMS, "only stop orders take a stop_price",
                       "stop_price")
    if not (1 if liquidation else market.min_qty) <= qty <= market.max_qty:
        raise Rejected(RejectReason.INVALID_QUANTITY,
                       f"qty must be {market.min_qty}..{market.max_qty}", "qty")
    if (tif is GTD) != (expire_at is not None):
        raise Rejected(RejectReason.INVALID_PARAMS,
                       "expire_at goes with tif gtd, and only with it", "expire_at")
    if tif is GTD and expire_at <= ts:
        raise Rejected(RejectReason.INVALID_PARAMS, "expire_at is not in the future",
                       "expire_at")
    if otype is MARKET and tif is GTD:
        raise Rejected(RejectReason.INVALID_PARAMS,
                       "a market order never rests: tif gtd does not apply", "tif")
    if stop and tif is FOK:
        raise Rejected(RejectReason.INVALID_PARAMS,
                       "fok is decided on arrival; a stop order arrives later", "tif")
    cdef bint immediate = not priced or tif is IOC or tif is FOK
    if post_only and (immediate or stop):
        raise Rejected(RejectReason.INVALID_PARAMS,
                       "post_only goes with resting limit orders only", "post_only")
    if display is not None:
        if immediate or stop:
            raise Rejected(RejectReason.INVALID_PARAMS,
                           "display_qty goes with resting limit orders only", "display_qty")
        if not market.min_qty <= display < qty:
            raise Rejected(RejectReason.INVALID_QUANTITY,
                           f"display_qty must be {market.min_qty}..qty-1", "display_qty")
    if priced and not stop:
        _check_band(market, price, "price")


cdef inline int64_t _closing_lots(int side, int64_t position) noexcept:
    # What an order of side can close of position: all of it if side shrinks it, else 0.
    return -side * position if side * position < 0 else 0


cdef inline bint _stop_hit(object side, int64_t stop_price, int64_t last):
    return last >= stop_price if side is BUY else last <= stop_price


cdef _check_band(Market market, int64_t price, str field):
    if not market.band_low <= price <= market.band_high:
        raise Rejected(RejectReason.PRICE_OUT_OF_BAND,
                       f"{field} must be within {market.band_low}..{market.band_high} ticks",
                       field)


cdef object _too_far(Market market, int64_t price):
    return Rejected(RejectReason.PRICE_OUT_OF_RANGE,
                    f"price {price} is too far from the orders resting in {market.symbol}",
                    "price")


def _strip_cost(list sweeps, int64_t lots):
    """(ticks x lots paid, worst price reached) of ``lots`` in each leg's sweep."""
    out = []
    for fills in sweeps:
        left, paid, worst = lots, 0, None
        for price, size in fills:
            if left == 0:
                break
            take = min(left, size)
            paid += take * price
            left -= take
            worst = price
        out.append((paid, worst))
    return out


def _strip_meets(list sweeps, list hours, total_hours, int64_t lots, limit, int side):
    """Whether a strip of ``lots`` meets the average price limit, exactly in integers."""
    weighted = sum([h * paid for h, (paid, _) in zip(hours, _strip_cost(sweeps, lots))])
    bound = limit * lots * total_hours
    return weighted <= bound if side == 1 else weighted >= bound


cdef object _not_trading(Market market):
    return Rejected(RejectReason.INSTRUMENT_NOT_TRADING,
                    f"{market.symbol} is {market.status.name.lower()}", "symbol")


cdef object _no_room(object side, object position, int64_t held):
    return Rejected(RejectReason.REDUCE_ONLY_WOULD_INCREASE,
                    f"reduce_only: nothing is left to reduce (the position is {position} lots"
                    + (f", the account's other reduce-only {side.name.lower()} orders hold {held})"
                       if held else ")"), "reduce_only")

