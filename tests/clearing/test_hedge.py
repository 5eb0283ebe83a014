"""clearing.hedge: the hedge plan, by hand, under hypothesis, and against bad inputs."""
from __future__ import annotations

import datetime
import math
import time

import msgspec
import pytest
from hypothesis import given, settings, strategies as st

from clearing.hedge import Contract, Debt, Inputs, PlanError, outcome, plan, whole
from engine.reasons import RejectReason

D = datetime.date
NOW = int(datetime.datetime(2027, 1, 1, tzinfo=datetime.timezone.utc).timestamp()) * 10**9
MONTHS = [("H100-2027-04", D(2027, 4, 1), D(2027, 5, 1)),
          ("H100-2027-05", D(2027, 5, 1), D(2027, 6, 1)),
          ("H100-2027-06", D(2027, 6, 1), D(2027, 7, 1))]
CURVE = [Contract(s, "month", a, b, 2000, True) for s, a, b in MONTHS] + [
    Contract("H100-2027-Q2", "quarter", D(2027, 4, 1), D(2027, 7, 1), 1990, True),
    Contract("H100-2027-Q3", "quarter", D(2027, 7, 1), D(2027, 10, 1), 1950, True),
    Contract("H100-2028", "year", D(2028, 1, 1), D(2029, 1, 1), 1900, True)]
EXAMPLE = Inputs(gpus=100, start=D(2027, 4, 1), months=3, utilisation=0.80, opex=0.50,
                 debt=Debt(principal=150_000.0, rate=0.12, tenor=3), hedge_ratio=0.5, vol=0.50)


def no_margin(positions):
    return 0


def book_of(depth: int, price: int):
    """A book that buys ``depth`` lots of anything at ``price`` ticks."""
    def sell(symbol, qty):
        filled = min(qty, depth)
        return filled, filled * price
    return sell


def test_the_worked_example_by_hand():
    """The README's example: 100 H100 GPUs from April 2027 for three months, 80% rented, opex
    0.50 USD a GPU-hour, 150,000 USD borrowed at 12% over the three months, half the
    capacity sold forward at 2.000 (the months' marks), a 50% volatility, seen from 1 January
    2027 00:00 UTC.

    Hours 720, 744, 720; tau = 105, 135.5 and 166 days / 365.25 (to the middle of each
    month); debt service 150,000 x 0.01 / (1 - 1.01^-3) = 51,003.32 a month. In the P99
    scenario April's price is 2 exp(-0.5^2 x 0.287474333 / 2 - 2.326347874 x 0.5 x
    sqrt(0.287474333)) = 1.0341: unhedged, 0.8 x 72,000 x 1.0341 - 0.5 x 72,000 = 23,566
    of CFADS, a DSCR of 0.4620; the 50 contracts sold bring 50 x 720 x (2 - 1.0341) =
    34,771 more, a DSCR of 1.1438. June, furthest out, is the tightest month: P99 price
    0.8626, DSCR 0.2683 unhedged and 1.0711 hedged."""
    result = plan(EXAMPLE, CURVE, NOW, no_margin, book_of(1000, 1990))
    assert [m.hours for m in result.months] == [720, 744, 720]
    assert [m.tau for m in result.months] == [0.287474333, 0.370978782, 0.454483231]
    assert [(m.symbol, m.source, m.hedge_symbol, m.forward) for m in result.months] == [
        (s, "month", s, 2.0) for s, _, _ in MONTHS]
    assert round(result.debt_service, 2) == 51_003.32
    assert result.lots == [50, 50, 50]
    for k, month in enumerate(result.months):
        for name, z in (("p50", 0.0), ("p90", -1.2815515655), ("p99", -2.3263478740)):
            s = 2.0 * math.exp(-0.25 * month.tau / 2 + z * 0.5 * math.sqrt(month.tau))
            unhedged = 0.8 * 100 * month.hours * s - 0.5 * 100 * month.hours
            hedged = unhedged + 50 * month.hours * (2.0 - s)
            assert result.unhedged.cfads[k][name] == pytest.approx(unhedged, rel=1e-12)
            assert result.hedged.cfads[k][name] == pytest.approx(hedged, rel=1e-12)
            assert result.hedged.dscr[k][name] == pytest.approx(hedged / 51_003.3167, rel=1e-8)
    april_p99 = result.months[0]
    s99 = 2.0 * math.exp(-0.25 * 0.287474333 / 2 - 2.326347874 * 0.5 * math.sqrt(0.287474333))
    assert round(s99, 4) == 1.0341
    assert round(result.unhedged.cfads[0]["p99"]) == 23_566
    assert round(result.hedged.cfads[0]["p99"] - result.unhedged.cfads[0]["p99"]) == 34_771
    assert round(result.unhedged.dscr[0]["p99"], 4) == 0.4620
    assert round(result.hedged.dscr[0]["p99"], 4) == 1.1438
    assert april_p99.hedge_symbol == "H100-2027-04"
    assert round(result.unhedged.min_dscr["p99"], 4) == 0.2683
    assert round(result.hedged.min_dscr["p99"], 4) == 1.0711
    # Locked: 50 x (720 + 744 + 720) x 2.000; the rally: each month's P99 up move.
    assert result.locked_revenue == pytest.approx(50 * 2184 * 2.0)
    rally = sum(50 * m.hours * 2.0 * (math.exp(-0.125 * m.tau + 2.326347874 * 0.5
                                               * math.sqrt(m.tau)) - 1) for m in result.months)
    assert result.vm_stress == pytest.approx(rally, rel=1e-12)
    # Debt capacity: the tightest month at each target, times the annuity factor.
    factor = (1 - 1.01 ** -3) / 0.01
    for side in (result.hedged, result.unhedged):
        assert side.debt_capacity == pytest.approx(factor * min(
            min(c["p50"] for c in side.cfads) / 1.30, min(c["p99"] for c in side.cfads) / 1.00))
    # Selling the hedge on a book bidding 1.990 for 1,000 lots of each month.
    assert result.executable == {"avg_price": pytest.approx(1.99), "legs": [
        (s, 50, pytest.approx(1.99), 50) for s, _, _ in MONTHS]}


def test_the_hedge_needed_meets_the_targets_and_one_contract_less_does_not():
    result = plan(EXAMPLE, CURVE, NOW, no_margin, book_of(1000, 1990))
    q = result.contracts_needed
    assert q is not None and 0 < q <= 80

    def with_lots(n):
        return outcome(EXAMPLE, result.months, [n] * 3)
    assert with_lots(q).min_dscr["p99"] >= 1.00 and with_lots(q).min_dscr["p50"] >= 1.30
    assert with_lots(q - 1).min_dscr["p99"] < 1.00 or with_lots(q - 1).min_dscr["p50"] < 1.30


def test_quarters_and_years_give_the_forward_and_the_hedge_where_no_month_does():
    """From July the months are not listed: Q3 gives the forward and hedges July to September
    (it lies inside a plan to December); October to December have no forward: past the
    curve, refused, or with extrapolate at the last listed forward and unhedged. A year half
    outside the plan gives the forward but does not hedge."""
    inputs = msgspec.structs.replace(EXAMPLE, months=9, debt=Debt(150_000.0, 0.12, 9),
                                     extrapolate=True)
    result = plan(inputs, CURVE, NOW, no_margin, book_of(1000, 1940))
    assert [(m.source, m.symbol, m.hedge_symbol) for m in result.months[3:]] == \
        [("quarter", "H100-2027-Q3", "H100-2027-Q3")] * 3 + [("extrapolated", None, None)] * 3
    assert [m.forward for m in result.months[3:]] == [1.95] * 6
    assert result.lots == [50] * 6 + [0] * 3
    with pytest.raises(PlanError) as refused:
        plan(msgspec.structs.replace(inputs, extrapolate=False), CURVE, NOW, no_margin,
             book_of(1, 1))
    assert (refused.value.reason, refused.value.field) == \
        (RejectReason.HORIZON_BEYOND_CURVE, "months")
    year = msgspec.structs.replace(EXAMPLE, start=D(2028, 1, 1), months=6,
                                   debt=Debt(1.0, 0.0, 6))
    months = plan(year, CURVE, NOW, no_margin, book_of(1, 1)).months
    assert {(m.symbol, m.hedge_symbol) for m in months} == {("H100-2028", None)}


def test_the_initial_margin_is_clearings_scan_of_the_short_hedge():
    """initial_margin asks clearing for a portfolio short Q in each hedge instrument."""
    asked = []

    def margin(positions):
        asked.append(positions)
        return 12_345_678_900
    result = plan(EXAMPLE, CURVE, NOW, margin, book_of(1000, 1990))
    assert asked == [{s: -50 for s, _, _ in MONTHS}]
    assert result.initial_margin == 12_345.6789


def test_a_hedge_the_books_cannot_fill_says_how_much_they_can():
    result = plan(EXAMPLE, CURVE, NOW, no_margin, book_of(20, 1985))
    assert result.executable["avg_price"] is None
    assert [leg[1:] for leg in result.executable["legs"]] == [(50, pytest.approx(1.985), 20)] * 3
    none = plan(msgspec.structs.replace(EXAMPLE, hedge_ratio=0.0), CURVE, NOW, no_margin,
                book_of(0, 0))
    assert none.executable is None and none.initial_margin == 0.0


@pytest.mark.parametrize("change, field, reason", [
    ({"gpus": -1}, "gpus", RejectReason.INVALID_PARAMS),
    ({"gpus": 0}, "gpus", RejectReason.INVALID_PARAMS),
    ({"months": 61}, "months", RejectReason.INVALID_PARAMS),
    ({"utilisation": 1.2}, "utilisation", RejectReason.INVALID_PARAMS),
    ({"opex": -0.1}, "opex", RejectReason.INVALID_PARAMS),
    ({"opex": math.nan}, "opex", RejectReason.INVALID_PARAMS),
    ({"hedge_ratio": 1.5}, "hedge_ratio", RejectReason.INVALID_PARAMS),
    ({"vol": -0.2}, "vol", RejectReason.INVALID_PARAMS),
    ({"dscr_p99": 0.0}, "dscr_p99", RejectReason.INVALID_PARAMS),
    ({"debt": Debt(150_000.0, 2.0, 3)}, "debt.rate", RejectReason.INVALID_PARAMS),
    ({"debt": Debt(150_000.0, 0.1, 0)}, "debt.tenor", RejectReason.INVALID_PARAMS),
    ({"debt": Debt(150_000.0, 0.1, 4)}, "debt.tenor", RejectReason.INVALID_PARAMS),
    ({"debt": Debt(0.0, 0.1, 3)}, "debt.principal", RejectReason.INVALID_PARAMS),
    ({"start": D(2027, 4, 2)}, "start", RejectReason.INVALID_PARAMS),
    ({"start": D(2026, 1, 1)}, "start", RejectReason.INVALID_PARAMS),
    ({"months": 12, "debt": Debt(1.0, 0.0, 12)}, "months",
     RejectReason.HORIZON_BEYOND_CURVE),
    ({"start": D(2031, 1, 1), "extrapolate": True}, "start",
     RejectReason.HORIZON_BEYOND_CURVE),
])
def test_bad_inputs_are_refused_naming_the_field(change, field, reason):
    with pytest.raises(PlanError) as refused:
        plan(msgspec.structs.replace(EXAMPLE, **change), CURVE, NOW, no_margin, book_of(1, 1))
    assert (refused.value.reason, refused.value.field) == (reason, field)


# -- Properties -------------------------------------------------------------------------

inputs_strategy = st.builds(
    lambda gpus, months, u, basis, opex, principal, rate, tenor, vol: Inputs(
        gpus=gpus, start=D(2027, 4, 1), months=months, utilisation=u, basis=basis, opex=opex,
        debt=Debt(principal, rate, min(tenor, months)), vol=vol),
    st.integers(1, 5000), st.integers(1, 6), st.floats(0.0, 1.0), st.floats(-0.5, 0.5),
    st.floats(0.0, 3.0), st.floats(1.0, 1e8), st.floats(0.0, 0.5), st.integers(1, 6),
    st.floats(0.0, 1.5))
CURVE_H = [Contract(f"H100-2027-{m:02d}", "month", D(2027, m, 1), D(2027, m + 1, 1),
                    1800 + 20 * m, True) for m in range(4, 10)]


def months_for(inputs):
    return plan(inputs, CURVE_H, NOW, no_margin, book_of(0, 0)).months


@settings(max_examples=200, deadline=None)
@given(inputs_strategy, st.integers(0, 5000), st.integers(0, 5000))
def test_more_hedge_never_lowers_cfads_at_or_below_the_forward(inputs, a, b):
    months = months_for(inputs)
    less, more = (outcome(inputs, months, [n] * len(months)) for n in sorted((a, b)))
    for k in range(len(months)):
        for name in ("p50", "p90", "p99"):
            assert more.cfads[k][name] >= less.cfads[k][name] - 1e-6 * abs(less.cfads[k][name])


@settings(max_examples=200, deadline=None)
@given(inputs_strategy, st.floats(1.0, 10.0))
def test_more_principal_never_raises_dscr(inputs, factor):
    months = months_for(inputs)
    more = msgspec.structs.replace(inputs, debt=Debt(inputs.debt.principal * factor,
                                                     inputs.debt.rate, inputs.debt.tenor))
    base, bigger = outcome(inputs, months, [0] * len(months)), outcome(more, months,
                                                                       [0] * len(months))
    for name in ("p50", "p90", "p99"):
        if base.min_dscr[name] >= 0:
            assert bigger.min_dscr[name] <= base.min_dscr[name] * (1 + 1e-9)
        else:
            assert bigger.min_dscr[name] >= base.min_dscr[name] * (1 + 1e-9)


@settings(max_examples=200, deadline=None)
@given(inputs_strategy, st.floats(0.5, 4.0))
def test_debt_capacity_is_linear_in_the_dscr_targets_inverse(inputs, c):
    months = months_for(inputs)
    scaled = msgspec.structs.replace(inputs, dscr_p50=inputs.dscr_p50 / c,
                                     dscr_p99=inputs.dscr_p99 / c)
    base = outcome(inputs, months, [0] * len(months)).debt_capacity
    assert outcome(scaled, months, [0] * len(months)).debt_capacity == \
        pytest.approx(c * base, rel=1e-9, abs=1e-6)


@settings(max_examples=100, deadline=None)
@given(inputs_strategy)
def test_unhedged_is_a_hedge_ratio_of_zero(inputs):
    result = plan(inputs, CURVE_H, NOW, no_margin, book_of(0, 0))
    assert result.hedged == result.unhedged and result.locked_revenue == 0


@settings(max_examples=200, deadline=None)
@given(inputs_strategy, st.floats(0.5, 2.0), st.floats(0.3, 1.5))
def test_the_contracts_needed_are_the_fewest_that_meet_both_targets(inputs, p50, p99):
    inputs = msgspec.structs.replace(inputs, dscr_p50=p50, dscr_p99=p99)
    months = months_for(inputs)
    q = plan(inputs, CURVE_H, NOW, no_margin, book_of(0, 0)).contracts_needed
    cap = whole(inputs.utilisation, inputs.gpus)

    def ok(n):
        result = outcome(inputs, months, [n] * len(months))
        return result.min_dscr["p50"] >= p50 and result.min_dscr["p99"] >= p99
    if q is None:
        assert not ok(cap)
    else:
        assert 0 <= q <= cap and ok(q)
        assert q == 0 or not ok(q - 1)


def test_the_contracts_are_the_floor_of_the_decimal_ratio_not_of_its_float():
    """0.29 x 100 GPUs is 29 contracts, as anyone redoing the plan by hand gets; in binary
    floating point it is 28.999999999999996, whose floor is 28. The same for the cap of
    the hedge the targets need (utilisation 0.57 x 100 = 57)."""
    inputs = msgspec.structs.replace(EXAMPLE, hedge_ratio=0.29)
    assert plan(inputs, CURVE, NOW, no_margin, book_of(1000, 1990)).lots == [29, 29, 29]
    assert [whole(x, 100) for x in (0.29, 0.57, 0.58, 0.5, 1.0, 0.0)] == [29, 57, 58, 50, 100, 0]
    assert whole(0.8, 7) == 5 and whole(0.123456789, 10**7) == 1_234_567


def test_the_search_is_bounded_when_a_contract_adds_less_than_float_precision():
    """With a tiny volatility a contract adds 1e-7 USD to a month of 1.4e10: the slope
    taken as a difference of two CFADS was noise, and the search then stepped one contract
    at a time towards 10 million (201 s on the event loop), or gave up although the cap
    meets the targets. Now the slope is h (F - S) itself and the search bisects."""
    inputs = Inputs(gpus=10_000_000, start=D(2027, 4, 1), months=1, utilisation=1.0, opex=0.0,
                    vol=0.00005, debt=Debt(1.0, 0.0, 1), dscr_p50=1.0, dscr_p99=1e-12)
    months = plan(inputs, CURVE, NOW, no_margin, book_of(0, 0)).months
    cfads = outcome(inputs, months, [0]).cfads[0]["p50"]
    for extra in (0.5, 5.0, 9.0):
        tight = msgspec.structs.replace(inputs, debt=Debt(cfads + extra, 0.0, 1))
        began = time.perf_counter()
        q = plan(tight, CURVE, NOW, no_margin, book_of(0, 0)).contracts_needed
        assert time.perf_counter() - began < 0.5
        hedged = outcome(tight, months, [10_000_000])
        if hedged.min_dscr["p50"] >= 1.0 and hedged.min_dscr["p99"] >= 1e-12:
            assert q is not None
            assert outcome(tight, months, [q]).min_dscr["p50"] >= 1.0
            assert q == 0 or outcome(tight, months, [q - 1]).min_dscr["p50"] < 1.0
        else:
            assert q is None


def test_a_plan_past_the_calendar_is_refused_not_an_internal_error():
    with pytest.raises(PlanError) as refused:
        plan(msgspec.structs.replace(EXAMPLE, start=D(9999, 12, 1), months=1,
                                     debt=Debt(1.0, 0.0, 1)), CURVE, NOW, no_margin, book_of(1, 1))
    assert (refused.value.reason, refused.value.field) == (RejectReason.INVALID_PARAMS, "months")


def test_the_volatility_is_at_most_150_percent_so_a_p99_rally_is_a_rally():
    """With sigma sqrt(tau) above 4.65 the 'P99 rally' price falls below the forward and
    vm_stress turns negative (it did at a volatility of 5). A plan starts inside the listed
    curve (3 years) and runs at most 60 months, so tau < 8.1 years; 150% keeps it a rally."""
    with pytest.raises(PlanError) as refused:
        plan(msgspec.structs.replace(EXAMPLE, vol=1.6), CURVE, NOW, no_margin, book_of(1, 1))
    assert refused.value.field == "vol"
    assert 1.5 * math.sqrt(8.1) < 4.65
    far = msgspec.structs.replace(EXAMPLE, vol=1.5, start=D(2028, 1, 1), months=60,
                                  extrapolate=True, debt=Debt(1.0, 0.0, 60))
    assert plan(far, CURVE, NOW, no_margin, book_of(1, 1)).vm_stress > 0
