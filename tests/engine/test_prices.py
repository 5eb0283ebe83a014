"""Tests for engine/prices.py: wire decimal strings to ticks and micro-USD, and back."""

import decimal
import re
from decimal import Decimal

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from engine.prices import (
    MAX_PRICE_TICKS,
    TICK_MICROS,
    MoneyError,
    PriceError,
    format_money,
    format_price,
    parse_money,
    parse_price,
    price_from_decimal,
)
from engine.reasons import RejectReason

ROUNDINGS = [decimal.ROUND_CEILING, decimal.ROUND_DOWN, decimal.ROUND_FLOOR,
             decimal.ROUND_HALF_DOWN, decimal.ROUND_HALF_EVEN, decimal.ROUND_HALF_UP,
             decimal.ROUND_UP, decimal.ROUND_05UP]

ticks_st = st.integers(1, MAX_PRICE_TICKS)


@st.composite
def valid_price_texts(draw):
    """A price string as a client may send it: 0..3 decimals, maybe padded with zeros."""
    ticks = draw(ticks_st)
    whole, frac = divmod(ticks, 1000)
    decimals = draw(st.integers(0, 3))
    if decimals == 0 and frac:
        decimals = 3
    digits = f"{frac:03d}"
    if digits[decimals:].strip("0"):
        decimals = 3
    text = str(whole) if decimals == 0 else f"{whole}.{digits[:decimals]}"
    padding = draw(st.integers(0, 4))
    if padding:
        text += ("." if "." not in text else "") + "0" * padding
    return draw(st.sampled_from(["", "0", "00"])) + text, ticks


class TestParsePrice:
    """Wire price strings become exact ticks; anything not exact is rejected."""

    @pytest.mark.parametrize("text, ticks", [
        ("2", 2000), ("2.1", 2100), ("2.14", 2140), ("2.145", 2145), ("0.005", 5),
        ("0.001", 1), ("2.1450", 2145), ("2.145000000", 2145), ("02.1", 2100),
        ("1000000", MAX_PRICE_TICKS), ("1000000.000", MAX_PRICE_TICKS),
        ("999999.999", MAX_PRICE_TICKS - 1),
    ])
    def test_valid_string_parses_to_exact_ticks(self, text, ticks):
        """A digits-with-up-to-3-decimals string parses to its exact tick count."""
        assert parse_price(text) == ticks

    @pytest.mark.parametrize("text", ["2.1455", "0.0001", "2.1450001", "0.0005", "1.0009"])
    def test_extra_nonzero_decimal_is_off_tick_and_never_rounded(self, text):
        """A non-zero digit past the third decimal is rejected as price_off_tick."""
        with pytest.raises(PriceError) as info:
            parse_price(text)
        assert (info.value.reason, info.value.field) == (RejectReason.PRICE_OFF_TICK, "price")

    @pytest.mark.parametrize("text", [
        "0", "0.0", "0.000", "000", "0.0000",                        # zero
        "-1", "-2.1", "+1", "+2.100", "-0",                         # signs
        "NaN", "nan", "Infinity", "inf", "-inf", "sNaN",            # not finite
        "1e3", "1E3", "2.1e0", "0x10", "1_000", "1,5",              # other notations
        " 2.1", "2.1 ", "2. 1", "\t2", "2.1\n", "",                 # whitespace, empty
        ".", "1.", ".5", "1..2", "1.2.3",                           # bad point placement
        "\u0663", "2.\u0661",                                       # non-ASCII digits
        "1000000.001", "1000001", "99999999999999999999", "9" * 5000,  # too large
    ])
    def test_malformed_zero_or_huge_string_is_invalid_price(self, text):
        """Signs, non-finite values, exponents, spaces, zero and huge values are invalid_price."""
        with pytest.raises(PriceError) as info:
            parse_price(text)
        assert (info.value.reason, info.value.field) == (RejectReason.INVALID_PRICE, "price")

    @pytest.mark.parametrize("value", [2, 2.1, float("nan"), float("inf"), True, False, None,
                                       Decimal("2.1"), b"2.1", ["2.1"]])
    def test_non_string_input_is_invalid_price(self, value):
        """Numbers (including bools and floats), None and bytes are refused, never converted."""
        with pytest.raises(PriceError) as info:
            parse_price(value)
        assert info.value.reason == RejectReason.INVALID_PRICE

    def test_error_carries_the_field_name_given(self):
        """The field argument is reported back so the client knows which parameter was wrong."""
        with pytest.raises(PriceError) as info:
            parse_price("2.1455", field="stop_price")
        assert info.value.field == "stop_price"
        assert "stop_price" in str(info.value)

    def test_price_error_is_a_value_error(self):
        """Callers that catch ValueError also catch price errors."""
        assert issubclass(PriceError, ValueError)

    @given(valid_price_texts())
    @example(("0.001", 1))
    @example(("1000000.0000", MAX_PRICE_TICKS))
    def test_generated_valid_string_parses_and_formats_canonically(self, case):
        """Any valid spelling parses to its ticks and formats back to the 3-decimal form."""
        text, ticks = case
        assert parse_price(text) == ticks
        assert format_price(parse_price(text)) == f"{Decimal(ticks) / 1000:.3f}"

    @given(valid_price_texts(), st.integers(1, 9), st.integers(0, 5))
    def test_generated_off_tick_string_is_rejected_as_off_tick(self, case, digit, zeros):
        """Appending a non-zero digit past the third decimal always gives price_off_tick."""
        text, _ = case
        if "." not in text:
            text += ".000"
        text += "0" * max(0, 3 - len(text.split(".")[1])) + "0" * zeros + str(digit)
        with pytest.raises(PriceError) as info:
            parse_price(text, field="limit")
        assert (info.value.reason, info.value.field) == (RejectReason.PRICE_OFF_TICK, "limit")

    @given(valid_price_texts(), st.data())
    def test_generated_string_with_foreign_character_is_invalid(self, case, data):
        """Inserting a sign, space, exponent or separator anywhere makes the string invalid_price."""
        text, _ = case
        position = data.draw(st.integers(0, len(text)))
        char = data.draw(st.sampled_from(list("+-eE xX_,;'\"") + ["\n", "\u00a0", "\u0663"]))
        with pytest.raises(PriceError) as info:
            parse_price(text[:position] + char + text[position:], field="price")
        assert (info.value.reason, info.value.field) == (RejectReason.INVALID_PRICE, "price")

    @given(st.text(alphabet="0123456789.-+eEnaINf ", max_size=14))
    def test_any_text_is_either_exact_or_a_price_error(self, text):
        """Arbitrary text either parses to exactly its Decimal value in ticks or raises PriceError."""
        try:
            ticks = parse_price(text)
        except PriceError as exc:
            assert exc.reason in {RejectReason.INVALID_PRICE, RejectReason.PRICE_OFF_TICK}
            return
        assert re.fullmatch(r"[0-9]+(\.[0-9]+)?", text)
        assert Decimal(text) * 1000 == ticks
        assert 1 <= ticks <= MAX_PRICE_TICKS


class TestFormatPrice:
    """Ticks are written with exactly 3 decimals so equal prices are equal strings."""

    @pytest.mark.parametrize("ticks, text", [
        (2100, "2.100"), (2145, "2.145"), (1, "0.001"), (1000, "1.000"),
        (MAX_PRICE_TICKS, "1000000.000"),
    ])
    def test_ticks_format_with_three_decimals(self, ticks, text):
        """A tick count is written as USD with exactly three decimals."""
        assert format_price(ticks) == text

    @pytest.mark.parametrize("ticks", [0, -1, -2100, MAX_PRICE_TICKS + 1])
    def test_out_of_range_ticks_raise_value_error(self, ticks):
        """Zero, negative and above-maximum tick counts are not prices."""
        with pytest.raises(ValueError):
            format_price(ticks)

    @pytest.mark.parametrize("ticks", [2.1, True, "2100", Decimal(2100), None])
    def test_non_int_ticks_raise_type_error(self, ticks):
        """Only a plain int is a tick count; floats, bools and strings are bugs."""
        with pytest.raises(TypeError):
            format_price(ticks)

    @given(ticks_st)
    @example(1)
    @example(MAX_PRICE_TICKS)
    def test_every_tick_round_trips_through_the_wire_string(self, ticks):
        """parse_price(format_price(t)) == t for every price in range."""
        assert parse_price(format_price(ticks)) == ticks

    def test_tick_is_one_thousand_micros(self):
        """One tick is 0.001 USD, which is 1000 micro-USD."""
        assert TICK_MICROS == 1000
        assert parse_price("0.001") * TICK_MICROS == parse_money("0.001")


class TestPriceFromDecimal:
    """Computed Decimal prices round to ticks with a rounding mode the caller names."""

    @pytest.mark.parametrize("value, rounding, ticks", [
        ("2.1455", decimal.ROUND_HALF_EVEN, 2146),
        ("2.1445", decimal.ROUND_HALF_EVEN, 2144),
        ("2.1455", decimal.ROUND_HALF_DOWN, 2145),
        ("2.1455", decimal.ROUND_HALF_UP, 2146),
        ("2.1451", decimal.ROUND_FLOOR, 2145),
        ("2.1451", decimal.ROUND_CEILING, 2146),
        ("2.145", decimal.ROUND_CEILING, 2145),
        ("1000000.0009", decimal.ROUND_DOWN, MAX_PRICE_TICKS),
        ("0.0005", decimal.ROUND_HALF_UP, 1),
    ])
    def test_value_rounds_with_the_stated_mode(self, value, rounding, ticks):
        """The caller's rounding mode decides the tick, including at exact halves."""
        assert price_from_decimal(Decimal(value), rounding) == ticks

    def test_result_ignores_the_threads_decimal_context(self):
        """A low-precision or trapping ambient context does not change the answer."""
        with decimal.localcontext() as ctx:
            ctx.prec = 2
            ctx.traps[decimal.Inexact] = True
            assert price_from_decimal(Decimal("123.4565"), decimal.ROUND_HALF_EVEN) == 123456

    @pytest.mark.parametrize("value", ["NaN", "sNaN", "Infinity", "-Infinity", "0",
                                       "0.0004", "-2.1", "1000000.001", "1E+30"])
    def test_non_finite_or_out_of_range_value_is_invalid_price(self, value):
        """A value that is not finite or rounds outside 1..MAX_PRICE_TICKS is invalid_price."""
        with pytest.raises(PriceError) as info:
            price_from_decimal(Decimal(value), decimal.ROUND_HALF_EVEN, field="index")
        assert (info.value.reason, info.value.field) == (RejectReason.INVALID_PRICE, "index")

    @pytest.mark.parametrize("value", [2.1, 2, "2.1", None])
    def test_non_decimal_value_raises_type_error(self, value):
        """Floats and other types are refused so no float can sneak into a price."""
        with pytest.raises(TypeError):
            price_from_decimal(value, decimal.ROUND_HALF_EVEN)

    @pytest.mark.parametrize("rounding", ["nearest", None, "ROUND_HALF_EVEN ", 0])
    def test_unknown_rounding_mode_raises_value_error(self, rounding):
        """The rounding mode must be one of decimal.ROUND_*; there is no default."""
        with pytest.raises(ValueError):
            price_from_decimal(Decimal("2.1"), rounding)

    @given(ticks_st, st.sampled_from(ROUNDINGS))
    def test_exact_tick_value_is_unchanged_by_any_rounding(self, ticks, rounding):
        """A value already on the tick converts to that tick whatever the mode."""
        assert price_from_decimal(Decimal(ticks).scaleb(-3), rounding) == ticks


class TestMoney:
    """Money is integer micro-USD on the inside and a 6-decimal string on the wire."""

    @pytest.mark.parametrize("text, micros", [
        ("0", 0), ("0.000000", 0), ("1.5", 1_500_000), ("1500.25", 1_500_250_000),
        ("0.000001", 1), ("1.0000000", 1_000_000), ("007", 7_000_000),
        ("999999999999.999999", 10**18 - 1),
    ])
    def test_valid_amount_parses_to_exact_micros(self, text, micros):
        """Up to 6 decimals (plus trailing zeros) parse exactly; zero is allowed."""
        assert parse_money(text) == micros

    @pytest.mark.parametrize("text, micros", [("-1.5", -1_500_000), ("-0", 0), ("2", 2_000_000)])
    def test_negative_amount_parses_when_allowed(self, text, micros):
        """allow_negative=True accepts a leading minus sign."""
        assert parse_money(text, allow_negative=True) == micros

    @pytest.mark.parametrize("text", [
        "-1.5", "-0", "+1", "1.0000001", "NaN", "inf", "1e3", " 1", "1 ", "", ".", "1.", ".5",
        "--1", "1000000000000", "999999999999999.999999", "9" * 5000, "\u0661",
    ])
    def test_malformed_negative_or_too_precise_amount_is_invalid_amount(self, text):
        """Signs (unless allowed), a 7th non-zero decimal, exponents and junk are invalid_amount."""
        with pytest.raises(MoneyError) as info:
            parse_money(text, field="collateral")
        assert (info.value.reason, info.value.field) == (RejectReason.INVALID_AMOUNT, "collateral")

    @pytest.mark.parametrize("value", [1, 1.5, True, None, Decimal("1.5")])
    def test_non_string_amount_is_invalid_amount(self, value):
        """Numbers, bools and None are refused; the default field is "amount"."""
        with pytest.raises(MoneyError) as info:
            parse_money(value)
        assert (info.value.reason, info.value.field) == (RejectReason.INVALID_AMOUNT, "amount")

    @pytest.mark.parametrize("micros, text", [
        (0, "0.000000"), (1, "0.000001"), (1_500_000, "1.500000"), (-1_500_000, "-1.500000"),
        (-1, "-0.000001"), (10**21, "1000000000000000.000000"),
    ])
    def test_micros_format_with_six_decimals_and_sign(self, micros, text):
        """Money is written with exactly 6 decimals and a minus sign when negative."""
        assert format_money(micros) == text

    @pytest.mark.parametrize("micros", [1.5, True, "1", Decimal(1)])
    def test_non_int_micros_raise_type_error(self, micros):
        """Only a plain int is an amount of micro-USD."""
        with pytest.raises(TypeError):
            format_money(micros)

    @given(st.integers(-(10**18) + 1, 10**18 - 1))
    def test_every_amount_round_trips_through_the_wire_string(self, micros):
        """parse_money(format_money(m), allow_negative=True) == m across the whole range."""
        assert parse_money(format_money(micros), allow_negative=True) == micros
