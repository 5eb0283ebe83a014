"""The GPU-hour price index of each GPU class, and its daily fixings.

Index providers report rental prices (USD per GPU-hour, in ticks of 0.001)
with the hours rented. The built-in index of a class is the volume-weighted
mean of the observations in a window, with the extremes trimmed:

1. Keep the observations made within ``window_ns`` before now (older ones are
   stale; a timestamp ahead of the clock was refused when it was submitted).
2. If fewer than ``min_providers`` distinct providers remain, there is no
   built-in value (the next source in the fallback order is used).
3. Sort by price; remove ``trim_bps`` of the total hours from the cheap end
   and as much from the dear end, cutting an observation in part where the
   cut falls inside it.
4. The value is sum(price x hours left) / sum(hours left), exact, then
   rounded to the tick, half to even.

Published GPU indexes disagree with each other by tens of cents, so the
source is pluggable: ``sources`` is the fallback order of "external" (the
latest value a trusted provider fed in, if fresh), "builtin" (the method
above) and "previous" (the last fixing). A fixing keeps the observations or
the external value it was made from, so it can be recomputed and audited.

Everything here is deterministic: time comes in as arguments (ns since the
epoch), never from a clock.
"""
from __future__ import annotations

import datetime
from fractions import Fraction

import msgspec

from engine.prices import MAX_PRICE_TICKS

NS_PER_HOUR = 3600 * 10**9
SOURCES = ("external", "builtin", "previous")


class ObservationError(ValueError):
    """An observation or request the index refuses; ``reason`` and ``field`` go on the wire."""

    def __init__(self, reason: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.field = field


class IndexParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How one class's index is computed (README "Index")."""
    window_ns: int = 24 * NS_PER_HOUR              # observations older than this are stale
    trim_bps: int = 1000                           # of the hours, from each end (10%)
    min_providers: int = 3                         # distinct providers in the window
    max_price: int = 100_000                       # ticks ($100/GPU-hour): above is absurd
    max_hours: int = 10_000_000                    # in one observation
    future_ns: int = 5 * 10**9                     # how far ahead of the clock a timestamp may be
    external_max_age_ns: int = 24 * NS_PER_HOUR    # an external value older than this is ignored
    sources: tuple[str, ...] = SOURCES             # the fallback order

    def __post_init__(self) -> None:
        if not 0 <= self.trim_bps < 5000:
            raise ValueError("trim_bps must be 0..4999: trimming half from each end leaves nothing")
        if self.min_providers < 1 or self.window_ns <= 0 or self.external_max_age_ns <= 0:
            raise ValueError("min_providers, window_ns and external_max_age_ns must be positive")
        if not 1 <= self.max_price <= MAX_PRICE_TICKS or self.max_hours < 1:
            raise ValueError(f"max_price must be 1..{MAX_PRICE_TICKS} ticks, max_hours >= 1")
        if not self.sources or len(set(self.sources)) != len(self.sources) or \
                not set(self.sources) <= set(SOURCES):
            raise ValueError(f"sources must be distinct names out of {SOURCES}")


class Observation(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One rental: ``hours`` GPU-hours at ``price`` ticks per GPU-hour, reported by a provider."""
    provider_id: int
    price: int
    hours: int
    observed_ns: int


class External(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """An index value fed in from outside by a trusted provider."""
    provider_id: int
    value: int
    observed_ns: int


class Fixing(msgspec.Struct, frozen=True, gc=False):
    """A daily fixing and what it was made from. ``value`` is in ticks; None if no source had one."""
    gpu_class: str
    date: datetime.date
    value: int | None
    source: str                    # "external", "builtin", "previous" or "none"
    fixed_ns: int
    observations: tuple[Observation, ...] = ()
    external: External | None = None


def round_half_even(value: Fraction) -> int:
    """Round an exact value to an integer, half to even (the index's one rounding)."""
    return round(value)        # Fraction.__round__ rounds half to even


def trimmed_vwap(observations, trim_bps: int) -> Fraction | None:
    """Return the volume-weighted mean price with ``trim_bps`` of the hours cut from each end.

    Args:
        observations: (price, hours) pairs or Observations, in any order.

    Returns:
        The exact mean in ticks, or None when there are no hours.
    """
    pairs = sorted((o.price, o.hours) if isinstance(o, Observation) else tuple(o)
                   for o in observations)
    total = sum(h for _, h in pairs)
    if total == 0:
        return None
    cut = Fraction(total * trim_bps, 10_000)
    weights = [Fraction(h) for _, h in pairs]
    for order in (range(len(pairs)), range(len(pairs) - 1, -1, -1)):
        left = cut
        for i in order:
            if left <= 0:
                break
            taken = min(left, weights[i])
            weights[i] -= taken
            left -= taken
    kept = sum(weights)
    return sum(p * w for (p, _), w in zip(pairs, weights)) / kept


class ClassIndex:
    """One GPU class: its recent observations, its external value and its fixings."""

    def __init__(self, gpu_class: str, params: IndexParams) -> None:
        self.gpu_class = gpu_class
        self.params = params
        self.observations: list[Observation] = []
        self.external: External | None = None
        self.fixings: list[Fixing] = []

    def submit(self, obs: Observation, now_ns: int) -> None:
        """Add an observation; stale ones are dropped as they age out.

        Raises:
            ObservationError: invalid_observation (price or hours out of range),
                timestamp_in_future, stale_observation.
        """
        p = self.params
        if not 1 <= obs.price <= p.max_price:
            raise ObservationError("invalid_observation", f"price must be 0.001..{p.max_price / 1000:.3f}"
                              " USD per GPU-hour", "price")
        if not 1 <= obs.hours <= p.max_hours:
            raise ObservationError("invalid_observation", f"hours must be 1..{p.max_hours}", "hours")
        self._check_time(obs.observed_ns, now_ns)
        self._forget(now_ns)
        self.observations.append(obs)

    def set_external(self, ext: External, now_ns: int) -> None:
        """Take an external index value (the gateway checked that the provider is trusted)."""
        if not 1 <= ext.value <= self.params.max_price:
            raise ObservationError("invalid_observation", "the external value is out of range", "price")
        self._check_time(ext.observed_ns, now_ns)
        if self.external is None or ext.observed_ns >= self.external.observed_ns:
            self.external = ext         # an older value arriving late does not replace a newer

    def _check_time(self, observed_ns: int, now_ns: int) -> None:
        if observed_ns > now_ns + self.params.future_ns:
            raise ObservationError("timestamp_in_future", "the observation's time is ahead of the "
                              "server clock", "time")
        if observed_ns < now_ns - self.params.window_ns:
            raise ObservationError("stale_observation", "the observation is older than the index "
                              "window", "time")

    def _forget(self, now_ns: int) -> None:
        oldest = now_ns - self.params.window_ns
        if self.observations and self.observations[0].observed_ns < oldest:
            self.observations = [o for o in self.observations if o.observed_ns >= oldest]

    def window(self, now_ns: int) -> tuple[Observation, ...]:
        """The observations that count at ``now_ns``, in submission order."""
        oldest = now_ns - self.params.window_ns
        return tuple(o for o in self.observations
                     if oldest <= o.observed_ns <= now_ns + self.params.future_ns)

    def builtin(self, observations) -> int | None:
        """The built-in value of these observations, or None with too few providers."""
        if len({o.provider_id for o in observations}) < self.params.min_providers:
            return None
        mean = trimmed_vwap(observations, self.params.trim_bps)
        return None if mean is None else round_half_even(mean)

    def value(self, now_ns: int) -> tuple[int | None, str]:
        """Return (value in ticks, the source that gave it), following the fallback order."""
        value, source, _, _ = self._evaluate(now_ns)
        return value, source

    def _evaluate(self, now_ns: int):
        window = None
        for source in self.params.sources:
            if source == "external":
                ext = self.external
                if ext is not None and ext.observed_ns >= now_ns - self.params.external_max_age_ns:
                    return ext.value, source, (), ext
            elif source == "builtin":
                window = self.window(now_ns)
                value = self.builtin(window)
                if value is not None:
                    return value, source, window, None
            elif self.fixings and self.fixings[-1].value is not None:
                return self.fixings[-1].value, source, (), None
        return None, "none", window or (), None

    def fix(self, date: datetime.date, now_ns: int) -> Fixing:
        """Take the fixing of ``date`` now, keep it with its inputs, and return it."""
        value, source, observations, external = self._evaluate(now_ns)
        fixing = Fixing(self.gpu_class, date, value, source, now_ns,
                        observations if source == "builtin" else (), external)
        if self.fixings and self.fixings[-1].date == date:
            self.fixings[-1] = fixing       # fixed again the same day: one fixing per date
        else:
            self.fixings.append(fixing)
        return fixing

    def recompute(self, fixing: Fixing) -> int | None:
        """Recompute a fixing from what it kept: equal to its value unless it was tampered with."""
        if fixing.source == "builtin":
            return self.builtin(fixing.observations)
        if fixing.source == "external":
            return fixing.external.value
        return fixing.value
