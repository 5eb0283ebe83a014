"""The engine's messages: the commands it takes and the events it returns.

Units: prices in ticks (engine.prices: 1 tick = 0.001 USD per GPU-hour),
quantities in lots (contracts), times in nanoseconds since the Unix epoch, UTC.
The gateway decodes the wire protocol into these in one place; nothing here
knows JSON-RPC. The tag of each message is its snake_case class name, so a
rename is a schema change.

Every command carries ``ts_ns``, stamped by the gateway on receipt (or by its
scheduler, for timers): the engine never reads a clock. ``account_id`` is
attached by the gateway after authentication, never taken from a client.
"""
from __future__ import annotations

import enum
import re
from typing import Annotated

import msgspec

from engine.contracts import Instrument
from engine.prices import MAX_PRICE_TICKS
from engine.reasons import RejectReason

MAX_QTY = 10**6

Ticks = Annotated[int, msgspec.Meta(ge=1, le=MAX_PRICE_TICKS)]
Lots = Annotated[int, msgspec.Meta(ge=1, le=MAX_QTY)]
ClientOrderId = Annotated[str, msgspec.Meta(min_length=1, max_length=36,
                                            pattern=r"^[A-Za-z0-9_-]+\Z")]   # \Z: no final newline


def snake_case(name: str) -> str:
    """Return the tag of a message class: "OrderAccepted" -> "order_accepted"."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Side(enum.IntEnum):
    BUY = 1
    SELL = -1


class OrderType(enum.IntEnum):
    LIMIT = 0
    MARKET = 1
    STOP_LIMIT = 2
    STOP_MARKET = 3


class TimeInForce(enum.IntEnum):
    GTC = 0
    GTD = 1
    IOC = 2
    FOK = 3


class SelfTradePrevention(enum.IntEnum):
    """What happens when a taker meets a resting order of its own account.

    The taker's mode decides (as at CME and the large crypto venues). The
    values are those engine.book uses.
    """
    CANCEL_NEWEST = 0   # cancel the taker's remainder; the resting order stays
    CANCEL_OLDEST = 1   # cancel the resting order; the taker goes on matching
    CANCEL_BOTH = 2     # cancel both
    DECREMENT = 3       # reduce both by the smaller leaves; cancel what reaches 0


class MatchRecord(enum.IntEnum):
    """Kinds of the tuples engine.book.OrderBook.match returns."""
    FILL = 0
    STP_CANCEL_MAKER = 1
    STP_DECREMENT = 2
    STP_CANCEL_TAKER = 3
    REDUCE_ONLY_HALT = 4    # the walk stopped before a reduce-only maker (see OrderBook.match)


class InstrumentStatus(enum.IntEnum):
    """What an instrument accepts.

    pre_open and halted take cancels but no new orders or replaces; open
    takes everything; closed (past its last trading time, or closed by
    operations) has no orders left and takes nothing; settled is closed with
    its final settlement done (clearing).
    """
    PRE_OPEN = 0
    OPEN = 1
    HALTED = 2
    CLOSED = 3
    SETTLED = 4


class OrderStatus(enum.IntEnum):
    UNTRIGGERED = 0      # a stop order waiting for its trigger
    OPEN = 1
    PARTIALLY_FILLED = 2
    FILLED = 3
    CANCELLED = 4
    EXPIRED = 5


class CancelReason(enum.IntEnum):
    USER = 0               # order.cancel / order.cancel_all
    IOC_REMAINDER = 1      # the unfilled rest of an IOC or market order
    SELF_TRADE = 2         # self-trade prevention
    INSTRUMENT_CLOSED = 3  # last trading time passed, or closed by operations
    DISCONNECT = 4         # cancel-on-disconnect (gateway)
    LIQUIDATION = 5        # clearing cancelled the account's orders
    OUT_OF_BAND = 6        # a triggered stop-limit's price is outside the band by then
    OUT_OF_RANGE = 7       # ... or too far from the orders resting in the book
    REDUCE_ONLY = 8        # a reduce-only order's position shrank, closed or flipped under it


# -- Commands -----------------------------------------------------------------

class Command(msgspec.Struct, tag_field="type", tag=snake_case, frozen=True,
              forbid_unknown_fields=True, kw_only=True):
    """Base of every command the engine takes."""
    ts_ns: int


class PlaceOrder(Command):
    """A new order. Which optional fields apply depends on ``order_type`` and ``tif``."""
    account_id: int
    symbol: str
    side: Side
    qty: Lots
    order_type: OrderType = OrderType.LIMIT
    price: Ticks | None = None             # limit and stop_limit
    stop_price: Ticks | None = None        # stop types: trigger on the last trade price
    tif: TimeInForce = TimeInForce.GTC
    expire_at_ns: int | None = None        # gtd
    post_only: bool = False
    reduce_only: bool = False              # may only shrink |position| (engine.exchange)
    display_qty: Lots | None = None        # iceberg tranche
    client_order_id: ClientOrderId | None = None
    stp: SelfTradePrevention = SelfTradePrevention.CANCEL_NEWEST
    # Clearing's own order closing a position (liquidation): no position limit or margin
    # check applies. Never set from the wire (gateway.core.codec.place_command).
    liquidation: bool = False


class ReplaceOrder(Command):
    """Change a live order's price and/or quantity; by order_id or client_order_id.

    A lower quantity at the same price keeps time priority; a new price or a
    higher quantity loses it.
    """
    account_id: int
    order_id: int | None = None
    client_order_id: ClientOrderId | None = None
    price: Ticks | None = None
    qty: Lots | None = None


class CancelOrder(Command):
    account_id: int
    order_id: int | None = None
    client_order_id: ClientOrderId | None = None
    reason: CancelReason = CancelReason.USER


class CancelAll(Command):
    """Cancel the account's live orders (resting and untriggered), optionally of one symbol."""
    account_id: int
    symbol: str | None = None
    reason: CancelReason = CancelReason.USER


class Timer(Command):
    """The scheduler's tick: expire GTD orders, close instruments past their last trading time.

    Any command does the same for its own ts_ns before it runs; a Timer only
    makes sure time moves when no one trades.
    """


class SetInstrumentStatus(Command):
    """Operations: open, halt, resume or close an instrument."""
    symbol: str
    status: InstrumentStatus
    reason: str | None = None     # why it is halted (shown while it is); ignored otherwise


class SetReferencePrice(Command):
    """Clearing: a new settlement price, the band's reference until the next trade."""
    symbol: str
    price: Ticks


class PlaceStrip(Command):
    """Buy or sell ``qty`` in each of a run of consecutive contracts of one class and tenor,
    all or none, limited by the hours-weighted average price (DESIGN.md section 3).

    ``price`` (ticks) bounds the average: a buy's may not be above it, a sell's not below.
    ``tif`` FOK fills ``qty`` in every leg or nothing; IOC the largest equal quantity that
    meets the limit, possibly 0. Each leg trades as an IOC order at the worst price it
    needs; the first leg's carries ``client_order_id``.
    """
    account_id: int
    symbols: list[str]
    side: Side
    qty: Lots
    price: Ticks
    tif: TimeInForce = TimeInForce.FOK
    client_order_id: ClientOrderId | None = None
    stp: SelfTradePrevention = SelfTradePrevention.CANCEL_NEWEST


class ListInstrument(Command):
    """Clearing: list a contract (the rolling listing, a cascade's targets). One past its
    last trading time is listed closed."""
    instrument: Instrument


class DelistInstrument(Command):
    """Clearing: take a settled contract off the market (its book and its stops go)."""
    symbol: str


EngineCommand = (PlaceOrder | ReplaceOrder | CancelOrder | CancelAll | Timer
                 | SetInstrumentStatus | SetReferencePrice | PlaceStrip)


# -- Events -------------------------------------------------------------------

class Event(msgspec.Struct, tag_field="type", tag=snake_case, frozen=True, gc=False):
    """Base of every event the engine returns; ``ts_ns`` is the causing command's."""


class OrderAccepted(Event):
    """The order passed every check; it rests, trades or waits for its trigger next."""
    order_id: int
    account_id: int
    symbol: str
    side: Side
    order_type: OrderType
    tif: TimeInForce
    price: int | None
    stop_price: int | None
    qty: int
    client_order_id: str | None
    ts_ns: int


class OrderRejected(Event):
    """The command changed nothing. ``order_id`` is set when it named an existing order."""
    account_id: int
    reason: RejectReason
    detail: str
    field: str | None
    client_order_id: str | None
    order_id: int | None
    ts_ns: int
    symbol: str | None = None        # the leg a strip was refused for


class OrderDuplicate(Event):
    """A repeated place with the same client_order_id and parameters: nothing was placed."""
    order_id: int
    account_id: int
    client_order_id: str
    ts_ns: int


class Trade(Event):
    """A fill at the maker's price; leaves are each side's remaining quantity after it."""
    trade_id: int
    symbol: str
    price: int
    qty: int
    aggressor: Side
    maker_order_id: int
    maker_account_id: int
    maker_leaves: int
    taker_order_id: int
    taker_account_id: int
    taker_leaves: int
    ts_ns: int


class OrderCancelled(Event):
    """The order is done; ``qty`` lots were cancelled (its leaves at that moment)."""
    order_id: int
    account_id: int
    symbol: str
    reason: CancelReason
    qty: int
    ts_ns: int


class OrderReduced(Event):
    """The order's quantity fell by ``qty`` lots, keeping its priority: self-trade
    prevention (decrement), or a reduce-only order cut to what its position leaves."""
    order_id: int
    account_id: int
    symbol: str
    qty: int
    leaves: int
    ts_ns: int


class OrderReplaced(Event):
    """The order now has this price and leaves quantity (``qty`` is its new total).

    ``price`` is None for a stop-market order, which has none.
    """
    order_id: int
    account_id: int
    symbol: str
    price: int | None
    qty: int
    leaves: int
    kept_priority: bool
    ts_ns: int


class OrderExpired(Event):
    """A GTD order reached its expire_at; ``qty`` lots were left."""
    order_id: int
    account_id: int
    symbol: str
    qty: int
    ts_ns: int


class OrderTriggered(Event):
    """A trade at ``trade_price`` reached the stop; it now works as a limit or market order."""
    order_id: int
    account_id: int
    symbol: str
    trade_price: int
    ts_ns: int


class BookLevelChanged(Event):
    """One price level's new state; qty 0 removes it. book_seq is per symbol, without gaps."""
    symbol: str
    book_seq: int
    side: Side
    price: int
    qty: int
    orders: int
    ts_ns: int


class InstrumentStatusChanged(Event):
    symbol: str
    status: InstrumentStatus
    ts_ns: int
    halt_reason: str | None = None    # while halted: why


class StripExecuted(Event):
    """A strip's outcome: ``filled_qty`` lots in every leg (0: nothing traded). ``legs`` are
    (symbol, order_id or None, contract hours, ticks x lots paid or received in it)."""
    strip_id: int
    account_id: int
    client_order_id: str | None
    side: Side
    qty: int
    price: int              # the average price limit, ticks
    tif: TimeInForce
    filled_qty: int
    legs: list[tuple[str, int | None, int, int]]
    ts_ns: int


class InstrumentListed(Event):
    """A contract was listed; ``Exchange.markets`` holds it from now on."""
    symbol: str
    ts_ns: int


class InstrumentDelisted(Event):
    """A settled contract left the market."""
    symbol: str
    ts_ns: int


EngineEvent = (OrderAccepted | OrderRejected | OrderDuplicate | Trade | OrderCancelled
               | OrderReduced | OrderReplaced | OrderExpired | OrderTriggered
               | BookLevelChanged | InstrumentStatusChanged | InstrumentListed
               | InstrumentDelisted | StripExecuted)
