"""The clearing house: index, marks, ledger, margin and settlement behind one entry point.

``ClearingHouse.process(cmd, market)`` takes a clearing command and returns
its events and the engine commands it requires (liquidation orders, the new
band reference after a settlement, an instrument marked settled); the
composition runs those through the engine at the same timestamp. The house
is also the engine's risk gate (``check``/``apply``), so fills reach the
ledger inside the order path. ``market(symbol)`` gives the engine's
(best bid, best ask, last trade, book) at that point of the command stream,
so the house stays deterministic without importing the engine.

The prices it settles at are clearing.settlement's; how a liquidation
proceeds, clearing.liquidation's; who pays a deficit, clearing.waterfall's.
"""
from __future__ import annotations

import datetime
from typing import Callable

import msgspec

from clearing.index import ClassIndex, External, IndexParams, Observation, ObservationError
from clearing.ledger import Contract, FeeSchedule, Ledger, LedgerError
from clearing.liquidation import next_slice
from clearing.marks import Mark, MarkParams, impact_cost
from clearing.margin import MarginParams, requirement
from clearing.messages import (
    Cascaded, ClearingRejected, CollateralMoved, DefaultCovered, Deposit, FixIndex, IndexFixed,
    IndexValue, InstrumentSettled, Liquidation, ListingRolled, MarginCall, MarksUpdated,
    MarkStep, RollListing, SetExternalIndex, Settle, Settled, SubmitObservation, Withdraw,
)
from clearing.risk import ClearingRisk
from clearing.settlement import (
    ClosingWindow, delivery_average, delivery_price, period_fixings, settlement_price,
)
from clearing.waterfall import cover
from engine.contracts import (
    Instrument, Product, Symbol, cascades_into, format_symbol, list_instruments, period_of,
    sibling, utc_day,
)
from engine.messages import (
    CancelAll, CancelReason, DelistInstrument, InstrumentDelisted, InstrumentStatus,
    InstrumentStatusChanged, ListInstrument, OrderType, PlaceOrder, RejectReason,
    SetInstrumentStatus, SetReferencePrice, Side, TimeInForce, Trade,
)

NS_PER_DAY = 86_400 * 10**9
CASCADING = ("quarter", "year")     # tenors that cascade at their last trading time
# symbol -> (best bid, best ask, last trade: ticks or None, the book: depth(side, n) gives its
# levels best first as (price, qty, orders), side 1 bids, -1 asks)
MarketView = Callable[[str], tuple]


class ClearingParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    index: IndexParams = IndexParams()
    margin: MarginParams = MarginParams()
    margin_by_class: dict[str, MarginParams] = {}   # a class's own, instead of ``margin``
    marks: MarkParams = MarkParams()
    fees: FeeSchedule = FeeSchedule()
    position_limit: int = 100_000                   # lots per account and instrument
    position_limits: dict[str, int] = {}            # account_id (a TOML key, so a string) -> lots
    closing_window_ns: int = 30 * 60 * 10**9      # settlement VWAP over the last 30 minutes
    settlement_min_volume: int = 50               # lots in the window for its VWAP to count,
    settlement_min_oi_bps: int = 1000             # and at least this share of open interest
    insurance_fund: int = 1_000_000 * 10**6       # micro-USD paid in when an exchange starts

    def __post_init__(self) -> None:
        if self.insurance_fund < 0:
            raise ValueError("insurance_fund must be zero or more (micro-USD)")
        if self.position_limit < 1 or any(not k.isdigit() or v < 1
                                           for k, v in self.position_limits.items()):
            raise ValueError("position limits must be positive, keyed by account_id")
        if self.closing_window_ns <= 0:
            raise ValueError("closing_window_ns must be positive")
        if self.settlement_min_volume < 1 or not 0 <= self.settlement_min_oi_bps <= 10_000:
            raise ValueError("settlement_min_volume must be positive and settlement_min_oi_bps "
                             "0..10000")


class Rejected(Exception):
    def __init__(self, reason: RejectReason, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.reason, self.detail, self.field = reason, detail, field


class ClearingHouse:
    """Everything clearing holds, and the commands that change it.

    Args:
        instruments: The listed instruments.
        params: Index, margin, mark, fee and settlement parameters.
        fee_account, insurance_account: Where fees go; who covers losses beyond collateral.
        providers: Accounts allowed to submit index observations.
        trusted_providers: Accounts allowed to feed in an external index value.
        products: What the rolling listing lists (none: it only cascades and delists).
    """

    CACHES = ("quiet",)

    def __init__(self, instruments: list[Instrument], params: ClearingParams, *,
                 fee_account: int, insurance_account: int, providers=(),
                 trusted_providers=(), products: tuple[Product, ...] = ()) -> None:
        self.instruments = {i.symbol: i for i in instruments}
        self.products = tuple(products)
        self.listed_on: datetime.date | None = None      # the day of the last listing step
        self.params = params
        self.providers = frozenset(providers)
        self.trusted = frozenset(trusted_providers)
        classes = sorted({i.gpu_class for i in instruments})
        self.index = {c: ClassIndex(c, params.index) for c in classes}
        prices = {i.symbol: i.reference_price for i in instruments}
        self.ledger = Ledger({i.symbol: Contract(i.contract_hours, i.tick_micros)
                              for i in instruments}, prices, params.fees, fee_account)
        self.insurance_account = insurance_account
        self.ledger.account(insurance_account)
        self.risk = ClearingRisk(
            instruments, self.ledger,
            {c: params.margin_by_class.get(c, params.margin) for c in classes}, prices,
            params.position_limit,
            {int(account): limit for account, limit in params.position_limits.items()})
        self.marks = {s: Mark(p) for s, p in prices.items()}
        self.window = {s: ClosingWindow() for s in prices}
        self.called: set[int] = set()          # accounts under a margin call
        self.pending: set[int] = set()         # liquidations waiting for a bid or an offer
        self.halted: set[str] = set()          # instruments not open (halted, closed, ...)
        self.final: dict[str, int] = {}        # symbol -> final settlement price
        self.settled_on: datetime.date | None = None     # the day of the last daily settlement
        # (day, index values) of the last mark step if it changed nothing:
        # what tells a step due (mark_due); not state, as no command's outcome depends on it.
        self.quiet: tuple | None = None

    # -- The engine's risk gate -----------------------------------------------------

    def check(self, account_id, symbol, side, price, qty, liquidation, replaces):
        return self.risk.check(account_id, symbol, side, price, qty, liquidation, replaces)

    def check_strip(self, account_id, side, legs):
        return self.risk.check_strip(account_id, side, legs)

    def position(self, account_id: int, symbol: str) -> int:
        return self.risk.position(account_id, symbol)

    def apply(self, events) -> None:
        self.risk.apply(events)
        for ev in events:
            kind = type(ev)
            if kind is Trade:
                # Only the trades a settlement now or later could average are kept.
                window = self.window[ev.symbol]
                window.add(ev.ts_ns, ev.price, ev.qty)
                window.drop_before(ev.ts_ns - self.params.closing_window_ns)
            elif kind is InstrumentStatusChanged:
                if ev.status is InstrumentStatus.OPEN:
                    self.halted.discard(ev.symbol)
                else:
                    self.halted.add(ev.symbol)
            elif kind is InstrumentDelisted:        # settled, just before: it stays out
                self.halted.discard(ev.symbol)

    # -- Commands -----------------------------------------------------------------------

    def process(self, cmd, market: MarketView) -> tuple[list, list]:
        """Apply one clearing command; return (its events, the engine commands it requires)."""
        events: list = []
        engine: list = []
        ts = cmd.ts_ns
        try:
            kind = type(cmd)
            if kind is SubmitObservation:
                self._observe(cmd, events)
            elif kind is SetExternalIndex:
                self._external(cmd, events)
            elif kind is FixIndex:
                self._fix(cmd, events)
            elif kind is Deposit:
                self._cash(cmd, events)
            elif kind is Withdraw:
                self._cash(cmd, events)
            elif kind is MarkStep:
                self._mark_step(ts, market, events, engine)
            elif kind is Settle:
                self._settle(ts, market, events, engine)
            elif kind is RollListing:
                self._roll(ts, events, engine)
            else:
                raise TypeError(f"not a clearing command: {kind.__name__}")
        except Rejected as r:
            events.append(ClearingRejected(r.reason, r.detail, r.field, ts))
        except (ObservationError, LedgerError) as e:
            events.append(ClearingRejected(e.reason, str(e), e.field, ts))
        return events, engine

    def _class_index(self, gpu_class: str) -> ClassIndex:
        index = self.index.get(gpu_class)
        if index is None:
            raise Rejected(RejectReason.UNKNOWN_GPU_CLASS,
                           f"no GPU class {gpu_class[:12]!r} is listed",
                           "gpu_class")
        return index

    def _observe(self, cmd: SubmitObservation, events: list) -> None:
        if cmd.provider_id not in self.providers:
            raise Rejected(RejectReason.FORBIDDEN, "this account is not an index provider")
        index = self._class_index(cmd.gpu_class)
        index.submit(Observation(cmd.provider_id, cmd.price, cmd.hours, cmd.observed_ns),
                     cmd.ts_ns)
        value, source = index.value(cmd.ts_ns)
        events.append(IndexValue(cmd.gpu_class, value, source, cmd.ts_ns))

    def _external(self, cmd: SetExternalIndex, events: list) -> None:
        if cmd.provider_id not in self.trusted:
            raise Rejected(RejectReason.FORBIDDEN,
                           "this account may not feed in an external index")
        index = self._class_index(cmd.gpu_class)
        index.set_external(External(cmd.provider_id, cmd.value, cmd.observed_ns), cmd.ts_ns)
        value, source = index.value(cmd.ts_ns)
        events.append(IndexValue(cmd.gpu_class, value, source, cmd.ts_ns))

    def _fix(self, cmd: FixIndex, events: list) -> None:
        classes = [cmd.gpu_class] if cmd.gpu_class is not None else list(self.index)
        indexes = [self._class_index(c) for c in classes]
        for index in indexes:
            events.append(IndexFixed(index.fix(utc_day(cmd.ts_ns), cmd.ts_ns), cmd.ts_ns))

    def _cash(self, cmd, events: list) -> None:
        if type(cmd) is Deposit:
            self.ledger.deposit(cmd.account_id, cmd.amount)
            amount, reason = cmd.amount, "deposit"
        else:
            # Gains not yet paid as variation margin cannot be taken out: they may go away.
            account = self.ledger.accounts.get(cmd.account_id)
            allowed = 0 if account is None else (
                min(self.risk.equity(cmd.account_id), account.collateral)
                - self.risk.margin(cmd.account_id)[1])
            self.ledger.withdraw(cmd.account_id, cmd.amount, allowed=max(allowed, 0))
            amount, reason = -cmd.amount, "withdrawal"
        events.append(CollateralMoved(cmd.account_id, amount,
                                      self.ledger.accounts[cmd.account_id].collateral, reason,
                                      cmd.ts_ns))

    # -- The scheduler's steps ----------------------------------------------------------

    def _mark_step(self, ts: int, market: MarketView, events: list, engine: list) -> None:
        self.risk.set_day(ts)
        alpha = self.params.marks.alpha_nano
        values = {c: index.value(ts)[0] for c, index in self.index.items()}
        marks = {}
        moved = False                     # a basis moved, if no mark did
        for symbol, inst in self.instruments.items():
            if symbol in self.final or self._awaits_cascade(inst, ts):
                continue
            mark = self.marks[symbol]
            before, basis = mark.price, mark.basis_nano
            settlement = self.ledger.settlement_prices[symbol]
            if ts < inst.last_trading_ns:
                impact = self.params.marks.impact_lots(inst.contract_hours)
                bid, ask = self._impact(market(symbol)[3], impact)
                mark.step(alpha, values[inst.gpu_class], bid, ask, settlement, impact)
            else:
                mark.price = delivery_price(self.index[inst.gpu_class], inst,
                                            values[inst.gpu_class], settlement)
            if mark.price != before:
                marks[symbol] = mark.price
            moved = moved or mark.basis_nano != basis
        if marks:
            self.risk.set_marks(marks)
            events.append(MarksUpdated(marks, ts))
        self._final_settlements(ts, events, engine)
        self._margin_calls(ts, market, events, engine)
        self.quiet = None if moved or events or engine else (ts // NS_PER_DAY, values)

    def mark_due(self, ts: int) -> bool:
        """Whether a mark step at ``ts`` could change anything, for a venue in which no
        command has run since the last one (the venue knows; a trade or a quote could move
        a mark). False only when that step changed nothing and time alone changes nothing
        by ``ts`` either: the same day (contracts reach their last trading time and the end
        of their delivery at midnight UTC, and scanning ranges and delivery prices move by
        the day), no index input leaving its window or ageing out, no liquidation waiting.
        So an idle market journals no mark steps, and leaving one out changes no state:
        what it would have done is nothing."""
        quiet = getattr(self, "quiet", None)          # None too in a snapshot from before
        if quiet is None or self.pending:
            return True
        day, values = quiet
        if ts // NS_PER_DAY != day:
            return True
        return any(index.moves_by(ts) or index.peek(ts)[0] != values[c]
                   for c, index in self.index.items())

    def _margin_calls(self, ts: int, market: MarketView, events: list, engine: list) -> None:
        for account_id in sorted(self.risk.exposures):
            if account_id in (self.ledger.fee_account, self.insurance_account):
                continue
            maintenance, initial = self.risk.margin(account_id)
            equity = self.risk.equity(account_id)
            if equity < maintenance:
                self._liquidate(account_id, equity, maintenance, ts, market, events, engine)
            else:
                self.pending.discard(account_id)
            if equity < initial:
                if account_id not in self.called:
                    self.called.add(account_id)
                    events.append(MarginCall(account_id, equity, initial, maintenance, ts))
            else:
                self.called.discard(account_id)

    def _liquidate(self, account_id: int, equity: int, maintenance: int, ts: int,
                   market: MarketView, events: list, engine: list) -> None:
        """One step of a liquidation (clearing.liquidation): cancel the account's orders;
        if its positions alone still need more than its equity, send one slice."""
        if self.risk.by_account.get(account_id):
            engine.append(CancelAll(ts_ns=ts, account_id=account_id,
                                    reason=CancelReason.LIQUIDATION))
            events.append(Liquidation(account_id, equity, maintenance, "cancel_orders", None, 0,
                                      ts))
        positions = {s: p.qty for s, p in self.ledger.accounts[account_id].positions.items()
                     if p.qty}
        if requirement(self.risk.legs, positions, (), self.risk.params_by_class)[0] <= equity:
            self.pending.discard(account_id)
            return
        trading = [s for s in positions if ts < self.instruments[s].last_trading_ns]
        most = {s: self.instruments[s].max_qty for s in trading if s not in self.halted}
        chosen = next_slice(positions, self.risk.legs, self.risk.params_by_class, equity, most)
        if chosen is None:
            if trading:         # halted: it goes on when they open (past trading, it waits
                self._pending(account_id, equity, maintenance, None, 0, ts, events)
            return              # for the final settlement)
        symbol, qty = chosen
        qty = min(max(qty, self.instruments[symbol].min_qty), abs(positions[symbol]))
        side = Side.SELL if positions[symbol] > 0 else Side.BUY
        bid, ask, _, _ = market(symbol)
        if (bid if side is Side.SELL else ask) is None:
            self._pending(account_id, equity, maintenance, symbol, qty, ts, events)
            return
        self.pending.discard(account_id)
        engine.append(PlaceOrder(ts_ns=ts, account_id=account_id, symbol=symbol, side=side,
                                 qty=qty, order_type=OrderType.MARKET, tif=TimeInForce.IOC,
                                 reduce_only=True, liquidation=True))
        events.append(Liquidation(account_id, equity, maintenance, "reduce", symbol, qty, ts))

    @staticmethod
    def _impact(book, qty: int) -> tuple:
        """What selling and buying ``qty`` lots (the contract's impact quantity) against
        the book come to (ticks x lots, clearing.marks.impact_cost), None on a side too thin
        for it."""
        return impact_cost(book.depth(1, qty), qty), impact_cost(book.depth(-1, qty), qty)

    def _pending(self, account_id: int, equity: int, maintenance: int, symbol: str | None,
                 qty: int, ts: int, events: list) -> None:
        """Nothing can be reduced now: say so once; every mark step tries again."""
        if account_id not in self.pending:
            self.pending.add(account_id)
            events.append(Liquidation(account_id, equity, maintenance, "pending", symbol, qty,
                                      ts))

    def _settle(self, ts: int, market: MarketView, events: list, engine: list) -> None:
        self.risk.set_day(ts)
        self.settled_on = utc_day(ts)
        oldest = ts - self.params.closing_window_ns
        values = {c: index.value(ts)[0] for c, index in self.index.items()}
        prices, tiers = {}, {}
        for symbol, inst in self.instruments.items():
            if symbol in self.final or self._awaits_cascade(inst, ts):
                continue
            window = self.window[symbol]
            window.drop_before(oldest)
            previous = self.ledger.settlement_prices[symbol]
            if ts < inst.last_trading_ns:
                _, _, last, book = market(symbol)
                impact = self.params.marks.impact_lots(inst.contract_hours)
                bid, ask = self._impact(book, impact)
                min_volume = max(self.params.settlement_min_volume, -(
                    -self.ledger.open_interest(symbol) * self.params.settlement_min_oi_bps
                    // 10_000))
                prices[symbol], tiers[symbol] = settlement_price(
                    window.trades(), last, bid, ask, self.marks[symbol].price,
                    previous, min_volume, impact)
                engine.append(SetReferencePrice(ts_ns=ts, symbol=symbol, price=prices[symbol]))
            else:
                prices[symbol] = delivery_price(self.index[inst.gpu_class], inst,
                                                values[inst.gpu_class], previous)
                tiers[symbol] = "delivery_average"
        vm = self.ledger.settle(prices)
        for symbol, price in prices.items():
            self.marks[symbol].anchor(price, values[self.instruments[symbol].gpu_class])
        self.risk.set_marks(prices)
        self.risk.settled()
        events.append(Settled(prices, tiers, ts))
        events.append(MarksUpdated(dict(prices), ts))
        self._pay(vm, "variation_margin", ts, events)
        self._cover_deficits(vm, ts, events)

    def _pay(self, vm: dict[int, int], reason: str, ts: int, events: list) -> None:
        for account_id, amount in sorted(vm.items()):
            events.append(CollateralMoved(account_id, amount,
                                          self.ledger.accounts[account_id].collateral, reason,
                                          ts))

    def _cover_deficits(self, vm: dict[int, int], ts: int, events: list) -> None:
        """The default waterfall (clearing.waterfall) for every deficit this settlement
        realized: an account left with nothing open, nothing unsettled, and less than nothing.

        The gainers that can be haircut are those that gained and still have collateral, for
        no more than the lesser of the two: never an account in deficit itself (a defaulter
        whose last trades gained would be paying its own deficit to itself)."""
        ledger = self.ledger
        gains = {}
        for account_id, gain in vm.items():
            collateral = ledger.accounts[account_id].collateral
            if gain > 0 and collateral > 0 and account_id != self.insurance_account:
                gains[account_id] = min(gain, collateral)
        for account_id in sorted(vm):
            account = ledger.accounts[account_id]
            if account.collateral >= 0 or account_id == self.insurance_account or any(
                    p.qty or p.settled_qty or p.day_cash for p in account.positions.values()):
                continue
            fund = ledger.accounts[self.insurance_account].collateral
            paid = cover(-account.collateral, fund, gains)
            if paid.insurance:
                ledger.move(self.insurance_account, account_id, paid.insurance)
                events.append(CollateralMoved(self.insurance_account, -paid.insurance,
                                              ledger.accounts[self.insurance_account].collateral,
                                              "insurance", ts))
                events.append(CollateralMoved(account_id, paid.insurance, account.collateral,
                                              "insurance", ts))
            for gainer, haircut in sorted(paid.haircuts.items()):
                gains[gainer] -= haircut
                ledger.move(gainer, account_id, haircut)
                events.append(CollateralMoved(gainer, -haircut,
                                              ledger.accounts[gainer].collateral, "haircut", ts))
                events.append(CollateralMoved(account_id, haircut, account.collateral, "haircut",
                                              ts))
            events.append(DefaultCovered(account_id, paid.deficit, paid.insurance,
                                         sum(paid.haircuts.values()), paid.uncovered, ts))

    def _final_settlements(self, ts: int, events: list, engine: list) -> None:
        for symbol, inst in self.instruments.items():
            if symbol in self.final or ts < inst.delivery_end_ns or inst.kind in CASCADING:
                continue
            last_day = inst.delivery_end - datetime.timedelta(days=1)
            values, carried = period_fixings(self.index[inst.gpu_class], inst, last_day,
                                             self.ledger.settlement_prices[symbol])
            price = delivery_average(values, len(values), 0)    # every day fixed: none to come
            self.final[symbol] = price
            vm = self.ledger.close_out(symbol, price)
            events.append(InstrumentSettled(symbol, price, len(values), carried, ts))
            self._pay(vm, "final_settlement", ts, events)
            self._cover_deficits(vm, ts, events)
            engine.append(SetInstrumentStatus(ts_ns=ts, symbol=symbol,
                                              status=InstrumentStatus.SETTLED))
            self.risk.settled()

    # -- The listing --------------------------------------------------------------------

    @staticmethod
    def _awaits_cascade(inst: Instrument, ts: int) -> bool:
        """A quarter or year past its last trading time is neither marked nor settled: the
        listing step cascades it."""
        return inst.kind in CASCADING and ts >= inst.last_trading_ns

    def cascade_due(self, ts: int) -> bool:
        """Whether a quarter or year has reached its last trading time uncascaded."""
        return any(self._awaits_cascade(i, ts) and s not in self.final
                   for s, i in self.instruments.items())

    def _roll(self, ts: int, events: list, engine: list) -> None:
        """Cascade what is due, delist what has settled, list what has come into range.

        Time never goes back for the listing: a step dated before the last one's day would
        list again what has cascaded and gone, so it is refused."""
        day = utc_day(ts)
        if self.listed_on is not None and day < self.listed_on:
            raise Rejected(RejectReason.INVALID_PARAMS, f"a listing step for {day} after the "
                           f"one for {self.listed_on}", "ts_ns")
        self.listed_on = day
        listed: list[str] = []
        delisted: list[str] = []
        for tenor in CASCADING[::-1]:       # a year's quarters may be due at once themselves
            for symbol in [s for s, i in self.instruments.items() if i.kind == tenor
                           and s not in self.final and self._awaits_cascade(i, ts)]:
                self._cascade(symbol, ts, events, engine, listed)
        for symbol in [s for s in self.final if s in self.instruments]:    # as they ended
            self._delist(symbol, ts, engine)
            delisted.append(symbol)
        for inst in list_instruments(self.products, self.listed_on) if self.products else ():
            if inst.symbol not in self.instruments:
                self._list(msgspec.structs.replace(
                    inst, reference_price=self._reference_for(inst)), ts, engine)
                listed.append(inst.symbol)
        if listed or delisted:
            self.risk.settled()
            events.append(ListingRolled(listed, delisted, ts))

    def _cascade(self, symbol: str, ts: int, events: list, engine: list,
                 listed: list[str]) -> None:
        """Positions in a quarter or year become the same positions in each of its periods,
        at its last settlement price (Ledger.cascade); then it is settled for good."""
        inst = self.instruments[symbol]
        price = self.ledger.settlement_prices[symbol]
        into = []
        for period in cascades_into(period_of(inst)):
            target = format_symbol(Symbol(inst.gpu_class, period))
            if target not in self.instruments:
                self._list(sibling(inst, period, price), ts, engine)
                listed.append(target)
            into.append(target)
        accounts = self.ledger.cascade(symbol, into)
        self.final[symbol] = price            # delisted in the same step, which rebuilds risk
        events.append(Cascaded(symbol, into, price, accounts, ts))
        engine.append(SetInstrumentStatus(ts_ns=ts, symbol=symbol,
                                          status=InstrumentStatus.SETTLED))

    def _reference_for(self, inst: Instrument) -> int:
        """Where a new contract's band starts: the last settlement price of the listed
        contract of its class delivering nearest to it (the later on a tie), else the
        product's reference price."""
        best = None
        for symbol, other in self.instruments.items():
            if other.gpu_class != inst.gpu_class or symbol in self.final:
                continue
            key = (abs((other.delivery_start - inst.delivery_start).days),
                   -other.delivery_start.toordinal(), symbol)
            if best is None or key < best[0]:
                best = (key, symbol)
        return inst.reference_price if best is None else \
            self.ledger.settlement_prices[best[1]]

    def _list(self, inst: Instrument, ts: int, engine: list) -> None:
        symbol = inst.symbol
        self.instruments[symbol] = inst
        self.risk.instruments[symbol] = inst
        self.ledger.add_contract(symbol, Contract(inst.contract_hours, inst.tick_micros),
                                 inst.reference_price)
        self.marks[symbol] = Mark(inst.reference_price)
        self.window[symbol] = ClosingWindow()
        engine.append(ListInstrument(ts_ns=ts, instrument=inst))

    def _delist(self, symbol: str, ts: int, engine: list) -> None:
        self.ledger.remove_contract(symbol)
        for held in (self.instruments, self.risk.instruments, self.risk.marks, self.marks,
                     self.window, self.final):
            held.pop(symbol, None)
        engine.append(DelistInstrument(ts_ns=ts, symbol=symbol))
