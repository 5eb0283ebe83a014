"""
Convert wire decimal strings to integer ticks and micro-USD, and back.

This is the only module where a decimal string becomes a number (DESIGN.md
section 2, "Integers for money"). Everything past it works on ints: prices in
ticks (one tick = 0.001 USD per GPU-hour), money in micro-USD. Parsing uses a
regex and int arithmetic, so no float is ever involved and nothing is rounded:
a value that is not exactly representable is rejected.

Accepted price shape: ASCII digits, optionally a '.' followed by at least one
digit ("2", "2.1", "2.145", "02.1"). Rejected as `invalid_price`: signs, spaces,
exponents, "NaN"/"inf", "1." and ".5" (a digit is required on each side of the
point), zero, and more than MAX_PRICE_TICKS. Decimals past the third must be
zeros ("2.1450" is 2145 ticks); a non-zero one is `price_off_tick`, checked
before the range so "0.0001" is reported as off the tick.
"""

import decimal
import re
from decimal import Decimal

from engine.reasons import RejectReason

__all__ = [
    "MAX_PRICE_TICKS",
    "MoneyError",
    "PriceError",
    "TICK_MICROS",
    "format_money",
    "format_price",
    "parse_money",
    "parse_price",
    "price_from_decimal",
]

TICK_MICROS = 1000
"""One tick is 1000 micro-USD (0.001 USD) per GPU-hour."""

MAX_PRICE_TICKS = 10**9
"""Prices are 1..MAX_PRICE_TICKS ticks, i.e. 0.001..1,000,000.000 USD."""

MICROS_PER_USD = 1_000_000
PRICE_DECIMALS = 3
MONEY_DECIMALS = 6
MAX_MONEY_DIGITS = 12         # under 10**12 USD: its micro-dollars fit in 64 bits with room
"""At most this many significant digits of whole USD in a money string (< 10**15 USD)."""

_TICKS_PER_USD = MICROS_PER_USD // TICK_MICROS
# Longest whole-USD part (leading zeros stripped) a valid price can have: "1000000".
_MAX_PRICE_WHOLE_DIGITS = len(str(MAX_PRICE_TICKS // _TICKS_PER_USD))
_MAX_PRICE_USD = MAX_PRICE_TICKS // _TICKS_PER_USD
# [0-9], not \d: \d also matches non-ASCII digits such as "٣".
_PRICE_RE = re.compile(r"([0-9]+)(?:\.([0-9]+))?")
_MONEY_RE = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?")
_ROUNDINGS = frozenset({
    decimal.ROUND_CEILING, decimal.ROUND_DOWN, decimal.ROUND_FLOOR,
    decimal.ROUND_HALF_DOWN, decimal.ROUND_HALF_EVEN, decimal.ROUND_HALF_UP,
    decimal.ROUND_UP, decimal.ROUND_05UP,
})


class PriceError(ValueError):
    """A price the exchange cannot accept; `reason` and `field` go on the wire."""

    def __init__(self, reason: RejectReason, message: str, *, field: str = "price") -> None:
        super().__init__(message)
        self.reason = reason
        self.field = field


class MoneyError(ValueError):
    """A money amount the exchange cannot accept; `reason` and `field` go on the wire."""

    def __init__(self, message: str, *, field: str = "amount",
                 reason: RejectReason = RejectReason.INVALID_AMOUNT) -> None:
        super().__init__(message)
        self.reason = reason
        self.field = field


def _show(text: str) -> str:
    """Quote client input for an error message, cut short so a huge value is not echoed."""
    return repr(text) if len(text) <= 40 else repr(text[:40]) + "..."


def _split_exact(whole: str, frac: str | None, decimals: int) -> tuple[str, int] | None:
    """
    Split a matched decimal into its whole digits and its fraction in 10**-decimals.

    Returns:
        (whole digits without leading zeros, fraction as an int), or None when a
        digit past `decimals` is non-zero (the value is not exact at that scale).
    """
    frac = frac or ""
    if frac[decimals:].strip("0"):
        return None
    return whole.lstrip("0"), int(frac[:decimals].ljust(decimals, "0"))


def parse_price(text: object, field: str = "price") -> int:
    """
    Convert a wire price string into ticks, rejecting anything not exact.

    Args:
        text: The decimal string from the client, USD per GPU-hour ("2.145").
        field: The parameter name reported back in the error (`data.field`).

    Returns:
        The price in ticks, 1..MAX_PRICE_TICKS.

    Raises:
        PriceError: reason INVALID_PRICE for a non-str, a malformed string,
            zero or a value above the maximum; PRICE_OFF_TICK when a digit
            past the third decimal is non-zero.
    """
    if not isinstance(text, str):
        raise PriceError(RejectReason.INVALID_PRICE,
                         f"{field} must be a decimal string, got {type(text).__name__}",
                         field=field)
    match = _PRICE_RE.fullmatch(text)
    if match is None:
        raise PriceError(RejectReason.INVALID_PRICE,
                         f"{field} must be a decimal string like \"2.145\", got {_show(text)}",
                         field=field)
    split = _split_exact(match[1], match[2], PRICE_DECIMALS)
    if split is None:
        raise PriceError(RejectReason.PRICE_OFF_TICK,
                         f"{field} {_show(text)} is not a multiple of the 0.001 tick",
                         field=field)
    whole, frac = split
    # Check the length before int(): a million-digit string must not reach int().
    if len(whole) > _MAX_PRICE_WHOLE_DIGITS:
        ticks = MAX_PRICE_TICKS + 1
    else:
        ticks = int(whole or "0") * _TICKS_PER_USD + frac
    if ticks < 1:
        raise PriceError(RejectReason.INVALID_PRICE,
                         f"{field} must be positive, got {_show(text)}",
                         field=field)
    if ticks > MAX_PRICE_TICKS:
        raise PriceError(RejectReason.INVALID_PRICE,
                         f"{field} {_show(text)} is above the maximum "
                         f"{format_price(MAX_PRICE_TICKS)}",
                         field=field)
    return ticks


def format_price(ticks: int) -> str:
    """
    Write a price in ticks as the wire string with exactly 3 decimals ("2.100").

    Equal prices therefore always give equal strings.

    Raises:
        TypeError: `ticks` is not an int (a bool is not accepted either).
        ValueError: `ticks` is outside 1..MAX_PRICE_TICKS.
    """
    if type(ticks) is not int:
        raise TypeError(f"price must be int ticks, got {type(ticks).__name__}")
    if not 1 <= ticks <= MAX_PRICE_TICKS:
        raise ValueError(f"price must be 1..{MAX_PRICE_TICKS} ticks, got {ticks}")
    return f"{ticks // _TICKS_PER_USD}.{ticks % _TICKS_PER_USD:03d}"


def price_from_decimal(value: Decimal, rounding: str, *, field: str = "price") -> int:
    """
    Round a computed Decimal price (USD per GPU-hour) to ticks.

    For derived values such as index averages, where rounding is expected; the
    caller names the rounding mode so every rounding is written where it happens.
    The result does not depend on the thread's decimal context.

    Args:
        value: USD per GPU-hour.
        rounding: One of the decimal.ROUND_* constants.
        field: The name reported in the error.

    Returns:
        Ticks, 1..MAX_PRICE_TICKS.

    Raises:
        TypeError: `value` is not a Decimal (floats are refused on purpose).
        ValueError: `rounding` is not a decimal rounding mode.
        PriceError: reason INVALID_PRICE when `value` is not finite or
            rounds to a price outside 1..MAX_PRICE_TICKS.
    """
    if not isinstance(value, Decimal):
        raise TypeError(f"{field} must be a Decimal, got {type(value).__name__}")
    if rounding not in _ROUNDINGS:
        raise ValueError(f"rounding must be a decimal.ROUND_* mode, got {rounding!r}")
    if not value.is_finite():
        raise PriceError(RejectReason.INVALID_PRICE, f"{field} must be finite, got {value}",
                         field=field)
    # Guards quantize()'s precision; a value this large is far out of range anyway.
    # copy_abs() is exact; abs() would round in the caller's context.
    if value.copy_abs() > _MAX_PRICE_USD + 1:
        raise PriceError(RejectReason.INVALID_PRICE, f"{field} {value} is above the maximum",
                         field=field)
    # A private context: the caller's precision and traps must not change the result.
    with decimal.localcontext(decimal.Context(prec=28, traps=[decimal.InvalidOperation])):
        ticks = int(value.quantize(Decimal(1).scaleb(-PRICE_DECIMALS), rounding=rounding)
                    .scaleb(PRICE_DECIMALS))
    if not 1 <= ticks <= MAX_PRICE_TICKS:
        raise PriceError(RejectReason.INVALID_PRICE,
                         f"{field} {value} rounds to {ticks} ticks, outside 1..{MAX_PRICE_TICKS}",
                         field=field)
    return ticks


def parse_money(text: object, field: str = "amount", *, allow_negative: bool = False) -> int:
    """
    Convert a wire money string (USD, up to 6 decimals) into micro-USD.

    The shape is that of a price with an optional leading '-' (only when
    `allow_negative`); zero is allowed; decimals past the sixth must be zeros.

    Args:
        text: The decimal string, e.g. "1500.25".
        field: The parameter name reported back in the error.
        allow_negative: Accept a leading '-' (P&L, adjustments).

    Returns:
        The amount in micro-USD.

    Raises:
        MoneyError: reason INVALID_AMOUNT for anything else, including more
            than MAX_MONEY_DIGITS whole-USD digits.
    """
    if not isinstance(text, str):
        raise MoneyError(f"{field} must be a decimal string, got {type(text).__name__}",
                         field=field)
    match = _MONEY_RE.fullmatch(text)
    if match is None:
        raise MoneyError(f"{field} must be a decimal string like \"1500.25\", got {_show(text)}",
                         field=field)
    if match[1] and not allow_negative:
        raise MoneyError(f"{field} must not be negative, got {_show(text)}", field=field)
    split = _split_exact(match[2], match[3], MONEY_DECIMALS)
    if split is None:
        raise MoneyError(f"{field} {_show(text)} has more than 6 decimals", field=field)
    whole, frac = split
    if len(whole) > MAX_MONEY_DIGITS:
        raise MoneyError(f"{field} {_show(text)} is too large", field=field)
    micros = int(whole or "0") * MICROS_PER_USD + frac
    return -micros if match[1] else micros


def format_money(micros: int) -> str:
    """
    Write micro-USD as the wire string with exactly 6 decimals ("-1.500000").

    Raises:
        TypeError: `micros` is not an int (a bool is not accepted either).
    """
    if type(micros) is not int:
        raise TypeError(f"money must be int micro-USD, got {type(micros).__name__}")
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICROS_PER_USD)
    return f"{sign}{whole}.{frac:06d}"


def stop_market_margin_price(side: int, stop_price: int, band_bps: int) -> int:
    """The price a stop-market order is margined at, by the engine's check and by
    clearing's books alike, so what one allows the other holds: once triggered it trades
    anywhere in the band around the trade that set it off, which is at or past its stop,
    so its stop moved by the band's width against it (rounded down, as the band is).

    Args:
        side: 1 buy, -1 sell.
    """
    width = stop_price * band_bps // 10_000
    return stop_price + width if side > 0 else max(1, stop_price - width)
