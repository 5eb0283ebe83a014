"""clearing.house composed with the engine: settlement, margin calls, liquidation, expiry."""
from __future__ import annotations

import datetime

import pytest
from hypothesis import event, given, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from composed import DAY, INSURANCE, MAR, T0, Venue, of, params
from clearing.index import IndexParams
from clearing.ledger import FeeSchedule
from clearing.settlement import ClosingWindow
from clearing.messages import (
    ClearingRejected, CollateralMoved, DefaultCovered, Deposit, FixIndex, IndexFixed,
    InstrumentSettled, Liquidation, MarginCall, MarkStep, Settle, Settled, SubmitObservation,
    Withdraw,
)
from engine.contracts import Product, date_to_ns
from engine.messages import (
    CancelAll, InstrumentStatus, OrderRejected, RejectReason, SetInstrumentStatus, Side,
    TimeInForce, Trade,
)


def test_a_days_settlement_pays_variation_margin_at_the_closing_vwap():
    """Trades at 2.110 x 2 and 2.120 x 2 in the window: settles at 2.115; the buyer of 4 at
    2.110/2.120 gets (2.115 - 2.110) x 2 + (2.115 - 2.120) x 2 = 0 on the day, the 2.100 buyer
    from earlier gets 0.015 x 10 x 744 h = $111.60."""
    v = Venue(params(fees=FeeSchedule(taker_centi_bps=0)))
    for account in (1, 2, 3):
        v.clear(Deposit, account_id=account, amount=10**12)
    v.place(2, Side.SELL, 10, 2100)
    v.place(1, Side.BUY, 10, 2100)
    v.ts += 2 * 3600 * 10**9                       # outside the closing window from here
    v.place(2, Side.SELL, 2, 2110)
    v.place(3, Side.BUY, 2, 2110)
    v.place(2, Side.SELL, 2, 2120)
    v.place(3, Side.BUY, 2, 2120)
    events = v.clear(Settle)
    settled = of(events, Settled)[0]
    assert (settled.prices[MAR], settled.tiers[MAR]) == (2115, "vwap")
    vm = {e.account_id: e.amount for e in of(events, CollateralMoved)}
    assert vm[1] == 15 * 10 * 744 * 1000 and vm[3] == 0 and sum(vm.values()) == 0
    assert v.ex.markets[MAR].band_centre == 2115          # the band follows the settlement


def test_the_closing_window_holds_only_the_trades_it_could_settle_on():
    """A day of trades keeps only the last 30 minutes' for the settlement's VWAP: the
    window held every trade of the day until the settlement (14 million tuples a day at
    500 orders/s), and the settlement is the same."""
    v = Venue(params(fees=FeeSchedule(taker_centi_bps=0)))
    for account in (1, 2):
        v.clear(Deposit, account_id=account, amount=10**12)
    for n in range(120):                           # one trade a minute for two hours
        v.place(2, Side.SELL, 1, 2100 + n % 7)
        v.place(1, Side.BUY, 1, 2100 + n % 7)
        v.ts += 60 * 10**9
    assert len(v.house.window[MAR]) <= 31
    settled = of(v.clear(Settle), Settled)[0]
    last = [2100 + n % 7 for n in range(120)][-30:]
    assert settled.prices[MAR] == round(sum(last) / len(last))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 50)), max_size=300))
def test_the_closing_window_holds_what_a_list_of_trades_would(steps):
    """Packed in an array and shifted down now and then, the window holds exactly the
    trades a plain list would, and its digest form depends only on them."""
    ClosingWindow.COMPACT = 6                     # shift often
    try:
        window, plain, ts = ClosingWindow(), [], 0
        for drop, step in steps:
            ts += step
            if drop:
                window.drop_before(ts - 40)
                plain = [t for t in plain if t[0] >= ts - 40]
            else:
                window.add(ts, 2000 + step, step % 5 + 1)
                plain.append((ts, 2000 + step, step % 5 + 1))
            assert window.trades() == [(p, q) for _, p, q in plain] and len(window) == len(plain)
            fresh = ClosingWindow()
            for t in plain:
                fresh.add(*t)
            assert window.__canonical__() == fresh.__canonical__()
    finally:
        ClosingWindow.COMPACT = 3 * 4096


def test_the_closing_window_at_a_steady_rate_keeps_little_beyond_its_trades():
    """Two hours at 20 trades a second, the window dropped at each: the array never holds
    more than an eighth beyond the window's trades (past COMPACT). Shifting only once half
    was dead grew a server by a quarter of a MiB a minute from the window's 30th minute to
    its 60th, at 500 orders a second (bench.memory)."""
    window, ts = ClosingWindow(), 0
    window_ns = 30 * 60 * 10**9
    worst = 0
    for k in range(2 * 3600 * 20):
        ts += 50_000_000
        window.add(ts, 2000 + k % 7, 1)
        window.drop_before(ts - window_ns)
        dead = len(window._rows) - 3 * len(window)
        worst = max(worst, dead - max(ClosingWindow.COMPACT, len(window._rows) // 8))
    assert len(window) == 30 * 60 * 20 + 1        # (one at the edge is in)
    assert worst <= 0, worst


def test_a_withdrawal_may_not_leave_equity_below_initial_margin():
    """A bid for 10 at 2.000 counts as filled (no credit for being below the 2.100 mark):
    10 x 0.315 x 744 h = $2,343.60; initial x1.1 = $2,577.96."""
    v = Venue()
    v.clear(Deposit, account_id=1, amount=3_000_000_000)
    v.place(1, Side.BUY, 10, 2000)
    assert v.house.risk.margin(1) == (2_343_600_000, 2_577_960_000)
    refused = v.clear(Withdraw, account_id=1, amount=422_050_000)
    assert of(refused, ClearingRejected)[0].reason == RejectReason.INSUFFICIENT_MARGIN
    assert v.collateral(1) == 3_000_000_000
    ok = v.clear(Withdraw, account_id=1, amount=422_040_000)
    assert of(ok, CollateralMoved)[0].balance == 2_577_960_000


def fallen_market(fund: int = 0) -> Venue:
    """Long 10 at 2.100 on $3,000 of collateral; others trade the market down to 1.600 in
    steps the band allows, and bid 10 at 1.590. The settlement (closing VWAP 1.619) takes
    the account to 3,000 - 10 x 0.481 x 744 h = -$578.64."""
    v = Venue(params(fees=FeeSchedule(taker_centi_bps=0)))
    v.clear(Deposit, account_id=1, amount=3_000_000_000)
    for account in (2, 3):
        v.clear(Deposit, account_id=account, amount=10**13)
    if fund:
        v.clear(Deposit, account_id=INSURANCE, amount=fund)
    v.place(2, Side.SELL, 10, 2100)
    v.place(1, Side.BUY, 10, 2100)
    v.place(1, Side.SELL, 1, 2300)                 # reduces risk: allowed; liquidation cancels it
    v.ts += 3600 * 10**9                           # the 2.100 trade leaves the closing window
    for price, qty in ((1900, 1), (1710, 1), (1600, 20)):
        v.place(3, Side.SELL, qty, price)
        v.place(2, Side.BUY, qty, price)
    v.place(2, Side.BUY, 10, 1590)                 # the bid the liquidation will hit
    settled = v.clear(Settle)
    assert of(settled, Settled)[0].prices[MAR] == 1619
    assert v.collateral(1) == -578_640_000
    return v


def test_after_a_settlement_equity_is_marked_at_the_settlement_prices():
    """At -$578.64 of collateral the account is not shown its old $3,000 of equity (marks
    left at 2.100 until the next mark step), and it may not buy."""
    v = fallen_market()
    assert v.house.risk.equity(1) == -578_640_000
    assert v.house.marks[MAR].price == 1619
    assert [e.reason for e in v.place(1, Side.BUY, 1, 1619) if type(e) is OrderRejected] == \
        [RejectReason.INSUFFICIENT_MARGIN]


def test_a_falling_market_calls_margin_then_liquidates():
    v = fallen_market()
    events = v.clear(MarkStep)
    assert [(e.account_id, e.action, e.symbol, e.qty) for e in of(events, Liquidation)] == \
        [(1, "cancel_orders", None, 0), (1, "reduce", MAR, 10)]
    assert [e.account_id for e in of(events, MarginCall)] == [1]
    assert [(t.price, t.qty) for t in of(events, Trade)] == [(1590, 10)]
    assert v.ex.open_orders(1) == [] and v.house.ledger.accounts[1].positions[MAR].qty == 0
    assert not of(v.clear(MarkStep), Liquidation)


def test_the_insurance_fund_pays_only_a_deficit_the_days_pnl_does_not_cover():
    """The account is liquidated at 1.700, above the 1.619 settlement: flat, at -$578.64
    until the next settlement pays it that trade's +$602.64. Nothing was lost: the fund
    pays nothing (it used to pay $578.64 at once, and the account withdrew the $602.64)."""
    v = fallen_market(fund=10**12)
    v.place(3, Side.BUY, 10, 1700)                 # a better bid than 1.590 for the liquidation
    events = v.clear(MarkStep)
    assert [(t.price, t.qty) for t in of(events, Trade)] == [(1700, 10)]
    assert not [e for e in events if type(e) is CollateralMoved and e.reason == "insurance"]
    assert v.collateral(INSURANCE) == 10**12
    events = v.clear(Settle)
    assert v.collateral(1) == -578_640_000 + 10 * 81 * 744 * 1000 == 24_000_000
    assert not of(events, DefaultCovered) and v.collateral(INSURANCE) == 10**12


@pytest.mark.parametrize("fund, insurance, mutualised, uncovered", [
    (10**12, 794_400_000, 0, 0),
    (500_000_000, 500_000_000, 294_400_000, 0),
    (0, 0, 474_672_000, 319_728_000)])
def test_a_realized_deficit_goes_down_the_waterfall(fund, insurance, mutualised, uncovered):
    """Liquidated at 1.590 an hour later, the account has lost 10 x 0.510 x 744 h = $3,794.40
    on $3,000: the next settlement (1.590, the liquidation's own trade) realizes a $794.40
    deficit. The fund pays what it has, never going below zero; the rest is taken from that
    settlement's gainers pro rata (account 3, short 22: +22 x 0.029 x 744 h = $474.672);
    what is still left stays on the account, reported."""
    v = fallen_market(fund)
    v.ts += 3600 * 10**9
    v.clear(MarkStep)
    events = v.clear(Settle)
    assert of(events, Settled)[0].prices[MAR] == 1590
    vm = {e.account_id: e.amount for e in of(events, CollateralMoved)
          if e.reason == "variation_margin"}
    assert vm[3] == 474_672_000 and sum(vm.values()) == 0
    covered = of(events, DefaultCovered)
    assert [(e.account_id, e.deficit, e.insurance, e.mutualised, e.uncovered)
            for e in covered] == [(1, 794_400_000, insurance, mutualised, uncovered)]
    assert v.collateral(INSURANCE) == fund - insurance >= 0
    assert v.collateral(1) == -uncovered
    haircuts = [(e.account_id, e.amount) for e in of(events, CollateralMoved)
                if e.reason == "haircut" and e.amount < 0]
    assert haircuts == ([(3, -mutualised)] if mutualised else [])
    led = v.house.ledger
    assert sum(a.collateral for a in led.accounts.values()) == led.deposited
    assert not of(v.clear(Settle), DefaultCovered)          # paid once


def test_cancelling_the_orders_alone_can_restore_maintenance():
    """Long 10 at 2.100 with a bid for 20 more at 1.890, on $7,800: margined as 30 lots. The
    market settles at 1.900 (scanning range 0.285): equity $6,312 is below the 30 lots'
    30 x 0.285 x 744 h = $6,361.20 but far above the position's own $2,120.40, so the bid
    is cancelled and nothing is sold."""
    v = Venue(params(fees=FeeSchedule(taker_centi_bps=0)))
    v.clear(Deposit, account_id=1, amount=7_800_000_000)
    for account in (2, 3):
        v.clear(Deposit, account_id=account, amount=10**13)
    v.place(2, Side.SELL, 10, 2100)
    v.place(1, Side.BUY, 10, 2100)
    assert not [e for e in v.place(1, Side.BUY, 20, 1890) if type(e) is OrderRejected]
    v.ts += 3600 * 10**9
    v.place(2, Side.BUY, 1, 1900)
    v.place(3, Side.SELL, 1, 1900)
    v.place(2, Side.BUY, 10, 1890)                 # a bid a liquidation could sell into
    v.clear(Settle)
    assert v.house.risk.equity(1) == 6_312_000_000 < v.house.risk.margin(1)[0] == 6_361_200_000
    events = v.clear(MarkStep)
    assert [e.action for e in of(events, Liquidation)] == ["cancel_orders"]
    assert not of(events, Trade) and v.ex.open_orders(1) == []
    assert v.house.ledger.accounts[1].positions[MAR].qty == 10
    assert not of(v.clear(MarkStep), Liquidation)


def test_a_position_larger_than_the_max_order_is_liquidated_in_slices():
    """Long 250 with max_qty 100, settled 0.350 lower: equity below zero, so all of it goes,
    100 lots a mark step (one order for 250 would be refused at every step)."""
    v = Venue(params(fees=FeeSchedule(taker_centi_bps=0)),
              product=Product(gpu_class="H100", reference_price=2100, max_qty=100))
    v.clear(Deposit, account_id=1, amount=64_450_000_000)     # initial margin of 250 lots
    for account in (2, 3):
        v.clear(Deposit, account_id=account, amount=10**13)
    for _ in range(3):
        v.place(2, Side.SELL, 100, 2100)
    for qty in (100, 100, 50):
        assert not [e for e in v.place(1, Side.BUY, qty, 2100) if type(e) is OrderRejected]
    v.ts += 3600 * 10**9
    for price in (1890, 1750):
        v.place(3, Side.SELL, 1, price)
        v.place(2, Side.BUY, 1, price)
    v.ts += 3600 * 10**9
    v.place(3, Side.SELL, 1, 1750)
    v.place(2, Side.BUY, 1, 1750)
    v.clear(Settle)
    assert v.house.risk.equity(1) < 0
    for _ in range(3):
        v.place(2, Side.BUY, 100, 1740)
    slices = []
    for _ in range(5):
        events = v.clear(MarkStep)
        assert not [e for e in events if type(e) is OrderRejected]
        slices += [e.qty for e in of(events, Liquidation) if e.action == "reduce"]
    assert slices == [100, 100, 50]
    assert v.house.ledger.accounts[1].positions[MAR].qty == 0


def test_a_liquidation_with_no_bid_waits_and_is_reported_once():
    """No bid to sell into: the liquidation is pending, told once, retried every step, and
    goes through when a bid comes."""
    v = fallen_market()
    v.ex.process(CancelAll(ts_ns=v.ts + 1, account_id=2))
    v.ts += 1
    steps = [v.clear(MarkStep) for _ in range(4)]
    assert [[(e.action, e.qty) for e in of(s, Liquidation)] for s in steps] == \
        [[("cancel_orders", 0), ("pending", 10)], [], [], []]
    assert not [e for s in steps for e in s if type(e) is OrderRejected]
    v.place(2, Side.BUY, 10, 1600)
    events = v.clear(MarkStep)
    assert [(e.action, e.qty) for e in of(events, Liquidation)] == [("reduce", 10)]
    assert [(t.price, t.qty) for t in of(events, Trade)] == [(1600, 10)]


def test_final_settlement_is_the_mean_of_the_fixings_over_delivery():
    """Fixings 2.100, 2.200 and 2.150 on 3, 10 and 20 March (and 1.900 on 27 February):
    every day of March counts, a day without a fixing at the one before it:
    (2 x 1900 + 7 x 2100 + 10 x 2200 + 12 x 2150) / 31 = 2.139, 28 days carried."""
    v = Venue(params(index=IndexParams(min_providers=1)))
    v.clear(Deposit, account_id=1, amount=10**12)
    v.clear(Deposit, account_id=2, amount=10**12)
    v.place(2, Side.SELL, 4, 2100)
    v.place(1, Side.BUY, 4, 2100)
    for day, price in ((datetime.date(2027, 2, 27), 1900), (datetime.date(2027, 3, 3), 2100),
                       (datetime.date(2027, 3, 10), 2200), (datetime.date(2027, 3, 20), 2150)):
        at = date_to_ns(day) + 16 * 3600 * 10**9
        v.clear(SubmitObservation, provider_id=81, gpu_class="H100", price=price, hours=10,
                observed_ns=at, at=at)
        assert of(v.clear(FixIndex), IndexFixed)[0].fixing.value == price
    events = v.clear(MarkStep, at=v.inst.delivery_end_ns)
    settled = of(events, InstrumentSettled)[0]
    assert (2 * 1900 + 7 * 2100 + 10 * 2200 + 12 * 2150) / 31 == pytest.approx(2138.71, 0.01)
    assert (settled.price, settled.fixings, settled.carried) == (2139, 31, 28)
    paid = {e.account_id: e.amount for e in of(events, CollateralMoved)}
    assert paid == {1: 4 * 39 * 744 * 1000, 2: -4 * 39 * 744 * 1000}
    assert v.ex.markets[MAR].status is InstrumentStatus.SETTLED
    assert MAR not in v.house.ledger.accounts[1].positions


def test_past_its_last_trading_day_a_contract_settles_at_its_delivery_average():
    """Traded at 2.100 in February; the book is gone at the close. In March, with 1 and 2
    March fixed at 2.060 and 2.090 and the index at 2.000, the daily settlement is
    (2060 + 2090 + 29 x 2000) / 31 = 2.005 (it used to revert to the last trade, 2.100), and
    the mark follows the index the same way."""
    v = Venue(params(index=IndexParams(min_providers=1), fees=FeeSchedule(taker_centi_bps=0)))
    v.clear(Deposit, account_id=1, amount=10**12)
    v.clear(Deposit, account_id=2, amount=10**12)
    v.place(2, Side.SELL, 4, 2100)
    v.place(1, Side.BUY, 4, 2100)
    for day, price in ((1, 2060), (2, 2090)):
        at = date_to_ns(datetime.date(2027, 3, day)) + 16 * 3600 * 10**9
        v.clear(SubmitObservation, provider_id=81, gpu_class="H100", price=price, hours=10,
                observed_ns=at, at=at)
        v.clear(FixIndex)
    at = date_to_ns(datetime.date(2027, 3, 3)) + 17 * 3600 * 10**9      # 2.090 has aged out
    v.clear(SubmitObservation, provider_id=81, gpu_class="H100", price=2000, hours=10,
            observed_ns=at, at=at)
    assert (2060 + 2090 + 29 * 2000) / 31 == pytest.approx(2004.8, 0.01)
    events = v.clear(Settle)
    settled = of(events, Settled)[0]
    assert (settled.prices[MAR], settled.tiers[MAR]) == (2005, "delivery_average")
    vm = {e.account_id: e.amount for e in of(events, CollateralMoved)}
    assert vm == {1: -4 * 95 * 744 * 1000, 2: 4 * 95 * 744 * 1000}
    v.clear(SubmitObservation, provider_id=81, gpu_class="H100", price=1900, hours=10,
            observed_ns=v.ts + 1, at=v.ts + 1)
    v.clear(MarkStep)
    assert v.house.marks[MAR].price == round((2060 + 2090 + 29 * 1950) / 31)


def test_bad_clearing_commands_are_refused_and_change_nothing():
    v = Venue()
    for cmd, kw, reason in (
            (SubmitObservation, dict(provider_id=1, gpu_class="H100", price=2100, hours=1,
                                     observed_ns=T0), RejectReason.FORBIDDEN),
            (SubmitObservation, dict(provider_id=81, gpu_class="Z9", price=2100, hours=1,
                                     observed_ns=T0), RejectReason.UNKNOWN_GPU_CLASS),
            (SubmitObservation, dict(provider_id=81, gpu_class="H100", price=2100, hours=0,
                                     observed_ns=T0), RejectReason.INVALID_OBSERVATION),
            (Deposit, dict(account_id=1, amount=0), RejectReason.INVALID_AMOUNT),
            (Withdraw, dict(account_id=1, amount=5), RejectReason.INSUFFICIENT_MARGIN),
            (FixIndex, dict(gpu_class="Z9"), RejectReason.UNKNOWN_GPU_CLASS)):
        events = v.clear(cmd, **kw)
        assert [e.reason for e in events] == [reason]
    assert v.house.index["H100"].observations == [] and 1 not in v.house.ledger.accounts


class HouseConservation(RuleBasedStateMachine):
    """Trading, index moves, marking, liquidations, settlements, the waterfall, the delivery
    period and final settlement never create or lose money or lots. Account 3 is thin, so it
    is called, liquidated and can default; the insurance fund starts small."""

    def __init__(self):
        super().__init__()
        self.v = Venue(params(index=IndexParams(min_providers=1)))
        for account, amount in ((1, 10**13), (2, 10**13), (3, 3_000_000_000),
                                (INSURANCE, 300_000_000)):
            self.v.clear(Deposit, account_id=account, amount=amount)

    @rule(account=st.integers(1, 3), side=st.sampled_from([Side.BUY, Side.SELL]),
          qty=st.integers(1, 30), offset=st.integers(-150, 150))
    def place(self, account, side, qty, offset):
        market = self.v.ex.markets[MAR]
        events = self.v.place(account, side, qty, market.band_centre + offset)
        if account != 3:
            assert not [e for e in events if type(e) is OrderRejected
                        and e.reason is RejectReason.INSUFFICIENT_MARGIN]

    @rule(side=st.sampled_from([Side.BUY, Side.SELL]), qty=st.integers(5, 40))
    def thin_account_trades(self, side, qty):
        """Account 1 quotes, the thin account takes it as far as its margin lets it."""
        centre = self.v.ex.markets[MAR].band_centre
        self.v.place(1, -side, qty, centre + (5 if side is Side.BUY else -5))
        self.v.place(3, side, qty)

    @rule(lots=st.integers(5, 11), fall_pct=st.integers(10, 40), bid_below=st.integers(0, 100))
    def crash(self, lots, fall_pct, bid_below):
        """The thin account buys what it can, the index falls, a settlement marks the loss,
        the liquidation sells into a bid, and the next settlement realizes what is left."""
        centre = self.v.ex.markets[MAR].band_centre
        self.v.place(1, Side.SELL, 40, centre)
        self.v.place(3, Side.BUY, lots, centre, tif=TimeInForce.IOC)
        self.observe(centre * (100 - fall_pct) // 100)
        self.settle(1)
        low = self.v.ex.markets[MAR].band_low
        self.v.place(2, Side.BUY, 40, low + bid_below)
        self.mark()
        self.settle(1)

    @rule(price=st.integers(1500, 2700))
    def observe(self, price):
        self.v.clear(SubmitObservation, provider_id=81, gpu_class="H100", price=price, hours=10,
                     observed_ns=self.v.ts + 1, at=self.v.ts + 1)

    @rule()
    def mark(self):
        self.check_waterfall(self.v.clear(MarkStep))

    @rule()
    def fix(self):
        self.v.clear(FixIndex)

    @rule(hours=st.integers(0, 30))
    def settle(self, hours):
        self.v.ts += hours * 3600 * 10**9
        events = self.v.clear(Settle)
        assert sum(e.amount for e in of(events, CollateralMoved)
                   if e.reason == "variation_margin") == 0
        self.check_waterfall(events)

    @rule(days=st.integers(1, 20))
    def advance(self, days):
        """Time runs on, past the last trading day and the end of delivery."""
        self.v.ts += days * DAY
        self.check_waterfall(self.v.clear(MarkStep))

    @rule(account=st.integers(1, 3), amount=st.integers(1, 10**12))
    def withdraw(self, account, amount):
        self.v.clear(Withdraw, account_id=account, amount=amount)

    def check_waterfall(self, events):
        """A deficit is paid only when realized, the fund never goes below zero, and no
        gainer pays more than it gained."""
        led = self.v.house.ledger
        for kind in (Liquidation, DefaultCovered, InstrumentSettled):
            if of(events, kind):
                event(kind.__name__)
        for e in of(events, DefaultCovered):
            assert not any(p.qty or p.settled_qty or p.day_cash
                           for p in led.accounts[e.account_id].positions.values())
            assert e.insurance + e.mutualised + e.uncovered == e.deficit
        paid = {}
        for e in of(events, CollateralMoved):
            if e.reason in ("variation_margin", "final_settlement"):
                paid[e.account_id] = e.amount
            elif e.reason == "haircut" and e.amount < 0:
                assert -e.amount <= paid.get(e.account_id, 0)

    @invariant()
    def conserved(self):
        led = self.v.house.ledger
        assert sum(a.collateral for a in led.accounts.values()) == led.deposited
        assert sum(p.qty for a in led.accounts.values() for p in a.positions.values()) == 0
        assert led.open_interest(MAR) == sum(max(p.qty, 0) for a in led.accounts.values()
                                             for p in a.positions.values())
        assert led.accounts[INSURANCE].collateral >= 0


TestHouseConservation = HouseConservation.TestCase
TestHouseConservation.settings = settings(max_examples=80, stateful_step_count=50, deadline=None)


def test_margin_and_position_limits_can_be_set_per_class_and_per_account():
    """H100 at 2x maintenance instead of 1.1x; account 1 limited to 5 lots, account 2 not."""
    from clearing.margin import MarginParams
    v = Venue(params(margin_by_class={"H100": MarginParams(initial_multiplier_pct=200)},
                             position_limits={"1": 5}))
    for account in (1, 2):
        v.clear(Deposit, account_id=account, amount=10**13)
    assert not [e for e in v.place(2, Side.BUY, 10, 2100) if type(e) is OrderRejected]
    maintenance, initial = v.house.risk.margin(2)
    assert initial == 2 * maintenance
    events = v.place(1, Side.BUY, 6, 2100)
    assert [e.reason for e in events if type(e) is OrderRejected] == [RejectReason.POSITION_LIMIT]


def test_liquidation_goes_through_when_the_market_fell_without_a_settlement():
    """The marks follow the index down intraday (no settlement yet): the reduce-only
    liquidation order is not refused by a margin check against the old settlement price,
    the position is closed, and liquidation does not repeat."""
    v = Venue(params(fees=FeeSchedule(taker_centi_bps=0),
                             index=IndexParams(min_providers=1)))
    v.clear(Deposit, account_id=1, amount=3_000_000_000)
    for account in (2, 3):
        v.clear(Deposit, account_id=account, amount=10**13)
    v.place(2, Side.SELL, 10, 2100)
    v.place(1, Side.BUY, 10, 2100)
    for price, qty in ((1900, 1), (1710, 1), (1600, 20)):
        v.place(3, Side.SELL, qty, price)
        v.place(2, Side.BUY, qty, price)
    v.place(2, Side.BUY, 10, 1590)
    v.place(3, Side.SELL, 10, 1620)
    v.clear(SubmitObservation, provider_id=81, gpu_class="H100", price=1600, hours=10,
            observed_ns=v.ts + 1, at=v.ts + 1)
    for _ in range(3000):
        events = v.clear(MarkStep)
        if of(events, Liquidation):
            break
    assert not [e for e in events if type(e) is OrderRejected]
    assert [(t.price, t.qty) for t in of(events, Trade)] == [(1590, 10)]
    assert v.house.ledger.accounts[1].positions[MAR].qty == 0
    assert not any(of(v.clear(MarkStep), Liquidation) for _ in range(5))


def test_a_day_fixed_twice_counts_once_in_the_final_settlement():
    """Fixing 3 March three times (2.100) and 10 March once (2.400): 1 and 2 March count at
    the last settlement price (no fixing before them), 4-9 March carry 2.100 and 11-31 March
    2.400: (9 x 2100 + 22 x 2400) / 31 = 2.313."""
    v = Venue(params(index=IndexParams(min_providers=1)))
    for day, price, times in ((datetime.date(2027, 3, 3), 2100, 3),
                              (datetime.date(2027, 3, 10), 2400, 1)):
        at = date_to_ns(day) + 16 * 3600 * 10**9
        v.clear(SubmitObservation, provider_id=81, gpu_class="H100", price=price, hours=10,
                observed_ns=at, at=at)
        for _ in range(times):
            v.clear(FixIndex)
    assert len(v.house.index["H100"].fixings) == 8
    settled = of(v.clear(MarkStep, at=v.inst.delivery_end_ns), InstrumentSettled)[0]
    assert (settled.price, settled.fixings, settled.carried) == (2313, 31, 29)


def test_a_liquidation_in_a_halted_contract_waits_without_sending_orders():
    """Operations halt March while its long is below maintenance: no slice is sent into a
    book that refuses it (an order and a refusal every second); the liquidation is pending,
    told once, and goes on when March resumes."""
    v = fallen_market()
    v.ex.process(SetInstrumentStatus(ts_ns=v.ts + 1, symbol=MAR,
                                     status=InstrumentStatus.HALTED))
    v.ts += 1
    steps = [v.clear(MarkStep) for _ in range(3)]
    assert [[(e.action, e.symbol) for e in of(s, Liquidation)] for s in steps] == \
        [[("cancel_orders", None), ("pending", None)], [], []]
    assert not [e for s in steps for e in s if type(e) is OrderRejected]
    v.ex.process(SetInstrumentStatus(ts_ns=v.ts + 1, symbol=MAR, status=InstrumentStatus.OPEN))
    v.ts += 1
    events = v.clear(MarkStep)
    assert [(e.action, e.qty) for e in of(events, Liquidation)] == [("reduce", 10)]
    assert [(t.price, t.qty) for t in of(events, Trade)] == [(1590, 10)]

