"""An account's margin kept up to date incrementally, so the pre-trade check is O(1).

clearing.margin.requirement recomputes a portfolio from scratch; it is the
reference. Here the same numbers are kept as running sums per GPU class,
updated by each fill and each open-order change, so that asking "what
would initial margin be with this order" touches one symbol:

- ``delta``: the sum of lots x full-move value of the positions;
- ``order_loss``: per scenario, the sum over open orders of what each loses if
  it fills (clearing.margin.order_term), which is linear in an order's lots,
  so a fill, a cancel or a replace adds or takes away its share;
- ``longs``, ``shorts``: the most GPU-hours that could be long and short at
  once, for the spread charge, and the dearest price among the contracts in play.

The legs' scanning ranges and prices stay fixed between settlements (the
exposures are rebuilt when they change); a new mark changes what the orders on
that contract lose, and ``remark`` recomputes that contract's share.
"""
from __future__ import annotations

from clearing.margin import BPS, Leg, MarginParams, scenarios


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def leg_value(leg: Leg) -> int:
    """What one lot gains or loses in a full move of the scanning range, micro-USD."""
    return leg.span * leg.tick_micros


def leg_price(leg: Leg) -> int:
    """The leg's price per GPU-hour for the spread charge, micro-USD."""
    return leg.price * leg.tick_micros


def unit_terms(leg: Leg, side: int, price: int, moves) -> list[int]:
    """What one lot of an order loses if it fills, per scenario, x BPS (0 if it gains).

    Args:
        moves: Each scenario's direction x fraction of the range, in bps.
    """
    worse = side * (price - leg.mark)
    gap = (worse if worse > 0 else 0) * leg.hours * BPS
    span = side * leg.span
    tick = leg.tick_micros
    out = []
    for move in moves:
        term = gap - move * span
        out.append(term * tick if term > 0 else 0)
    return out


class ClassExposure:
    """One account's exposure in one GPU class."""
    __slots__ = ("params", "moves", "qty", "buys", "sells", "book", "terms", "delta",
                 "order_loss", "longs", "shorts", "dearest", "requirement", "_spread_bps",
                 "_losses")

    def __init__(self, params: MarginParams) -> None:
        self.params = params
        self.moves = tuple(d * f for d, f in scenarios(params))   # signed, bps of the range
        self._spread_bps = params.spread_charge_bps
        self.qty: dict[str, int] = {}        # symbol -> position lots
        self.buys: dict[str, int] = {}       # symbol -> open buy lots
        self.sells: dict[str, int] = {}      # symbol -> open sell lots
        self.book: dict[str, dict[tuple[int, int], int]] = {}   # symbol -> (side, price) -> lots
        self.terms: dict[str, list[int]] = {}    # symbol -> its orders' share of order_loss
        self.delta = 0
        self.order_loss = [0] * len(self.moves)
        self.longs = 0
        self.shorts = 0
        self.dearest = 0                     # the dearest price among the active symbols
        self.requirement = 0                 # maintenance margin of the class
        self._losses = [0] * len(self.moves)    # per scenario, x BPS: positions and orders

    def _long_short(self, legs: dict[str, Leg], symbol: str) -> tuple[int, int]:
        """The GPU-hours of ``symbol`` that could be long, and short, at once."""
        q = self.qty.get(symbol, 0)
        hours = legs[symbol].hours
        return (max(0, q + self.buys.get(symbol, 0)) * hours,
                max(0, self.sells.get(symbol, 0) - q) * hours)

    def _active(self, symbol: str) -> bool:
        return bool(self.qty.get(symbol) or self.buys.get(symbol) or self.sells.get(symbol))

    def fill(self, legs: dict[str, Leg], symbol: str, lots: int) -> None:
        """A fill changed the position by ``lots`` (signed)."""
        was = self._active(symbol)
        long0, short0 = self._long_short(legs, symbol)
        q = self.qty.get(symbol, 0) + lots
        if q:
            self.qty[symbol] = q
        else:
            self.qty.pop(symbol, None)
        self.delta += lots * leg_value(legs[symbol])
        self._moved(legs, symbol, was, long0, short0)

    def order(self, legs: dict[str, Leg], symbol: str, side: int, lots: int, price: int) -> None:
        """``lots`` (signed: + added, - filled or cancelled) of an open order changed."""
        was = self._active(symbol)
        long0, short0 = self._long_short(legs, symbol)
        side_lots = self.buys if side > 0 else self.sells
        left = side_lots.get(symbol, 0) + lots
        if left:
            side_lots[symbol] = left
        else:
            side_lots.pop(symbol, None)
        book = self.book.setdefault(symbol, {})
        key = (side, price)
        left = book.get(key, 0) + lots
        if left:
            book[key] = left
        else:
            del book[key]
            if not book:
                del self.book[symbol]
        terms = self.terms.setdefault(symbol, [0] * len(self.moves))
        for k, unit in enumerate(unit_terms(legs[symbol], side, price, self.moves)):
            terms[k] += lots * unit
            self.order_loss[k] += lots * unit
        if symbol not in self.book:
            del self.terms[symbol]
        self._moved(legs, symbol, was, long0, short0)

    def remark(self, legs: dict[str, Leg], symbol: str) -> None:
        """The symbol's mark moved: what its open orders lose changed."""
        old = self.terms.get(symbol)
        if old is None:
            return
        new = [0] * len(self.moves)
        for (side, price), lots in self.book[symbol].items():
            for k, unit in enumerate(unit_terms(legs[symbol], side, price, self.moves)):
                new[k] += lots * unit
        for k in range(len(new)):
            self.order_loss[k] += new[k] - old[k]
        self.terms[symbol] = new
        self._update()

    def _moved(self, legs: dict[str, Leg], symbol: str, was: bool, long0: int,
               short0: int) -> None:
        long1, short1 = self._long_short(legs, symbol)
        self.longs += long1 - long0
        self.shorts += short1 - short0
        now = self._active(symbol)
        if now and not was:
            self.dearest = max(self.dearest, leg_price(legs[symbol]))
        elif was and not now:
            self.dearest = max((leg_price(legs[s]) for s in {*self.qty, *self.buys,
                                                             *self.sells}), default=0)
        self._update()

    def _update(self) -> None:
        """Each scenario's loss and the requirement: scan risk over the worst mix of fills,
        plus the spread charge, rounded up."""
        delta = self.delta
        self._losses = losses = [loss - move * delta
                                 for move, loss in zip(self.moves, self.order_loss)]
        worst = max(0, max(losses))
        required = -(-worst // BPS)
        longs, shorts = self.longs, self.shorts
        spread = longs if longs < shorts else shorts
        if spread:
            required += -(-spread * self.dearest * self._spread_bps // BPS)
        self.requirement = required

    def requirement_with(self, legs: dict[str, Leg], symbol: str, side: int, lots: int,
                         price: int) -> int:
        """The class's requirement if this order were added; the state does not change.

        The pre-trade check's question, so written out in one pass (what _update and
        unit_terms do, for one more order)."""
        leg = legs[symbol]
        worse = side * (price - leg.mark)
        gap = (worse if worse > 0 else 0) * leg.hours * BPS
        span = side * leg.span
        tick = leg.tick_micros
        worst = 0
        for move, loss in zip(self.moves, self._losses):
            term = gap - move * span
            if term > 0:
                loss += lots * term * tick
            if loss > worst:
                worst = loss
        required = -(-worst // BPS)
        q = self.qty.get(symbol, 0)
        if side > 0:
            buys = self.buys.get(symbol, 0)
            longs = self.longs + (max(0, q + buys + lots) - max(0, q + buys)) * leg.hours
            shorts = self.shorts
        else:
            sells = self.sells.get(symbol, 0)
            longs = self.longs
            shorts = self.shorts + (max(0, sells + lots - q) - max(0, sells - q)) * leg.hours
        spread = longs if longs < shorts else shorts
        if spread:
            price_micros = leg_price(leg)
            dearest = self.dearest if self.dearest > price_micros else price_micros
            required += -(-spread * dearest * self._spread_bps // BPS)
        return required


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

    def remark(self, symbol: str) -> None:
        """The leg of ``symbol`` (in ``legs``) has a new mark."""
        c = self.classes.get(self.legs[symbol].gpu_class)
        if c is not None and symbol in c.terms:
            c.remark(self.legs, symbol)
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
        return self._margin[1] - -(-c.requirement * pct // 100) + -(-new * pct // 100)
