"""
Products, symbols, instruments and the listing calendar (DESIGN.md section 3).

A product is a GPU class with its trading rules; an instrument is one delivery
period of a product. Symbols are parsed in `parse_symbol` and written in
`format_symbol`, nowhere else, and only canonical text parses, so
`format_symbol(parse_symbol(s)) == s`. Dates are UTC calendar days; a period's
`end` is exclusive. Nothing here reads the clock: the listing date is an argument.

Listing rule (`list_instruments`): for each product and period kind, walk
forward from the period containing `as_of` and keep the first N periods that
still trade at 00:00 UTC of `as_of`, i.e. whose last trading day is `as_of` or
later. On its last trading day a contract is still listed; the next day it is not.
"""

import datetime
import enum
import importlib.resources
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass

import msgspec

from engine.prices import MAX_PRICE_TICKS, TICK_MICROS, PriceError, parse_price
from engine.reasons import RejectReason

__all__ = [
    "ConfigError",
    "cascades_into",
    "Instrument",
    "Period",
    "PeriodKind",
    "Product",
    "Symbol",
    "StripError",
    "SymbolError",
    "date_to_ns",
    "format_symbol",
    "iso_weeks_in_year",
    "list_instruments",
    "load_products",
    "make_instrument",
    "parse_symbol",
    "period_of",
    "sibling",
    "strip_symbols",
    "utc_day",
]

YEAR_MIN = 1970
"""Earliest delivery year: timestamps stay non-negative."""
YEAR_MAX = 2261
"""Latest delivery year: every timestamp fits in int64 nanoseconds (until 2262-04-11)."""
MAX_QTY_LIMIT = 10**6
"""Largest max_qty a product may set (lots per order; keeps price x qty below 2**53)."""
MAX_BAND_TICKS = 1 << 19
"""Widest price band a product may have at its reference price, in ticks: half of the
widest range of prices one book holds (engine.book MAX_SPAN), so the book can follow
the band as it moves."""
MAX_LISTED = 120
"""Largest months/weeks/quarters/years count per product."""
MAX_LAST_TRADING_DAYS_BEFORE = 90

_NS_PER_DAY = 86_400 * 10**9
_EPOCH = datetime.date(1970, 1, 1)
# [A-Z0-9] spelled out: \w and str.isdigit() accept non-ASCII characters.
_CLASS_RE = re.compile(r"[A-Z][A-Z0-9]{1,11}")
_YEAR_RE = re.compile(r"[0-9]{4}")
_PERIOD_RE = re.compile(r"(?:(?P<month>[0-9]{2})|W(?P<week>[0-9]{2})|Q(?P<quarter>[0-9]))")


class SymbolError(ValueError):
    """A symbol that names no possible instrument; `reason` goes on the wire."""

    def __init__(self, message: str, *, field: str = "symbol") -> None:
        super().__init__(message)
        self.reason = RejectReason.UNKNOWN_INSTRUMENT
        self.field = field


class ConfigError(ValueError):
    """An invalid product config; the message names the product and the key."""

    def __init__(self, message: str, *, product: str | None = None,
                 key: str | None = None) -> None:
        where = " ".join(part for part in (
            f"product {product}" if product is not None else "",
            f"key {key!r}" if key is not None else "") if part)
        super().__init__(f"{where}: {message}" if where else message)
        self.product = product
        self.key = key


class PeriodKind(enum.Enum):
    """The length of a delivery period; the value is the wire name."""

    WEEK = "week"
    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"


def date_to_ns(day: datetime.date) -> int:
    """
    Return 00:00 UTC of a calendar day in nanoseconds since the epoch.

    Raises:
        TypeError: `day` is a datetime (its time of day would be dropped silently).
    """
    if not isinstance(day, datetime.date) or isinstance(day, datetime.datetime):
        raise TypeError(f"expected a datetime.date, got {type(day).__name__}")
    return (day - _EPOCH).days * _NS_PER_DAY


def iso_weeks_in_year(year: int) -> int:
    """Return 52 or 53: the number of ISO weeks in ISO year `year`."""
    # 28 December always falls in the last ISO week of its year.
    return datetime.date(year, 12, 28).isocalendar().week


@dataclass(frozen=True, slots=True)
class Period:
    """
    One delivery period: ISO week, calendar month, calendar quarter or calendar year.

    `number` is the week (1..53), month (1..12) or quarter (1..4); a year is its
    own only period, number 1. Construction rejects periods that do not exist
    (week 53 of a 52-week year, month 13).
    """

    kind: PeriodKind
    year: int
    number: int

    def __post_init__(self) -> None:
        if not isinstance(self.kind, PeriodKind):
            raise SymbolError(f"period kind must be a PeriodKind, got {self.kind!r}")
        if type(self.year) is not int or not YEAR_MIN <= self.year <= YEAR_MAX:
            raise SymbolError(f"year {self.year!r} is not in {YEAR_MIN}..{YEAR_MAX}")
        if self.kind is PeriodKind.WEEK:
            high = iso_weeks_in_year(self.year)
            rule = f"ISO year {self.year} has weeks 1..{high}"
        elif self.kind is PeriodKind.YEAR:
            high, rule = 1, "a calendar year is its only period, 1"
        else:
            high = 12 if self.kind is PeriodKind.MONTH else 4
            rule = f"expected 1..{high}"
        if type(self.number) is not int or not 1 <= self.number <= high:
            raise SymbolError(f"{self.kind.value} {self.number!r} does not exist: {rule}")

    @classmethod
    def containing(cls, kind: PeriodKind, day: datetime.date) -> "Period":
        """Return the period of `kind` that contains calendar day `day`."""
        if kind is PeriodKind.WEEK:
            iso = day.isocalendar()
            return cls(kind, iso.year, iso.week)
        if kind is PeriodKind.MONTH:
            return cls(kind, day.year, day.month)
        if kind is PeriodKind.YEAR:
            return cls(kind, day.year, 1)
        return cls(kind, day.year, (day.month - 1) // 3 + 1)

    @property
    def start(self) -> datetime.date:
        """First delivery day (a Monday for a week)."""
        if self.kind is PeriodKind.WEEK:
            return datetime.date.fromisocalendar(self.year, self.number, 1)
        if self.kind is PeriodKind.MONTH:
            return datetime.date(self.year, self.number, 1)
        if self.kind is PeriodKind.YEAR:
            return datetime.date(self.year, 1, 1)
        return datetime.date(self.year, 3 * self.number - 2, 1)

    @property
    def end(self) -> datetime.date:
        """The day after the last delivery day (exclusive end)."""
        if self.kind is PeriodKind.WEEK:
            return self.start + datetime.timedelta(days=7)
        if self.kind is PeriodKind.YEAR:
            return datetime.date(self.year + 1, 1, 1)
        months = 1 if self.kind is PeriodKind.MONTH else 3
        index = self.start.month - 1 + months           # 0-based month after the period
        return datetime.date(self.year + index // 12, index % 12 + 1, 1)

    @property
    def hours(self) -> int:
        """Delivery hours, i.e. GPU-hours in one contract: 168, 672..744, 2160..2208,
        8760 or 8784."""
        return (self.end - self.start).days * 24

    def next(self) -> "Period":
        """
        Return the period of the same kind that starts when this one ends.

        Raises:
            SymbolError: the next period would be after YEAR_MAX.
        """
        return Period.containing(self.kind, self.end)


def cascades_into(period: Period) -> list[Period]:
    """The periods a quarter or year becomes at its last trading time (DESIGN.md section 3):
    a year's four quarters, a quarter's three months; none for a month or a week."""
    if period.kind is PeriodKind.YEAR:
        return [Period(PeriodKind.QUARTER, period.year, n) for n in range(1, 5)]
    if period.kind is PeriodKind.QUARTER:
        first = 3 * period.number - 2
        return [Period(PeriodKind.MONTH, period.year, m) for m in range(first, first + 3)]
    return []


@dataclass(frozen=True, slots=True)
class Symbol:
    """A parsed symbol: GPU class and delivery period. `str()` gives the wire form."""

    gpu_class: str
    period: Period

    def __post_init__(self) -> None:
        _check_class(self.gpu_class)

    def __str__(self) -> str:
        return format_symbol(self)


def _check_class(gpu_class: object) -> None:
    """Raise SymbolError unless `gpu_class` is 2..12 of [A-Z0-9] starting with a letter."""
    if not isinstance(gpu_class, str):
        raise SymbolError(f"GPU class must be a string, got {type(gpu_class).__name__}")
    if _CLASS_RE.fullmatch(gpu_class):
        return
    if _CLASS_RE.fullmatch(gpu_class.upper()):
        raise SymbolError(f"GPU class {gpu_class!r} must be upper case")
    raise SymbolError(f"GPU class {gpu_class[:20]!r} must be 2..12 characters of A-Z "
                      "and 0-9, starting with a letter")


def parse_symbol(text: object) -> Symbol:
    """
    Parse `CLASS-YYYY-MM`, `CLASS-YYYY-Www`, `CLASS-YYYY-Qn` or `CLASS-YYYY` into a Symbol.

    Only the canonical form parses (two-digit month and week, no spaces), so the
    symbol string can be used as a key without normalising it first.

    Raises:
        SymbolError: reason UNKNOWN_INSTRUMENT, with a message saying what is wrong.
    """
    if not isinstance(text, str):
        raise SymbolError(f"symbol must be a string, got {type(text).__name__}")
    try:
        return _parse_symbol(text)
    except SymbolError as exc:
        shown = repr(text) if len(text) <= 40 else repr(text[:40]) + "..."
        raise SymbolError(f"symbol {shown}: {exc}") from None


def _parse_symbol(text: str) -> Symbol:
    """Parse without context; parse_symbol adds the symbol to the message."""
    parts = text.split("-")
    if len(parts) not in (2, 3):
        raise SymbolError("expected CLASS-YYYY-MM, CLASS-YYYY-Www, CLASS-YYYY-Qn or CLASS-YYYY")
    gpu_class, year = parts[0], parts[1]
    _check_class(gpu_class)
    if not _YEAR_RE.fullmatch(year):
        raise SymbolError(f"year {year[:20]!r} must be 4 digits")
    if len(parts) == 2:
        return Symbol(gpu_class, Period(PeriodKind.YEAR, int(year), 1))
    period = parts[2]
    match = _PERIOD_RE.fullmatch(period)
    if match is None:
        raise SymbolError(f"period {period[:20]!r} must be MM (month 01..12), "
                          "Www (ISO week 01..53) or Qn (quarter 1..4)")
    kind = PeriodKind(match.lastgroup)
    return Symbol(gpu_class, Period(kind, int(year), int(match[match.lastgroup])))


def format_symbol(symbol: Symbol) -> str:
    """Write a Symbol in its canonical wire form, e.g. "H100-2027-03" or "H100-2028"."""
    period = symbol.period
    if period.kind is PeriodKind.YEAR:
        return f"{symbol.gpu_class}-{period.year:04d}"
    if period.kind is PeriodKind.WEEK:
        label = f"W{period.number:02d}"
    elif period.kind is PeriodKind.MONTH:
        label = f"{period.number:02d}"
    else:
        label = f"Q{period.number}"
    return f"{symbol.gpu_class}-{period.year:04d}-{label}"


class Product(msgspec.Struct, frozen=True):
    """
    Trading rules shared by every listed contract of one GPU class.

    Prices in ticks, quantities in lots (contracts). `band_bps` is the price
    band around the reference price in basis points (1000 = +-10%). The last
    trading day is `last_trading_days_before` days before delivery starts.
    `months`, `weeks`, `quarters` and `years` say how many contracts of each kind to
    list (by default the next 12 months, 8 quarters and 3 calendar years, overlapping
    as on power exchanges: what lenders underwrite runs 1-36 months).
    Construction validates every field and raises ConfigError naming the key.
    """

    gpu_class: str
    reference_price: int
    tick_micros: int = TICK_MICROS
    min_qty: int = 1
    max_qty: int = 10_000
    band_bps: int = 1000
    last_trading_days_before: int = 1
    months: int = 12
    weeks: int = 0
    quarters: int = 8
    years: int = 3
    vol_bps: int = 5000        # annual volatility of the class's price (the hedge plan's)

    def __post_init__(self) -> None:
        try:
            _check_class(self.gpu_class)
        except SymbolError as exc:
            raise ConfigError(str(exc), product=repr(self.gpu_class)[:40],
                              key="gpu_class") from None
        limits = {
            "reference_price": (1, MAX_PRICE_TICKS),
            # engine.prices works in one fixed tick; another size would need its own parser.
            "tick_micros": (TICK_MICROS, TICK_MICROS),
            "min_qty": (1, MAX_QTY_LIMIT),
            "max_qty": (1, MAX_QTY_LIMIT),
            "band_bps": (1, 10_000),
            "last_trading_days_before": (1, MAX_LAST_TRADING_DAYS_BEFORE),
            "months": (0, MAX_LISTED),
            "weeks": (0, MAX_LISTED),
            "quarters": (0, MAX_LISTED),
            "years": (0, MAX_LISTED),
            "vol_bps": (1, 15_000),        # the hedge plan takes at most 150%
        }
        for key, (low, high) in limits.items():
            value = getattr(self, key)
            if type(value) is not int:
                raise ConfigError(f"must be an integer, got {type(value).__name__}",
                                  product=self.gpu_class, key=key)
            if not low <= value <= high:
                raise ConfigError(f"must be {low}..{high}, got {value}",
                                  product=self.gpu_class, key=key)
        if self.min_qty > self.max_qty:
            raise ConfigError(f"min_qty {self.min_qty} is above max_qty {self.max_qty}",
                              product=self.gpu_class, key="min_qty")
        if self.months == self.weeks == self.quarters == self.years == 0:
            raise ConfigError("lists no contracts: months, weeks, quarters and years are all 0",
                              product=self.gpu_class, key="months")
        band = 2 * (self.reference_price * self.band_bps // 10_000)
        if band > MAX_BAND_TICKS:
            raise ConfigError(f"the price band is {band} ticks wide; at most {MAX_BAND_TICKS}",
                              product=self.gpu_class,
                              key="band_bps")


class Instrument(msgspec.Struct, frozen=True, kw_only=True):
    """
    One tradable contract: a product's rules applied to one delivery period.

    Dates are UTC days, `delivery_end` exclusive. `last_trading_ns` is the end
    of the last trading day (00:00 UTC of the next day); trading is allowed
    while `ts_ns < last_trading_ns`. `kind` is "week", "month", "quarter" or "year".
    """

    symbol: str
    gpu_class: str
    kind: str
    delivery_start: datetime.date
    delivery_end: datetime.date
    contract_hours: int
    tick_micros: int
    min_qty: int
    max_qty: int
    band_bps: int
    reference_price: int
    last_trading_ns: int
    delivery_end_ns: int

    def is_trading(self, ts_ns: int) -> bool:
        """Return True while the contract can still trade at `ts_ns` (ns since the epoch)."""
        return ts_ns < self.last_trading_ns


def make_instrument(product: Product, period: Period) -> Instrument:
    """Build the instrument of `product` delivering over `period`."""
    # The last trading day is N days before delivery; it ends N - 1 days before.
    last_day_end = period.start - datetime.timedelta(days=product.last_trading_days_before - 1)
    return Instrument(
        symbol=format_symbol(Symbol(product.gpu_class, period)),
        gpu_class=product.gpu_class,
        kind=period.kind.value,
        delivery_start=period.start,
        delivery_end=period.end,
        contract_hours=period.hours,
        tick_micros=product.tick_micros,
        min_qty=product.min_qty,
        max_qty=product.max_qty,
        band_bps=product.band_bps,
        reference_price=product.reference_price,
        last_trading_ns=date_to_ns(last_day_end),
        delivery_end_ns=date_to_ns(period.end),
    )


def sibling(instrument: Instrument, period: Period, reference_price: int) -> Instrument:
    """The contract of ``instrument``'s class over another period, under the same rules
    (what a quarter or year cascades into, when the listing does not hold it yet)."""
    days_before = (instrument.delivery_start - utc_day(instrument.last_trading_ns)).days + 1
    last_day_end = period.start - datetime.timedelta(days=days_before - 1)
    return msgspec.structs.replace(
        instrument, symbol=format_symbol(Symbol(instrument.gpu_class, period)),
        kind=period.kind.value, delivery_start=period.start, delivery_end=period.end,
        contract_hours=period.hours, reference_price=reference_price,
        last_trading_ns=date_to_ns(last_day_end), delivery_end_ns=date_to_ns(period.end))


MAX_STRIP_LEGS = 36


class StripError(ValueError):
    """Strip legs that are not a run of consecutive contracts of one class and tenor."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.reason = RejectReason.INVALID_STRIP
        self.field = "symbols"


def strip_symbols(symbols: object) -> list[Symbol]:
    """Parse a strip's legs: 2..36 consecutive contracts of one class and one tenor, in
    delivery order (so none repeats).

    Raises:
        StripError: naming what is wrong; SymbolError for a leg that is no symbol at all.
    """
    if not isinstance(symbols, list) or not 2 <= len(symbols) <= MAX_STRIP_LEGS:
        raise StripError(f"a strip has 2..{MAX_STRIP_LEGS} legs")
    legs = [parse_symbol(s) for s in symbols]
    first = legs[0]
    for before, leg in zip(legs, legs[1:]):
        if leg.gpu_class != first.gpu_class or leg.period.kind is not first.period.kind:
            raise StripError(f"{format_symbol(leg)} is not a {first.gpu_class} "
                             f"{first.period.kind.value} like {format_symbol(first)}")
        if leg.period != before.period.next():
            raise StripError(f"{format_symbol(leg)} does not follow {format_symbol(before)}")
    return legs


def period_of(instrument: Instrument) -> Period:
    """The delivery period of a listed instrument."""
    return parse_symbol(instrument.symbol).period


def delivery_months(start: datetime.date, end: datetime.date) -> list[tuple[datetime.date, int]]:
    """The calendar months a delivery from ``start`` until ``end`` (exclusive) falls in: (the
    month's first day, the delivery's hours in it), in order. A quarter has three, a year
    twelve, an ISO week one or two."""
    out = []
    day = start
    while day < end:
        first = datetime.date(day.year, day.month, 1)
        after = datetime.date(day.year + day.month // 12, day.month % 12 + 1, 1)
        out.append((first, (min(after, end) - day).days * 24))
        day = after
    return out


def utc_day(ts_ns: int) -> datetime.date:
    """The UTC calendar day of a timestamp (ns since the epoch)."""
    return _EPOCH + datetime.timedelta(days=ts_ns // _NS_PER_DAY)


def list_instruments(products: Iterable[Product], as_of: datetime.date) -> list[Instrument]:
    """
    List the contracts open for trading on `as_of` (see the module docstring).

    Args:
        products: Products with distinct GPU classes.
        as_of: The listing day (UTC); passed in because this module never reads a clock.

    Returns:
        A new list ordered by GPU class, then delivery start, then delivery end.

    Raises:
        ConfigError: two products share a GPU class.
        TypeError: `as_of` is not a plain date.
    """
    as_of_ns = date_to_ns(as_of)
    seen: set[str] = set()
    listed: list[Instrument] = []
    for product in products:
        if product.gpu_class in seen:
            raise ConfigError("is listed twice", product=product.gpu_class, key="gpu_class")
        seen.add(product.gpu_class)
        for kind, count in ((PeriodKind.WEEK, product.weeks),
                            (PeriodKind.MONTH, product.months),
                            (PeriodKind.QUARTER, product.quarters),
                            (PeriodKind.YEAR, product.years)):
            period = Period.containing(kind, as_of)
            found = 0
            while found < count:
                instrument = make_instrument(product, period)
                if instrument.last_trading_ns > as_of_ns:
                    listed.append(instrument)
                    found += 1
                period = period.next()
    listed.sort(key=lambda i: (i.gpu_class, i.delivery_start, i.delivery_end))
    return listed


_CONFIG_KEYS = frozenset({
    "gpu_class", "reference_price", "band_bps", "min_qty", "max_qty",
    "last_trading_days_before", "months", "weeks", "quarters", "years", "vol",
})


def load_products(text: str | None = None) -> list[Product]:
    """
    Read products from TOML text; None reads the default embedded in the package.

    The format is documented at the top of engine/products.toml.

    Raises:
        ConfigError: invalid TOML, an unknown key, a missing or mistyped value,
            a bad class name, a duplicate class, a bad price or an inconsistent
            product; the message names the product and the key.
    """
    if text is None:
        text = importlib.resources.files(__package__).joinpath("products.toml").read_text(
            encoding="utf-8")
    if not isinstance(text, str):
        raise TypeError(f"config must be str, got {type(text).__name__}")
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}") from None
    unknown = sorted(set(document) - {"product"})
    if unknown:
        raise ConfigError("unknown top-level key; expected only [[product]] tables",
                          key=unknown[0])
    return products_from_tables(document.get("product"))


def products_from_tables(tables: object) -> list[Product]:
    """
    Convert the [[product]] tables of a parsed TOML document (a config may hold more).

    Raises:
        ConfigError: as load_products.
    """
    if not isinstance(tables, list) or not tables:
        raise ConfigError("no products: expected one or more [[product]] tables",
                          key="product")
    products: list[Product] = []
    seen: set[str] = set()
    for index, table in enumerate(tables, start=1):
        product = _product_from_table(index, table)
        if product.gpu_class in seen:
            raise ConfigError("is listed twice", product=product.gpu_class, key="gpu_class")
        seen.add(product.gpu_class)
        products.append(product)
    return products


def _product_from_table(index: int, table: object) -> Product:
    """Convert one [[product]] table; ints go to Product as they are and it checks them."""
    if not isinstance(table, dict):
        raise ConfigError("must be a [[product]] table", product=f"#{index}")
    gpu_class = table.get("gpu_class")
    name = gpu_class if isinstance(gpu_class, str) else f"#{index}"
    unknown = sorted(set(table) - _CONFIG_KEYS)
    if unknown:
        raise ConfigError(f"unknown key; expected one of {', '.join(sorted(_CONFIG_KEYS))}",
                          product=name, key=unknown[0])
    for key in ("gpu_class", "reference_price"):
        if key not in table:
            raise ConfigError("is required", product=name, key=key)
        if not isinstance(table[key], str):
            raise ConfigError(f"must be a string, got {type(table[key]).__name__}",
                              product=name, key=key)
    try:
        reference_price = parse_price(table["reference_price"], field="reference_price")
    except PriceError as exc:
        raise ConfigError(f"{exc} ({exc.reason.name.lower()})", product=name,
                          key="reference_price") from None
    fields = {key: value for key, value in table.items() if key not in ("reference_price", "vol")}
    if "vol" in table:
        fields["vol_bps"] = _vol_bps(table["vol"], name)
    return Product(reference_price=reference_price, **fields)


def _vol_bps(text: object, product: str) -> int:
    """An annual volatility given as a decimal string ("0.50") in basis points, exactly."""
    found = re.fullmatch(r"(\d{1,2})(?:\.(\d{1,4}))?", text) if isinstance(text, str) else None
    if found is None:
        raise ConfigError('must be a decimal string with at most 4 decimals, e.g. "0.50"',
                          product=product, key="vol")
    bps = int(found.group(1)) * 10_000 + int((found.group(2) or "").ljust(4, "0"))
    if not 1 <= bps <= 15_000:
        raise ConfigError(f"must be 0.0001..1.5, got {text}", product=product, key="vol")
    return bps
