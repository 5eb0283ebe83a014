"""An account's margin kept up to date incrementally, so the pre-trade check is O(1).

clearing.margin.requirement recomputes a portfolio from scratch; it is the
reference. Here the same numbers are kept as running sums per GPU class,
updated by each fill and each open-order change, so that asking "what
would initial margin be with this order" touches one symbol. The legs
(scanning ranges, sizes, settlement-based prices) stay fixed between
settlements; when they change, the exposures are rebuilt.

For futures the worst scenario is a full move of the scanning range, so
a portfolio's scan risk is |sum of lots x full-move value| (times the largest
scenario fraction). Each class keeps three portfolios: its positions (0),
its positions with every open buy filled (1), and with every open sell
filled (2); for each, that sum, the long and short lots (the spread charge's
spread is min(long, short)), and for 1 and 2 the loss of filling at the
limit price against the mark.
"""
from __future__ import annotations

from clearing.margin import BPS, Leg, MarginParams

POSITIONS, WITH_BUYS, WITH_SELLS = 0, 1, 2


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class ClassExposure:
    """One account's exposure in one GPU class."""
    __slots__ = ("params", "qty", "buys", "sells", "delta", "longs", "shorts", "loss",
                 "_dearest", "_portfolio_reqs", "requirement", "_scan_bps", "_spread_bps")

    def __init__(self, params: MarginParams) -> None:
        self.params = params
        self._scan_bps = params.max_scenario_bps       # read on every update: kept at hand
        self._spread_bps = params.spread_charge_bps
        self.qty: dict[str, int] = {}        # symbol -> position lots
        self.buys: dict[str, int] = {}       # symbol -> open buy lots
        self.sells: dict[str, int] = {}      # symbol -> open sell lots
        self.delta = [0, 0, 0]               # sum of lots x full-move value, per portfolio
        self.longs = [0, 0, 0]
        self.shorts = [0, 0, 0]
        self.loss = [0, 0, 0]                # filling open orders at their limits vs the mark
        self._dearest: list[int | None] = [0, 0, 0]     # None: to recompute
        self._portfolio_reqs = [0, 0, 0]     # each portfolio's requirement
        self.requirement = 0                 # maintenance margin of the class: their max

    def _net(self, portfolio: int, symbol: str) -> int:
        q = self.qty.get(symbol, 0)
        if portfolio == WITH_BUYS:
            return q + self.buys.get(symbol, 0)
        if portfolio == WITH_SELLS:
            return q - self.sells.get(symbol, 0)
        return q

    def _shift(self, portfolio: int, symbol: str, value: int, lots: int) -> None:
        """Add ``lots`` (signed) of ``symbol``, worth ``value`` a lot in a full move, to one
        portfolio's sums (before the dicts change)."""
        before = self._net(portfolio, symbol)
        after = before + lots
        self.delta[portfolio] += lots * value
        self.longs[portfolio] += (after if after > 0 else 0) - (before if before > 0 else 0)
        self.shorts[portfolio] += (before if before < 0 else 0) - (after if after < 0 else 0)
        if (before == 0) != (after == 0):
            self._dearest[portfolio] = None

    def fill(self, legs: dict[str, Leg], symbol: str, lots: int) -> None:
        """A fill changed the position by ``lots`` (signed)."""
        value = leg_value(legs[symbol])
        for portfolio in (POSITIONS, WITH_BUYS, WITH_SELLS):
            self._shift(portfolio, symbol, value, lots)
        self.qty[symbol] = self.qty.get(symbol, 0) + lots
        self._update(legs, (POSITIONS, WITH_BUYS, WITH_SELLS))

    def order(self, legs: dict[str, Leg], symbol: str, side: int, lots: int, price: int) -> None:
        """An open order of ``side`` gained ``lots`` (negative: it filled, shrank or went)."""
        leg = legs[symbol]
        portfolio, book = (WITH_BUYS, self.buys) if side > 0 else (WITH_SELLS, self.sells)
        self._shift(portfolio, symbol, leg_value(leg), side * lots)
        book[symbol] = book.get(symbol, 0) + lots
        self.loss[portfolio] += fill_loss(leg, side, lots, price)
        self._update(legs, (portfolio,))

    def requirement_with(self, legs: dict[str, Leg], symbol: str, side: int, lots: int,
                         price: int) -> int:
        """The class's maintenance margin if this order were added, without adding it."""
        # The hot path of the pre-trade check: written out rather than through the helpers.
        leg = legs[symbol]
        size = leg.hours * leg.tick_micros
        if side > 0:
            portfolio, other = WITH_BUYS, WITH_SELLS
            before = self.qty.get(symbol, 0) + self.buys.get(symbol, 0)
        else:
            portfolio, other = WITH_SELLS, WITH_BUYS
            before = self.qty.get(symbol, 0) - self.sells.get(symbol, 0)
        after = before + side * lots
        longs = self.longs[portfolio] + (after if after > 0 else 0) - (before if before > 0 else 0)
        shorts = self.shorts[portfolio] - (after if after < 0 else 0) + (before if before < 0 else 0)
        dearest = self._dearest[portfolio]
        if dearest is None:
            dearest = self.dearest(legs, portfolio)
        if after != 0:
            notional = leg.mark * size
            if notional > dearest:
                dearest = notional
        elif before != 0:
            dearest = max((leg_notional(legs[s]) for s in self._symbols()
                           if s != symbol and self._net(portfolio, s) != 0), default=0)
        delta = self.delta[portfolio] + side * lots * leg.range_ticks * size
        required = -(-abs(delta) * self._scan_bps // BPS)
        spread = longs if longs < shorts else shorts
        if spread:
            required += -(-spread * dearest * self._spread_bps // BPS)
        gap = side * (price - leg.mark)
        required += self.loss[portfolio] + (gap * lots * size if gap > 0 else 0)
        reqs = self._portfolio_reqs
        return max(required, reqs[POSITIONS], reqs[other])

    def dearest(self, legs: dict[str, Leg], portfolio: int) -> int:
        dearest = self._dearest[portfolio]
        if dearest is None:
            dearest = self._dearest[portfolio] = max(
                (leg_notional(legs[s]) for s in self._symbols() if self._net(portfolio, s) != 0),
                default=0)
        return dearest

    def _symbols(self):
        return {*self.qty, *self.buys, *self.sells}

    def _requirement_of(self, legs: dict[str, Leg], portfolio: int) -> int:
        """Scan risk + spread charge + fill losses of one portfolio, rounded up."""
        required = -(-abs(self.delta[portfolio]) * self._scan_bps // BPS) + self.loss[portfolio]
        longs, shorts = self.longs[portfolio], self.shorts[portfolio]
        spread = longs if longs < shorts else shorts
        if spread:
            dearest = self._dearest[portfolio]
            if dearest is None:
                dearest = self.dearest(legs, portfolio)
            required += -(-spread * dearest * self._spread_bps // BPS)
        return required

    def _update(self, legs: dict[str, Leg], portfolios: tuple[int, ...]) -> None:
        """Recompute the requirement of the portfolios that changed, and the class's."""
        reqs = self._portfolio_reqs
        for p in portfolios:
            reqs[p] = self._requirement_of(legs, p)
        a, b, c = reqs
        self.requirement = a if a >= b and a >= c else (b if b >= c else c)


def leg_value(leg: Leg) -> int:
    """What one lot gains or loses in a full move of the scanning range, micro-USD."""
    return leg.range_ticks * leg.hours * leg.tick_micros


def leg_notional(leg: Leg) -> int:
    return leg.mark * leg.hours * leg.tick_micros


def fill_loss(leg: Leg, side: int, lots: int, price: int) -> int:
    """Buying above the mark (or selling below it) loses the difference at once."""
    return max(0, side * (price - leg.mark)) * lots * leg.hours * leg.tick_micros


class Exposure:
    """One account's margin over all its classes, kept current."""
    __slots__ = ("legs", "params_by_class", "classes", "_margin")

    def __init__(self, legs: dict[str, Leg], params_by_class: dict[str, MarginParams]) -> None:
        self.legs = legs
        self.params_by_class = params_by_class
        self.classes: dict[str, ClassExposure] = {}
        self._margin = (0, 0)

    def _class(self, symbol: str) -> ClassExposure:
        gpu_class = self.legs[symbol].gpu_class
        exposure = self.classes.get(gpu_class)
        if exposure is None:
            exposure = self.classes[gpu_class] = ClassExposure(self.params_by_class[gpu_class])
        return exposure

    def fill(self, symbol: str, lots: int) -> None:
        self._class(symbol).fill(self.legs, symbol, lots)
        self._total()

    def order(self, symbol: str, side: int, lots: int, price: int) -> None:
        self._class(symbol).order(self.legs, symbol, side, lots, price)
        self._total()

    def _total(self) -> None:
        maintenance = initial = 0
        for c in self.classes.values():
            maintenance += c.requirement
            initial += _ceil_div(c.requirement * c.params.initial_multiplier_pct, 100)
        self._margin = (maintenance, initial)

    def open_lots(self, symbol: str, side: int) -> int:
        """Lots of the account's open orders on this side of this symbol."""
        c = self.classes.get(self.legs[symbol].gpu_class)
        if c is None:
            return 0
        return (c.buys if side > 0 else c.sells).get(symbol, 0)

    def margin(self) -> tuple[int, int]:
        """(maintenance, initial), micro-USD, as clearing.margin.requirement computes them."""
        return self._margin

    def initial_with(self, symbol: str, side: int, lots: int, price: int) -> int:
        """Initial margin if this order were added; the state does not change."""
        c = self._class(symbol)
        pct = c.params.initial_multiplier_pct
        new = c.requirement_with(self.legs, symbol, side, lots, price)
        return self._margin[1] - _ceil_div(c.requirement * pct, 100) + _ceil_div(new * pct, 100)
