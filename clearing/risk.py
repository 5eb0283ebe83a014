"""The pre-trade check and post-trade booking: clearing's side of the order path.

``ClearingRisk`` implements engine.risk.RiskGate. Before an order (or a
replace) reaches the book the engine asks ``check``; it hands every
command's events to ``apply``, which books fills in the ledger and keeps
each account's open orders, since margin counts them as if filled; and it
reads ``position`` from the ledger to enforce reduce-only, which it does
itself (engine.exchange), before it asks ``check``.

An order is refused when
- the position could pass the account's limit if every open order on that
  side filled (position_limit);
- it raises initial margin above equity (insufficient_margin). An order
  that does not raise the requirement (it closes or offsets risk) is always
  allowed, even for an account already short of margin.
Reduce-only orders are checked like any other. Liquidation orders (clearing's
own, closing a position) are not checked at all: they must reach the book.
"""
from __future__ import annotations

import datetime

import msgspec

from clearing.ledger import Ledger
from clearing.exposure import Exposure
from clearing.margin import Leg, MarginParams, make_leg
from engine.prices import stop_market_margin_price
from engine.contracts import Instrument
from engine.messages import (
    OrderAccepted, OrderCancelled, OrderExpired, OrderReduced, OrderReplaced, RejectReason,
    Trade,
)

NS_PER_DAY = 86_400 * 10**9


class OpenOrder(msgspec.Struct, gc=False):
    """An order as margin sees it. Not tracked by the garbage collector: there are many."""
    account_id: int
    symbol: str
    side: int
    leaves: int
    price: int                  # what it is margined at: its limit, else _margin_price's


class ClearingRisk:
    """Margin, position limits and reduce-only, over a ledger.

    Args:
        instruments: The listed instruments.
        ledger: Collateral and positions; fills are booked into it.
        params_by_class: gpu_class -> MarginParams.
        marks: symbol -> mark price in ticks, for equity (the reference price until marks exist).
        position_limit: The most lots an account may hold in one instrument, either way.
        position_limits: account_id -> its own limit, instead of ``position_limit``.

    Scanning ranges are taken from the last settlement prices and the day, so
    they stay fixed between settlements; each account's margin is then kept
    current incrementally (clearing.exposure) and the check costs O(1).
    """

    # Filled by reads as well as by commands: not part of the state (gateway.storage.recovery).
    CACHES = ("_equity",)

    def __init__(self, instruments: list[Instrument], ledger: Ledger,
                 params_by_class: dict[str, MarginParams], marks: dict[str, int],
                 position_limit: int = 100_000,
                 position_limits: dict[int, int] | None = None) -> None:
        self.instruments = {i.symbol: i for i in instruments}
        self.ledger = ledger
        self.params_by_class = params_by_class
        self.marks = dict(marks)
        self.position_limit = position_limit
        self.position_limits = dict(position_limits or {})
        self.orders: dict[int, OpenOrder] = {}
        self.by_account: dict[int, dict[int, OpenOrder]] = {}
        self.quoting: dict[str, dict[int, int]] = {}    # symbol -> account -> its open orders
        self.exposures: dict[int, Exposure] = {}
        self.today = datetime.date(1970, 1, 1)
        self._day_number = 0
        self.legs: dict[str, Leg] = self._make_legs()
        self._marks_version = 0
        self._fills: dict[int, int] = {}              # account -> fills booked (equity cache key)
        self._equity: dict[int, tuple[tuple, int]] = {}

    # -- The RiskGate protocol -------------------------------------------------------

    def check(self, account_id, symbol, side, price, qty, liquidation, replaces):
        if liquidation:
            return None
        position = self.position(account_id, symbol)
        side = int(side)
        exposure = self._exposure(account_id)
        same_side = exposure.open_lots(symbol, side)
        old = None if replaces is None else self.orders.get(replaces)
        if old is not None and old.symbol == symbol and old.side == side:
            same_side -= old.leaves
        over = self._over_limit(account_id, position + side * (same_side + qty), "")
        if over is not None:
            return over
        before = exposure.margin()[1]
        if old is not None:                       # judge the order as it would be after
            exposure.order(old.symbol, old.side, -old.leaves, old.price)
        after = exposure.initial_with(symbol, side, qty, price)
        if old is not None:
            exposure.order(old.symbol, old.side, old.leaves, old.price)
        return self._margin_verdict(account_id, before, after)

    def check_strip(self, account_id, side, legs):
        """``check`` for a strip's legs together: (symbol, lots, ticks x lots it pays or
        gets) each, all on ``side``. A strip fills all of its legs at once or none, at
        prices the engine has already found, so it is judged as the positions it becomes
        (what one leg offsets against another, or against the positions, counts), plus
        what filling at those prices loses at once against the marks (no credit for a
        gain: a mark can lag)."""
        side = int(side)
        exposure = self._exposure(account_id)
        for symbol, qty, _ in legs:
            over = self._over_limit(account_id, self.position(account_id, symbol) + side * (
                exposure.open_lots(symbol, side) + qty), f" in {symbol}")
            if over is not None:
                return over
        before = exposure.margin()[1]
        loss = 0
        for symbol, qty, paid in legs:
            exposure.fill(symbol, side * qty)
            leg = self.legs[symbol]
            loss += side * (paid - leg.mark * qty) * leg.hours * leg.tick_micros
        after = exposure.margin()[1]
        for symbol, qty, _ in legs:
            exposure.fill(symbol, -side * qty)
        return self._margin_verdict(account_id, before, after + max(loss, 0))

    def _over_limit(self, account_id: int, worst: int, where: str):
        """The refusal of a position that could reach ``worst`` lots, if past the limit."""
        limit = self.position_limits.get(account_id, self.position_limit)
        if abs(worst) <= limit:
            return None
        return (RejectReason.POSITION_LIMIT, f"with its open orders the position{where} could "
                f"reach {worst} lots; the limit is {limit}")

    def _margin_verdict(self, account_id: int, before: int, after: int):
        """Initial margin going from ``before`` to ``after``: allowed if it does not rise,
        else only within equity."""
        if after <= before:
            return None
        equity = self.equity(account_id)
        if after > equity:
            return (RejectReason.INSUFFICIENT_MARGIN,
                    f"initial margin would be {after / 1e6:.6f} USD; equity is {equity / 1e6:.6f}")
        return None

    def apply(self, events) -> None:
        for ev in events:
            kind = type(ev)
            if kind is Trade:
                self.ledger.apply_trade(ev)
                for account_id in (ev.maker_account_id, ev.taker_account_id):
                    self._fills[account_id] = self._fills.get(account_id, 0) + 1
                self._exposure(ev.maker_account_id).fill(ev.symbol, -ev.aggressor * ev.qty)
                self._exposure(ev.taker_account_id).fill(ev.symbol, ev.aggressor * ev.qty)
                self._leaves(ev.maker_order_id, ev.maker_leaves)
                self._leaves(ev.taker_order_id, ev.taker_leaves)
            elif kind is OrderAccepted:
                self._day(ev.ts_ns)
                order = OpenOrder(ev.account_id, ev.symbol, int(ev.side), 0,
                                  self._margin_price(ev))
                self.orders[ev.order_id] = order
                self.by_account.setdefault(ev.account_id, {})[ev.order_id] = order
                counts = self.quoting.setdefault(ev.symbol, {})
                counts[ev.account_id] = counts.get(ev.account_id, 0) + 1
                self._leaves(ev.order_id, ev.qty)
            elif kind is OrderCancelled or kind is OrderExpired:
                self._leaves(ev.order_id, 0)
            elif kind is OrderReplaced:
                order = self.orders.get(ev.order_id)
                if order is not None and ev.price is not None and ev.price != order.price:
                    leaves = order.leaves
                    self._leaves(ev.order_id, 0, keep=True)
                    order.price = ev.price
                    self._leaves(ev.order_id, leaves, keep=True)
                self._leaves(ev.order_id, ev.leaves)
            elif kind is OrderReduced:
                self._leaves(ev.order_id, ev.leaves)

    # -- Margin ----------------------------------------------------------------------

    def equity(self, account_id: int) -> int:
        """Collateral plus what the positions made since the last settlement, at the marks.

        Cached until the marks, the account's collateral or its positions change.
        """
        account = self.ledger.accounts.get(account_id)
        if account is None:
            return 0
        key = (self._marks_version, account.collateral, self._fills.get(account_id, 0))
        cached = self._equity.get(account_id)
        if cached is not None and cached[0] == key:
            return cached[1]
        equity = account.collateral + self.ledger.pnl_since_settlement(account, self.marks)
        self._equity[account_id] = (key, equity)
        return equity

    def margin(self, account_id: int) -> tuple[int, int]:
        """(maintenance, initial) margin of the account now, micro-USD."""
        exposure = self.exposures.get(account_id)
        return (0, 0) if exposure is None else exposure.margin()

    def set_marks(self, marks: dict[str, int]) -> None:
        """New marks: they change equity, and what open orders lose if they fill (measured
        from the mark), not the scanning ranges."""
        self.marks.update(marks)
        self._marks_version += 1
        legs = self.legs                    # shared with every Exposure
        for symbol, mark in marks.items():
            legs[symbol] = msgspec.structs.replace(legs[symbol], mark=mark)
            for account_id in self.quoting.get(symbol, ()):
                self.exposures[account_id].remark(symbol)

    def settled(self) -> None:
        """After a settlement: scanning ranges follow the new settlement prices."""
        self._marks_version += 1
        self._rebuild()

    def _make_legs(self) -> dict[str, Leg]:
        prices = self.ledger.settlement_prices
        return {s: make_leg(i.gpu_class, i.tick_micros, prices[s], i.delivery_start,
                            i.delivery_end, self.today, self.params_by_class[i.gpu_class],
                            self.marks.get(s))
                for s, i in self.instruments.items()}

    def _rebuild(self) -> None:
        """Recompute every account's exposure from its positions and open orders."""
        self.legs = self._make_legs()
        self.exposures = {}
        for account_id, account in self.ledger.accounts.items():
            for symbol, pos in account.positions.items():
                if pos.qty:
                    self._exposure(account_id).fill(symbol, pos.qty)
        for order in self.orders.values():
            self._exposure(order.account_id).order(order.symbol, order.side, order.leaves,
                                                   order.price)

    def _exposure(self, account_id: int) -> Exposure:
        exposure = self.exposures.get(account_id)
        if exposure is None:
            exposure = self.exposures[account_id] = Exposure(self.legs, self.params_by_class)
        return exposure

    def _margin_price(self, ev: OrderAccepted) -> int:
        """The price an order is margined at while open: its limit; a stop-market's stop
        moved by the band's width against it, as the engine checked it; a market order (open
        only within its own command) at the mark."""
        if ev.price is not None:
            return ev.price
        if ev.stop_price is not None:
            return stop_market_margin_price(int(ev.side), ev.stop_price,
                                            self.instruments[ev.symbol].band_bps)
        return self.legs[ev.symbol].mark

    def set_day(self, ts_ns: int) -> None:
        """Move to the day of ``ts_ns`` (scanning ranges depend on the time to delivery)."""
        self._day(ts_ns)

    def _day(self, ts_ns: int) -> None:
        day = ts_ns // NS_PER_DAY
        if day != self._day_number:
            self._day_number = day
            self.today = datetime.date(1970, 1, 1) + datetime.timedelta(days=day)
            self._rebuild()          # scanning ranges depend on the time to delivery

    def position(self, account_id: int, symbol: str) -> int:
        """The account's position in lots (long > 0), as booked from the events applied."""
        account = self.ledger.accounts.get(account_id)
        pos = None if account is None else account.positions.get(symbol)
        return 0 if pos is None else pos.qty

    def _leaves(self, order_id: int, leaves: int, keep: bool = False) -> None:
        """Set an order's leaves (its exposure follows); at 0 it is forgotten unless ``keep``."""
        order = self.orders.get(order_id)
        if order is None:
            return
        if leaves != order.leaves:
            self._exposure(order.account_id).order(order.symbol, order.side,
                                                   leaves - order.leaves, order.price)
            order.leaves = leaves
        if leaves > 0 or keep:
            return
        del self.orders[order_id]
        mine = self.by_account[order.account_id]
        del mine[order_id]
        if not mine:
            del self.by_account[order.account_id]
        self._unquote(order)

    def _unquote(self, order: OpenOrder) -> None:
        """An order closed: one fewer of its account's open orders in its symbol."""
        counts = self.quoting[order.symbol]
        left = counts[order.account_id] - 1
        if left:
            counts[order.account_id] = left
        else:
            del counts[order.account_id]
            if not counts:
                del self.quoting[order.symbol]
