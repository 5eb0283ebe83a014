"""clearing.margin: scan risk, calendar spread offsets and open orders, by hand."""
from __future__ import annotations

import datetime

import itertools

import msgspec
import pytest
from hypothesis import given, settings, strategies as st

from clearing.margin import BPS, MarginParams, make_leg, months_between, requirement

D = datetime.date
TODAY = D(2027, 1, 15)
P = MarginParams()
PARAMS = {"H100": P, "A100": P}


def leg(gpu_class, price, start, end, today=TODAY, params=P):
    return make_leg(gpu_class, 1000, price, start, end, today, params)


def legs():
    return {
        "H100-2027-03": leg("H100", 2100, D(2027, 3, 1), D(2027, 4, 1)),
        "H100-2027-04": leg("H100", 2150, D(2027, 4, 1), D(2027, 5, 1)),
        "A100-2027-03": leg("A100", 1200, D(2027, 3, 1), D(2027, 4, 1)),
        "H100-2027-Q2": leg("H100", 2000, D(2027, 4, 1), D(2027, 7, 1)),
    }


def test_scanning_ranges_depend_on_time_to_delivery():
    """March is 2 months away: 15% of 2.100 = 0.315 over 744 hours; a month away is 20%, far
    months 10%."""
    assert months_between(TODAY, D(2027, 3, 1)) == 2
    assert legs()["H100-2027-03"].span == 315 * 744
    assert legs()["H100-2027-04"].span == 323 * 720          # 15% of 2.150 = 322.5, up
    assert leg("H100", 2100, D(2027, 2, 1), D(2027, 3, 1)).span == 420 * 672
    assert leg("H100", 2100, D(2027, 9, 1), D(2027, 10, 1)).span == 210 * 720


def test_a_quarter_is_exposure_to_each_of_its_months():
    """Q2 at 2.000 seen from 15 January: April is 3 months away (15%, 0.300 x 720 h), May and
    June further (10%, 0.200 x 744 h and x 720 h): 216,000 + 148,800 + 144,000 tick-hours,
    so long 1 Q2 needs $508.80, not 15% of all 2,184 hours ($655.20)."""
    q2 = legs()["H100-2027-Q2"]
    assert q2.span == 508_800 and q2.hours == 2184
    assert requirement(legs(), {"H100-2027-Q2": 1}, [], PARAMS)[0] == 508_800_000


def test_a_quarter_against_its_first_month_is_a_spread():
    """Long 1 Q2, short 1 April (2.150, 0.323 x 720 = $232.56 of move): the down move loses
    $508.80 - $232.56 = $276.24. The quarter and April trade and settle on books of their
    own, so the 720 hours short against 2,184 long are a spread: 720 x 2% of 2.150 = $30.96."""
    maintenance, _ = requirement(legs(), {"H100-2027-Q2": 1, "H100-2027-04": -1}, [], PARAMS)
    assert maintenance == 276_240_000 + 30_960_000


def test_a_year_against_its_twelve_months_is_margined_as_a_spread():
    """Long 1 year of 2028, short 1 of each of its months, all at 2.000: a parallel move
    changes nothing, but the year can part from its months (its own book, its own
    settlement), so its 8,784 hours are a spread: 8,784 x 2% of 2.000 = $351.36, a sixth of
    the year alone ($1,756.80, 10% of all its hours)."""
    today = D(2027, 6, 15)
    year = {"H100-2028": leg("H100", 2000, D(2028, 1, 1), D(2029, 1, 1), today)}
    months = {f"H100-2028-{m:02d}": leg("H100", 2000, D(2028, m, 1),
                                        D(2028 + m // 12, m % 12 + 1, 1), today)
              for m in range(1, 13)}
    book = {**year, **months}
    positions = {"H100-2028": 1, **{s: -1 for s in months}}
    assert book["H100-2028"].span == 200 * 8784
    assert requirement(book, {"H100-2028": 1}, [], PARAMS)[0] == 1_756_800_000
    assert requirement(book, positions, [], PARAMS)[0] == 351_360_000
    # Against only eleven of them, December's 744 hours move alone (0.200 x 744 = $148.80)
    # and 8,040 hours are a spread ($321.60).
    del positions["H100-2028-12"]
    assert requirement(book, positions, [], PARAMS)[0] == 148_800_000 + 321_600_000


def test_an_outright_position_by_hand():
    """Long 10 March: the full down move loses 10 x 0.315 x 744 h = $2,343.60; initial x1.1."""
    maintenance, initial = requirement(legs(), {"H100-2027-03": 10}, [], PARAMS)
    assert maintenance == 2_343_600_000
    assert initial == 2_577_960_000


def test_a_calendar_spread_offsets_and_pays_a_spread_charge():
    """Long 10 March, short 10 April.

    Scan: a parallel down move loses 10 x 0.315 x 744 on March and gains 10 x 0.323 x 720 on
    April: 2,343.60 - 2,325.60 = $18.00. Spread charge: 7,440 GPU-hours long in March against
    7,200 short in April, so 7,200 spread GPU-hours x 2% of the dearer price (April's 2.150)
    = $309.60.
    """
    maintenance, _ = requirement(legs(), {"H100-2027-03": 10, "H100-2027-04": -10}, [], PARAMS)
    assert maintenance == 18_000_000 + 309_600_000
    outright = sum(requirement(legs(), {s: q}, [], PARAMS)[0]
                   for s, q in (("H100-2027-03", 10), ("H100-2027-04", -10)))
    assert maintenance < outright / 10


def test_classes_do_not_offset_each_other():
    """Long H100 and short A100 add up: they are different classes."""
    both = requirement(legs(), {"H100-2027-03": 10, "A100-2027-03": -10}, [], PARAMS)[0]
    assert both == requirement(legs(), {"H100-2027-03": 10}, [], PARAMS)[0] + \
        requirement(legs(), {"A100-2027-03": -10}, [], PARAMS)[0]


def test_open_orders_count_as_filled_on_the_worse_side():
    """Long 10 plus a resting sell of 10 and a buy of 5: the buys make it worse (15 long).

    Buying 5 at 2.110 against a 2.100 mark also loses 0.010 x 5 x 744 = $37.20 at once.
    """
    orders = [("H100-2027-03", -1, 10, 2105), ("H100-2027-03", +1, 5, 2110)]
    maintenance, _ = requirement(legs(), {"H100-2027-03": 10}, orders, PARAMS)
    assert maintenance == 15 * 315 * 744 * 1000 + 37_200_000
    # A sell that only closes the position adds nothing.
    closing = requirement(legs(), {"H100-2027-03": 10}, [("H100-2027-03", -1, 10, 2100)], PARAMS)
    assert closing[0] == 2_343_600_000


def test_no_positions_no_margin():
    assert requirement(legs(), {}, [], PARAMS) == (0, 0)
    assert requirement(legs(), {"H100-2027-03": 0}, [], PARAMS) == (0, 0)


@pytest.mark.parametrize("kw", [
    {"scan_bps_by_tenor": ()}, {"scan_bps_by_tenor": ((3, 1000), (1, 2000))},
    {"scan_bps_by_tenor": ((1, 0),)}, {"scenario_bps": (0,)}, {"initial_multiplier_pct": 90},
])
def test_bad_parameters_are_refused(kw):
    with pytest.raises(ValueError):
        MarginParams(**kw)



def test_a_mix_of_buys_and_sells_beyond_the_scanning_range_is_margined_at_its_worst():
    """Marks far below the settlement (March 1.605, April 1.650; ranges 0.315 and 0.323 from
    2.100 and 2.150): a bid for 10 March at 2.000 loses 0.080 even in the up move, and an
    offer of 10 April at 1.300 loses 0.027 even in the down move. Filling both is the worst
    mix, which neither all buys nor all sells shows:
    down: 10 x (0.395 + 0.315) x 744 + 10 x (0.350 - 0.323) x 720 = $5,282.40 + $194.40;
    up:   10 x (0.395 - 0.315) x 744 + 10 x (0.350 + 0.323) x 720 = $595.20 + $4,845.60.
    So $5,476.80 of scan risk, plus 7,200 spread GPU-hours x 2% of 2.150 = $309.60."""
    marked = {s: msgspec.structs.replace(leg, mark=mark) for (s, leg), mark in
              zip(legs().items(), (1605, 1650, 1200))}
    orders = [("H100-2027-03", 1, 10, 2000), ("H100-2027-04", -1, 10, 1300)]
    maintenance, _ = requirement(marked, {}, orders, PARAMS)
    assert maintenance == 5_476_800_000 + 309_600_000
    either_side = max(requirement(marked, {}, [o], PARAMS)[0] for o in orders)
    assert either_side < maintenance


def brute_force(legs, positions, orders, params) -> tuple[int, int]:
    """(scan risk, scan risk + spread charge) of the worst of every subset of the orders
    filled at its limit, in every scenario of the list: the long way round."""
    scan = total = 0
    for chosen in itertools.chain.from_iterable(
            itertools.combinations(orders, k) for k in range(len(orders) + 1)):
        filled = dict(positions)
        at_fill = 0
        for symbol, side, lots, price in chosen:
            filled[symbol] = filled.get(symbol, 0) + side * lots
            leg = legs[symbol]
            at_fill += lots * max(0, side * (price - leg.mark)) * leg.hours * leg.tick_micros * BPS
        longs = sum(q * legs[s].hours for s, q in filled.items() if q > 0)
        shorts = -sum(q * legs[s].hours for s, q in filled.items() if q < 0)
        held = [s for s, q in filled.items() if q]
        dearest = max((legs[s].price * legs[s].tick_micros for s in held), default=0)
        charge = -(-min(longs, shorts) * dearest * params.spread_charge_bps // BPS)
        for direction in (1, -1):
            for fraction in params.scenario_bps:
                loss = at_fill - direction * fraction * sum(
                    q * legs[s].span * legs[s].tick_micros
                    for s, q in filled.items())
                loss = max(0, -(-loss // BPS))
                scan, total = max(scan, loss), max(total, loss + charge)
    return scan, total


H100 = ["H100-2027-03", "H100-2027-04", "H100-2027-Q2"]
order_strategy = st.tuples(st.sampled_from(H100),
                           st.sampled_from([1, -1]), st.integers(1, 20), st.integers(1500, 2500))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(H100), st.integers(-20, 20)),
       st.lists(order_strategy, max_size=5), st.integers(-500, 500), st.integers(-500, 500),
       st.integers(-500, 500))
def test_open_orders_are_margined_at_the_worst_mix_of_fills(positions, orders, move_mar,
                                                           move_apr, move_q2):
    """Against every subset of the orders filled, in every scenario: the scan risk is exactly
    the worst, and with the spread charge the requirement is never below any of them."""
    marked = dict(legs())
    for symbol, move in zip(H100, (move_mar, move_apr, move_q2)):
        marked[symbol] = msgspec.structs.replace(marked[symbol], mark=marked[symbol].price + move)
    no_spread = MarginParams(spread_charge_bps=0)
    scan, total = brute_force(marked, positions, orders, P)
    assert requirement(marked, positions, orders, {"H100": no_spread})[0] == scan
    assert requirement(marked, positions, orders, PARAMS)[0] >= total
