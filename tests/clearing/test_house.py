"""clearing.house composed with the engine: settlement, margin calls, liquidation, expiry."""
from __future__ import annotations

import datetime

from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from clearing.house import ClearingHouse, ClearingParams
from clearing.index import IndexParams
from clearing.ledger import FeeSchedule
from clearing.messages import (
    ClearingRejected, CollateralMoved, Deposit, FixIndex, IndexFixed, InstrumentSettled,
    Liquidation, MarginCall, MarkStep, Settle, Settled, SubmitObservation, Withdraw,
)
from engine.contracts import Product, date_to_ns, make_instrument, parse_symbol
from engine.exchange import Exchange
from engine.messages import (
    InstrumentStatus, OrderRejected, OrderType, PlaceOrder, RejectReason, Side, TimeInForce,
    Trade,
)

MAR = "H100-2027-03"
T0 = date_to_ns(datetime.date(2027, 1, 15))
DAY = 86_400 * 10**9
FEE, INSURANCE, PROVIDERS = 90, 91, (81, 82, 83)


class Venue:
    """The house and the engine composed as the gateway composes them."""

    def __init__(self, params=ClearingParams()):
        self.inst = make_instrument(Product(gpu_class="H100", reference_price=2100),
                                    parse_symbol(MAR).period)
        self.house = ClearingHouse([self.inst], params, fee_account=FEE,
                                   insurance_account=INSURANCE, providers=PROVIDERS)
        self.ex = Exchange([self.inst], self.house)
        self.ts = T0

    def market(self, symbol):
        m = self.ex.markets[symbol]
        return m.book.best_bid(), m.book.best_ask(), m.last_price

    def clear(self, cmd_type, **kw):
        self.ts = max(self.ts + 1, kw.pop("at", 0))
        events, engine = self.house.process(cmd_type(ts_ns=self.ts, **kw), self.market)
        for cmd in engine:
            events.extend(self.ex.process(cmd))
        return events

    def place(self, account, side, qty, price=None, **kw):
        self.ts += 1
        if price is None:
            kw.setdefault("order_type", OrderType.MARKET)
            kw.setdefault("tif", TimeInForce.IOC)
        return self.ex.process(PlaceOrder(ts_ns=self.ts, account_id=account, symbol=MAR,
                                          side=side, qty=qty, price=price, **kw))

    def collateral(self, account):
        return self.house.ledger.accounts[account].collateral


def of(events, kind):
    return [e for e in events if type(e) is kind]


def test_a_days_settlement_pays_variation_margin_at_the_closing_vwap():
    """Trades at 2.110 x 2 and 2.120 x 2 in the window: settles at 2.115; the buyer of 4 at
    2.110/2.120 gets (2.115 - 2.110) x 2 + (2.115 - 2.120) x 2 = 0 on the day, the 2.100 buyer
    from earlier gets 0.015 x 10 x 744 h = $111.60."""
    v = Venue(ClearingParams(fees=FeeSchedule(taker_centi_bps=0)))
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


def test_a_withdrawal_may_not_leave_equity_below_initial_margin():
    v = Venue()
    v.clear(Deposit, account_id=1, amount=3_000_000_000)
    v.place(1, Side.BUY, 10, 2000)                  # rests: initial $2,577.96 (test_margin.py)
    refused = v.clear(Withdraw, account_id=1, amount=500_000_000)
    assert of(refused, ClearingRejected)[0].reason == "insufficient_margin"
    assert v.collateral(1) == 3_000_000_000
    ok = v.clear(Withdraw, account_id=1, amount=400_000_000)
    assert of(ok, CollateralMoved)[0].balance == 2_600_000_000


def test_a_falling_market_calls_margin_then_liquidates_and_insurance_covers_the_rest():
    """Long 10 at 2.100 on $3,000 of collateral; others trade the market down to 1.600 in
    steps the band allows. The settlement (closing VWAP 1.619) leaves the account below
    maintenance: its offer is cancelled and its 10 lots sold at the 1.590 bid. It lost
    10 x 0.510 x 744 h = $3,794.40 on $3,000: the insurance fund pays the $794.40 left."""
    v = Venue(ClearingParams(fees=FeeSchedule(taker_centi_bps=0)))
    v.clear(Deposit, account_id=1, amount=3_000_000_000)
    for account in (2, 3):
        v.clear(Deposit, account_id=account, amount=10**13)
    v.clear(Deposit, account_id=INSURANCE, amount=10**12)
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
    events = v.clear(MarkStep)
    assert [e.account_id for e in of(events, Liquidation)] == [1]
    assert [e.account_id for e in of(events, MarginCall)] == [1]
    assert [(t.price, t.qty) for t in of(events, Trade)] == [(1590, 10)]
    assert v.ex.open_orders(1) == [] and v.house.ledger.accounts[1].positions[MAR].qty == 0
    v.clear(Settle)
    assert v.collateral(1) == 3_000_000_000 - 10 * 510 * 744 * 1000
    before = v.collateral(INSURANCE)
    events = v.clear(MarkStep)
    covered = [e for e in of(events, CollateralMoved) if e.reason == "insurance"]
    assert [(e.account_id, e.amount) for e in covered] == [(1, 794_400_000),
                                                           (INSURANCE, -794_400_000)]
    assert v.collateral(1) == 0 and v.collateral(INSURANCE) == before - 794_400_000
    assert not of(v.clear(MarkStep), Liquidation)


def test_final_settlement_is_the_mean_of_the_fixings_over_delivery():
    """Fixings 2.100, 2.200 and 2.150 in March (and one in February, not counted), each
    carried over the days until the next (1.900 on 1 and 2 March): 42,650 / 20 -> 2.132."""
    v = Venue(ClearingParams(index=IndexParams(min_providers=1)))
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
    assert (settled.price, settled.fixings) == (2132, 20)
    paid = {e.account_id: e.amount for e in of(events, CollateralMoved)}
    assert paid == {1: 4 * 32 * 744 * 1000, 2: -4 * 32 * 744 * 1000}
    assert v.ex.markets[MAR].status is InstrumentStatus.SETTLED
    assert MAR not in v.house.ledger.accounts[1].positions


def test_bad_clearing_commands_are_refused_and_change_nothing():
    v = Venue()
    for cmd, kw, reason in (
            (SubmitObservation, dict(provider_id=1, gpu_class="H100", price=2100, hours=1,
                                     observed_ns=T0), "forbidden"),
            (SubmitObservation, dict(provider_id=81, gpu_class="Z9", price=2100, hours=1,
                                     observed_ns=T0), "unknown_gpu_class"),
            (SubmitObservation, dict(provider_id=81, gpu_class="H100", price=2100, hours=0,
                                     observed_ns=T0), "invalid_observation"),
            (Deposit, dict(account_id=1, amount=0), "invalid_amount"),
            (Withdraw, dict(account_id=1, amount=5), "insufficient_margin"),
            (FixIndex, dict(gpu_class="Z9"), "unknown_gpu_class")):
        events = v.clear(cmd, **kw)
        assert [e.reason for e in events] == [reason]
    assert v.house.index["H100"].observations == [] and v.collateral(1) == 0


class HouseConservation(RuleBasedStateMachine):
    """Trading, marking, settling and withdrawing never create or lose money or lots."""

    def __init__(self):
        super().__init__()
        self.v = Venue()
        for account in (1, 2, 3):
            self.v.clear(Deposit, account_id=account, amount=10**13)

    @rule(account=st.integers(1, 3), side=st.sampled_from([Side.BUY, Side.SELL]),
          qty=st.integers(1, 30), price=st.integers(2000, 2200))
    def place(self, account, side, qty, price):
        events = self.v.place(account, side, qty, price)
        assert not [e for e in events if type(e) is OrderRejected
                    and e.reason is RejectReason.INSUFFICIENT_MARGIN]

    @rule()
    def mark(self):
        self.v.clear(MarkStep)

    @rule(hours=st.integers(0, 30))
    def settle(self, hours):
        self.v.ts += hours * 3600 * 10**9
        events = self.v.clear(Settle)
        assert sum(e.amount for e in of(events, CollateralMoved)) == 0

    @rule(account=st.integers(1, 3), amount=st.integers(1, 10**12))
    def withdraw(self, account, amount):
        self.v.clear(Withdraw, account_id=account, amount=amount)

    @invariant()
    def conserved(self):
        led = self.v.house.ledger
        assert sum(a.collateral for a in led.accounts.values()) == led.deposited
        assert sum(p.qty for a in led.accounts.values() for p in a.positions.values()) == 0
        assert led.open_interest(MAR) == sum(max(p.qty, 0) for a in led.accounts.values()
                                             for p in a.positions.values())


TestHouseConservation = HouseConservation.TestCase
TestHouseConservation.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)


def test_margin_and_position_limits_can_be_set_per_class_and_per_account():
    """H100 at 2x maintenance instead of 1.1x; account 1 limited to 5 lots, account 2 not."""
    from clearing.margin import MarginParams
    v = Venue(ClearingParams(margin_by_class={"H100": MarginParams(initial_multiplier_pct=200)},
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
    v = Venue(ClearingParams(fees=FeeSchedule(taker_centi_bps=0),
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
    """Fixing 3 March three times (2.100, carried to the 9th) and 10 March once (2.400):
    8 fixings, (7 x 2.100 + 2.400) / 8 = 2.1375 -> 2.138."""
    v = Venue(ClearingParams(index=IndexParams(min_providers=1)))
    for day, price, times in ((datetime.date(2027, 3, 3), 2100, 3),
                              (datetime.date(2027, 3, 10), 2400, 1)):
        at = date_to_ns(day) + 16 * 3600 * 10**9
        v.clear(SubmitObservation, provider_id=81, gpu_class="H100", price=price, hours=10,
                observed_ns=at, at=at)
        for _ in range(times):
            v.clear(FixIndex)
    assert len(v.house.index["H100"].fixings) == 8
    settled = of(v.clear(MarkStep, at=v.inst.delivery_end_ns), InstrumentSettled)[0]
    assert (settled.price, settled.fixings) == (2138, 8)
