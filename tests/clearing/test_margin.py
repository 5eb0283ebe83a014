"""clearing.margin: scan risk, calendar spread offsets and open orders, by hand."""
from __future__ import annotations

import datetime

import pytest

from clearing.margin import MarginParams, make_leg, months_between, requirement

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

