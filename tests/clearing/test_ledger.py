"""clearing.ledger: fees, positions and variation margin, by hand and under hypothesis."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from clearing.ledger import Contract, FeeSchedule, Ledger, LedgerError, fee_micros
from engine.messages import RejectReason, Side, Trade

MAR, APR = "H100-2027-03", "H100-2027-04"
CONTRACTS = {MAR: Contract(hours=744, tick_micros=1000), APR: Contract(hours=720, tick_micros=1000)}
FEES = FeeSchedule(maker_centi_bps=-50, taker_centi_bps=250)
FEE_ACCOUNT = 99
trade_ids = iter(range(1, 10**9))


def ledger() -> Ledger:
    return Ledger(CONTRACTS, {MAR: 2100, APR: 2150}, FEES, FEE_ACCOUNT)


def fill(led, symbol, price, qty, buyer, seller, aggressor=Side.BUY):
    maker, taker = (seller, buyer) if aggressor is Side.BUY else (buyer, seller)
    return led.apply_trade(Trade(next(trade_ids), symbol, price, qty, aggressor, 1, maker, 0,
                                 2, taker, 0, 0))


def test_a_fills_fee_by_hand():
    """10 March lots at 2.145: notional 10 x 744 h x $2.145 = $15,958.80.

    Taker 2.5 bp = $3.98970 -> 3,989,700 micro-USD; maker rebate 0.5 bp = $0.79794.
    """
    led = ledger()
    maker_fee, taker_fee = fill(led, MAR, 2145, 10, buyer=1, seller=2)
    assert (maker_fee, taker_fee) == (-797_940, 3_989_700)
    assert led.accounts[1].collateral == -3_989_700 and led.accounts[2].collateral == 797_940
    assert led.accounts[FEE_ACCOUNT].collateral == 3_989_700 - 797_940


def test_fees_round_against_the_member():
    """A charge of 0.4 micro rounds up to 1; a rebate of 0.4 micro rounds down to 0."""
    assert fee_micros(1600, 250) == 1 and fee_micros(1600, -250) == 0
    assert fee_micros(4_000_000, 250) == 1000 and fee_micros(4_000_000, -250) == -1000


def test_a_days_variation_margin_by_hand():
    """Bought 10 at 2.145, settled at 2.160: +0.015 x 10 x 744 h = +$111.60 to the buyer."""
    led = Ledger(CONTRACTS, {MAR: 2100, APR: 2150}, FeeSchedule(taker_centi_bps=0), FEE_ACCOUNT)
    fill(led, MAR, 2145, 10, buyer=1, seller=2)
    vm = led.settle({MAR: 2160})
    assert vm == {1: 111_600_000, 2: -111_600_000}
    # The next day: sold 4 at 2.170, settled at 2.150.
    # Buyer: 6 x (2.150 - 2.160) + 4 x (2.170 - 2.160) = -0.060 + 0.040 = -0.020 x 744 h.
    fill(led, MAR, 2170, 4, buyer=3, seller=1, aggressor=Side.SELL)
    vm = led.settle({MAR: 2150})
    assert vm[1] == -14_880_000 and sum(vm.values()) == 0
    assert vm[3] == 4 * (2150 - 2170) * 744 * 1000


def test_average_entry_and_realized_pnl():
    """Buy 10 at 2.100 and 10 at 2.200 (avg 2.150), sell 15 at 2.180: +0.030 x 15 x 744 h."""
    led = Ledger(CONTRACTS, {MAR: 2100, APR: 2150}, FeeSchedule(taker_centi_bps=0), FEE_ACCOUNT)
    fill(led, MAR, 2100, 10, buyer=1, seller=2)
    fill(led, MAR, 2200, 10, buyer=1, seller=2)
    pos = led.accounts[1].positions[MAR]
    assert led.avg_price(MAR, pos) == 2150
    fill(led, MAR, 2180, 15, buyer=2, seller=1)
    assert (pos.qty, led.avg_price(MAR, pos), pos.realized_micros) == \
        (5, 2150, 30 * 15 * 744 * 1000)
    fill(led, MAR, 2000, 10, buyer=2, seller=1)          # flips to short 5 at 2.000
    assert (pos.qty, led.avg_price(MAR, pos)) == (-5, 2000)
    assert pos.realized_micros == (30 * 15 - 150 * 5) * 744 * 1000
    assert led.open_interest(MAR) == 5


def test_withdrawals_are_limited():
    """Nothing past collateral (or the margin check's allowance) leaves; bad amounts are refused."""
    led = ledger()
    led.deposit(1, 1_000_000)
    with pytest.raises(LedgerError) as caught:
        led.withdraw(1, 600_000, allowed=500_000)
    assert caught.value.reason == RejectReason.INSUFFICIENT_MARGIN
    for bad in (0, -5):
        with pytest.raises(LedgerError):
            led.deposit(1, bad)
    led.withdraw(1, 500_000, allowed=500_000)
    assert led.accounts[1].collateral == 500_000 and led.deposited == 500_000


class Conservation(RuleBasedStateMachine):
    """Random fills, deposits, withdrawals and settlements never create or lose money."""

    def __init__(self) -> None:
        super().__init__()
        self.led = ledger()
        self.vm_sums: list[int] = []

    @rule(symbol=st.sampled_from([MAR, APR]), price=st.integers(1900, 2300),
          qty=st.integers(1, 50), buyer=st.integers(1, 5), seller=st.integers(1, 5),
          aggressor=st.sampled_from([Side.BUY, Side.SELL]))
    def trade(self, symbol, price, qty, buyer, seller, aggressor):
        if buyer != seller:
            fill(self.led, symbol, price, qty, buyer, seller, aggressor)

    @rule(account=st.integers(1, 5), amount=st.integers(1, 10**9))
    def deposit(self, account, amount):
        self.led.deposit(account, amount)

    @rule(account=st.integers(1, 5), amount=st.integers(1, 10**9))
    def withdraw(self, account, amount):
        try:
            self.led.withdraw(account, amount)
        except LedgerError:
            pass

    @rule(mar=st.integers(1900, 2300), apr=st.integers(1900, 2300), both=st.booleans())
    def settle(self, mar, apr, both):
        vm = self.led.settle({MAR: mar, APR: apr} if both else {MAR: mar})
        self.vm_sums.append(sum(vm.values()))

    @rule(symbol=st.sampled_from([MAR, APR]), price=st.integers(1900, 2300))
    def close_out(self, symbol, price):
        vm = self.led.close_out(symbol, price)
        self.vm_sums.append(sum(vm.values()))
        assert all(symbol not in a.positions for a in self.led.accounts.values())

    @invariant()
    def positions_net_to_zero(self):
        for symbol in (MAR, APR):
            assert sum(p.qty for a in self.led.accounts.values()
                       if (p := a.positions.get(symbol))) == 0

    @invariant()
    def money_is_conserved(self):
        assert sum(a.collateral for a in self.led.accounts.values()) == self.led.deposited
        assert all(s == 0 for s in self.vm_sums)

    @invariant()
    def unrealized_pnl_nets_to_zero_at_any_marks(self):
        for marks in ({MAR: 2000, APR: 2222}, {}):
            assert sum(self.led.pnl_since_settlement(a, marks)
                       for a in self.led.accounts.values()) == 0


TestConservation = Conservation.TestCase
TestConservation.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


@given(st.lists(st.tuples(st.sampled_from([Side.BUY, Side.SELL]), st.integers(1, 30),
                          st.integers(1900, 2300)), min_size=1, max_size=30))
def test_realized_plus_open_value_is_what_the_trades_made(fills):
    """For one account: realized P&L + qty x (mark - avg) = the trades' P&L at the mark."""
    led = Ledger(CONTRACTS, {MAR: 2100, APR: 2150}, FeeSchedule(taker_centi_bps=0), FEE_ACCOUNT)
    for side, qty, price in fills:
        if side is Side.BUY:
            fill(led, MAR, price, qty, buyer=1, seller=2)
        else:
            fill(led, MAR, price, qty, buyer=2, seller=1)
    pos = led.accounts[1].positions[MAR]
    mark = 2100
    traded = sum((mark - price) * (qty if side is Side.BUY else -qty) for side, qty, price in fills)
    # Partial closes round the cost they take, but what is open carries the rest: exact.
    assert pos.realized_micros + led.unrealized(MAR, pos, mark) == traded * 744 * 1000
    assert type(pos.cost) is int


def test_settling_one_symbol_leaves_the_others_alone():
    """A settlement of March only does not touch April's day's trading."""
    led = Ledger(CONTRACTS, {MAR: 2100, APR: 2150}, FeeSchedule(taker_centi_bps=0), FEE_ACCOUNT)
    fill(led, MAR, 2100, 2, buyer=1, seller=2)
    fill(led, APR, 2150, 3, buyer=1, seller=2)
    vm = led.settle({MAR: 2110})
    assert vm == {1: 2 * 10 * 744 * 1000, 2: -2 * 10 * 744 * 1000}
    apr = led.accounts[1].positions[APR]
    assert (apr.settled_qty, apr.day_cash) == (0, -3 * 2150)
    assert led.settlement_prices == {MAR: 2110, APR: 2150}


def test_final_settlement_pays_out_and_closes_every_position():
    """Long 2 March at 2.100 closed out at 2.130: +0.030 x 2 x 744 h, and the position is gone."""
    led = Ledger(CONTRACTS, {MAR: 2100, APR: 2150}, FeeSchedule(taker_centi_bps=0), FEE_ACCOUNT)
    fill(led, MAR, 2100, 2, buyer=1, seller=2)
    vm = led.close_out(MAR, 2130)
    assert vm == {1: 44_640_000, 2: -44_640_000}
    assert MAR not in led.accounts[1].positions and MAR not in led.accounts[2].positions
    assert led.accounts[1].closed_realized == 44_640_000
    assert led.open_interest(MAR) == 0


def test_cost_basis_stays_small_through_thousands_of_trims_and_top_ups():
    """Trimming and topping up a 7-lot position 6,000 times: the average entry price stays a
    small exact number (a Fraction grew by ~0.85 digits a cycle until the state digest failed),
    and a full close realizes exactly what the trades made."""
    led = Ledger(CONTRACTS, {MAR: 2100, APR: 2150}, FeeSchedule(taker_centi_bps=0), FEE_ACCOUNT)
    fill(led, MAR, 2100, 7, buyer=1, seller=2)
    traded = -7 * 2100
    for cycle in range(6000):
        sell, buy = 2100 + cycle % 13, 2095 + cycle % 11
        fill(led, MAR, sell, 3, buyer=2, seller=1, aggressor=Side.SELL)
        fill(led, MAR, buy, 3, buyer=1, seller=2)
        traded += 3 * (sell - buy)
    pos = led.accounts[1].positions[MAR]
    assert type(pos.cost) is int and abs(pos.cost) < 10**12
    assert len(str(led.avg_price(MAR, pos))) < 30
    fill(led, MAR, 2200, 7, buyer=2, seller=1, aggressor=Side.SELL)
    traded += 7 * 2200
    assert pos.qty == 0 and pos.cost == 0
    assert pos.realized_micros == traded * 744 * 1000


@pytest.mark.parametrize("maker, taker", [(-300, 250), (-1, 0), (-101, 1000), (0, 1001),
                                          (300, 250)])
def test_a_fee_schedule_that_could_pay_more_rebate_than_it_charges_is_refused(maker, taker):
    """-1 bp <= maker <= taker <= 10 bp (in 1/100 bp), and a maker rebate never above the
    taker fee: otherwise a trade could drive the fee account negative."""
    with pytest.raises(ValueError, match="maker"):
        FeeSchedule(maker_centi_bps=maker, taker_centi_bps=taker)


@given(st.integers(-100, 1000), st.integers(0, 1000), st.integers(1, 10**6),
       st.integers(1, 5000))
def test_the_fee_account_never_loses_on_a_trade(maker, taker, qty, price):
    """Whatever valid schedule, each trade's fees net to zero or more for the exchange."""
    try:
        fees = FeeSchedule(maker_centi_bps=maker, taker_centi_bps=taker)
    except ValueError:
        return
    led = Ledger(CONTRACTS, {MAR: 2100, APR: 2150}, fees, FEE_ACCOUNT)
    fill(led, MAR, price, qty, buyer=1, seller=2)
    assert led.accounts[FEE_ACCOUNT].collateral >= 0
