"""The hedge plan: what the forward curve is worth to a lender (DESIGN.md §8).

For a cluster (class, GPU count, first month, horizon), its costs and expected
utilisation, its debt (an annuity) and a hedge ratio, the plan gives per month
the revenue, the cash flow available for debt service (CFADS) and the DSCR in a
median, a P90 and a P99 price scenario, hedged and unhedged; the debt the cluster
can carry at the target DSCRs; the hedge the targets need; the initial margin the
hedge ties up (clearing's own scan) and the variation margin a P99 rally could
call; and what selling the hedge on the books would fetch now.

It is arithmetic anyone can redo by hand from the inputs and the forwards and
times it returns: every figure is computed from the returned, rounded tau and F
(float64: it books nothing). It reads the listing, the marks, the margin scan and
the books through what it is given, and changes nothing.

For each month k from ``start``:

    h_k = UTC hours in the month; G_k = N h_k
    F_k = the mark of the shortest listed tenor containing the month (month, quarter,
          year); past the listed curve the last listed F, only with ``extrapolate``
    tau_k = (middle of the month - now) in years of 365.25 days, at least 0
    Q_k = floor(hedge_ratio N) where a contract still trading covers the month and lies
          wholly inside the plan (its ``hedge_symbol``), else 0
    S_k(z) = F_k exp(-vol^2 tau_k / 2 + z vol sqrt(tau_k)),  z: p50 0, p90 -1.28.., p99 -2.32..
    Revenue_k(z) = u G_k (S_k(z) + basis) + Q_k h_k (F_k - S_k(z))
    CFADS_k(z) = Revenue_k(z) - opex G_k
    DS = P i / (1 - (1 + i)^-T), i = rate / 12 (P / T when i = 0), for k <= T
    DSCR_k(z) = CFADS_k(z) / DS
"""
from __future__ import annotations

import datetime
import math
from fractions import Fraction
from typing import Callable, NamedTuple

import msgspec

from engine.reasons import RejectReason

SCENARIOS = (("p50", 0.0), ("p90", -1.2815515655), ("p99", -2.3263478740))
Z_RALLY = 2.3263478740
TENORS = ("month", "quarter", "year")        # shortest first: weeks do not make the curve
YEAR_NS = 365.25 * 86_400 * 10**9
MAX_MONTHS = 60


class PlanError(ValueError):
    """An input the plan cannot use: ``reason`` (invalid_params or horizon_beyond_curve)
    and the ``field`` at fault."""

    def __init__(self, reason: RejectReason, field: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.field = reason, field


class Contract(NamedTuple):
    """What the plan reads of one listed contract of the class."""
    symbol: str
    tenor: str
    start: datetime.date
    end: datetime.date             # exclusive
    mark: int                      # ticks (thousandths of a USD per GPU-hour)
    trading: bool                  # can still be sold (before its last trading time)


class Debt(msgspec.Struct, frozen=True):
    principal: float               # USD
    rate: float                    # annual, 0.08 = 8%
    tenor: int                     # months of annuity payments


class Inputs(msgspec.Struct, frozen=True, kw_only=True):
    gpus: int
    start: datetime.date           # the first day of the first month
    months: int
    opex: float                    # USD per GPU-hour of the whole cluster, rented or not
    debt: Debt
    vol: float                     # annual
    utilisation: float = 0.85
    basis: float = 0.0             # the operator's rental price minus the index, USD/GPU-h
    hedge_ratio: float = 0.0
    dscr_p50: float = 1.30
    dscr_p99: float = 1.00
    extrapolate: bool = False


# (field, low, high, low inclusive): what each number may be.
_RANGES = (
    ("gpus", 1, 10_000_000, True), ("months", 1, MAX_MONTHS, True),
    ("utilisation", 0.0, 1.0, True), ("basis", -100.0, 100.0, True),
    ("opex", 0.0, 1000.0, True), ("hedge_ratio", 0.0, 1.0, True),
    # At most 150% a year: beyond sigma sqrt(tau) = 4.65 the "P99 rally" falls below the
    # forward (vm_stress turns negative); a plan starts inside the listed curve (3 years)
    # and runs 5, so tau stays under 8.1 years and 1.5 sqrt(8.1) = 4.27.
    ("vol", 0.0, 1.5, True),
    ("dscr_p50", 0.0, 100.0, False), ("dscr_p99", 0.0, 100.0, False),
)


def check(inputs: Inputs) -> None:
    """Refuse what the plan cannot use, naming the field.

    Raises:
        PlanError: invalid_params.
    """
    def bad(field: str, message: str) -> PlanError:
        return PlanError(RejectReason.INVALID_PARAMS, field, message)
    for field, low, high, inclusive in _RANGES:
        value = getattr(inputs, field)
        if not math.isfinite(value) or value > high or value < low or (
                not inclusive and value == low):
            side = "[" if inclusive else "("
            raise bad(field, f"{field} must be in {side}{low}, {high}], got {value}")
    debt = inputs.debt
    if not (math.isfinite(debt.principal) and 0 < debt.principal <= 1e13):
        raise bad("debt.principal", "principal must be more than 0 and at most 1e13 USD")
    if not (math.isfinite(debt.rate) and 0 <= debt.rate <= 1):
        raise bad("debt.rate", f"rate must be 0..1 (0% to 100% a year), got {debt.rate}")
    if not 1 <= debt.tenor <= inputs.months:
        raise bad("debt.tenor", f"tenor must be 1..{inputs.months} months (the plan's), "
                  f"got {debt.tenor}")
    if inputs.start.day != 1:
        raise bad("start", "start is a month: YYYY-MM")
    if inputs.start.year * 12 + inputs.start.month - 1 + inputs.months > 9999 * 12 + 11:
        raise bad("months", "the plan runs past the year 9999")


class Month(NamedTuple):
    start: datetime.date
    end: datetime.date
    hours: int
    symbol: str | None             # where F comes from (None: extrapolated)
    source: str                    # month, quarter, year or extrapolated
    hedge_symbol: str | None
    forward: float                 # USD per GPU-hour, from ticks
    tau: float                     # years, rounded to 9 decimals
    prices: dict[str, float]       # S_k(z) per scenario


class Outcome(NamedTuple):
    """Per scenario, per month: revenue, CFADS and DSCR (None past the tenor)."""
    revenue: list[dict[str, float]]
    cfads: list[dict[str, float]]
    dscr: list[dict[str, float] | None]
    min_dscr: dict[str, float]
    debt_capacity: float


def whole(share: float, count: int) -> int:
    """floor(share x count) as the decimal the share was given as (0.29 x 100 = 29, where
    binary floating point says 28.999999999999996): the contracts anyone redoing the plan
    by hand would get."""
    return math.floor(Fraction(repr(share)) * count)


def month_name(day: datetime.date) -> str:
    """"YYYY-MM", the year in four digits whatever the platform's strftime does."""
    return f"{day.year:04d}-{day.month:02d}"


def months_of(start: datetime.date, count: int) -> list[tuple[datetime.date, datetime.date]]:
    out = []
    day = start
    for _ in range(count):
        after = datetime.date(day.year + day.month // 12, day.month % 12 + 1, 1)
        out.append((day, after))
        day = after
    return out


def calendar(inputs: Inputs, contracts: list[Contract], now_ns: int) -> list[Month]:
    """Each month's hours, forward, time and hedge instrument.

    Raises:
        PlanError: horizon_beyond_curve past the listed curve without ``extrapolate``;
            invalid_params (start) before it.
    """
    plan = months_of(inputs.start, inputs.months)
    plan_start, plan_end = plan[0][0], plan[-1][1]
    rank = {t: k for k, t in enumerate(TENORS)}
    curve = sorted((c for c in contracts if c.tenor in rank),
                   key=lambda c: (rank[c.tenor], c.start))
    out: list[Month] = []
    last: Month | None = None
    for first, after in plan:
        covering = [c for c in curve if c.start <= first and c.end >= after]
        source = covering[0] if covering else None
        hedge = next((c for c in covering if c.trading and c.start >= plan_start
                      and c.end <= plan_end), None)
        middle = datetime.datetime.combine(first, datetime.time(), datetime.timezone.utc) + (
            after - first) / 2
        tau = round(max(0.0, (middle.timestamp() * 10**9 - now_ns) / YEAR_NS), 9)
        if source is not None:
            symbol, tenor, forward = source.symbol, source.tenor, source.mark / 1000
        elif last is None and not any(c.end <= first for c in curve):
            raise PlanError(RejectReason.INVALID_PARAMS, "start",
                            f"{month_name(first)} is before the listed curve of the class")
        elif last is None:
            raise PlanError(RejectReason.HORIZON_BEYOND_CURVE, "start",
                            f"{month_name(first)} is past the listed curve: nothing to "
                            "extrapolate from")
        elif not inputs.extrapolate:
            raise PlanError(RejectReason.HORIZON_BEYOND_CURVE, "months",
                            f"{month_name(first)} is past the listed curve; shorten the plan "
                            "or pass extrapolate")
        else:
            symbol, tenor, forward = None, "extrapolated", last.forward
        month = Month(first, after, (after - first).days * 24, symbol, tenor,
                      hedge.symbol if hedge else None, forward, tau,
                      scenario_prices(forward, tau, inputs.vol))
        out.append(month)
        if source is not None:
            last = month
    return out


def scenario_prices(forward: float, tau: float, vol: float) -> dict[str, float]:
    """S(z) = F exp(-vol^2 tau / 2 + z vol sqrt(tau)) in each scenario."""
    return {name: forward * math.exp(-vol * vol * tau / 2 + z * vol * math.sqrt(tau))
            for name, z in SCENARIOS}


def annuity_factor(debt: Debt) -> float:
    """Principal per unit of monthly debt service: (1 - (1 + i)^-T) / i, i = rate / 12 (T
    when i = 0), evaluated so a tiny rate does not lose it to rounding."""
    i = debt.rate / 12
    return debt.tenor if i == 0 else -math.expm1(-debt.tenor * math.log1p(i)) / i


def debt_service(debt: Debt) -> float:
    """The annuity's monthly payment: P i / (1 - (1 + i)^-T) (P / T when i = 0)."""
    return debt.principal / annuity_factor(debt)


def outcome(inputs: Inputs, months: list[Month], lots: list[int]) -> Outcome:
    """The scenarios with ``lots`` contracts sold in each month (0 where unhedged)."""
    ds = debt_service(inputs.debt)
    tenor, u, basis, opex, gpus = (inputs.debt.tenor, inputs.utilisation, inputs.basis,
                                   inputs.opex, inputs.gpus)
    revenue, cfads, dscr = [], [], []
    lowest = [math.inf, math.inf, math.inf]        # CFADS within the tenor, per scenario
    for k, (month, q) in enumerate(zip(months, lots), start=1):
        # Written out per scenario: the plan is asked on the event loop, so it is kept lean.
        s50, s90, s99 = month.prices["p50"], month.prices["p90"], month.prices["p99"]
        gpu_hours = gpus * month.hours
        rented, sold, forward = u * gpu_hours, q * month.hours, month.forward
        r50 = rented * (s50 + basis) + sold * (forward - s50)
        r90 = rented * (s90 + basis) + sold * (forward - s90)
        r99 = rented * (s99 + basis) + sold * (forward - s99)
        cost = opex * gpu_hours
        c50, c90, c99 = r50 - cost, r90 - cost, r99 - cost
        revenue.append({"p50": r50, "p90": r90, "p99": r99})
        cfads.append({"p50": c50, "p90": c90, "p99": c99})
        if k <= tenor:
            dscr.append({"p50": c50 / ds, "p90": c90 / ds, "p99": c99 / ds})
            lowest = [min(lowest[0], c50), min(lowest[1], c90), min(lowest[2], c99)]
        else:
            dscr.append(None)
    min_dscr = {"p50": lowest[0] / ds, "p90": lowest[1] / ds, "p99": lowest[2] / ds}
    capacity = max(0.0, min(lowest[0] / inputs.dscr_p50, lowest[2] / inputs.dscr_p99))
    return Outcome(revenue, cfads, dscr, min_dscr, capacity * annuity_factor(inputs.debt))


def meets(inputs: Inputs, result: Outcome) -> bool:
    return (result.min_dscr["p50"] >= inputs.dscr_p50
            and result.min_dscr["p99"] >= inputs.dscr_p99)


def contracts_needed(inputs: Inputs, months: list[Month], base: Outcome) -> int | None:
    """The fewest contracts sold in every hedged month that meet both DSCR targets, up to
    floor(utilisation x GPUs); None if even that does not. ``base`` is the plan unhedged.

    CFADS is linear in the contracts q: A + q h (F - S) per month and scenario, and
    F - S >= 0 in these scenarios (each is at or below the forward), so more hedge never
    lowers it. Each month asks for q >= (target x DS - A) / (h (F - S)); the largest of
    those is the first guess, checked against the plan itself, and where its arithmetic
    disagrees (rounding, or a contract worth less than a float's precision of the month)
    a bisection settles it: a few dozen plans at most, never a walk."""
    cap = whole(inputs.utilisation, inputs.gpus)
    hedged = [1 if m.hedge_symbol else 0 for m in months]

    def ok(q: int) -> bool:
        return meets(inputs, outcome(inputs, months, [q * h for h in hedged]))

    def smallest(low: int, high: int) -> int:
        """The fewest in [low, high] that meet the targets, knowing ``high`` does."""
        while low < high:
            middle = (low + high) // 2
            if ok(middle):
                high = middle
            else:
                low = middle + 1
        return low
    ds = debt_service(inputs.debt)
    guess = 0
    for k, month in enumerate(months[:inputs.debt.tenor]):
        for name, target in (("p50", inputs.dscr_p50), ("p99", inputs.dscr_p99)):
            short = target * ds - base.cfads[k][name]
            if short > 0:
                slope = hedged[k] * month.hours * (month.forward - month.prices[name])
                guess = max(guess, math.ceil(short / slope) if slope > 0 else cap + 1)
    guess = min(guess, cap)
    if ok(guess):
        return guess if guess == 0 or not ok(guess - 1) else smallest(0, guess - 1)
    if guess == cap or not ok(cap):
        return None
    return smallest(guess + 1, cap)


class Plan(NamedTuple):
    inputs: Inputs
    months: list[Month]
    lots: list[int]
    debt_service: float
    hedged: Outcome
    unhedged: Outcome
    locked_revenue: float
    contracts_needed: int | None
    initial_margin: float          # USD
    vm_stress: float               # USD
    executable: dict | None        # {avg_price, legs: [(symbol, qty, avg_price, available)]}


def plan(inputs: Inputs, contracts: list[Contract], now_ns: int,
         initial_margin: Callable[[dict[str, int]], int],
         sell: Callable[[str, int], tuple[int, int]]) -> Plan:
    """The hedge plan.

    Args:
        contracts: The class's listed contracts, with their marks.
        now_ns: The time the plan is for (ns since the epoch).
        initial_margin: Clearing's initial margin, micro-USD, of a portfolio (symbol ->
            signed lots) with nothing else.
        sell: What selling ``qty`` lots of a symbol on its book would fill now:
            (lots available up to qty, ticks x lots they would fetch).

    Raises:
        PlanError: a bad input (invalid_params, with its field) or a horizon past the
            curve (horizon_beyond_curve).
    """
    check(inputs)
    months = calendar(inputs, contracts, now_ns)
    q = whole(inputs.hedge_ratio, inputs.gpus)
    lots = [q if m.hedge_symbol else 0 for m in months]
    hedged = outcome(inputs, months, lots)
    unhedged = outcome(inputs, months, [0] * len(months))
    locked = sum(n * m.hours * m.forward for n, m in zip(lots, months))
    rally = sum(n * m.hours * m.forward * (math.exp(-inputs.vol ** 2 * m.tau / 2 + Z_RALLY
                                                    * inputs.vol * math.sqrt(m.tau)) - 1)
                for n, m in zip(lots, months))
    hedges = {}                      # symbol -> its hours in the plan, in order
    for n, m in zip(lots, months):
        if n:
            hedges[m.hedge_symbol] = hedges.get(m.hedge_symbol, 0) + m.hours
    margin = initial_margin({s: -q for s in hedges}) / 1e6 if hedges else 0.0
    executable = None
    if hedges:
        legs, full_value, full_hours = [], 0.0, 0
        for symbol, hours in hedges.items():
            available, paid = sell(symbol, q)
            average = paid / available / 1000 if available else None
            legs.append((symbol, q, average, available))
            if available == q:
                full_value += average * hours
                full_hours += hours
        executable = {"avg_price": full_value / full_hours if full_hours else None,
                      "legs": legs}
    return Plan(inputs, months, lots, debt_service(inputs.debt), hedged, unhedged, locked,
                contracts_needed(inputs, months, unhedged), margin, rally, executable)
