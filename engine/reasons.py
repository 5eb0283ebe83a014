"""Every refusal of the exchange, in one enum: what the engine, clearing and the gateway
answer when a command or request changes nothing."""
from __future__ import annotations

import enum


class RejectReason(enum.IntEnum):
    """Why a command changed nothing: the one list of refusals of the engine, clearing and
    the gateway, in blocks by who refuses. Codes are stable; retired ones are never reused.

    The lowercase name is the wire's ``data.reason`` (PROTOCOL.md); gateway.core.errors maps
    each to its JSON-RPC code and meaning.
    """
    # 1xx: the command is wrong in itself
    INVALID_PARAMS = 100
    UNKNOWN_INSTRUMENT = 101
    PRICE_OFF_TICK = 102
    INVALID_QUANTITY = 103
    INVALID_PRICE = 104            # not a positive decimal string within range
    INVALID_STRIP = 105            # strip legs not consecutive, of mixed classes or tenors
    # 2xx: clearing, pre-trade risk
    INSUFFICIENT_MARGIN = 200
    POSITION_LIMIT = 201
    REDUCE_ONLY_WOULD_INCREASE = 202
    # 21x: clearing, everything else (index observations, cash, fixings)
    UNKNOWN_GPU_CLASS = 210        # no such GPU class is listed
    INVALID_OBSERVATION = 211      # an index observation's price or hours is out of range
    TIMESTAMP_IN_FUTURE = 212      # an observation's time is ahead of the server clock
    STALE_OBSERVATION = 213        # an observation older than the index window
    INVALID_AMOUNT = 214           # a deposit or withdrawal that is not a positive amount
    UNKNOWN_ACCOUNT = 215          # no such account name
    NO_FIXING = 216                # the class has no fixing of that date
    HORIZON_BEYOND_CURVE = 217     # a hedge plan past the listed curve, without extrapolate
    # 3xx: engine, matching rules and instrument state
    INSTRUMENT_NOT_TRADING = 300
    PRICE_OUT_OF_BAND = 301
    POST_ONLY_WOULD_TAKE = 302
    FOK_NOT_FILLABLE = 303
    NO_LIQUIDITY = 304
    UNKNOWN_ORDER = 305
    DUPLICATE_CLIENT_ORDER_ID = 306
    # Self-trade prevention cancels (OrderCancelled, reason self_trade) rather than
    # rejects, since fills may come before it; the gateway answers an order it cancelled
    # before any fill with this:
    SELF_TRADE_PREVENTED = 307
    STOP_WOULD_TRIGGER = 308
    ORDER_CLOSED = 309
    PRICE_OUT_OF_RANGE = 310   # in the band, but too far from the orders resting in the book
    STRIP_NOT_FILLABLE = 311   # a fill-or-kill strip cannot fill in every leg within its limit
    # 4xx: the gateway itself, before a command reaches the engine (sessions and limits)
    UNAUTHENTICATED = 400          # the method needs auth.login first
    FORBIDDEN = 401                # the session's role (or account) may not do it
    INVALID_SIGNATURE = 402        # unknown api_key or wrong HMAC
    STALE_TIMESTAMP = 403          # login timestamp more than 30 s from the server clock
    NONCE_REUSED = 404             # the key used this nonce within the window
    ALREADY_LOGGED_IN = 405        # a session logs in once
    RATE_LIMITED = 406             # a token bucket is empty; data.retry_after_ms says when
    TOO_MANY_SUBSCRIPTIONS = 407   # the per-connection subscription limit
    FRAME_TOO_LARGE = 408          # the frame is over the size limit; the socket closes
    UNKNOWN_CHANNEL = 409          # not a channel name of PROTOCOL.md
    TOO_MANY_ORDERS = 410          # the account has its role's maximum of open orders
