"""The wire schema: JSON-RPC envelopes and the params of every method (PROTOCOL.md).

msgspec checks types, required and unknown fields, ranges and patterns as it
decodes, so the handlers receive well-formed values and nothing here is
checked by hand. Prices stay decimal strings in these Structs: turning them
into ticks (and refusing an off-tick price rather than rounding it) is
engine.prices' job, done in gateway.core.codec.
"""
from __future__ import annotations

import datetime

from typing import Annotated, Literal

import msgspec

from engine.messages import ClientOrderId

# Bounds keep every integer inside int64 (and exact in a JavaScript client).
Qty = Annotated[int, msgspec.Meta(ge=-2**53, le=2**53)]       # range checked by the engine
OrderId = Annotated[int, msgspec.Meta(ge=1, le=2**53)]
TimeMs = Annotated[int, msgspec.Meta(ge=0, le=(2**63 - 1) // 10**6)]    # ns fit in int64
Symbol = Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
GpuClass = Annotated[str, msgspec.Meta(min_length=1, max_length=12)]
Price = Annotated[str, msgspec.Meta(max_length=40)]
Channel = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Nonce = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Money = Annotated[str, msgspec.Meta(max_length=40)]

Side = Literal["buy", "sell"]
OrderType = Literal["limit", "market", "stop_limit", "stop_market"]
Tif = Literal["gtc", "gtd", "ioc", "fok"]
Stp = Literal["cancel_newest", "cancel_oldest", "cancel_both", "decrement"]


# A request's id: an integer within 64 bits or a string of at most 64 characters; no other
# is echoed back (a client could make every answer carry thousands of digits).
Id = Annotated[int, msgspec.Meta(ge=-2**63, le=2**63 - 1)] | Annotated[
    str, msgspec.Meta(max_length=64)]


class Request(msgspec.Struct, forbid_unknown_fields=True):
    """One JSON-RPC 2.0 request; ``params`` is decoded later by the method's own Struct."""
    jsonrpc: Literal["2.0"]
    id: Id
    method: str
    params: msgspec.Raw = msgspec.Raw(b"{}")


class RequestId(msgspec.Struct):
    """Just the id of a request that failed validation, so the error can still echo it."""
    id: Id | None = None


class Params(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Base of every method's params: a misspelt name is an error, not a default."""


class NoParams(Params):
    pass


class Login(Params):
    api_key: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    timestamp: TimeMs
    nonce: Nonce | int
    signature: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-fA-F]{64}\Z")]   # hex HMAC-SHA256


class Heartbeat(Params):
    interval: Annotated[int, msgspec.Meta(ge=0, le=60)]


class CancelOnDisconnect(Params):
    enabled: bool


class Place(Params):
    symbol: Symbol
    side: Side
    qty: Qty
    order_type: OrderType = msgspec.field(default="limit", name="type")
    price: Price | None = None
    stop_price: Price | None = None
    tif: Tif = "gtc"
    expire_at: TimeMs | None = None
    post_only: bool = False
    reduce_only: bool = False
    display_qty: Qty | None = None
    client_order_id: ClientOrderId | None = None
    stp: Stp = "cancel_newest"


Legs = Annotated[list[Symbol], msgspec.Meta(max_length=64)]      # 2..36: the engine says


class PlaceStrip(Params):
    symbols: Legs
    side: Side
    qty: Qty
    price: Price
    tif: Literal["fok", "ioc"] = "fok"
    client_order_id: ClientOrderId | None = None


class StripQuote(Params):
    symbols: Legs
    side: Side
    qty: Qty


class OrderRef(Params):
    """Names one of the account's orders: order_id or client_order_id (exactly one)."""
    order_id: OrderId | None = None
    client_order_id: ClientOrderId | None = None


class Replace(Params):
    order_id: OrderId | None = None
    client_order_id: ClientOrderId | None = None
    price: Price | None = None
    qty: Qty | None = None


class SymbolFilter(Params):
    symbol: Symbol | None = None


class OrderListQuery(SymbolFilter):
    """order.list, paged (an addition): oldest first, ``after`` an order_id."""
    limit: Annotated[int, msgspec.Meta(ge=1, le=5000)] = 1000
    after: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] | None = None


class BookQuery(Params):
    symbol: Symbol
    depth: Annotated[int, msgspec.Meta(ge=1, le=1000)] | None = None


class TradesQuery(Params):
    symbol: Symbol
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100


class Channels(Params):
    channels: Annotated[list[Channel], msgspec.Meta(max_length=256)]


class SymbolOnly(Params):
    symbol: Symbol


class Halt(Params):
    symbol: Symbol
    # Extension: why, shown as halt_reason while halted; one line of 1..200 characters.
    reason: Annotated[str, msgspec.Meta(pattern=r"^[^\x00-\x1f\x7f]{1,200}\Z")] | None = None


class IndexSubmit(Params):
    gpu_class: GpuClass
    price: Price
    hours: Annotated[int, msgspec.Meta(ge=-2**53, le=2**53)]      # range checked by clearing
    time: TimeMs | None = None         # extension: when the rental was observed (default now)
    external: bool = False             # extension: price is an external index value (trusted)


class GpuClassQuery(Params):
    gpu_class: GpuClass


Decimal = Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
Count = Annotated[int, msgspec.Meta(ge=-2**53, le=2**53)]      # ranges checked by the plan


class DebtTerms(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    principal: Decimal             # USD
    rate: Decimal                  # annual, "0.08"
    tenor: Count                   # months


class HedgePlan(GpuClassQuery):
    """analytics.hedge_plan (PROTOCOL 1.1, DESIGN §8): decimals as strings."""
    gpus: Count
    start: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{4}-[0-9]{2}\Z")]
    months: Count
    opex: Decimal
    debt: DebtTerms
    utilisation: Decimal | None = None
    basis: Decimal | None = None
    hedge_ratio: Decimal | None = None
    vol: Decimal | None = None
    dscr_p50: Decimal | None = None
    dscr_p99: Decimal | None = None
    extrapolate: bool = False


class CurveQuery(GpuClassQuery):
    date: datetime.date | None = None   # 1.1: that day's settlement curve


class SettlementsQuery(Params):
    symbol: Symbol
    first: datetime.date | None = msgspec.field(name="from", default=None)
    last: datetime.date | None = msgspec.field(name="to", default=None)


class CandlesQuery(Params):
    symbol: Symbol
    interval: Literal["1m", "1h", "1d"]
    first: TimeMs | None = msgspec.field(name="from", default=None)
    last: TimeMs | None = msgspec.field(name="to", default=None)
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 500


class FixingQuery(GpuClassQuery):
    date: datetime.date                # "YYYY-MM-DD"


class IndexQuery(GpuClassQuery):
    history: bool = False              # extension: also the index as published, a point a minute


class GpuClassFilter(Params):
    gpu_class: GpuClass | None = None


class CashMove(Params):
    account: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    amount: Money


class QuoteSlot(Params):
    """One slot of a market maker's quotes: (symbol, side, level) and what it should show."""
    symbol: Symbol
    side: Side
    price: Price
    qty: Qty                               # the open quantity wanted; 0 removes the quote
    level: Annotated[int, msgspec.Meta(ge=0, le=9)] = 0


class MassQuote(Params):
    quotes: Annotated[list[QuoteSlot], msgspec.Meta(min_length=1, max_length=100)]
    post_only: bool = True


class FillsQuery(Params):
    symbol: Symbol | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100
    before: OrderId | None = None          # a trade_id: page back from it
