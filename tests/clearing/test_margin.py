"""clearing.margin: scan risk, calendar spread offsets and open orders, by hand."""
from __future__ import annotations

import datetime

import itertools

import msgspec
import pytest
from hypothesis import given, settings, strategies as st

from clearing.margin import BPS, MarginParams, make_leg, months_between, requirement

TODAY = datetime.date(2027, 1, 15)
P = MarginParams()
PARAMS = {"H100": P, "A100": P}


def legs():
    return {
        "H100-2027-03": make_leg("H100", 744, 1000, 2100, datetime.date(2027, 3, 1), TODAY, P),
        "H100-2027-04": make_leg("H100", 720, 1000, 2150, datetime.date(2027, 4, 1), TODAY, P),
        "A100-2027-03": make_leg("A100", 744, 1000, 1200, datetime.date(2027, 3, 1), TODAY, P),
    }


def test_scanning_ranges_depend_on_time_to_delivery():
    """March is 2 months away: 15% of 2.100 = 0.315; a month away is 20%, far months 10%."""
    assert months_between(TODAY, datetime.date(2027, 3, 1)) == 2
    assert legs()["H100-2027-03"].range_ticks == 315
    assert legs()["H100-2027-04"].range_ticks == 323          # 15% of 2.150 = 322.5, up
    assert make_leg("H100", 720, 1000, 2100, datetime.date(2027, 2, 1), TODAY, P).range_ticks \
        == 420
    assert make_leg("H100", 720, 1000, 2100, datetime.date(2027, 9, 1), TODAY, P).range_ticks \
        == 210


def test_an_outright_position_by_hand():
    """Long 10 March: the full down move loses 10 x 0.315 x 744 h = $2,343.60; initial x1.1."""
    maintenance, initial = requirement(legs(), {"H100-2027-03": 10}, [], PARAMS)
    assert maintenance == 2_343_600_000
    assert initial == 2_577_960_000


def test_a_calendar_spread_offsets_and_pays_a_spread_charge():
    """Long 10 March, short 10 April.

    Scan: a parallel down move loses 10 x 0.315 x 744 on March and gains 10 x 0.323 x 720 on
    April: 2,343.60 - 2,325.60 = $18.00. Spread charge: 10 spread lots x 2% of the dearer
    leg's notional (2.100 x 744 = $1,562.40 > 2.150 x 720 = $1,548.00) = $312.48.
    """
    maintenance, _ = requirement(legs(), {"H100-2027-03": 10, "H100-2027-04": -10}, [], PARAMS)
    assert maintenance == 18_000_000 + 312_480_000
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
    So $5,476.80 of scan risk, plus 10 spread lots x 2% of March's $1,562.40 = $312.48."""
    marked = {s: msgspec.structs.replace(leg, mark=mark) for (s, leg), mark in
              zip(legs().items(), (1605, 1650, 1200))}
    orders = [("H100-2027-03", 1, 10, 2000), ("H100-2027-04", -1, 10, 1300)]
    maintenance, _ = requirement(marked, {}, orders, PARAMS)
    assert maintenance == 5_476_800_000 + 312_480_000
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
        longs = sum(q for q in filled.values() if q > 0)
        shorts = -sum(q for q in filled.values() if q < 0)
        held = [s for s, q in filled.items() if q]
        dearest = max((legs[s].price * legs[s].hours * legs[s].tick_micros for s in held),
                      default=0)
        charge = -(-min(longs, shorts) * dearest * params.spread_charge_bps // BPS)
        for direction in (1, -1):
            for fraction in params.scenario_bps:
                loss = at_fill - direction * fraction * sum(
                    q * legs[s].range_ticks * legs[s].hours * legs[s].tick_micros
                    for s, q in filled.items())
                loss = max(0, -(-loss // BPS))
                scan, total = max(scan, loss), max(total, loss + charge)
    return scan, total


order_strategy = st.tuples(st.sampled_from(["H100-2027-03", "H100-2027-04"]),
                           st.sampled_from([1, -1]), st.integers(1, 20), st.integers(1500, 2500))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["H100-2027-03", "H100-2027-04"]), st.integers(-20, 20)),
       st.lists(order_strategy, max_size=5), st.integers(-500, 500), st.integers(-500, 500))
def test_open_orders_are_margined_at_the_worst_mix_of_fills(positions, orders, move_mar,
                                                           move_apr):
    """Against every subset of the orders filled, in every scenario: the scan risk is exactly
    the worst, and with the spread charge the requirement is never below any of them."""
    marked = dict(legs())
    for symbol, move in (("H100-2027-03", move_mar), ("H100-2027-04", move_apr)):
        marked[symbol] = msgspec.structs.replace(marked[symbol], mark=marked[symbol].price + move)
    no_spread = MarginParams(spread_charge_bps=0)
    scan, total = brute_force(marked, positions, orders, P)
    assert requirement(marked, positions, orders, {"H100": no_spread})[0] == scan
    assert requirement(marked, positions, orders, PARAMS)[0] >= total
