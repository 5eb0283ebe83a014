"""Type stub of engine/exchange.pyx (compiled)."""
from typing import Any, Callable, Iterable

from sortedcontainers import SortedList

from engine.book import OrderBook
from engine.contracts import Instrument
from engine.messages import (
    InstrumentStatus, OrderStatus, OrderType, PlaceOrder, SelfTradePrevention, Side,
    TimeInForce,
)
from engine.risk import RiskGate

RETENTION_NS: int
RECENT_NS: int
LIVE: tuple[OrderStatus, ...]

class Order:
    order_id: int
    account_id: int
    symbol: str
    side: Side
    order_type: OrderType
    tif: TimeInForce
    price: int | None          #: ticks; None for market and stop-market orders
    stop_price: int | None
    qty: int                   #: lots = filled_qty + leaves_qty + cancelled/expired
    filled_qty: int
    leaves_qty: int
    status: OrderStatus
    display_qty: int | None
    post_only: bool
    reduce_only: bool
    stp: SelfTradePrevention
    expire_at_ns: int | None
    client_order_id: str | None
    request: PlaceOrder | None   #: kept for orders with a client_order_id
    closed_ns: int | None
    def as_tuple(self) -> tuple: ...

class Market:
    instrument: Instrument
    symbol: str
    book: OrderBook
    status: InstrumentStatus
    halt_reason: str | None
    last_price: int | None
    reference_price: int
    band_centre: int           #: the last trade, or a later reference (settlement) price
    book_seq: int              #: last BookLevelChanged.book_seq of this instrument
    volume: int                #: lots traded
    band_low: int
    band_high: int
    min_qty: int
    max_qty: int
    buy_stops: SortedList
    sell_stops: SortedList
    def __init__(self, instrument: Instrument, book: Any) -> None: ...
    def set_reference(self, price: int) -> None: ...

class Exchange:
    risk: RiskGate
    markets: dict[str, Market]
    orders: dict[int, Order]
    archive: Any
    forgotten: list[Order] | None
    def __init__(self, instruments: Iterable[Instrument], risk: RiskGate | None = None, *,
                 book_factory: Callable[..., Any] = ..., check_invariants: bool = False) -> None: ...
    def attach_archive(self, archive: Any) -> None: ...
    def process(self, cmd: Any) -> list[Any]: ...
    def order(self, order_id: int) -> Order | None: ...
    def order_by_client_id(self, account_id: int, client_order_id: str) -> Order | None: ...
    def open_orders(self, account_id: int, symbol: str | None = None) -> list[Order]: ...
    def open_order_count(self, account_id: int) -> int: ...
    def timer_due(self, ts: int) -> bool: ...
    def state_hash(self) -> str: ...
