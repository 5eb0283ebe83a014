"""Tests for engine/contracts.py: symbols, periods, products, instruments and the calendar."""

import datetime
from datetime import date

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.contracts import (
    cascades_into,
    ConfigError,
    Instrument,
    Period,
    PeriodKind,
    Product,
    Symbol,
    SymbolError,
    date_to_ns,
    format_symbol,
    iso_weeks_in_year,
    list_instruments,
    load_products,
    make_instrument,
    parse_symbol,
)
from engine.reasons import RejectReason

NS_PER_DAY = 86_400 * 10**9
WEEK, MONTH, QUARTER, YEAR = PeriodKind.WEEK, PeriodKind.MONTH, PeriodKind.QUARTER, PeriodKind.YEAR

classes = st.from_regex(r"[A-Z][A-Z0-9]{1,11}", fullmatch=True)
years = st.integers(1970, 2261)


@st.composite
def periods(draw):
    """Any period that exists, of any kind."""
    kind = draw(st.sampled_from(PeriodKind))
    year = draw(years)
    high = {WEEK: iso_weeks_in_year(year), MONTH: 12, QUARTER: 4, YEAR: 1}[kind]
    return Period(kind, year, draw(st.integers(1, high)))


def product_toml(**keys):
    """One [[product]] table with H100 defaults, overridden or removed (None) by keyword."""
    table = {"gpu_class": '"H100"', "reference_price": '"2.10"'}
    table.update(keys)
    lines = [f"{key} = {value}" for key, value in table.items() if value is not None]
    return "[[product]]\n" + "\n".join(lines) + "\n"


class TestParseSymbol:
    """DESIGN.md section 3: CLASS-YYYY-MM, CLASS-YYYY-Www, CLASS-YYYY-Qn and CLASS-YYYY."""

    @pytest.mark.parametrize("text, gpu_class, kind, year, number", [
        ("H100-2027-03", "H100", MONTH, 2027, 3),
        ("MI300X-2026-12", "MI300X", MONTH, 2026, 12),
        ("B200-2027-W01", "B200", WEEK, 2027, 1),
        ("H200-2026-W53", "H200", WEEK, 2026, 53),
        ("A100-2027-Q2", "A100", QUARTER, 2027, 2),
        ("AB-2027-Q4", "AB", QUARTER, 2027, 4),
        ("ABCDEFGHIJ12-2027-01", "ABCDEFGHIJ12", MONTH, 2027, 1),
        ("H100-2028", "H100", YEAR, 2028, 1),
        ("MI300X-2030", "MI300X", YEAR, 2030, 1),
    ])
    def test_valid_symbol_parses_into_class_and_period(self, text, gpu_class, kind, year, number):
        """A well-formed symbol of each kind yields its class and period, and formats back."""
        symbol = parse_symbol(text)
        assert symbol == Symbol(gpu_class, Period(kind, year, number))
        assert str(symbol) == format_symbol(symbol) == text

    @pytest.mark.parametrize("text, fragment", [
        ("h100-2027-03", "upper case"),
        ("H100-2027-13", "month 13"),
        ("H100-2027-00", "month 0"),
        ("H100-2027-W53", "ISO year 2027 has weeks 1..52"),
        ("H100-2027-W00", "week 0"),
        ("H100-2026-W54", "week 54"),
        ("H100-2027-Q5", "quarter 5"),
        ("H100-28", "must be 4 digits"),
        ("H100-2028-", "must be MM"),
        ("H100", "expected CLASS-YYYY-MM"),
        ("H100-2027-Q0", "quarter 0"),
        ("H100-2027-3", "must be MM"),
        ("H100-2027-W1", "must be MM"),
        ("H100-2027-Q01", "must be MM"),
        ("H100-2027-M03", "must be MM"),
        ("H100-27-03", "4 digits"),
        ("H100-1969-12", "1970..2261"),
        ("H100-2262-01", "1970..2261"),
        ("H100_2027_03", "expected CLASS-YYYY-MM"),
        ("H100--2027-03", "expected CLASS-YYYY-MM"),
        ("", "expected CLASS-YYYY-MM"),
        ("H-2027-03", "2..12 characters"),
        ("ABCDEFGHIJ123-2027-03", "2..12 characters"),
        ("1H00-2027-03", "starting with a letter"),
        ("H1\u00d800-2027-03", "2..12 characters"),
        (" H100-2027-03", "2..12 characters"),
        ("H100-2027-03 ", "must be MM"),
        ("H100-\u0662\u0660\u0662\u0667-03", "4 digits"),
    ])
    def test_malformed_symbol_is_unknown_instrument_saying_why(self, text, fragment):
        """A malformed symbol raises SymbolError(unknown_instrument) whose message names the fault."""
        with pytest.raises(SymbolError) as info:
            parse_symbol(text)
        assert (info.value.reason, info.value.field) == (RejectReason.UNKNOWN_INSTRUMENT, "symbol")
        assert fragment in str(info.value)
        assert repr(text) in str(info.value)

    @pytest.mark.parametrize("value", [None, 2027, b"H100-2027-03", ["H100-2027-03"]])
    def test_non_string_symbol_is_unknown_instrument(self, value):
        """A symbol that is not a str is rejected, not coerced."""
        with pytest.raises(SymbolError) as info:
            parse_symbol(value)
        assert info.value.reason == RejectReason.UNKNOWN_INSTRUMENT

    def test_symbol_error_is_a_value_error(self):
        """Callers that catch ValueError also catch symbol errors."""
        assert issubclass(SymbolError, ValueError)

    @given(classes, periods())
    def test_every_valid_symbol_round_trips(self, gpu_class, period):
        """parse(format(s)) == s for every class and existing period of every kind."""
        symbol = Symbol(gpu_class, period)
        assert parse_symbol(str(symbol)) == symbol
        assert str(parse_symbol(str(symbol))) == str(symbol)

    @given(st.text(alphabet="HABWQ0123456789-h ", max_size=16))
    def test_any_text_is_either_canonical_or_rejected(self, text):
        """Arbitrary text either parses and formats back to itself, or raises unknown_instrument."""
        try:
            symbol = parse_symbol(text)
        except SymbolError as exc:
            assert exc.reason == RejectReason.UNKNOWN_INSTRUMENT
            return
        assert str(symbol) == text

    def test_symbol_with_bad_class_cannot_be_built(self):
        """A Symbol is validated on construction, so format_symbol never writes an unparseable one."""
        with pytest.raises(SymbolError):
            Symbol("h100", Period(MONTH, 2027, 3))


class TestPeriod:
    """Delivery periods are UTC calendar days with an exclusive end; hours = days x 24."""

    @pytest.mark.parametrize("period, start, end, hours", [
        (Period(MONTH, 2027, 3), date(2027, 3, 1), date(2027, 4, 1), 744),
        (Period(MONTH, 2027, 2), date(2027, 2, 1), date(2027, 3, 1), 672),
        (Period(MONTH, 2028, 2), date(2028, 2, 1), date(2028, 3, 1), 696),
        (Period(MONTH, 2026, 12), date(2026, 12, 1), date(2027, 1, 1), 744),
        (Period(MONTH, 2027, 4), date(2027, 4, 1), date(2027, 5, 1), 720),
        (Period(QUARTER, 2027, 1), date(2027, 1, 1), date(2027, 4, 1), 2160),
        (Period(QUARTER, 2028, 1), date(2028, 1, 1), date(2028, 4, 1), 2184),
        (Period(QUARTER, 2027, 2), date(2027, 4, 1), date(2027, 7, 1), 2184),
        (Period(QUARTER, 2027, 4), date(2027, 10, 1), date(2028, 1, 1), 2208),
        (Period(WEEK, 2026, 53), date(2026, 12, 28), date(2027, 1, 4), 168),
        (Period(WEEK, 2027, 1), date(2027, 1, 4), date(2027, 1, 11), 168),
        (Period(WEEK, 2027, 52), date(2027, 12, 27), date(2028, 1, 3), 168),
        (Period(YEAR, 2027, 1), date(2027, 1, 1), date(2028, 1, 1), 8760),
        (Period(YEAR, 2028, 1), date(2028, 1, 1), date(2029, 1, 1), 8784),
        (Period(YEAR, 2261, 1), date(2261, 1, 1), date(2262, 1, 1), 8760),
    ])
    def test_period_has_start_exclusive_end_and_hours(self, period, start, end, hours):
        """Start is the first delivery day, end the day after the last, hours the GPU-hours."""
        assert (period.start, period.end, period.hours) == (start, end, hours)

    def test_week_53_exists_in_2026_but_not_in_2027(self):
        """2026 has 53 ISO weeks and 2027 has 52, so only 2026-W53 can be built."""
        assert (iso_weeks_in_year(2026), iso_weeks_in_year(2027)) == (53, 52)
        assert Period(WEEK, 2026, 53).start == date(2026, 12, 28)
        with pytest.raises(SymbolError):
            Period(WEEK, 2027, 53)

    @pytest.mark.parametrize("kind, year, number", [
        (MONTH, 2027, 13), (MONTH, 2027, 0), (QUARTER, 2027, 5), (WEEK, 2027, 53),
        (MONTH, 1969, 1), (MONTH, 2262, 1), (MONTH, 2027, True), (MONTH, 2027.0, 1),
        ("month", 2027, 1),
    ])
    def test_nonexistent_period_cannot_be_built(self, kind, year, number):
        """A period that does not exist (or is mistyped) raises unknown_instrument."""
        with pytest.raises(SymbolError) as info:
            Period(kind, year, number)
        assert info.value.reason == RejectReason.UNKNOWN_INSTRUMENT

    @given(periods())
    def test_period_is_contiguous_with_the_next_and_weeks_are_168_hours(self, period):
        """Each period ends where the next begins, and an ISO week always starts Monday, 168 h."""
        if period.year < 2261:            # the next period of 2261 may fall in 2262, past the range
            assert period.next().start == period.end
            assert period.next().kind is period.kind
        assert Period.containing(period.kind, period.start) == period
        assert Period.containing(period.kind, period.end - datetime.timedelta(days=1)) == period
        if period.kind is WEEK:
            assert period.hours == 168
            assert period.start.weekday() == 0

    @pytest.mark.parametrize("period, following", [
        (Period(MONTH, 2026, 12), Period(MONTH, 2027, 1)),
        (Period(WEEK, 2026, 53), Period(WEEK, 2027, 1)),
        (Period(WEEK, 2027, 52), Period(WEEK, 2028, 1)),
        (Period(QUARTER, 2026, 4), Period(QUARTER, 2027, 1)),
    ])
    def test_next_period_crosses_the_year_boundary(self, period, following):
        """The period after the last of a year is the first of the next year."""
        assert period.next() == following

    def test_last_period_of_the_last_year_has_an_end_but_no_next(self):
        """2261-Q4 ends on 2262-01-01, but a 2262 period is beyond the int64-ns range."""
        last = Period(QUARTER, 2261, 4)
        assert (last.end, last.hours) == (date(2262, 1, 1), 2208)
        with pytest.raises(SymbolError):
            last.next()


class TestDateToNs:
    """Calendar days become 00:00 UTC in nanoseconds since the epoch."""

    def test_known_dates_convert_to_midnight_utc(self):
        """The epoch is 0 and 2027-03-01 is 1_803_859_200 seconds after it."""
        assert date_to_ns(date(1970, 1, 1)) == 0
        assert date_to_ns(date(2027, 3, 1)) == 1_803_859_200 * 10**9
        assert date_to_ns(date(2027, 3, 2)) - date_to_ns(date(2027, 3, 1)) == NS_PER_DAY

    @pytest.mark.parametrize("value", [datetime.datetime(2027, 3, 1, 12), "2027-03-01", 0])
    def test_datetime_or_other_type_raises_type_error(self, value):
        """A datetime would silently lose its time of day, so only a plain date is accepted."""
        with pytest.raises(TypeError):
            date_to_ns(value)


class TestInstrument:
    """An instrument applies a product's rules to one delivery period."""

    def test_monthly_instrument_has_dates_hours_and_product_rules(self):
        """H100-2027-03 delivers 2027-03-01..2027-04-01 (744 h) with the product's limits."""
        product = Product("H100", 2100, min_qty=2, max_qty=500, band_bps=500)
        instrument = make_instrument(product, Period(MONTH, 2027, 3))
        assert instrument == Instrument(
            symbol="H100-2027-03", gpu_class="H100", kind="month",
            delivery_start=date(2027, 3, 1), delivery_end=date(2027, 4, 1),
            contract_hours=744, tick_micros=1000, min_qty=2, max_qty=500, band_bps=500,
            reference_price=2100, last_trading_ns=date_to_ns(date(2027, 3, 1)),
            delivery_end_ns=date_to_ns(date(2027, 4, 1)))

    def test_trading_ends_at_midnight_before_delivery(self):
        """With the default one day, the last trading day is the day before delivery starts."""
        instrument = make_instrument(Product("H100", 2100), Period(MONTH, 2027, 3))
        last_day_end = date_to_ns(date(2027, 3, 1))
        assert instrument.last_trading_ns == last_day_end
        assert instrument.is_trading(last_day_end - 1)
        assert not instrument.is_trading(last_day_end)

    def test_last_trading_day_moves_with_days_before(self):
        """Three days before a 2027-03-01 start, the last trading day is 02-26, ending 02-27 00:00."""
        product = Product("H100", 2100, last_trading_days_before=3)
        instrument = make_instrument(product, Period(MONTH, 2027, 3))
        assert instrument.last_trading_ns == date_to_ns(date(2027, 2, 27))

    def test_weekly_and_quarterly_instruments_name_their_kind(self):
        """The kind field is the wire name of the period kind, and hours follow the period."""
        product = Product("B200", 4200)
        week = make_instrument(product, Period(WEEK, 2026, 53))
        quarter = make_instrument(product, Period(QUARTER, 2027, 2))
        assert (week.symbol, week.kind, week.contract_hours) == ("B200-2026-W53", "week", 168)
        assert (quarter.symbol, quarter.kind, quarter.contract_hours) == \
            ("B200-2027-Q2", "quarter", 2184)

    def test_instrument_encodes_to_json_with_iso_dates(self):
        """Instruments serialise with msgspec; dates become "YYYY-MM-DD" strings."""
        instrument = make_instrument(Product("H100", 2100), Period(MONTH, 2027, 3))
        decoded = msgspec.json.decode(msgspec.json.encode(instrument))
        assert decoded["delivery_start"] == "2027-03-01"
        assert msgspec.json.decode(msgspec.json.encode(instrument), type=Instrument) == instrument


def test_a_year_cascades_into_its_quarters_and_a_quarter_into_its_months():
    assert cascades_into(Period(YEAR, 2028, 1)) == [Period(QUARTER, 2028, n) for n in (1, 2, 3, 4)]
    assert cascades_into(Period(QUARTER, 2027, 2)) == [Period(MONTH, 2027, m) for m in (4, 5, 6)]
    assert cascades_into(Period(MONTH, 2027, 2)) == cascades_into(Period(WEEK, 2027, 5)) == []
    for period in (Period(YEAR, 2028, 1), Period(QUARTER, 2028, 1)):     # hours add up
        assert sum(p.hours for p in cascades_into(period)) == period.hours
        assert cascades_into(period)[0].start == period.start
        assert cascades_into(period)[-1].end == period.end


class TestListInstruments:
    """Listing rule: the next N periods whose last trading day is on or after as_of."""

    def test_calendar_years_are_listed_beside_months_and_quarters(self):
        """A year trades until the day before it starts; it is exposure to 8,760 or 8,784
        GPU-hours, and its quarters and months overlap it (as on EEX)."""
        instruments = list_instruments([Product("H100", 2100, months=2, quarters=2, years=3)],
                                       date(2026, 11, 25))
        assert [(i.symbol, i.kind, i.contract_hours) for i in instruments] == [
            ("H100-2026-12", "month", 744), ("H100-2027-01", "month", 744),
            ("H100-2027-Q1", "quarter", 2160), ("H100-2027", "year", 8760),
            ("H100-2027-Q2", "quarter", 2184), ("H100-2028", "year", 8784),
            ("H100-2029", "year", 8760)]
        year = instruments[3]
        assert (year.delivery_start, year.delivery_end) == (date(2027, 1, 1), date(2028, 1, 1))
        assert year.last_trading_ns == date_to_ns(date(2027, 1, 1))
        assert parse_symbol(year.symbol).period == Period(YEAR, 2027, 1)

    def test_the_year_in_delivery_is_not_listed(self):
        """On 2027-01-01 the 2027 contract has stopped trading: the next years are listed."""
        instruments = list_instruments([Product("H100", 2100, months=0, quarters=0, years=2)],
                                       date(2027, 1, 1))
        assert [i.symbol for i in instruments] == ["H100-2028", "H100-2029"]

    def test_default_calendar_from_2026_11_25(self):
        """On 2026-11-25 the December contract still trades, so H100 lists the months
        2026-12..2027-11, the quarters 2027-Q1..2028-Q4 (2026-Q4 stopped trading on 30
        September) and the years 2027..2029, in order of delivery: 23 a class."""
        instruments = list_instruments(load_products(), date(2026, 11, 25))
        assert len(instruments) == 92
        h100 = [i for i in instruments if i.gpu_class == "H100"]
        assert [i.symbol for i in h100 if i.kind == "month"] == [
            "H100-2026-12", "H100-2027-01", "H100-2027-02", "H100-2027-03",
            "H100-2027-04", "H100-2027-05", "H100-2027-06", "H100-2027-07",
            "H100-2027-08", "H100-2027-09", "H100-2027-10", "H100-2027-11",
        ]
        assert [i.symbol for i in h100 if i.kind == "quarter"] == [
            f"H100-{y}-Q{q}" for y in (2027, 2028) for q in (1, 2, 3, 4)]
        assert [i.symbol for i in h100 if i.kind == "year"] == [
            "H100-2027", "H100-2028", "H100-2029"]
        assert [i.symbol for i in h100[:5]] == ["H100-2026-12", "H100-2027-01", "H100-2027-Q1", "H100-2027",
                            "H100-2027-02"]
        assert [i.gpu_class for i in instruments[::23]] == ["A100", "B200", "H100", "H200"]
        by_symbol = {i.symbol: i for i in instruments}
        assert by_symbol["H100-2027-02"].contract_hours == 672
        assert by_symbol["B200-2027-03"].reference_price == 4200
        assert all(i.band_bps == 1000 and i.tick_micros == 1000 for i in instruments)

    def test_contract_is_listed_through_its_last_trading_day(self):
        """On 2026-11-30, December's last trading day, December is still the front month."""
        instruments = list_instruments([Product("H100", 2100, months=2, quarters=0, years=0)], date(2026, 11, 30))
        assert [i.symbol for i in instruments] == ["H100-2026-12", "H100-2027-01"]

    def test_contract_is_delisted_the_day_after_its_last_trading_day(self):
        """On 2026-12-01 December has stopped trading, so January is the front month."""
        instruments = list_instruments([Product("H100", 2100, months=2, quarters=0, years=0)], date(2026, 12, 1))
        assert [i.symbol for i in instruments] == ["H100-2027-01", "H100-2027-02"]

    def test_earlier_last_trading_day_skips_the_next_month(self):
        """With trading ending 10 days before delivery, on 2026-11-25 December is already gone."""
        product = Product("H100", 2100, months=1, quarters=0, years=0,
                          last_trading_days_before=10)
        instruments = list_instruments([product], date(2026, 11, 25))
        assert [i.symbol for i in instruments] == ["H100-2027-01"]

    def test_weeks_and_quarters_are_listed_and_ordered_by_delivery_start(self):
        """Weekly, monthly and quarterly contracts interleave by start date, shorter first on ties."""
        product = Product("H100", 2100, months=2, weeks=2, quarters=1, years=0)
        instruments = list_instruments([product], date(2026, 11, 25))
        assert [i.symbol for i in instruments] == [
            "H100-2026-W49", "H100-2026-12", "H100-2026-W50", "H100-2027-01", "H100-2027-Q1",
        ]

    def test_listing_depends_only_on_the_date_given(self):
        """Two calls with the same products and date give equal lists: no clock is read."""
        products = load_products()
        assert list_instruments(products, date(2027, 6, 15)) == \
            list_instruments(products, date(2027, 6, 15))

    def test_duplicate_class_is_a_config_error(self):
        """Two products with one GPU class would list the same symbols twice."""
        with pytest.raises(ConfigError) as info:
            list_instruments([Product("H100", 2100), Product("H100", 2200)], date(2027, 1, 1))
        assert (info.value.product, info.value.key) == ("H100", "gpu_class")

    def test_datetime_as_of_raises_type_error(self):
        """The listing day must be a date; a datetime is refused rather than truncated."""
        with pytest.raises(TypeError):
            list_instruments(load_products(), datetime.datetime(2026, 11, 25, 23, 59))


class TestLoadProducts:
    """The TOML product config, and the default embedded in the package."""

    def test_embedded_default_has_four_classes_of_months_quarters_and_years(self):
        """The default market is H100, H200, B200 and A100 at their reference prices, +-10%."""
        products = load_products()
        assert [(p.gpu_class, p.reference_price) for p in products] == [
            ("H100", 2100), ("H200", 2800), ("B200", 4200), ("A100", 1200)]
        assert all((p.months, p.weeks, p.quarters, p.years) == (12, 0, 8, 3) for p in products)
        assert all((p.band_bps, p.min_qty, p.max_qty) == (1000, 1, 10_000) for p in products)

    def test_minimal_table_takes_the_documented_defaults(self):
        """Only gpu_class and reference_price are required; the rest default."""
        assert load_products(product_toml()) == [Product("H100", 2100)]
        assert Product("H100", 2100) == Product(
            gpu_class="H100", reference_price=2100, tick_micros=1000, min_qty=1, max_qty=10_000,
            band_bps=1000, last_trading_days_before=1, months=12, weeks=0, quarters=8,
            years=3)

    def test_every_key_is_read(self):
        """All documented keys reach the Product."""
        text = product_toml(reference_price='"2.145"', band_bps=250, min_qty=5, max_qty=50,
                            last_trading_days_before=2, months=3, weeks=4, quarters=1,
                            years=2, vol='"0.65"')
        assert load_products(text) == [Product(
            "H100", 2145, min_qty=5, max_qty=50, band_bps=250, last_trading_days_before=2,
            months=3, weeks=4, quarters=1, years=2, vol_bps=6500)]

    @pytest.mark.parametrize("text, product, key", [
        (product_toml(tick_size='"0.001"'), "H100", "tick_size"),
        (product_toml(band_pct='"10"'), "H100", "band_pct"),
        (product_toml(gpu_class='"h100"'), "'h100'", "gpu_class"),
        (product_toml(gpu_class='"H"'), "'H'", "gpu_class"),
        (product_toml(gpu_class=None), "#1", "gpu_class"),
        (product_toml(gpu_class="100"), "#1", "gpu_class"),
        (product_toml(reference_price=None), "H100", "reference_price"),
        (product_toml(reference_price="2.10"), "H100", "reference_price"),
        (product_toml(reference_price="2"), "H100", "reference_price"),
        (product_toml(reference_price='"2.1005"'), "H100", "reference_price"),
        (product_toml(reference_price='"0"'), "H100", "reference_price"),
        (product_toml(reference_price='"-2.10"'), "H100", "reference_price"),
        (product_toml(min_qty=20, max_qty=10), "H100", "min_qty"),
        (product_toml(min_qty=0), "H100", "min_qty"),
        (product_toml(max_qty=10**7), "H100", "max_qty"),
        (product_toml(max_qty="true"), "H100", "max_qty"),
        (product_toml(max_qty='"100"'), "H100", "max_qty"),
        (product_toml(max_qty="100.0"), "H100", "max_qty"),
        (product_toml(band_bps=0), "H100", "band_bps"),
        (product_toml(band_bps=10_001), "H100", "band_bps"),
        (product_toml(last_trading_days_before=0), "H100", "last_trading_days_before"),
        (product_toml(months=-1), "H100", "months"),
        (product_toml(weeks=121), "H100", "weeks"),
        (product_toml(months=0, quarters=0, years=0), "H100", "months"),
        (product_toml(vol="0.5"), "H100", "vol"),
        (product_toml(vol='"fast"'), "H100", "vol"),
        (product_toml(vol='"0.00001"'), "H100", "vol"),
        (product_toml(vol='"0"'), "H100", "vol"),
        (product_toml(vol='"9"'), "H100", "vol"),
        (product_toml(vol='"1.5001"'), "H100", "vol"),
        (product_toml() + product_toml(reference_price='"2.20"'), "H100", "gpu_class"),
    ])
    def test_invalid_product_raises_config_error_naming_product_and_key(self, text, product, key):
        """Each invalid product raises ConfigError whose fields and message name product and key."""
        with pytest.raises(ConfigError) as info:
            load_products(text)
        assert (info.value.product, info.value.key) == (product, key)
        assert f"product {product}" in str(info.value) and repr(key) in str(info.value)

    def test_second_product_is_named_by_its_class(self):
        """An error in a later table names that table's product, not the first one."""
        text = product_toml() + product_toml(gpu_class='"B200"', max_qty=0)
        with pytest.raises(ConfigError) as info:
            load_products(text)
        assert (info.value.product, info.value.key) == ("B200", "max_qty")

    @pytest.mark.parametrize("text, key", [
        ("", "product"),
        ("product = []\n", "product"),
        ("product = 3\n", "product"),
        ('markets = "all"\n' + product_toml(), "markets"),
    ])
    def test_config_without_products_or_with_unknown_top_level_key_is_rejected(self, text, key):
        """A config must be [[product]] tables and nothing else."""
        with pytest.raises(ConfigError) as info:
            load_products(text)
        assert info.value.key == key

    def test_invalid_toml_is_a_config_error(self):
        """A TOML syntax error surfaces as a ConfigError, not a tomllib exception."""
        with pytest.raises(ConfigError, match="invalid TOML"):
            load_products("[[product]\ngpu_class = ")

    def test_product_built_in_code_is_validated_too(self):
        """Product checks its own fields, so code cannot build one the config would refuse."""
        with pytest.raises(ConfigError) as info:
            Product("H100", 2100, tick_micros=500)
        assert info.value.key == "tick_micros"
        with pytest.raises(ConfigError) as info:
            Product("H100", 0)
        assert info.value.key == "reference_price"


def test_band_wider_than_a_book_can_follow_is_a_config_error():
    """A reference price whose band spans more than 2**19 ticks is refused, naming band_bps."""
    with pytest.raises(ConfigError, match="band_bps"):
        Product(gpu_class="H100", reference_price=6_000_000)
    assert Product(gpu_class="H100", reference_price=2_000_000).band_bps == 1000
