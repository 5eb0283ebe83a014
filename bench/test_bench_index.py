"""The index: the cost of one observation and of one read, against the window's size.

Three providers (1 to 3, in turn) report prices around 2.100 (seed 15, 2% noise)
for 8 to 512 GPUs over 1 hour to a week; the window holds 1,000, 10,000 or
100,000 observations spread evenly over its 24 hours, and each new observation
comes one spacing later, so the oldest expires and the size stays the same.

- observe: one observation submitted and the value read, as the house does for
  each SubmitObservation.
- read: the value read with nothing new, as each mark step does.

"incremental" is clearing.index (the providers' Fenwick trees, the expiry heap,
the cached value); "from_scratch" is the method before issue 15, kept here as the
baseline: the trimmed volume-weighted mean of the whole window, recomputed on
every read. Run with ``make bench``; the printed times are per call.
"""
from __future__ import annotations

import random
from collections import deque
from fractions import Fraction

import pytest

from clearing.index import NS_PER_HOUR, ClassIndex, IndexParams, Observation

T = 1_800_000_000 * 10**9
WINDOW = 24 * NS_PER_HOUR
SIZES = (1_000, 10_000, 100_000)


class FromScratch:
    """The index before issue 15: each read walks, sorts and trims the whole window."""

    def __init__(self, gpu_class: str, params: IndexParams) -> None:
        self.params = params
        self.observations: deque[Observation] = deque()

    def submit(self, obs: Observation, now_ns: int) -> None:
        oldest = now_ns - self.params.window_ns
        while self.observations and self.observations[0].observed_ns < oldest:
            self.observations.popleft()
        self.observations.append(obs)

    def value(self, now_ns: int) -> tuple[int | None, str]:
        oldest = now_ns - self.params.window_ns
        window = [o for o in self.observations if o.observed_ns >= oldest]
        if len({o.provider_id for o in window}) < self.params.min_providers:
            return None, "none"
        pairs = sorted((o.price, o.hours) for o in window)
        weights = [Fraction(h) for _, h in pairs]
        cut = Fraction(sum(h for _, h in pairs) * self.params.trim_bps, 10_000)
        for order in (range(len(pairs)), range(len(pairs) - 1, -1, -1)):
            left = cut
            for i in order:
                if left <= 0:
                    break
                taken = min(left, weights[i])
                weights[i] -= taken
                left -= taken
        return round(sum(p * w for (p, _), w in zip(pairs, weights)) / sum(weights)), "builtin"


IMPLEMENTATIONS = {"incremental": ClassIndex, "from_scratch": FromScratch}


class Feed:
    """A seeded stream of observations, a little over ``WINDOW / size`` apart (so that the
    window, which holds both its ends, holds ``size`` of them)."""

    def __init__(self, size: int) -> None:
        self.rng = random.Random(15)
        self.step = WINDOW // size + 1
        self.now = T - WINDOW
        self.count = 0

    def next(self) -> tuple[Observation, int]:
        rng = self.rng
        self.now += self.step
        self.count += 1
        price = round(2100 * (1 + rng.gauss(0, 0.02)))
        hours = rng.choice((8, 16, 32, 64, 128, 256, 512)) * rng.choice((1, 4, 12, 24, 72, 168))
        return Observation(1 + self.count % 3, price, hours, self.now), self.now


def full_window(kind: str, size: int):
    """An index of ``kind`` with ``size`` observations in its window, and their feed."""
    index = IMPLEMENTATIONS[kind]("H100", IndexParams())
    feed = Feed(size)
    for _ in range(size):
        index.submit(*feed.next())
    return index, feed


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", sorted(IMPLEMENTATIONS))
def test_observe(benchmark, kind, size):
    """One observation into a full window (the oldest expires), then the value read."""
    index, feed = full_window(kind, size)

    def observe():
        obs, now = feed.next()
        index.submit(obs, now)
        return index.value(now)

    benchmark.group = f"index-observe-{size}"
    value, source = benchmark(observe)
    assert source == "builtin" and 2000 < value < 2200
    if kind == "incremental":
        assert len(index.observations) == size
        fresh = ClassIndex("H100", IndexParams())
        for obs in index.observations:
            fresh.submit(obs, feed.now)
        assert fresh.value(feed.now) == (value, source)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", sorted(IMPLEMENTATIONS))
def test_read(benchmark, kind, size):
    """The value read with nothing new in the window (a mark step)."""
    index, feed = full_window(kind, size)
    expected = index.value(feed.now)
    benchmark.group = f"index-read-{size}"
    assert benchmark(index.value, feed.now) == expected
    assert expected[1] == "builtin" and 2000 < expected[0] < 2200
