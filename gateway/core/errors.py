"""Every error the gateway can answer with: one table, one exception.

A JSON-RPC error is ``{"code", "message", "data": {"reason", "field"?, ...}}``
(PROTOCOL.md "Errors"). A request that could not be read at all gets one of
JSON-RPC's own reasons (``RpcReason``, negative codes); everything else is an
engine.reasons.RejectReason, the one list of what the engine (1xx, 3xx),
clearing (2xx) and the gateway itself (4xx) refuse, with its stable positive
code (bad parameters keep JSON-RPC's -32602). This module only gives each its
meaning and code. The README's error table is generated from ``ERRORS``; codes
are never reused.
"""
from __future__ import annotations

import enum

from engine.reasons import RejectReason


# JSON-RPC 2.0's codes for requests that could not be read at all.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603



class RpcReason(enum.Enum):
    """JSON-RPC's own reasons: the request could not be read or run at all. Each value is
    (code, meaning); the codes are the module's constants (a class body would shadow them)."""
    PARSE_ERROR = (-32700, "the frame is not valid JSON")
    INVALID_REQUEST = (-32600, "not a JSON-RPC 2.0 request object")
    BATCH_NOT_SUPPORTED = (-32600, "batch requests are not supported: send one request per "
                                   "frame")
    METHOD_NOT_FOUND = (-32601, "no such method")
    INTERNAL_ERROR = (-32603, "the server failed to process the request")


assert [r.value[0] for r in RpcReason] == [PARSE_ERROR, INVALID_REQUEST, INVALID_REQUEST,
                                          METHOD_NOT_FOUND, INTERNAL_ERROR]

# Bad parameters are JSON-RPC's -32602 whoever finds them.
_JSON_RPC_CODES = {RejectReason.INVALID_PARAMS: INVALID_PARAMS,
                   RejectReason.INVALID_PRICE: INVALID_PARAMS}

_MEANINGS = {
    RejectReason.INVALID_PARAMS: "a parameter is missing, unknown or of the wrong type, or "
                                 "the parameters contradict each other (e.g. a limit order "
                                 "without a price)",
    RejectReason.INVALID_PRICE: "the price is not a positive decimal string within range",
    RejectReason.UNKNOWN_INSTRUMENT: "no such symbol is listed",
    RejectReason.INVALID_STRIP: "a strip's symbols are not 2..36 consecutive contracts of one "
                                "class and tenor, in delivery order",
    RejectReason.PRICE_OFF_TICK: "the price is not a multiple of the 0.001 tick",
    RejectReason.INVALID_QUANTITY: "the quantity is outside the instrument's min..max, or "
                                   "display_qty is above qty",
    RejectReason.INSUFFICIENT_MARGIN: "the order would raise initial margin above equity",
    RejectReason.POSITION_LIMIT: "the order could take the position past its limit",
    RejectReason.REDUCE_ONLY_WOULD_INCREASE: "a reduce-only order has nothing left to reduce: "
                                             "the position, less the account's other "
                                             "reduce-only orders on that side",
    RejectReason.INSTRUMENT_NOT_TRADING: "the instrument is pre-open, halted, closed or settled",
    RejectReason.PRICE_OUT_OF_BAND: "the price is outside the instrument's price band",
    RejectReason.POST_ONLY_WOULD_TAKE: "a post-only order would have traded on arrival",
    RejectReason.FOK_NOT_FILLABLE: "a fill-or-kill order cannot fill completely now",
    RejectReason.NO_LIQUIDITY: "a market order found nothing to trade against",
    RejectReason.UNKNOWN_ORDER: "no such order of this account",
    RejectReason.DUPLICATE_CLIENT_ORDER_ID: "the client_order_id belongs to an order with "
                                            "other parameters",
    RejectReason.STOP_WOULD_TRIGGER: "the stop price is already reached by the last trade",
    RejectReason.ORDER_CLOSED: "the order is already filled, cancelled or expired",
    RejectReason.PRICE_OUT_OF_RANGE: "the price is too far from the orders resting in the book",
    RejectReason.STRIP_NOT_FILLABLE: "a fill-or-kill strip cannot fill its quantity in every "
                                     "leg within its average price limit now",
    RejectReason.UNAUTHENTICATED: "log in first (auth.login)",
    RejectReason.FORBIDDEN: "the session's role may not call this method or channel",
    RejectReason.INVALID_SIGNATURE: "unknown api_key, or the signature does not match",
    RejectReason.STALE_TIMESTAMP: "the login timestamp is more than 30 s from the server clock",
    RejectReason.NONCE_REUSED: "this key used the nonce within the last 30 s",
    RejectReason.ALREADY_LOGGED_IN: "the session is already logged in",
    RejectReason.RATE_LIMITED: "too many requests; retry after data.retry_after_ms",
    RejectReason.TOO_MANY_SUBSCRIPTIONS: "the connection's subscription limit is reached",
    RejectReason.FRAME_TOO_LARGE: "the frame is larger than the limit; the connection closes",
    RejectReason.UNKNOWN_CHANNEL: "no such channel",
    RejectReason.TOO_MANY_ORDERS: "the account has as many open orders as its role may "
                                   "(data.limit); cancel some first",
    RejectReason.SELF_TRADE_PREVENTED: "self-trade prevention cancelled the order before it "
                                        "filled; data.order_id names it",
    RejectReason.UNKNOWN_GPU_CLASS: "no such GPU class is listed",
    RejectReason.INVALID_OBSERVATION: "the observation's price or hours is out of range",
    RejectReason.TIMESTAMP_IN_FUTURE: "the observation's time is ahead of the server clock",
    RejectReason.STALE_OBSERVATION: "the observation is older than the index window",
    RejectReason.INVALID_AMOUNT: "the amount must be a positive decimal string of USD, under "
                                 "10^12 with at most 6 decimals",
    RejectReason.UNKNOWN_ACCOUNT: "no account has this name",
    RejectReason.NO_FIXING: "no fixing of the class is dated that day (none taken yet)",
    RejectReason.HORIZON_BEYOND_CURVE: "a hedge plan runs past the class's listed curve: "
                                       "shorten it, or pass extrapolate",
}


def _table() -> dict[str, tuple[int, str]]:
    table = {reason.name.lower(): reason.value for reason in RpcReason}
    for reason, meaning in _MEANINGS.items():
        table[reason.name.lower()] = (_JSON_RPC_CODES.get(reason, int(reason)), meaning)
    return table


ERRORS: dict[str, tuple[int, str]] = _table()
"""data.reason -> (code, meaning): every error the server can send."""

assert set(_MEANINGS) == set(RejectReason), "every reason needs a meaning"


class RpcError(Exception):
    """A request failed; becomes the JSON-RPC ``error`` of its response.

    Args:
        reason: Why (its lowercase name is data.reason on the wire).
        message: For people; says what was wrong with this request.
        field: The offending parameter, if there is one (data.field).
        extra: More members of ``data`` (retry_after_ms, order_id, ...).
    """

    def __init__(self, reason: RejectReason | RpcReason, message: str,
                 field: str | None = None, **extra) -> None:
        super().__init__(message)
        self.reason = reason.name.lower()
        self.code = ERRORS[self.reason][0]
        self.message = message
        self.field = field
        self.extra = extra

    def to_wire(self) -> dict:
        data = {"reason": self.reason}
        if self.field is not None:
            data["field"] = self.field
        data.update(self.extra)
        return {"code": self.code, "message": self.message, "data": data}


def markdown_table() -> str:
    """Return the README's error table (tests check the README holds exactly this)."""
    rows = ["| code | data.reason | meaning |", "| --- | --- | --- |"]
    for reason, (code, meaning) in sorted(ERRORS.items(),
                                         key=lambda kv: (kv[1][0] > 0, abs(kv[1][0]), kv[0])):
        rows.append(f"| {code} | `{reason}` | {meaning} |")
    return "\n".join(rows)
