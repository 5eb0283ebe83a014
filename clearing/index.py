"""The GPU-hour price index of each GPU class, and its daily fixings.

Index providers report rental prices (USD per GPU-hour, in ticks of 0.001)
with the hours rented. The built-in index of a class is computed as follows,
so that a lender can recompute any fixing by hand from what it publishes
(the names are ``IndexParams`` fields, their defaults in brackets):

1. Window. An observation counts while its observed time is at least
   now - ``window_ns`` [24 h]; older ones are dropped, by the time they were
   observed, whatever order they arrived in.
2. Each provider's price. A provider's observations in the window are sorted
   by price; ``trim_bps`` [10%] of that provider's hours are cut from the
   cheap end and as much from the dear end, an observation cut in part where
   a cut falls inside it; the provider's price is the exact hours-weighted
   mean of the rest, published in billionths of a tick (``price_nano``),
   rounded half to even. Its ``hours`` are all its hours in the window.
   Every step below uses only these published integers.
3. Exclusion. m is the median of the providers' prices (the mean of the two
   middle ones for an even count). A provider with
   |price_nano - m| x 10,000 > m x ``max_deviation_bps`` [2000: 20%] is
   excluded from the fixing, reported with the reason "far_from_median".
4. Enough providers. With fewer than ``min_providers`` [3] left, there is no
   built-in value.
5. Weights. Each of the n remaining providers' share is its hours over their
   total. The cap is c = ``max_share`` [exactly 1/3], or 1/n if that is
   larger (fewer than 1/c providers cannot all be within c: they weigh the
   same). A share above c is set to c and the excess redistributed to the
   uncapped providers pro rata to their hours, again until no share exceeds
   c; in exact fractions. The shares are published in parts per billion
   (``weight_ppb``): each share x 10^9 rounded down, then the parts still
   missing to 10^9 go one each to the largest remainders (equal remainders:
   the lower provider_id first), so they sum to exactly 10^9. An excluded
   provider, or any when there is no built-in value, weighs 0.
6. Value. sum(weight_ppb x price_nano) / 10^18 ticks, rounded half to even.

An observation is refused (``ObservationError``, nothing changes) if its
price is outside 1..``max_price`` ticks or more than ``max_jump_bps`` [50%]
from the value of the last fixing (when there is one with a value), widened
by as much again for each day since the last fixing made from data (builtin
or external), so a real move is let in within days and never frozen out (an
external value is held to the same bound); its
hours outside 1..``max_hours``; or its time more than ``future_ns`` ahead of
now or older than the window.

Published GPU indexes disagree with each other by tens of cents, so the
source is pluggable: ``sources`` is the fallback order of "external" (the
latest value a trusted provider fed in, if fresh), "builtin" (the method
above) and "previous" (the last fixing); with none, no value (source
"none"). A daily fixing keeps, per provider, the price, hours, weight and
exclusion above, and the parameters of steps 3 to 5, so ``recompute`` needs
nothing else; it does not keep the observations, so its size is bounded by
the number of providers. A fixing taken again the same day replaces that
day's (its "previous" is then the day before's). A day left without a fixing
gets the previous fixing's value, flagged ``carried``, when a later day is
fixed, so there is one fixing a day from the first on.

The index is maintained incrementally. Each provider keeps its hours, and
price x hours, in a sparse Fenwick tree keyed by price tick, so its trimmed
mean takes two O(log max_price) searches; the class keeps a heap of its
observations by observed time, so each expires in O(log n). Adding or
expiring an observation forgets the cached price of that provider and the
cached combination; a read recomputes only what was forgotten, and the k
providers are recombined (k is small). A read with nothing due returns the
cached value without touching the window. Expiry runs when ``submit``,
``value`` or ``fix`` is called with a later time: time only moves forward.

Everything here is deterministic: time comes in as arguments (ns since the
epoch), never from a clock.
"""
from __future__ import annotations

import datetime
from bisect import bisect_left
from fractions import Fraction
from heapq import heappop, heappush

import msgspec

from engine.messages import RejectReason
from engine.prices import MAX_PRICE_TICKS

NS_PER_HOUR = 3600 * 10**9
NS_PER_DAY = 24 * NS_PER_HOUR
SOURCES = ("external", "builtin", "previous")
NANO = 10**9                   # a provider's price is published in billionths of a tick
PPB = 10**9                    # the weights are published in parts per billion
BPS = 10_000
FAR_FROM_MEDIAN = "far_from_median"
ONE_DAY = datetime.timedelta(days=1)


class ObservationError(ValueError):
    """An observation or request the index refuses; ``reason`` and ``field`` go on the wire."""

    def __init__(self, reason: RejectReason, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.field = field


def parse_share(text: str) -> Fraction:
    """Return ``max_share`` as an exact fraction in (0, 1], e.g. "1/3" or "0.25".

    Raises:
        ValueError: Not a fraction, or outside (0, 1].
    """
    try:
        share = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"max_share must be a fraction such as \"1/3\", not {text!r}") from None
    if not 0 < share <= 1:
        raise ValueError(f"max_share must be above 0 and at most 1, not {text!r}")
    return share


class IndexParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How one class's index is computed (the module's docstring, README "Index")."""
    window_ns: int = 24 * NS_PER_HOUR              # observations older than this are stale
    trim_bps: int = 1000                           # of a provider's hours, from each end (10%)
    min_providers: int = 3                         # left after exclusion
    max_deviation_bps: int = 2000                  # from the median of the providers' prices
    max_share: str = "1/3"                         # of the weights, per provider; exact
    max_jump_bps: int = 5000                       # an observation from the last fixing
    max_price: int = 100_000                       # ticks ($100/GPU-hour): above is absurd
    max_hours: int = 10_000_000                    # in one observation
    future_ns: int = 5 * 10**9                     # how far ahead of the clock a timestamp may be
    external_max_age_ns: int = 24 * NS_PER_HOUR    # an external value older than this is ignored
    sources: tuple[str, ...] = SOURCES             # the fallback order

    def __post_init__(self) -> None:
        if not 0 <= self.trim_bps < 5000:
            raise ValueError("trim_bps must be 0..4999: trimming half from each end leaves "
                             "nothing")
        if self.min_providers < 1 or self.window_ns <= 0 or self.external_max_age_ns <= 0:
            raise ValueError("min_providers, window_ns and external_max_age_ns must be positive")
        if self.max_deviation_bps < 1 or self.max_jump_bps < 1:
            raise ValueError("max_deviation_bps and max_jump_bps must be positive")
        parse_share(self.max_share)
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


class ProviderInput(msgspec.Struct, frozen=True, gc=False):
    """One provider's part in a fixing: steps 2 to 5 of the method."""
    provider_id: int
    price_nano: int                # its trimmed mean, in billionths of a tick
    hours: int                     # all its hours in the window
    weight_ppb: int                # parts per billion of the value; 0 if excluded or no value
    excluded: bool = False
    reason: str | None = None      # why it was excluded: "far_from_median"


class Fixing(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """A daily fixing and what it was made from. ``value`` is in ticks; None if no source had one.

    ``providers`` are the built-in method's inputs at the fixing, whatever the
    source (a fallback shows why the built-in value was missing); with the
    method's parameters below they give the built-in value again
    (``ClassIndex.recompute``).
    """
    gpu_class: str
    date: datetime.date
    value: int | None
    source: str                    # "external", "builtin", "previous" or "none"
    fixed_ns: int
    carried: bool = False          # a day nobody fixed: the previous fixing's value
    providers: tuple[ProviderInput, ...] = ()
    external: External | None = None
    min_providers: int
    max_deviation_bps: int
    max_share: str


def combine(inputs: list[tuple[int, int, int]], min_providers: int, max_deviation_bps: int,
            max_share: Fraction) -> tuple[int | None, tuple[ProviderInput, ...]]:
    """Steps 3 to 6: the providers' prices and hours to the value and each one's part.

    Args:
        inputs: (provider_id, price_nano, hours) of each provider, by provider_id.
        min_providers, max_deviation_bps, max_share: The method's parameters.

    Returns:
        (value in ticks or None, a ProviderInput per provider, in the order given).
    """
    if not inputs:
        return None, ()
    prices = sorted(price for _, price, _ in inputs)
    n = len(prices)
    median2 = prices[(n - 1) // 2] + prices[n // 2]           # twice the median, an integer
    far = {provider for provider, price, _ in inputs
           if abs(2 * price - median2) * BPS > median2 * max_deviation_bps}
    kept = [(provider, hours) for provider, _, hours in inputs if provider not in far]
    weights: dict[int, int] = {}
    value = None
    if len(kept) >= min_providers:
        weights = parts_per_billion(capped_shares(kept, max(max_share, Fraction(1, len(kept)))))
        total = sum(weights[provider] * price for provider, price, _ in inputs
                    if provider in weights)
        value = round(Fraction(total, NANO * PPB))            # half to even
    return value, tuple(
        ProviderInput(provider, price, hours, weights.get(provider, 0), provider in far,
                      FAR_FROM_MEDIAN if provider in far else None)
        for provider, price, hours in inputs)


def capped_shares(hours: list[tuple[int, int]], cap: Fraction) -> dict[int, Fraction]:
    """Shares pro rata to hours, none above ``cap`` (>= 1/len(hours)): step 5, exactly."""
    at_cap: set[int] = set()
    while True:
        free = [(provider, h) for provider, h in hours if provider not in at_cap]
        left = 1 - cap * len(at_cap)
        total = sum(h for _, h in free)
        over = {provider for provider, h in free if left * h > cap * total}
        if not over:
            shares = {provider: left * h / total for provider, h in free}
            shares.update((provider, cap) for provider in at_cap)
            return shares
        at_cap |= over


def parts_per_billion(shares: dict[int, Fraction]) -> dict[int, int]:
    """Exact shares summing to 1 as parts per billion summing to 10^9 (largest remainder)."""
    parts = {provider: share.numerator * PPB // share.denominator
             for provider, share in shares.items()}
    remainders = sorted(shares, key=lambda provider: (parts[provider] - shares[provider] * PPB,
                                                      provider))
    for provider in remainders[:PPB - sum(parts.values())]:
        parts[provider] += 1
    return parts


class ProviderBook:
    """One provider's observations in the window: its hours by price, for its trimmed mean.

    ``tree`` is a Fenwick tree over price ticks 1..size (a power of two), kept
    sparse in a dict (node -> [hours, price x hours]; a node with no hours is
    absent), in Python ints so nothing overflows.
    """
    __slots__ = ("hours", "count", "tree")

    def __init__(self) -> None:
        self.hours = 0            # all its hours in the window
        self.count = 0            # its observations in the window
        self.tree: dict[int, list[int]] = {}

    def add(self, price: int, hours: int, size: int) -> None:
        """Add an observation of ``hours`` at ``price`` ticks; negative hours take one away."""
        tree = self.tree
        amount = price * hours
        node = price
        while node <= size:
            sums = tree.get(node)
            if sums is None:
                tree[node] = [hours, amount]
            elif sums[0] + hours:
                sums[0] += hours
                sums[1] += amount
            else:
                del tree[node]
            node += node & -node
        self.hours += hours
        self.count += 1 if hours > 0 else -1

    def cheapest(self, hours_bps: int, size: int) -> int:
        """Return BPS x the price x hours of its cheapest ``hours_bps`` / BPS hours (ticks)."""
        tree = self.tree
        node, left, amount = 0, hours_bps, 0
        step = size
        while step:
            sums = tree.get(node + step)
            below = sums[0] * BPS if sums is not None else 0
            if below < left:
                node += step
                left -= below
                if sums is not None:
                    amount += sums[1]
            step >>= 1
        return amount * BPS + left * (node + 1)     # the rest at the next price, node + 1

    def price_nano(self, trim_bps: int, size: int) -> int:
        """Step 2: its trimmed hours-weighted mean, in billionths of a tick, half to even."""
        cut = self.hours * trim_bps
        kept = self.cheapest(self.hours * BPS - cut, size) - self.cheapest(cut, size)
        return round(Fraction(kept * NANO, self.hours * BPS - 2 * cut))


class ClassIndex:
    """One GPU class: its observations in the window, its external value and its fixings."""

    # Filled by reads as well as by commands: not part of the state (gateway.storage.recovery).
    CACHES = ("_prices", "_built")

    def __init__(self, gpu_class: str, params: IndexParams) -> None:
        self.gpu_class = gpu_class
        self.params = params
        self.external: External | None = None
        self.fixings: list[Fixing] = []            # one a day from the first, oldest first
        self._heap: list[tuple[int, int, int, int, int]] = []   # (observed_ns, seq, provider,
        self._seq = 0                                           #  price, hours)
        self._providers: dict[int, ProviderBook] = {}
        self._size = 1 << (params.max_price - 1).bit_length()  # the Fenwick trees' tick range
        self._share = parse_share(params.max_share)
        self._prices: dict[int, int] = {}          # provider -> its price_nano, while unchanged
        self._built: tuple[int | None, tuple[ProviderInput, ...]] | None = None

    def __setstate__(self, state: dict) -> None:
        """Load a pickled index; one pickled before this method's structures is refused, so a
        snapshot holding it fails to load and recovery replays the journal instead."""
        if "_heap" not in state:
            raise TypeError("a ClassIndex pickled by an older version (observations in a list)")
        self.__dict__.update(state)

    # -- Input ----------------------------------------------------------------------------

    def submit(self, obs: Observation, now_ns: int) -> None:
        """Add an observation, after dropping those that left the window by ``now_ns``.

        Raises:
            ObservationError: invalid_observation (price or hours out of range, or the price
                too far from the last fixing), timestamp_in_future, stale_observation.
                Nothing changes.
        """
        p = self.params
        if not 1 <= obs.price <= p.max_price:
            raise ObservationError(RejectReason.INVALID_OBSERVATION, "price must be 0.001.."
                                   f"{p.max_price / 1000:.3f} USD per GPU-hour", "price")
        self._check_jump(obs.price, now_ns)
        if not 1 <= obs.hours <= p.max_hours:
            raise ObservationError(RejectReason.INVALID_OBSERVATION,
                                   f"hours must be 1..{p.max_hours}", "hours")
        self._check_time(obs.observed_ns, now_ns)
        self._expire(now_ns)
        self._seq += 1
        heappush(self._heap, (obs.observed_ns, self._seq, obs.provider_id, obs.price, obs.hours))
        book = self._providers.get(obs.provider_id)
        if book is None:
            book = self._providers[obs.provider_id] = ProviderBook()
        book.add(obs.price, obs.hours, self._size)
        self._changed(obs.provider_id)

    def _check_jump(self, price: int, now_ns: int) -> None:
        """Refuse a price too far from the last fixing (jump_bps)."""
        last = self.fixings[-1].value if self.fixings else None
        jump = self.jump_bps(now_ns)
        if last is not None and abs(price - last) * BPS > last * jump:
            raise ObservationError(
                RejectReason.INVALID_OBSERVATION,
                f"price must be within {jump / 100:g}% (max_jump_bps, "
                f"widened by as much a day without a fixing from data) of the last fixing, "
                f"{last / 1000:.3f} USD per GPU-hour", "price")

    def jump_bps(self, now_ns: int) -> int:
        """How far an observation may be from the last fixing: ``max_jump_bps``, and as much
        again for each day since the last fixing made from data (builtin or external), so a
        real move the bound first refuses is let in within days, never frozen out."""
        today = datetime.date(1970, 1, 1) + datetime.timedelta(days=now_ns // NS_PER_DAY)
        for fixing in reversed(self.fixings):
            if fixing.source in ("builtin", "external"):
                days = max(0, (today - fixing.date).days)
                return self.params.max_jump_bps * (1 + days)
        return self.params.max_jump_bps

    def set_external(self, ext: External, now_ns: int) -> None:
        """Take an external index value (the gateway checked that the provider is trusted)."""
        if not 1 <= ext.value <= self.params.max_price:
            raise ObservationError(RejectReason.INVALID_OBSERVATION,
                                   "the external value is out of range", "price")
        self._check_jump(ext.value, now_ns)
        self._check_time(ext.observed_ns, now_ns)
        if self.external is None or ext.observed_ns >= self.external.observed_ns:
            self.external = ext         # an older value arriving late does not replace a newer

    def _check_time(self, observed_ns: int, now_ns: int) -> None:
        if observed_ns > now_ns + self.params.future_ns:
            raise ObservationError(RejectReason.TIMESTAMP_IN_FUTURE,
                                   "the observation's time is ahead of the server clock", "time")
        if observed_ns < now_ns - self.params.window_ns:
            raise ObservationError(RejectReason.STALE_OBSERVATION,
                                   "the observation is older than the index window", "time")

    def moves_by(self, now_ns: int) -> bool:
        """Whether an observation leaves the window by ``now_ns`` (which changes the value,
        or may)."""
        heap = self._heap
        return bool(heap) and heap[0][0] < now_ns - self.params.window_ns

    def _expire(self, now_ns: int) -> None:
        heap = self._heap
        oldest = now_ns - self.params.window_ns
        while heap and heap[0][0] < oldest:
            _, _, provider, price, hours = heappop(heap)
            book = self._providers[provider]
            book.add(price, -hours, self._size)
            if not book.count:
                del self._providers[provider]
            self._changed(provider)

    def _changed(self, provider: int) -> None:
        self._prices.pop(provider, None)
        self._built = None

    # -- Output ---------------------------------------------------------------------------

    @property
    def observations(self) -> list[Observation]:
        """The observations in the window, oldest first (walks it: for inspection, not marks)."""
        return [Observation(provider, price, hours, observed_ns)
                for observed_ns, _, provider, price, hours in sorted(self._heap)]

    def builtin(self) -> tuple[int | None, tuple[ProviderInput, ...]]:
        """The built-in value of the window as last expired, and each provider's part."""
        if self._built is None:
            prices, p = self._prices, self.params
            inputs = []
            for provider in sorted(self._providers):
                book = self._providers[provider]
                price = prices.get(provider)
                if price is None:
                    price = prices[provider] = book.price_nano(p.trim_bps, self._size)
                inputs.append((provider, price, book.hours))
            self._built = combine(inputs, p.min_providers, p.max_deviation_bps, self._share)
        return self._built

    def value(self, now_ns: int) -> tuple[int | None, str]:
        """Return (value in ticks, the source that gave it), following the fallback order,
        after dropping what left the window by ``now_ns``: for commands."""
        self._expire(now_ns)
        return self.peek(now_ns)

    def peek(self, now_ns: int) -> tuple[int | None, str]:
        """The same, over the window as the last command left it: for reads outside the
        command stream (the gateway), which must not change the state a replay rebuilds.
        The scheduler's mark step, a command, comes every second."""
        return self._evaluate(now_ns, self.fixings[-1] if self.fixings else None)

    def _evaluate(self, now_ns: int, previous: Fixing | None) -> tuple[int | None, str]:
        for source in self.params.sources:
            if source == "external":
                ext = self.external
                if ext is not None and ext.observed_ns >= now_ns - self.params.external_max_age_ns:
                    return ext.value, source
            elif source == "builtin":
                value = self.builtin()[0]
                if value is not None:
                    return value, source
            elif previous is not None and previous.value is not None:
                return previous.value, source
        return None, "none"

    # -- Fixings --------------------------------------------------------------------------

    def fix(self, date: datetime.date, now_ns: int) -> Fixing:
        """Take the fixing of ``date`` now, keep it and return it.

        A fixing taken again the same day replaces that day's ("previous" is then
        the day before's). Days between the last fixing and ``date`` get carried
        fixings first, so there is one a day from the first on.

        Raises:
            ValueError: ``date`` is before the last fixing's (time only moves forward).
        """
        fixings = self.fixings
        if fixings and date < fixings[-1].date:
            raise ValueError(f"{self.gpu_class} is fixed up to {fixings[-1].date}, not {date}")
        if fixings and fixings[-1].date == date:
            fixings.pop()
        self._expire(now_ns)
        previous = fixings[-1] if fixings else None
        value, source = self._evaluate(now_ns, previous)
        if previous is not None:
            day = previous.date + ONE_DAY
            while day < date:
                fixings.append(self._fixing(day, previous.value, now_ns, carried=True))
                day += ONE_DAY
        fixing = self._fixing(date, value, now_ns, source=source, providers=self.builtin()[1],
                              external=self.external if source == "external" else None)
        fixings.append(fixing)
        return fixing

    def _fixing(self, date: datetime.date, value: int | None, now_ns: int, *,
                source: str = "previous", carried: bool = False,
                providers: tuple[ProviderInput, ...] = (),
                external: External | None = None) -> Fixing:
        p = self.params
        return Fixing(gpu_class=self.gpu_class, date=date, value=value,
                      source=source if value is not None else "none", fixed_ns=now_ns,
                      carried=carried, providers=providers, external=external,
                      min_providers=p.min_providers, max_deviation_bps=p.max_deviation_bps,
                      max_share=p.max_share)

    def daily_fixings(self, start: datetime.date, end: datetime.date) -> list[Fixing]:
        """The fixings dated in [start, end), in date order (days not fixed yet are absent)."""
        fixings = self.fixings
        return fixings[bisect_left(fixings, start, key=_date):
                       bisect_left(fixings, end, key=_date)]

    def recompute(self, fixing: Fixing) -> int | None:
        """Recompute a fixing from its record alone: equal to its value unless it was altered."""
        if fixing.source == "builtin":
            return combine([(p.provider_id, p.price_nano, p.hours) for p in fixing.providers],
                           fixing.min_providers, fixing.max_deviation_bps,
                           parse_share(fixing.max_share))[0]
        if fixing.source == "external":
            return fixing.external.value
        return fixing.value


def _date(fixing: Fixing) -> datetime.date:
    return fixing.date
