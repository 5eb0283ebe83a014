"""Scenario-based margin, in the manner of SPAN, per GPU class.

Every contract is exposure to the calendar months it delivers in: a month to
its own, a quarter to each of its three, a year to each of its twelve (one GPU
for every hour of each), a week to the one or two it overlaps. For each GPU
class an account trades, every month's price is moved up and down by fractions
of its scanning range (a share of the contract's last settlement price that
depends on how far away that month is), all months of the class in the same
direction. So a contract's move is the sum over its months of hours x range,
its ``span``; months offset each other in the scan, and so does a year against
its twelve months.

What the parallel scan cannot see is that contracts do not really move
together: two months, or a year and its months (each trades and settles on its
own book), can part. So an intra-class spread charge is added for each GPU-hour
that can be held long in one contract against one held short in another.

Open orders count as if filled, in whatever mix is worst: for a scenario that
moves a contract by m (tick-hours, signed), an open order of n lots on side s at
limit p, if it fills, loses n x (max(0, s x (p - mark)) x hours - s x m): what
filling at its limit loses at once against the current mark (a buy above it;
buying below it earns no credit, since a mark can lag the market it would fill
in), and then what the scenario's move does to those lots. It can only make
things worse by filling if that is positive. So per scenario the worst mix is
every order whose term is positive, and

    scan risk = max over scenarios of
                (loss of the positions + sum of max(0, each order's term)), >= 0

which is exact for the worst mix of fills, whatever the limits (buys in one
month and sells in another, limits beyond the scanning range). The loss is
convex in the size of the move, so of the scenario fractions only the smallest
and the largest need looking at. The spread charge counts the most GPU-hours
that could be long and short at once:

    longs  = sum over contracts of max(0, position + open buys) x hours
    shorts = sum over contracts of max(0, open sells - position) x hours
    charge = min(longs, shorts) x the dearest price per GPU-hour (over the
             contracts with a position or an order) x ``spread_charge_bps``

    maintenance = sum over classes of (scan risk + spread charge)
    initial     = sum over classes of that x the class's initial_multiplier_pct / 100

Every requirement is rounded up to the micro-dollar (against the member).
"""
from __future__ import annotations

import datetime

import msgspec

from engine.contracts import delivery_months

BPS = 10_000
NS_PER_DAY = 86_400 * 10**9


class MarginParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One GPU class's margin parameters."""
    # (months until delivery starts, at most; scanning range in bps of the mark), nearest first.
    scan_bps_by_tenor: tuple[tuple[int, int], ...] = ((1, 2000), (3, 1500), (1200, 1000))
    # The price moves, in bps of the scanning range, each applied up and down.
    scenario_bps: tuple[int, ...] = (3333, 6667, 10_000)
    spread_charge_bps: int = 200             # per spread lot, of the dearer leg's notional
    initial_multiplier_pct: int = 110        # initial margin over maintenance (1.1x)

    def __post_init__(self) -> None:
        tenors = [t for t, _ in self.scan_bps_by_tenor]
        if not tenors or tenors != sorted(set(tenors)):
            raise ValueError("scan_bps_by_tenor must list increasing month limits")
        if any(not 0 < bps <= BPS for _, bps in self.scan_bps_by_tenor):
            raise ValueError("a scanning range must be 1..10000 bps of the price")
        if not self.scenario_bps or any(not 0 < f <= BPS for f in self.scenario_bps):
            raise ValueError("scenario moves must be 1..10000 bps of the scanning range")
        if not 0 <= self.spread_charge_bps <= BPS or self.initial_multiplier_pct < 100:
            raise ValueError("spread_charge_bps must be 0..10000, initial_multiplier_pct >= 100")

    @property
    def max_scenario_bps(self) -> int:
        return max(self.scenario_bps)

    def scan_bps(self, months: int) -> int:
        for limit, bps in self.scan_bps_by_tenor:
            if months <= limit:
                return bps
        return self.scan_bps_by_tenor[-1][1]


class Leg(msgspec.Struct, frozen=True, gc=False):
    """What margin needs of one contract at one moment."""
    gpu_class: str
    hours: int
    tick_micros: int
    price: int                # ticks: the last settlement price (ranges and the spread charge)
    span: int                 # tick-hours one lot moves in a full scan: sum of hours x range
    mark: int                 # ticks: the current mark, which order fills are measured from


def months_between(start: datetime.date, end: datetime.date) -> int:
    """Whole months from ``start`` until ``end`` (0 when end is in start's month or before)."""
    return max(0, (end.year - start.year) * 12 + end.month - start.month)


def make_leg(gpu_class: str, tick_micros: int, price: int, delivery_start: datetime.date,
             delivery_end: datetime.date, today: datetime.date, params: MarginParams,
             mark: int | None = None) -> Leg:
    """The leg of a contract delivering from ``delivery_start`` until ``delivery_end``
    (exclusive), last settled at ``price``, marked at ``mark`` (default: price)."""
    span = sum(hours * -(-price * params.scan_bps(months_between(today, first)) // BPS)
               for first, hours in delivery_months(delivery_start, delivery_end))
    return Leg(gpu_class, (delivery_end - delivery_start).days * 24, tick_micros, price, span,
               price if mark is None else mark)


def scenarios(params: MarginParams) -> tuple[tuple[int, int], ...]:
    """(direction, fraction in bps of the range) of the scenarios that can be the worst."""
    fractions = sorted({min(params.scenario_bps), max(params.scenario_bps)})
    return tuple((d, f) for d in (1, -1) for f in fractions)


def order_term(leg: Leg, side: int, lots: int, price: int, direction: int, fraction: int) -> int:
    """What an order loses if it fills in a scenario, x BPS, micro-USD; 0 if it gains."""
    worse = side * (price - leg.mark)
    term = lots * ((worse if worse > 0 else 0) * leg.hours * BPS
                   - side * direction * fraction * leg.span)
    return term * leg.tick_micros if term > 0 else 0


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def class_requirement(legs: dict[str, Leg], qty: dict[str, int], orders,
                      params: MarginParams) -> int:
    """Scan risk plus spread charge of one class, micro-USD.

    Args:
        qty: symbol -> signed lots held.
        orders: (symbol, side, lots, limit price) of the class's open orders.
    """
    worst = 0                      # losses are kept x BPS (exact), rounded up at the end
    for direction, fraction in scenarios(params):
        loss = -direction * fraction * sum(q * legs[s].span * legs[s].tick_micros
                                           for s, q in qty.items())
        loss += sum(order_term(legs[s], side, lots, price, direction, fraction)
                    for s, side, lots, price in orders)
        worst = max(worst, loss)
    buys: dict[str, int] = {}
    sells: dict[str, int] = {}
    for symbol, side, lots, _ in orders:
        book = buys if side > 0 else sells
        book[symbol] = book.get(symbol, 0) + lots
    active = {s for s, q in qty.items() if q} | set(buys) | set(sells)
    longs = sum(max(0, qty.get(s, 0) + buys.get(s, 0)) * legs[s].hours for s in active)
    shorts = sum(max(0, sells.get(s, 0) - qty.get(s, 0)) * legs[s].hours for s in active)
    spread = min(longs, shorts)
    charge = 0
    if spread:
        dearest = max(legs[s].price * legs[s].tick_micros for s in active)
        charge = spread * dearest * params.spread_charge_bps
    return _ceil_div(worst, BPS) + _ceil_div(charge, BPS)


def requirement(legs: dict[str, Leg], positions: dict[str, int], orders,
                params_by_class: dict[str, MarginParams]) -> tuple[int, int]:
    """Return (maintenance, initial) margin in micro-USD.

    Args:
        legs: symbol -> Leg for every symbol in positions and orders.
        positions: symbol -> signed lots.
        orders: (symbol, side (+1 buy, -1 sell), leaves lots, limit price in ticks) of open orders.
        params_by_class: gpu_class -> MarginParams.
    """
    qty: dict[str, dict[str, int]] = {}
    by_class: dict[str, list] = {}
    for symbol, q in positions.items():
        if q:
            qty.setdefault(legs[symbol].gpu_class, {})[symbol] = q
    for order in orders:
        by_class.setdefault(legs[order[0]].gpu_class, []).append(order)
    maintenance = initial = 0
    for gpu_class in sorted(qty.keys() | by_class.keys()):
        params = params_by_class[gpu_class]
        required = class_requirement(legs, qty.get(gpu_class, {}), by_class.get(gpu_class, ()),
                                     params)
        maintenance += required
        initial += _ceil_div(required * params.initial_multiplier_pct, 100)
    return maintenance, initial
