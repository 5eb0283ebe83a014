"""Scenario-based margin, in the manner of SPAN, per GPU class.

For each GPU class an account trades, every contract's price is moved up and
down by fractions of its scanning range (a share of its mark that depends on
how far away its delivery is), all months of the class in the same
direction, and the portfolio is repriced; the worst loss is the scan risk
(for futures, which are linear, it is always a full move; the smaller moves
are kept for the day options are listed).
Months of one class therefore offset each other (a calendar spread barely
moves in a parallel scenario), and an intra-class spread charge is added
per lot held long against a lot held short, since months do not really move
together. Open orders count as if filled, on whichever side is worse: the
requirement is the larger of the portfolio plus all open buys and the
portfolio plus all open sells, each filled at its limit price against the
mark.

    maintenance = sum over classes of (scan risk + spread charge + order fill losses)
    initial     = sum over classes of that x the class's initial_multiplier_pct / 100

Every requirement is rounded up to the micro-dollar (against the member).
"""
from __future__ import annotations

import datetime

import msgspec

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
    mark: int                 # ticks
    range_ticks: int          # the scanning range, ticks (rounded up)


def months_between(start: datetime.date, end: datetime.date) -> int:
    """Whole months from ``start`` until ``end`` (0 when end is in start's month or before)."""
    return max(0, (end.year - start.year) * 12 + end.month - start.month)


def make_leg(gpu_class: str, hours: int, tick_micros: int, mark: int,
             delivery_start: datetime.date, today: datetime.date, params: MarginParams) -> Leg:
    bps = params.scan_bps(months_between(today, delivery_start))
    return Leg(gpu_class, hours, tick_micros, mark, -(-mark * bps // BPS))


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def class_requirement(legs: dict[str, Leg], qty: dict[str, int], params: MarginParams) -> int:
    """Scan risk plus spread charge of one class's net lots (symbol -> signed qty), micro-USD."""
    worst = 0                      # losses are kept x BPS (exact), rounded up at the end
    for fraction in params.scenario_bps:
        move = 0
        for symbol, q in qty.items():
            if q:
                leg = legs[symbol]
                move += q * leg.range_ticks * leg.hours * leg.tick_micros
        worst = max(worst, abs(move) * fraction)        # the down move loses for longs, up for shorts
    longs = sum(q for q in qty.values() if q > 0)
    shorts = -sum(q for q in qty.values() if q < 0)
    spread = min(longs, shorts)
    charge = 0
    if spread:
        dearest = max(legs[s].mark * legs[s].hours * legs[s].tick_micros
                      for s, q in qty.items() if q)
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
    by_class: dict[str, dict[str, int]] = {}
    for symbol, q in positions.items():
        if q:
            by_class.setdefault(legs[symbol].gpu_class, {})[symbol] = q
    buys: dict[str, list] = {}
    sells: dict[str, list] = {}
    for symbol, side, lots, price in orders:
        gpu_class = legs[symbol].gpu_class
        by_class.setdefault(gpu_class, {})
        (buys if side > 0 else sells).setdefault(gpu_class, []).append((symbol, side, lots, price))
    maintenance = initial = 0
    for gpu_class, qty in by_class.items():
        params = params_by_class[gpu_class]
        worst = class_requirement(legs, qty, params)
        for side_orders in (buys.get(gpu_class), sells.get(gpu_class)):
            if not side_orders:
                continue
            filled = dict(qty)
            fill_loss = 0
            for symbol, side, lots, price in side_orders:
                leg = legs[symbol]
                filled[symbol] = filled.get(symbol, 0) + side * lots
                # Filling at the limit instead of the mark: a buy above it loses at once.
                fill_loss += max(0, side * (price - leg.mark)) * lots * leg.hours * leg.tick_micros
            worst = max(worst, class_requirement(legs, filled, params) + fill_loss)
        maintenance += worst
        initial += _ceil_div(worst * params.initial_multiplier_pct, 100)
    return maintenance, initial
