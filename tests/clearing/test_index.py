"""clearing.index: each provider's trimmed price, the median and the cap, fallbacks, fixings."""
from __future__ import annotations

import datetime
import pickle
import random
import sys
from fractions import Fraction

import msgspec
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from clearing.index import (
    NS_PER_HOUR, ClassIndex, External, IndexParams, Observation, ObservationError,
)
from engine.messages import RejectReason

T = 1_800_000_000 * 10**9          # a time, ns
DAY = datetime.date(2027, 1, 15)
NANO, PPB = 10**9, 10**9


def obs(provider, price, hours, at=T):
    return Observation(provider, price, hours, at)


def honest(index, at=T):
    """Three providers around 2.100 with 300 hours between them: the index is 2.100."""
    for provider, price in ((1, 2090), (2, 2100), (3, 2110)):
        index.submit(obs(provider, price, 100, at), at)
    assert index.value(at) == (2100, "builtin")


def inputs(fixing):
    """A fixing's providers as (provider_id, price_nano, hours, weight_ppb, excluded)."""
    return [(p.provider_id, p.price_nano, p.hours, p.weight_ppb, p.excluded)
            for p in fixing.providers]


def lines_run(fn, *args):
    """Return fn(*args) and how many lines of Python it ran: a count of work, not a time."""
    count = 0

    def trace(frame, event, arg):
        nonlocal count
        count += event == "line"
        return trace
    sys.settrace(trace)
    try:
        result = fn(*args)
    finally:
        sys.settrace(None)
    return result, count


# -- The method, worked by hand ----------------------------------------------------------------

def test_the_method_worked_by_hand():
    """Five providers: trimming within one, a far one excluded, two capped, ppb, rounding.

    1 reports 2.000x10, 2.100x30, 2.200x40, 3.000x20: 10 of its 100 h go from each end
      (all of 2.000, half of 3.000): (63 + 88 + 30) / 80 = 2.2625.
    2 reports 2.150x50; 3 reports 2.050x10 and 2.070x10 (2 h off each end: 2.060);
    4 reports 3.000x10; 5 reports 2.250 for one hour.
    Median 2.250: 4 is 33% away (more than 20%), excluded. Shares of the other 171 h:
    1 has 100/171 > 1/3, capped; 2 then has 2/3 x 50/71 > 1/3, capped; 3 and 5 share
    the last third pro rata: 20/63 and 1/63. In ppb the floors sum to 999,999,998; the
    two largest remainders (5: .873, 3: .460) get one each. Value
    (333333333 x 2262.5 + 333333333 x 2150 + 317460318 x 2060 + 15873016 x 2250) / 1e9
    = 2160.5159 ticks -> 2.161.
    """
    index = ClassIndex("H100", IndexParams())
    for provider, price, hours in ((1, 3000, 20), (1, 2000, 10), (1, 2200, 40), (1, 2100, 30),
                                   (2, 2150, 50), (3, 2050, 10), (3, 2070, 10), (4, 3000, 10),
                                   (5, 2250, 1)):
        index.submit(obs(provider, price, hours), T)
    assert index.value(T) == (2161, "builtin")
    fixing = index.fix(DAY, T)
    assert inputs(fixing) == [
        (1, 2_262_500_000_000, 100, 333_333_333, False),
        (2, 2_150_000_000_000, 50, 333_333_333, False),
        (3, 2_060_000_000_000, 20, 317_460_318, False),
        (4, 3_000_000_000_000, 10, 0, True),
        (5, 2_250_000_000_000, 1, 15_873_016, False)]
    assert [p.reason for p in fixing.providers] == [None, None, None, "far_from_median", None]
    assert sum(p.weight_ppb for p in fixing.providers) == PPB
    assert (fixing.value, fixing.source, fixing.carried) == (2161, "builtin", False)
    assert index.recompute(fixing) == 2161


def test_recompute_uses_only_the_record():
    """A fixing's record alone gives its value; a tampered price gives another."""
    index = ClassIndex("H100", IndexParams())
    honest(index)
    fixing = index.fix(DAY, T)
    fresh = ClassIndex("H100", IndexParams(min_providers=7, max_share="1/7"))
    assert fresh.recompute(fixing) == fixing.value == 2100
    tampered = msgspec.structs.replace(fixing.providers[0], price_nano=2_390_000_000_000)
    assert fresh.recompute(msgspec.structs.replace(
        fixing, providers=(tampered, *fixing.providers[1:]))) == 2200


def test_rounding_is_half_to_even():
    """Two providers at half each: 2.000 and 2.001 give 2.0005 -> 2.000; 2.001 and 2.002 give
    2.0015 -> 2.002."""
    params = IndexParams(min_providers=2, max_share="1/2", trim_bps=0)
    for prices, expected in (((2000, 2001), 2000), ((2001, 2002), 2002)):
        index = ClassIndex("H100", params)
        for provider, price in enumerate(prices):
            index.submit(obs(provider, price, 7 + provider), T)
        assert index.value(T) == (expected, "builtin")


def test_a_providers_price_is_in_billionths_of_a_tick_rounded_half_to_even():
    """2.000x1 and 2.001x2, untrimmed: 2000 + 2/3 ticks -> 2,000,666,666,667 billionths."""
    index = ClassIndex("H100", IndexParams(min_providers=1, trim_bps=0))
    index.submit(obs(1, 2000, 1), T)
    index.submit(obs(1, 2001, 2), T)
    assert inputs(index.fix(DAY, T)) == [(1, 2_000_666_666_667, 3, PPB, False)]


def test_below_three_providers_the_cap_is_one_over_their_number():
    """One provider: all the weight; two: half each, whatever their hours."""
    index = ClassIndex("H100", IndexParams(min_providers=1))
    index.submit(obs(1, 2000, 1), T)
    assert index.value(T) == (2000, "builtin")
    index.submit(obs(2, 2100, 500), T)
    assert index.value(T) == (2050, "builtin")


# -- The audit's manipulations -----------------------------------------------------------------

def test_fifty_thousand_hours_at_twenty_dollars_from_a_fourth_provider_are_excluded():
    """Defect 5: a provider reporting 50,000 h at $20 against three around 2.100 is excluded
    as far from the median and reported; the index stays 2.100."""
    index = ClassIndex("H100", IndexParams())
    honest(index)
    index.submit(obs(4, 20_000, 50_000), T)
    assert index.value(T) == (2100, "builtin")
    far = index.fix(DAY, T).providers[3]
    assert (far.provider_id, far.hours, far.weight_ppb, far.excluded, far.reason) == \
        (4, 50_000, 0, True, "far_from_median")


def test_fifty_thousand_hours_at_twenty_dollars_from_an_honest_provider_cannot_set_it():
    """The same hours added by one of the three: its own price becomes 20.000, it is
    excluded, two providers are too few and the index falls back, never to 20.000."""
    index = ClassIndex("H100", IndexParams())
    honest(index)
    index.submit(obs(1, 20_000, 50_000), T)
    assert index.value(T) == (None, "none")
    assert [p.excluded for p in index.fix(DAY, T).providers] == [True, False, False]


def test_five_ten_million_hour_observations_at_a_tenth_of_a_cent_are_excluded():
    """Defect 5: five 10M-hour observations at 0.001 from one provider do not move the index."""
    index = ClassIndex("H100", IndexParams())
    honest(index)
    for _ in range(5):
        index.submit(obs(4, 1, 10_000_000), T)
    assert index.value(T) == (2100, "builtin")
    assert inputs(index.fix(DAY, T))[3] == (4, 1 * NANO, 50_000_000, 0, True)


def test_after_a_fixing_far_prices_are_refused_outright():
    """With a fixing at 2.100, 0.001 and 20.000 are more than 50% away: refused, unchanged."""
    index = ClassIndex("H100", IndexParams())
    honest(index)
    index.fix(DAY, T)
    for price in (1, 20_000, 1049, 3151):
        with pytest.raises(ObservationError) as caught:
            index.submit(obs(4, price, 10_000_000), T + 1)
        assert (caught.value.reason, caught.value.field) == (RejectReason.INVALID_OBSERVATION, "price")
        assert "50%" in str(caught.value) and "2.100" in str(caught.value)
    index.submit(obs(4, 1050, 1), T + 1)
    index.submit(obs(4, 3150, 1), T + 1)
    assert index.value(T + 1) == (2100, "builtin")


def test_a_one_hour_provider_counts_but_weighs_its_hours():
    """A provider with one hour is a provider; beside three honest ones of 100 h its weight
    is its 1 h of 301, so its 2.500 moves the index by about a tick (2101.33)."""
    index = ClassIndex("H100", IndexParams())
    honest(index)
    index.submit(obs(4, 2500, 1), T)
    assert index.value(T) == (2101, "builtin")
    assert inputs(index.fix(DAY, T))[3] == (4, 2500 * NANO, 1, 3_322_259, False)


def test_a_one_hour_provider_making_up_the_third_gets_at_most_the_cap():
    """With two honest providers, a one-hour third makes the index (min_providers) but weighs
    no more than 1/3, and no more than 20% away: it moves the index by at most a third of
    that."""
    index = ClassIndex("H100", IndexParams())
    index.submit(obs(1, 2090, 100), T)
    index.submit(obs(2, 2110, 120), T)
    assert index.value(T) == (None, "none")
    index.submit(obs(3, 2520, 1), T)
    value, source = index.value(T)
    weights = [p.weight_ppb for p in index.fix(DAY, T).providers]
    assert (value, source, weights) == (2240, "builtin", [333_333_334, 333_333_333, 333_333_333])
    assert value - 2100 <= 2100 * 2000 // 10_000 // 3


def test_a_far_off_provider_is_excluded_and_reported():
    """2.600 is 23.5% above the median of 2.090, 2.100, 2.110 and 2.600 (2.105)."""
    index = ClassIndex("H100", IndexParams())
    honest(index)
    index.submit(obs(4, 2600, 10), T)
    fixing = index.fix(DAY, T)
    assert (fixing.value, [p.provider_id for p in fixing.providers if p.excluded]) == (2100, [4])
    assert index.recompute(fixing) == 2100


# -- Incremental, and bounded ------------------------------------------------------------------

def demo_day(index, hours: int, seed: int = 5, start: int = T):
    """Feed ``hours`` of the demo's three providers (every 4, 5 and 6 s, biases +0.6%, -0.5%
    and 0, noise 1.5%, 1.5% and 1%, 8..512 GPUs for 1 h to a week), with observed times up
    to a minute late; read the value once a simulated minute. Return the time reached."""
    rng = random.Random(seed)
    roles = ((1, 60, 150, 4), (2, -50, 150, 5), (3, 0, 100, 6))
    due = {provider: start for provider, *_ in roles}
    now = start
    while now < start + hours * NS_PER_HOUR:
        now += 10**9
        for provider, bias, noise, every in roles:
            if due[provider] <= now:
                due[provider] = now + every * 10**9
                price = max(1, round(2100 * (1 + (bias + rng.gauss(0, noise)) / 10_000)))
                hours_rented = rng.choice((8, 16, 32, 64, 128, 256, 512)) * rng.choice(
                    (1, 4, 12, 24, 72, 168))
                index.submit(Observation(provider, price, hours_rented,
                                         now - rng.randrange(60 * 10**9)), now)
        if now % (60 * 10**9) == 0:
            index.value(now)
    return now


def test_48_hours_at_demo_rates_stay_bounded_by_the_window():
    """Defect 13: after 48 h of the demo's providers the structure holds only the last 24 h
    (about 53,000 observations), a read between changes returns the cached value without
    touching the window, and a read after a change does the same work after 1 h as after
    48 h (a few hundred lines of Python, not a walk of 53,000 observations)."""
    index = ClassIndex("H100", IndexParams())
    now = demo_day(index, 1)
    index.submit(obs(2, 2100, 8, now), now)
    early, early_lines = lines_run(index.value, now)
    now = demo_day(index, 47, seed=6, start=now)
    index.submit(obs(2, 2100, 8, now), now)
    late, late_lines = lines_run(index.value, now)
    assert early[1] == late[1] == "builtin" and abs(late[0] - 2100) < 30
    assert late_lines <= early_lines * 1.5 and late_lines < 2000
    cached, cached_lines = lines_run(index.value, now)
    assert cached == late and cached_lines < 60
    window = index.observations
    assert len(window) == len(index._heap) and 52_000 < len(window) < 54_000
    assert min(o.observed_ns for o in window) >= now - 24 * NS_PER_HOUR
    nodes = sum(len(p.tree) for p in index._providers.values())
    assert nodes <= 18 * len({(o.provider_id, o.price) for o in window})
    fixing = index.fix(DAY, now)
    assert len(fixing.providers) == 3 and len(pickle.dumps(fixing)) < 1000


def test_a_submit_does_logarithmic_work():
    """Submitting into a full window costs about the same with 500 as with 50,000
    observations in it: no walk, only the heap and one provider's tree."""
    counts = []
    for n in (500, 50_000):
        index = ClassIndex("H100", IndexParams())
        step = 24 * NS_PER_HOUR // n
        for i in range(n):
            index.submit(obs(1 + i % 3, 2050 + i % 100, 10, T + i * step), T + i * step)
        at = T + n * step
        counts.append(lines_run(index.submit, obs(2, 2100, 8, at), at)[1])
    assert counts[1] <= counts[0] * 1.5


class IndexMatchesReference(RuleBasedStateMachine):
    """The incremental index and a from-scratch reference of the same method agree on every
    value, every refusal and every fixing, under out-of-order times, expiry and gaps."""

    PARAMS = IndexParams(window_ns=100, future_ns=5, external_max_age_ns=20, trim_bps=1500,
                         max_price=5000)

    def __init__(self):
        super().__init__()
        self.index = ClassIndex("H100", self.PARAMS)
        self.reference = Reference(self.PARAMS)
        self.now = T

    @rule(observations=st.lists(st.tuples(
        st.integers(1, 5), st.one_of(st.integers(1500, 2500), st.integers(0, 5001)),
        st.one_of(st.integers(1, 50), st.integers(1000, 10_000_000)), st.integers(-10, 110)),
        min_size=1, max_size=5))
    def submit(self, observations):
        for provider, price, hours, age in observations:
            o = Observation(provider, price, hours, self.now - age)
            assert refusal(self.index.submit, o, self.now) == \
                refusal(self.reference.submit, o, self.now)

    @rule(value=st.integers(1500, 2500), age=st.integers(0, 40))
    def external(self, value, age):
        e = External(9, value, self.now - age)
        assert refusal(self.index.set_external, e, self.now) == \
            refusal(self.reference.set_external, e, self.now)

    @rule(ns=st.sampled_from((0, 1, 3, 8, 15, 40, 120)))
    def advance(self, ns):
        self.now += ns

    @rule()
    def fix(self):
        date = DAY + datetime.timedelta(days=(self.now - T) // 40)
        fixing = self.index.fix(date, self.now)
        expected = self.reference.fix(date, self.now)
        assert (fixing.value, fixing.source, inputs(fixing)) == expected
        if fixing.source == "builtin":
            assert self.index.recompute(fixing) == fixing.value

    @invariant()
    def same_value(self):
        assert self.index.value(self.now) == self.reference.value(self.now)

    @invariant()
    def same_fixings(self):
        assert [(f.date, f.value, f.source, f.carried) for f in self.index.fixings] == \
            self.reference.fixings


TestIndexMatchesReference = IndexMatchesReference.TestCase
TestIndexMatchesReference.settings = settings(max_examples=200, stateful_step_count=60,
                                              deadline=None)


def refusal(submit, o, now):
    try:
        submit(o, now)
    except ObservationError as e:
        return e.reason, e.field
    return None


class Reference:
    """The method from scratch, as plainly as it can be written: every read walks every
    observation ever accepted."""

    def __init__(self, params: IndexParams):
        self.p = params
        self.observations = []
        self.external = None
        self.fixings = []          # (date, value, source, carried)

    def too_far(self, price, now):
        """More than max_jump_bps from the last fixing, and as much again for each day
        since the last fixing made from data."""
        last = self.fixings[-1][1] if self.fixings else None
        if last is None:
            return False
        today = datetime.date(1970, 1, 1) + datetime.timedelta(days=now // (86_400 * 10**9))
        days = next((max(0, (today - date).days) for date, _, source, _ in
                     reversed(self.fixings) if source in ("builtin", "external")), 0)
        return Fraction(abs(price - last), last) > Fraction(self.p.max_jump_bps * (1 + days),
                                                             10_000)

    def submit(self, o, now):
        p = self.p
        if not 1 <= o.price <= p.max_price or self.too_far(o.price, now):
            raise ObservationError(RejectReason.INVALID_OBSERVATION, "price", "price")
        if not 1 <= o.hours <= p.max_hours:
            raise ObservationError(RejectReason.INVALID_OBSERVATION, "hours", "hours")
        if o.observed_ns > now + p.future_ns:
            raise ObservationError(RejectReason.TIMESTAMP_IN_FUTURE, "time", "time")
        if o.observed_ns < now - p.window_ns:
            raise ObservationError(RejectReason.STALE_OBSERVATION, "time", "time")
        self.observations.append(o)

    def set_external(self, e, now):
        if self.too_far(e.value, now):
            raise ObservationError(RejectReason.INVALID_OBSERVATION, "price", "price")
        if self.external is None or e.observed_ns >= self.external.observed_ns:
            self.external = e

    def builtin(self, now):
        """Return (value or None, [(provider, price_nano, hours, weight_ppb, excluded)])."""
        p = self.p
        pairs = {}
        for o in self.observations:
            if o.observed_ns >= now - p.window_ns:
                pairs.setdefault(o.provider_id, []).append((o.price, o.hours))
        if not pairs:
            return None, []
        price = {k: round(trimmed_mean(v, p.trim_bps) * NANO) for k, v in pairs.items()}
        hours = {k: sum(h for _, h in v) for k, v in pairs.items()}
        ordered = sorted(price.values())
        middle = len(ordered) // 2
        median = (ordered[middle] if len(ordered) % 2 else
                  Fraction(ordered[middle - 1] + ordered[middle], 2))
        excluded = {k for k in price
                    if Fraction(abs(price[k] - median)) / median > Fraction(
                        p.max_deviation_bps, 10_000)}
        kept = sorted(k for k in price if k not in excluded)
        weight = {k: 0 for k in price}
        if len(kept) >= p.min_providers:
            weight.update(parts_per_billion(capped(
                {k: hours[k] for k in kept}, max(Fraction(p.max_share), Fraction(1, len(kept))))))
        value = None
        if len(kept) >= p.min_providers:
            value = round(Fraction(sum(weight[k] * price[k] for k in kept), NANO * PPB))
        return value, [(k, price[k], hours[k], weight[k], k in excluded) for k in sorted(price)]

    def value(self, now, before=None):
        for source in self.p.sources:
            if source == "external":
                if self.external and self.external.observed_ns >= now - self.p.external_max_age_ns:
                    return self.external.value, "external"
            elif source == "builtin":
                value = self.builtin(now)[0]
                if value is not None:
                    return value, "builtin"
            else:
                earlier = [f for f in self.fixings if before is None or f[0] < before]
                if earlier and earlier[-1][1] is not None:
                    return earlier[-1][1], "previous"
        return None, "none"

    def fix(self, date, now):
        value, source = self.value(now, before=date)
        if self.fixings and self.fixings[-1][0] == date:
            self.fixings.pop()
        if self.fixings:
            last = self.fixings[-1]
            day = last[0] + datetime.timedelta(days=1)
            while day < date:
                self.fixings.append((day, last[1], "previous" if last[1] is not None else "none",
                                     True))
                day += datetime.timedelta(days=1)
        self.fixings.append((date, value, source, False))
        return value, source, self.builtin(now)[1]


def trimmed_mean(pairs, trim_bps):
    """The hours-weighted mean price with trim_bps of the hours cut from each end."""
    pairs = sorted(pairs)
    left = [Fraction(h) for _, h in pairs]
    cut = Fraction(sum(left) * trim_bps, 10_000)
    for order in (range(len(pairs)), reversed(range(len(pairs)))):
        to_cut = cut
        for i in order:
            taken = min(to_cut, left[i])
            left[i] -= taken
            to_cut -= taken
    return sum(price * h for (price, _), h in zip(pairs, left)) / sum(left)


def capped(hours, cap):
    """Shares pro rata to hours; the largest share over the cap is cut to it and its excess
    spread over the uncapped pro rata to hours, one at a time, until none is over."""
    total = sum(hours.values())
    share = {k: Fraction(h, total) for k, h in hours.items()}
    at_cap = set()
    while any(s > cap for s in share.values()):
        k = max(share, key=share.get)
        excess, share[k] = share[k] - cap, cap
        at_cap.add(k)
        free = sum(hours[j] for j in share if j not in at_cap)
        for j in share:
            if j not in at_cap:
                share[j] += excess * hours[j] / free
    return share


def parts_per_billion(share):
    """Floors, then one part each to the largest remainders (lower id first on ties)."""
    floor = {k: s.numerator * PPB // s.denominator for k, s in share.items()}
    by_remainder = sorted(share, key=lambda k: (floor[k] - share[k] * PPB, k))
    for k in by_remainder[:PPB - sum(floor.values())]:
        floor[k] += 1
    return floor


# -- Fallbacks and fixings ---------------------------------------------------------------------

def test_too_few_providers_fall_back_to_the_previous_fixing():
    """Two providers when three are needed: no built-in value; the previous fixing stands in."""
    index = ClassIndex("H100", IndexParams())
    honest(index)
    first = index.fix(DAY, T)
    assert (first.value, first.source, len(first.providers)) == (2100, "builtin", 3)
    later = T + 25 * NS_PER_HOUR             # all three are stale now
    index.submit(obs(1, 2500, 10, later), later)
    index.submit(obs(2, 2500, 10, later), later)
    assert index.value(later) == (2100, "previous")
    second = index.fix(DAY + datetime.timedelta(days=1), later)
    assert (second.value, second.source, second.carried) == (2100, "previous", False)
    assert [p.weight_ppb for p in second.providers] == [0, 0]


def test_nothing_at_all_gives_no_value():
    """No observations and no fixing yet: the value is None and the fixing says so."""
    index = ClassIndex("B200", IndexParams())
    assert index.value(T) == (None, "none")
    fixing = index.fix(DAY, T)
    assert (fixing.value, fixing.source, fixing.providers) == (None, "none", ())
    assert index.recompute(fixing) is None


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


def test_observations_expire_by_their_observed_time_whatever_their_order():
    """An observation that arrived last but was made first leaves the window first."""
    index = ClassIndex("H100", IndexParams(min_providers=1, trim_bps=0))
    index.submit(obs(1, 2000, 10, T), T)
    index.submit(obs(2, 3000, 10, T - 2 * NS_PER_HOUR), T)
    assert index.value(T) == (2500, "builtin")
    assert index.value(T + 22 * NS_PER_HOUR + 1) == (2000, "builtin")
    assert [o.provider_id for o in index.observations] == [1]
    assert index.value(T + 24 * NS_PER_HOUR + 1) == (None, "none")


def test_a_day_without_a_fixing_is_carried_from_the_previous_one():
    """Fixed on the 15th and the 19th: the 16th to the 18th are carried at the 15th's value,
    so there is one fixing a day; fixing the 19th again replaces it."""
    index = ClassIndex("H100", IndexParams())
    honest(index)
    index.fix(DAY, T)
    later = T + 4 * 24 * NS_PER_HOUR
    for provider in (1, 2, 3):
        index.submit(obs(provider, 2200, 10, later), later)
    index.fix(DAY + datetime.timedelta(days=4), later)
    index.fix(DAY + datetime.timedelta(days=4), later + 1)
    assert [(f.date.day, f.value, f.source, f.carried) for f in index.fixings] == [
        (15, 2100, "builtin", False), (16, 2100, "previous", True),
        (17, 2100, "previous", True), (18, 2100, "previous", True),
        (19, 2200, "builtin", False)]
    assert index.fixings[-1].fixed_ns == later + 1
    assert [f.date.day for f in index.daily_fixings(datetime.date(2027, 1, 16),
                                                    datetime.date(2027, 1, 19))] == [16, 17, 18]
    assert index.daily_fixings(datetime.date(2027, 1, 1), DAY) == []
    assert len(index.daily_fixings(datetime.date(2027, 1, 1), datetime.date(2027, 2, 1))) == 5


def test_a_fixing_taken_again_the_same_day_falls_back_to_the_day_before():
    """Re-fixing a day whose providers have gone uses the previous day's fixing, not the
    day's own first one."""
    index = ClassIndex("H100", IndexParams())
    honest(index)
    index.fix(DAY, T)
    later = T + 24 * NS_PER_HOUR
    for provider in (1, 2, 3):
        index.submit(obs(provider, 2200, 10, later), later)
    index.fix(DAY + datetime.timedelta(days=1), later)
    again = index.fix(DAY + datetime.timedelta(days=1), later + 25 * NS_PER_HOUR)
    assert (again.value, again.source) == (2100, "previous")


# -- Bad input ---------------------------------------------------------------------------------

NOW = T + 2 * NS_PER_HOUR


@pytest.mark.parametrize("price, hours, at, reason, field", [
    (0, 10, NOW, RejectReason.INVALID_OBSERVATION, "price"),
    (100_001, 10, NOW, RejectReason.INVALID_OBSERVATION, "price"),
    (3151, 10, NOW, RejectReason.INVALID_OBSERVATION, "price"),        # more than 50% from 2.100
    (1049, 10, NOW, RejectReason.INVALID_OBSERVATION, "price"),
    (2100, 0, NOW, RejectReason.INVALID_OBSERVATION, "hours"),
    (2100, 10_000_001, NOW, RejectReason.INVALID_OBSERVATION, "hours"),
    (2100, 10, NOW + 6 * 10**9, RejectReason.TIMESTAMP_IN_FUTURE, "time"),
    (2100, 10, NOW - 25 * NS_PER_HOUR, RejectReason.STALE_OBSERVATION, "time"),
])
def test_bad_observations_are_refused_and_change_nothing(price, hours, at, reason, field):
    """Absurd prices, jumps, zero hours and times out of the window are refused with a reason,
    and the index is exactly as it was (not even the expiry that is due has run)."""
    index = ClassIndex("H100", IndexParams())
    honest(index, T - 23 * NS_PER_HOUR)
    index.fix(DAY, T - 23 * NS_PER_HOUR)
    before = pickle.dumps(index)
    with pytest.raises(ObservationError) as caught:
        index.submit(obs(4, price, hours, at), NOW)
    assert (caught.value.reason, caught.value.field) == (reason, field)
    assert pickle.dumps(index) == before


def test_a_bad_external_value_is_refused_and_changes_nothing():
    """Out of range, or timed ahead of the clock: refused, the index unchanged."""
    index = ClassIndex("H100", IndexParams())
    for bad, reason in ((External(9, 0, T), RejectReason.INVALID_OBSERVATION),
                        (External(9, 2100, T + 6 * 10**9), RejectReason.TIMESTAMP_IN_FUTURE)):
        with pytest.raises(ObservationError) as caught:
            index.set_external(bad, T)
        assert caught.value.reason == reason
    assert index.external is None and index.value(T) == (None, "none")


@pytest.mark.parametrize("kw", [
    {"trim_bps": 5000}, {"trim_bps": -1}, {"min_providers": 0}, {"window_ns": 0},
    {"sources": ("oracle",)}, {"sources": ("builtin", "builtin")}, {"sources": ()},
    {"max_deviation_bps": 0}, {"max_jump_bps": 0}, {"max_share": "0"}, {"max_share": "4/3"},
    {"max_share": "a third"}, {"max_share": "1/0"}, {"max_price": 0}, {"max_hours": 0},
])
def test_bad_parameters_are_refused(kw):
    """Trimming half or more, no providers, an unknown source, a cap outside (0, 1]..."""
    with pytest.raises(ValueError):
        IndexParams(**kw)


def test_an_index_pickled_before_this_method_is_refused_on_load():
    """A snapshot's index of the old shape (a list of observations) fails to load, so
    recovery replays the journal, rather than loading an index without its heap."""
    index = ClassIndex("H100", IndexParams())
    honest(index)
    assert pickle.loads(pickle.dumps(index)).value(T) == (2100, "builtin")
    old = ClassIndex.__new__(ClassIndex)
    with pytest.raises(TypeError):
        old.__setstate__({"gpu_class": "H100", "params": IndexParams(), "external": None,
                          "observations": [obs(1, 2100, 10)], "fixings": []})


def test_the_cap_is_exact():
    """max_share is a fraction written as a string, exactly: 1/3 is not 0.3333."""
    assert Fraction(IndexParams().max_share) == Fraction(1, 3)
    assert IndexParams(max_share="0.25").max_share == "0.25"


@given(st.lists(st.tuples(st.integers(1, 5), st.integers(1, 100_000), st.integers(1, 1000)),
                min_size=1, max_size=30),
       st.integers(0, 4999))
def test_the_index_lies_within_the_observed_prices(observations, trim_bps):
    """Whatever is trimmed, capped or excluded, the value is between the cheapest and the
    dearest observation."""
    index = ClassIndex("H100", IndexParams(min_providers=1, trim_bps=trim_bps))
    for provider, price, hours in observations:
        index.submit(obs(provider, price, hours), T)
    value, source = index.value(T)
    if value is None:        # an even count whose two middle ones are more than 40% apart
        assert source == "none" and any(p.excluded for p in index.fix(DAY, T).providers)
    else:
        assert source == "builtin"
        assert min(p for _, p, _ in observations) <= value <= max(p for _, p, _ in observations)


def test_an_external_value_is_held_to_the_same_bound_as_an_observation():
    """A trusted provider's external value 60% off the last fixing is refused like an
    observation would be (it came first in the fallback order with no bound at all); a day
    without a fixing from data widens the bound for it too."""
    index = ClassIndex("H100", IndexParams(min_providers=1))
    index.submit(Observation(1, 2100, 10, T), T)
    index.fix(datetime.date(2027, 1, 15), T)
    with pytest.raises(ObservationError) as caught:
        index.set_external(External(9, 840, T + 1), T + 1)
    assert (caught.value.reason, caught.value.field) == (RejectReason.INVALID_OBSERVATION, "price")
    assert index.external is None
    later = T + 86_400 * 10**9
    index.set_external(External(9, 840, later), later)
    assert index.value(later) == (840, "external")
