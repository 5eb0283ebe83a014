"""clearing.index: the trimmed volume-weighted index, its fallbacks and its fixings."""
from __future__ import annotations

import datetime
from fractions import Fraction

import pytest
from hypothesis import given, strategies as st

from clearing.index import (
    NS_PER_HOUR, ClassIndex, External, IndexParams, Observation, ObservationError, trimmed_vwap,
)

T = 1_800_000_000 * 10**9          # a time, ns
DAY = datetime.date(2027, 1, 15)


def obs(provider, price, hours, at=T):
    return Observation(provider, price, hours, at)


def test_trimmed_vwap_cuts_ten_percent_of_the_hours_from_each_end():
    """2.000x10, 2.100x30, 2.200x40, 3.000x20: 10 h go from each end, half of the 3.000 lot.

    Left: 2.100x30, 2.200x40, 3.000x10 -> (63 + 88 + 30) / 80 = 2.2625 -> 2.262 (half to even).
    """
    mean = trimmed_vwap([(2000, 10), (2100, 30), (2200, 40), (3000, 20)], 1000)
    assert mean == Fraction(181_000, 80)
    index = ClassIndex("H100", IndexParams(min_providers=1))
    for i, (price, hours) in enumerate([(3000, 20), (2000, 10), (2200, 40), (2100, 30)]):
        index.submit(obs(i, price, hours), T)
    assert index.value(T) == (2262, "builtin")


def test_without_trimming_it_is_the_plain_volume_weighted_mean():
    """trim 0: (2.000x1 + 2.300x2) / 3 = 2.2 exactly."""
    assert trimmed_vwap([(2000, 1), (2300, 2)], 0) == 2200


def test_rounding_is_half_to_even():
    """2.0005 rounds to 2.000 and 2.0015 to 2.002 (ticks 2000.5 -> 2000, 2001.5 -> 2002)."""
    index = ClassIndex("H100", IndexParams(min_providers=1, trim_bps=0))
    index.submit(obs(1, 2000, 1), T)
    index.submit(obs(2, 2001, 1), T)
    assert index.value(T)[0] == 2000
    index.submit(obs(3, 2002, 2), T)       # (2000 + 2001 + 4004) / 4 = 2001.25 -> 2001
    assert index.value(T)[0] == 2001


def test_too_few_providers_fall_back_to_the_previous_fixing():
    """Two providers when three are needed: no built-in value; the previous fixing stands in."""
    index = ClassIndex("H100", IndexParams())
    for p in (1, 2, 3):
        index.submit(obs(p, 2100, 10), T)
    first = index.fix(DAY, T)
    assert (first.value, first.source, len(first.observations)) == (2100, "builtin", 3)
    later = T + 25 * NS_PER_HOUR             # all three are stale now
    index.submit(obs(1, 2500, 10, later), later)
    index.submit(obs(2, 2500, 10, later), later)
    assert index.value(later) == (2100, "previous")
    second = index.fix(DAY + datetime.timedelta(days=1), later)
    assert (second.value, second.source, second.observations) == (2100, "previous", ())


def test_nothing_at_all_gives_no_value():
    """No observations and no fixing yet: the value is None and the fixing says so."""
    index = ClassIndex("B200", IndexParams())
    assert index.value(T) == (None, "none")
    assert index.fix(DAY, T).value is None


def test_a_fresh_external_value_comes_first_and_a_stale_one_is_skipped():
    """The default order is external, builtin, previous; an external value expires."""
    index = ClassIndex("H100", IndexParams(min_providers=1))
    index.submit(obs(1, 2100, 10), T)
    index.set_external(External(9, 2300, T), T)
    assert index.value(T) == (2300, "external")
    fixing = index.fix(DAY, T)
    assert fixing.external == External(9, 2300, T) and index.recompute(fixing) == 2300
    later = T + 25 * NS_PER_HOUR
    index.submit(obs(1, 2150, 10, later), later)
    assert index.value(later) == (2150, "builtin")


def test_the_fallback_order_is_configurable():
    """sources = (builtin, external): the built-in index wins while it has enough providers."""
    index = ClassIndex("H100", IndexParams(min_providers=1, sources=("builtin", "external")))
    index.submit(obs(1, 2100, 10), T)
    index.set_external(External(9, 2300, T), T)
    assert index.value(T) == (2100, "builtin")


def test_a_fixing_can_be_recomputed_from_its_inputs():
    """A built-in fixing keeps its observations; recomputing them gives its value."""
    index = ClassIndex("H100", IndexParams(min_providers=2))
    index.submit(obs(1, 2000, 5), T)
    index.submit(obs(2, 2300, 7, T - NS_PER_HOUR), T - NS_PER_HOUR)
    index.submit(obs(3, 9000, 1, T - 30 * NS_PER_HOUR + 10**9), T - 30 * NS_PER_HOUR + 10**9)
    fixing = index.fix(DAY, T)
    assert [o.provider_id for o in fixing.observations] == [1, 2]       # 3 is stale
    assert index.recompute(fixing) == fixing.value == round(trimmed_vwap(
        [(2000, 5), (2300, 7)], 1000))


@pytest.mark.parametrize("bad, reason, field", [
    (obs(1, 0, 10), "invalid_observation", "price"),
    (obs(1, 100_001, 10), "invalid_observation", "price"),
    (obs(1, 2100, 0), "invalid_observation", "hours"),
    (obs(1, 2100, 10_000_001), "invalid_observation", "hours"),
    (obs(1, 2100, 10, T + 6 * 10**9), "timestamp_in_future", "time"),
    (obs(1, 2100, 10, T - 25 * NS_PER_HOUR), "stale_observation", "time"),
])
def test_bad_observations_are_refused_and_change_nothing(bad, reason, field):
    """Absurd prices, zero hours and times out of the window are refused with a reason."""
    index = ClassIndex("H100", IndexParams(min_providers=1))
    index.submit(obs(2, 2100, 10), T)
    with pytest.raises(ObservationError) as caught:
        index.submit(bad, T)
    assert (caught.value.reason, caught.value.field) == (reason, field)
    assert index.observations == [obs(2, 2100, 10)] and index.value(T) == (2100, "builtin")


def test_bad_parameters_are_refused():
    """Trimming half or more, no providers or an unknown source is a configuration error."""
    for kw in ({"trim_bps": 5000}, {"min_providers": 0}, {"sources": ("oracle",)},
               {"sources": ("builtin", "builtin")}):
        with pytest.raises(ValueError):
            IndexParams(**kw)


@given(st.lists(st.tuples(st.integers(1, 100_000), st.integers(1, 1000)), min_size=1, max_size=30),
       st.integers(0, 4999))
def test_the_index_lies_within_the_observed_prices(pairs, trim_bps):
    """Whatever is trimmed, the mean is between the cheapest and the dearest observation."""
    mean = trimmed_vwap(pairs, trim_bps)
    assert min(p for p, _ in pairs) <= mean <= max(p for p, _ in pairs)
