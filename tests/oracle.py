"""A slow, obvious reference book with the same Python API as engine.book.OrderBook.

Built on sortedcontainers and plain lists, for the differential tests and as the
pure-Python baseline of the benchmarks. Rules it must share with the compiled
book (tests compare their outputs event for event):

- price-time priority; the trade price is the maker's;
- an iceberg shows ``display`` lots at a time; when a tranche is used up, the
  next one joins the back of its level;
- the taker's self-trade prevention mode decides what happens when it meets
  its own resting order;
- a level is "touched" (reported by ``changes``) when an order joins or leaves
  it or its visible quantity changes, in the order first touched;
- the walk stops before filling a reduce-only maker (REDUCE_ONLY_HALT), unless
  it is the one the caller passes, once.

``fillable`` answers by matching on a copy of the book, fitting each halted
reduce-only maker as the engine does: obviously right, slow.

``PositionGate`` is the smallest risk gate that makes the engine enforce
reduce-only: it keeps positions and lets every order through.
"""
from __future__ import annotations

import copy
from collections import defaultdict

from sortedcontainers import SortedDict

from engine.messages import Trade

FILL, STP_CANCEL_MAKER, STP_DECREMENT, STP_CANCEL_TAKER, REDUCE_ONLY_HALT = range(5)
MAX_SPAN = 1 << 20        # engine.book: widest range of resting prices, in ticks
MAX_VALUE = 1 << 40       # engine.book: largest price or quantity
CANCEL_NEWEST, CANCEL_OLDEST, CANCEL_BOTH, DECREMENT = range(4)


class _Order:
    __slots__ = ("order_id", "account_id", "side", "price", "visible", "hidden", "display",
                 "reduce_only")

    def __init__(self, order_id, account_id, side, price, visible, hidden, display,
                 reduce_only):
        self.order_id = order_id
        self.account_id = account_id
        self.side = side
        self.price = price
        self.visible = visible
        self.hidden = hidden
        self.display = display
        self.reduce_only = reduce_only


class ReferenceBook:
    def __init__(self, check_invariants: bool = False) -> None:
        self.check_invariants_after_each = check_invariants
        self._sides = {1: SortedDict(), -1: SortedDict()}    # price -> [orders, oldest first]
        self._orders: dict[int, _Order] = {}
        self._touched: dict[tuple[int, int], None] = {}

    def __len__(self):
        return len(self._orders)

    # -- queries
    def best_bid(self):
        return self._sides[1].peekitem(-1)[0] if self._sides[1] else None

    def best_ask(self):
        return self._sides[-1].peekitem(0)[0] if self._sides[-1] else None

    def _best(self, side):
        return self.best_bid() if side == 1 else self.best_ask()

    def would_take(self, side, limit):
        best = self._best(-side)
        return best is not None and (best <= limit if side == 1 else best >= limit)

    def can_hold(self, price):
        # The compiled book's rule: resting prices and this one within MAX_SPAN.
        if not 0 < price <= MAX_VALUE:
            return False
        ends = [price] + [levels.peekitem(i)[0] for levels in self._sides.values() if levels
                          for i in (0, -1)]
        return max(ends) - min(ends) < MAX_SPAN

    def fillable(self, side, limit, qty, account_id, stp, caps=None):
        # caps: account -> lots its reduce-only makers may still close (engine.book).
        trial = copy.deepcopy(self)
        caps = dict(caps or {})
        need, passed = qty, 0
        while True:
            records = trial.match(side, limit, need, account_id, stp, passed)
            for kind, _, maker_account, _, lots, _ in records:
                if kind == FILL:
                    need -= lots
                    if maker_account in caps:
                        caps[maker_account] = max(caps[maker_account] - lots, 0)
                elif kind != REDUCE_ONLY_HALT:      # an own order stopped or shrank the taker
                    if kind != STP_CANCEL_MAKER:
                        return False
            if not records or records[-1][0] != REDUCE_ONLY_HALT:
                return need == 0
            _, maker_id, maker_account, _, _, leaves = records[-1]
            allowed = min(leaves, caps.get(maker_account, 0))
            if allowed == 0:
                trial.cancel(maker_id)
                passed = 0
            else:
                if allowed < leaves:
                    trial.reduce(maker_id, allowed)
                passed = maker_id

    def _levels(self, side):
        levels = self._sides[side]
        return reversed(levels.items()) if side == 1 else iter(levels.items())

    def depth(self, side, n):
        out = []
        for price, queue in self._levels(side):
            if len(out) == n:
                break
            out.append((price, sum(o.visible for o in queue), len(queue)))
        return out

    def orders(self, side):
        return [(o.order_id, o.account_id, o.price, o.visible, o.hidden)
                for _, queue in self._levels(side) for o in queue]

    def order(self, order_id):
        o = self._orders.get(order_id)
        return None if o is None else (o.side, o.price, o.visible, o.hidden)

    def changes(self):
        out = []
        for side, price in self._touched:
            queue = self._sides[side].get(price, [])
            out.append((side, price, sum(o.visible for o in queue), len(queue)))
        self._touched = {}
        return out

    # -- mutations
    def _touch(self, side, price):
        self._touched.setdefault((side, price), None)

    def _append(self, o):
        self._sides[o.side].setdefault(o.price, []).append(o)
        self._touch(o.side, o.price)

    def _remove(self, o):
        queue = self._sides[o.side][o.price]
        queue.remove(o)
        if not queue:
            del self._sides[o.side][o.price]
        del self._orders[o.order_id]
        self._touch(o.side, o.price)

    def add(self, order_id, account_id, side, price, qty, display=0, reduce_only=False):
        # The range rule (can_hold) is the caller's to check first, as the engine does.
        if side not in (1, -1) or not (0 < qty <= MAX_VALUE and 0 <= display <= MAX_VALUE):
            raise ValueError("bad order")
        if order_id in self._orders:
            raise ValueError(f"order {order_id} is already resting")
        if self.would_take(side, price):
            raise ValueError("would cross")
        shown = display if 0 < display < qty else qty
        o = _Order(order_id, account_id, side, price, shown, qty - shown,
                   display if 0 < display < qty else 0, reduce_only)
        self._orders[order_id] = o
        self._append(o)
        self._after()

    def cancel(self, order_id):
        o = self._orders.get(order_id)
        if o is None:
            return 0
        self._remove(o)
        self._after()
        return o.visible + o.hidden

    def reduce(self, order_id, leaves):
        o = self._orders.get(order_id)
        if o is None:
            raise KeyError(order_id)
        if not 0 < leaves < o.visible + o.hidden:
            raise ValueError("bad leaves")
        self._shrink(o, o.visible + o.hidden - leaves)
        self._after()

    def _shrink(self, o, delta):
        from_hidden = min(o.hidden, delta)
        o.hidden -= from_hidden
        if delta > from_hidden:
            o.visible -= delta - from_hidden
            self._touch(o.side, o.price)

    def match(self, side, limit, qty, account_id, stp, passed=0):
        records = []
        remaining = qty
        while remaining > 0 and self.would_take(side, limit):
            price = self._best(-side)
            queue = self._sides[-side][price]
            o = queue[0]
            leaves = o.visible + o.hidden
            if o.account_id == account_id:
                if stp in (CANCEL_OLDEST, CANCEL_BOTH):
                    records.append((STP_CANCEL_MAKER, o.order_id, o.account_id, price, leaves, 0))
                    self._remove(o)
                    if stp == CANCEL_BOTH:
                        records.append((STP_CANCEL_TAKER, o.order_id, o.account_id, price,
                                        remaining, 0))
                        remaining = 0
                elif stp == DECREMENT:
                    take = min(leaves, remaining)
                    remaining -= take
                    records.append((STP_DECREMENT, o.order_id, o.account_id, price, take,
                                    leaves - take))
                    if take == leaves:
                        self._remove(o)
                    else:
                        self._shrink(o, take)
                else:
                    records.append((STP_CANCEL_TAKER, o.order_id, o.account_id, price,
                                    remaining, leaves))
                    remaining = 0
                continue
            if o.reduce_only:
                if o.order_id != passed:
                    records.append((REDUCE_ONLY_HALT, o.order_id, o.account_id, price, remaining,
                                    leaves))
                    break
                passed = 0
            take = min(o.visible, remaining)
            remaining -= take
            o.visible -= take
            self._touch(o.side, price)
            records.append((FILL, o.order_id, o.account_id, price, take, o.visible + o.hidden))
            if o.visible == 0:
                if o.hidden == 0:
                    self._remove(o)
                else:
                    shown = min(o.display, o.hidden)
                    o.hidden -= shown
                    o.visible = shown
                    queue.remove(o)
                    queue.append(o)
        self._after()
        return records

    def _after(self):
        if self.check_invariants_after_each:
            self.check_invariants()

    def check_invariants(self):
        bid, ask = self.best_bid(), self.best_ask()
        assert bid is None or ask is None or bid < ask, "crossed"
        count = 0
        for side, levels in self._sides.items():
            for price, queue in levels.items():
                assert queue, "empty level kept"
                for o in queue:
                    assert o.side == side and o.price == price and o.visible > 0
                    assert self._orders[o.order_id] is o
                    count += 1
        assert count == len(self._orders)


class PositionGate:
    """A risk gate that lets every order through and keeps positions from the trades it is
    handed (engine.risk.RiskGate), so the engine enforces reduce-only. ``log`` holds every
    event handed over, in order, to show that each reaches it once."""

    def __init__(self) -> None:
        self.positions: dict[tuple[int, str], int] = defaultdict(int)
        self.log: list = []

    def check(self, account_id, symbol, side, price, qty, liquidation, replaces):
        return None

    def apply(self, events) -> None:
        self.log.extend(events)
        for ev in events:
            if type(ev) is Trade:
                self.positions[(ev.maker_account_id, ev.symbol)] -= ev.aggressor * ev.qty
                self.positions[(ev.taker_account_id, ev.symbol)] += ev.aggressor * ev.qty

    def position(self, account_id, symbol) -> int:
        return self.positions.get((account_id, symbol), 0)
