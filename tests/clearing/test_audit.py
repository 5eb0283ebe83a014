"""Hostile scenarios against the house composed with the engine (as gateway/core/venue.py composes
them): each test's docstring says what a hostile account did and what it cost, with its
figures, and the test asserts what holds now.

H100 March 2027 (744 GPU-hours a lot) and April 2027 (720), reference price 2.100; one tick
is $0.001 per GPU-hour, so a tick on a March lot is $0.744 (744,000 micro-USD).
"""
from __future__ import annotations

import datetime

from composed import (
    APR, DAY, HOUR, INSURANCE, MAR, NO_FEES, PROVIDERS, Venue, of, params, refused,
)
from clearing.house import ClearingParams
from clearing.messages import (
    ClearingRejected, CollateralMoved, DefaultCovered, Deposit, FixIndex, IndexFixed, Liquidation,
    MarkStep, Settle, Settled, Withdraw,
)
from engine.contracts import Product, date_to_ns
from engine.messages import (
    InstrumentStatus, RejectReason, SetInstrumentStatus, Side, TimeInForce, Trade,
)


def test_an_account_with_no_collateral_cannot_be_given_a_position_the_fund_pays_for():
    """A bid beyond the down scenario needs no margin at all (its fill loses nothing in any
    scenario), so an account that never deposited a cent rests a bid for 1,000 lots, and its
    partner fills it. The fund then pays the account's loss, and the partner keeps it.

    Accounts 3 and 4 (partners) print one lot at 1.980: the band is now 1.782..2.178 while
    the March scanning range is still 15% of the 2.100 settlement, 0.315, so a bid at 1.784
    is 0.001 beyond the full fall (2.100 - 0.315 = 1.785). Account 1 (no deposit) bids 1,000
    at 1.784: margin 0, accepted. Account 2 sells it 1,000 at 1.784: account 1 is long 1,000
    lots whose initial margin is $257,796 on $0 of collateral. The day settled at 1.784, the
    band re-centred to 1.606..1.962, account 2 bid 1,000 at 1.606, the only bid, and the next
    mark step liquidated account 1 into it: a loss of $132,730.716 with its fee, which the
    insurance fund paid, while account 2 withdrew its $132,100.176. Now a bid counts as
    filled, with no credit for being below a mark that can lag the market: it needs the
    margin of the 1,000 lots it would make, and it is refused."""
    v = Venue()
    for account in (2, 3, 4, INSURANCE):
        v.clear(Deposit, account_id=account, amount=10**12)
    v.place(3, Side.SELL, 1, 1980)
    v.place(4, Side.BUY, 1, 1980)
    assert v.ex.markets[MAR].band_low == 1782 and v.house.risk.legs[MAR].span == 315 * 744
    events = v.place(1, Side.BUY, 1000, 1784)                    # account 1 has $0
    assert refused(events) == [RejectReason.INSUFFICIENT_MARGIN]
    assert "initial margin would be 257796.000000 USD" in events[0].detail
    v.place(2, Side.SELL, 1000, 1784)
    assert 1 not in v.house.ledger.accounts and v.collateral(INSURANCE) == 10**12


def test_a_defaulter_is_never_its_own_gainer_in_the_waterfall():
    """The waterfall haircuts "the accounts that gained variation margin in that settlement",
    and that can include the defaulter itself: its liquidation closed above the previous
    settlement, so the settlement that realizes its deficit also pays it a gain.

    Long 10 at 2.100 on $3,000 (no fees, empty insurance fund); the day settles at 1.619:
    -$578.64 with the position open. The liquidation sells 10 at 1.650 to account 3; the next
    settlement (1.650) pays account 1 10 x 0.031 x 744 h = +$230.64, leaving it flat at
    -$348.00, and account 2 (long 12) +$276.768. The deficit of $348.00 is split over both
    "gainers", 310 : 372: $158.181818 was taken from account 1 and paid to account 1 (a move
    to itself), $189.818182 from account 2. DefaultCovered said mutualised $348.00,
    uncovered 0, yet account 1 was left at -$158.181818 that nobody paid or reported. Now
    only account 2 is haircut, for all of its $276.768 gain, and the $71.232 left is
    reported uncovered."""
    v = Venue(params(fees=NO_FEES))
    v.clear(Deposit, account_id=1, amount=3_000_000_000)
    for account in (2, 3):
        v.clear(Deposit, account_id=account, amount=10**13)
    v.place(2, Side.SELL, 10, 2100)
    v.place(1, Side.BUY, 10, 2100)
    v.ts += HOUR
    for price, qty in ((1900, 1), (1710, 1), (1600, 20)):
        v.place(3, Side.SELL, qty, price)
        v.place(2, Side.BUY, qty, price)
    assert of(v.clear(Settle), Settled)[0].prices[MAR] == 1619
    assert v.collateral(1) == -578_640_000
    v.ts += HOUR                                   # the day's earlier trades leave the window
    v.place(3, Side.BUY, 10, 1650)
    assert [(t.price, t.qty) for t in of(v.clear(MarkStep), Trade)] == [(1650, 10)]
    events = v.clear(Settle)
    assert of(events, Settled)[0].prices[MAR] == 1650
    covered = of(events, DefaultCovered)
    assert [(e.deficit, e.insurance, e.mutualised, e.uncovered) for e in covered] == \
        [(348_000_000, 0, 276_768_000, 71_232_000)]
    assert v.conserved()
    haircut_from = {e.account_id: -e.amount for e in of(events, CollateralMoved)
                    if e.reason == "haircut" and e.amount < 0}
    assert haircut_from == {2: 276_768_000}
    assert v.collateral(1) == -covered[0].uncovered


def test_a_halted_contract_does_not_block_the_liquidation_of_the_others():
    """Long 10 March and 5 April (no fees), $6,000 of collateral; both months fall and settle
    at 1.753, leaving equity $2,169.12 against maintenance $2,903.52. Operations halt March.
    Every mark step sent the liquidation to March (its largest risk), the engine refused it
    (instrument_not_trading), and April, with 50 lots bid at 1.640, was never touched: a
    refused order every second, never reported as pending. Now the halted month waits and
    April is reduced."""
    v = Venue(params(fees=NO_FEES), symbols=(MAR, APR))
    v.clear(Deposit, account_id=1, amount=6_000_000_000)
    for account in (2, 3):
        v.clear(Deposit, account_id=account, amount=10**13)
    v.place(2, Side.SELL, 10, 2100)
    assert not refused(v.place(1, Side.BUY, 10, 2100))
    v.place(2, Side.SELL, 5, 2100, symbol=APR)
    assert not refused(v.place(1, Side.BUY, 5, 2100, symbol=APR))
    v.ts += HOUR
    for symbol in (MAR, APR):
        for price in (1900, 1710, 1650):
            v.place(3, Side.SELL, 1, price, symbol=symbol)
            v.place(2, Side.BUY, 1, price, symbol=symbol)
        v.place(2, Side.BUY, 50, 1640, symbol=symbol)
    assert of(v.clear(Settle), Settled)[0].prices == {MAR: 1753, APR: 1753}
    assert (v.house.risk.equity(1), v.house.risk.margin(1)[0]) == (2_169_120_000, 2_903_520_000)
    v.engine(SetInstrumentStatus, symbol=MAR, status=InstrumentStatus.HALTED)
    refusals = []
    for _ in range(5):
        events = v.clear(MarkStep)
        refusals += refused(events)
    assert not refusals and v.position(1, APR) < 5, \
        "the liquidation keeps hitting the halted month and never reduces April"


def test_a_liquidation_step_does_not_raise_the_risk_it_is_meant_to_reduce():
    """A calendar spread whose near leg is in delivery: long 10 March, short 10 April, entered
    on 20 February at 2.100 (no fees), collateral withdrawn down to the spread's initial
    margin, $1,275.12. On 2 March (March past trading) April rises to a 2.250 settlement;
    equity $195.12 is below the spread's maintenance of $439.20. The only leg that can
    trade is April, so the liquidation buys all 10 April back (at 2.310): the account is left
    naked long 10 March for the rest of the delivery month, maintenance $3,124.80 (7.1x what
    it was) against equity of -$236.88, and nothing further can be done until 1 April: a
    10% fall of the index costs 10 x 0.210 x 744 h = $1,562.40 more, which the fund pays.
    Liquidation raised the house's risk instead of reducing it. Now it leaves the spread
    alone (pending: nothing it could trade lowers the requirement)."""
    v = Venue(params(fees=NO_FEES), symbols=(MAR, APR),
              t0=date_to_ns(datetime.date(2027, 2, 20)))
    for account in (2, 3):
        v.clear(Deposit, account_id=account, amount=10**13)
    v.clear(Deposit, account_id=1, amount=4_000_000_000)
    v.place(2, Side.SELL, 10, 2100)
    assert not refused(v.place(1, Side.BUY, 10, 2100))
    v.place(2, Side.BUY, 10, 2100, symbol=APR)
    assert not refused(v.place(1, Side.SELL, 10, 2100, symbol=APR))
    v.clear(Settle)
    assert v.house.risk.margin(1) == (1_159_200_000, 1_275_120_000)
    v.clear(Withdraw, account_id=1, amount=4_000_000_000 - 1_275_120_000)
    v.ts = date_to_ns(datetime.date(2027, 3, 2)) + 10 * HOUR
    for price in (2200, 2300):
        v.place(3, Side.SELL, 1, price, symbol=APR)
        v.place(2, Side.BUY, 1, price, symbol=APR)
    v.place(3, Side.SELL, 50, 2310, symbol=APR)
    assert of(v.clear(Settle), Settled)[0].prices == {MAR: 2100, APR: 2250}
    before = v.house.risk.margin(1)[0]
    assert (v.house.risk.equity(1), before) == (195_120_000, 439_200_000)
    events = v.clear(MarkStep)
    assert [(e.action, e.symbol, e.qty) for e in of(events, Liquidation)] == \
        [("pending", None, 0)]
    after = v.house.risk.margin(1)[0]
    assert (v.position(1), v.position(1, APR)) == (10, -10)
    assert not of(v.clear(MarkStep), Liquidation)           # told once
    assert after <= before, \
        f"the liquidation raised maintenance from {before} to {after} micro-USD"


def test_the_jump_bound_does_not_freeze_the_index_after_a_real_move():
    """Observations more than 50% from the last fixing are refused. After a genuine fall from
    2.100 to 1.000 (-52%) every honest observation is refused; once the old ones leave the
    24 h window the built-in index has nothing, the fixing falls back to the previous one,
    2.100, and so the bound never moves: five days later the index is still 2.100 with all
    three providers reporting 1.000. Marks, daily settlements in delivery and the final
    settlement would all have used 2.100 for good (a March long paid 1.100 x 744 h =
    $818.40 a lot that the market never gave it). Now the bound widens by 50% a day
    without a fixing from data: the same day 1.000 is refused, the next day it counts."""
    v = Venue()
    for provider in PROVIDERS:
        v.observe(provider, 2100)
    assert of(v.clear(FixIndex), IndexFixed)[0].fixing.value == 2100
    events = [e for p in PROVIDERS for e in v.observe(p, 1000)]
    assert [e.reason for e in of(events, ClearingRejected)] == \
        [RejectReason.INVALID_OBSERVATION] * 3
    v.ts += DAY
    events = [e for p in PROVIDERS for e in v.observe(p, 1000)]
    assert not of(events, ClearingRejected)
    fixing = of(v.clear(FixIndex), IndexFixed)[0].fixing
    assert (fixing.value, fixing.source) == (1000, "builtin")
    assert v.house.index["H100"].value(v.ts)[0] == 1000, \
        "the index is frozen at 2.100 while every provider reports 1.000"


def test_one_quote_pair_cannot_move_a_mark_by_the_whole_band():
    """The README: "one quote moves a mark by at most that share of its distance" (1 -
    0.5^(1/300) a step). But a contract with no basis yet (no settlement taken with an index
    and no two-sided book at a mark step: the first day of trading, or a thin month whose
    orders cross at once) got it outright from the first two-sided book. Account 1 is long 10
    at 2.100 with exactly its initial margin, $2,577.96; the index is 2.100. Account 4 rests
    a bid for 10 at 1.890 and an offer of 1 lot at 1.891 (the band's low edge): one mark
    step set the mark to 1.890, 10% down, account 1's equity fell to $1,015.56 below
    maintenance $2,343.60, and it was liquidated 6 lots into account 4's bid at 1.890,
    realizing 6 x 0.210 x 744 h = $937.44 for account 4 when the price came back. Pulling the offer then holds the mark there (a
    one-sided book holds the basis). Now the book's price is its impact mid (10 lots a
    side): a 1-lot offer gives none, so nothing is sampled and the mark stays."""
    v = Venue(ClearingParams(fees=NO_FEES))
    for provider in PROVIDERS:
        v.observe(provider, 2100)
    v.clear(Deposit, account_id=1, amount=2_577_960_000)
    for account in (2, 4):
        v.clear(Deposit, account_id=account, amount=10**12)
    v.place(2, Side.SELL, 10, 2100)
    assert not refused(v.place(1, Side.BUY, 10, 2100))
    for _ in range(5):
        v.clear(MarkStep)
    assert v.house.marks[MAR].price == 2100
    v.place(4, Side.BUY, 10, 1890)
    v.place(4, Side.SELL, 1, 1891)
    events = v.clear(MarkStep)
    assert not of(events, Trade)
    assert v.house.marks[MAR].price >= 2100 - 1, \
        "one 1-lot quote pair moved the mark 10% and forced a liquidation into its own bid"


def test_a_dozen_wash_lots_in_the_closing_window_cannot_make_the_fund_pay():
    """The daily settlement was the VWAP of whatever traded in the last 30 minutes, with no
    minimum volume, and the band (10% around the last trade) moves with every print, so two
    partners walked it: 1 lot at 2.310, 1 at 2.541, 10 at 2.795 (accounts 3 and 4, between
    themselves), and the day settled at 2.733 instead of 2.100 for 1,000 lots of open
    interest: the long withdrew $1,135,408, the honest short defaulted, the fund paid
    $259,284. Now a VWAP counts only on at least 50 lots and a tenth of the open interest
    (100 here), and the last trade only inside the book's impact prices: with neither, the
    day settles at the mark, 2.100."""
    v = Venue(ClearingParams(fees=NO_FEES))
    v.clear(Deposit, account_id=INSURANCE, amount=10**12)
    v.clear(Deposit, account_id=5, amount=257_796_000_000)     # the short's initial margin
    for account in (1, 3, 4):
        v.clear(Deposit, account_id=account, amount=10**12)
    v.place(1, Side.BUY, 1000, 2100)
    assert not refused(v.place(5, Side.SELL, 1000, 2100))
    v.clear(Settle)
    v.ts += 20 * HOUR
    for price, qty in ((2310, 1), (2541, 1), (2795, 10)):
        v.place(3, Side.SELL, qty, price)
        assert not refused(v.place(4, Side.BUY, qty, price))
    settled = of(v.clear(Settle), Settled)[0]
    assert (settled.prices[MAR], settled.tiers[MAR]) == (2100, "mark")
    assert v.collateral(5) == 257_796_000_000 and v.collateral(INSURANCE) == 10**12


def test_a_liquidation_below_the_products_min_qty_is_not_refused_forever():
    """A product may set min_qty (1..1,000,000; here 10). Long 10 at 2.100 on its initial
    margin, $2,577.96; the day settles at 2.000: equity $1,833.96 against maintenance
    $2,232.00. The fewest lots that restore maintenance are 2, so the liquidation sends an
    IOC for 2 lots, which the engine refused (qty must be 10..10,000) at every mark step,
    with 50 lots bid at 1.990: the account was never reduced, however far the market fell.
    Now a slice is at least min_qty (up to the position), and a liquidation order below
    min_qty (a position a partial fill left smaller) is taken."""
    v = Venue(params(fees=NO_FEES),
              product=Product(gpu_class="H100", reference_price=2100, min_qty=10))
    v.clear(Deposit, account_id=1, amount=2_577_960_000)
    for account in (2, 3):
        v.clear(Deposit, account_id=account, amount=10**13)
    v.place(2, Side.SELL, 10, 2100)
    assert not refused(v.place(1, Side.BUY, 10, 2100))
    v.ts += HOUR
    v.place(3, Side.SELL, 10, 2000)
    v.place(2, Side.BUY, 10, 2000)
    v.place(2, Side.BUY, 50, 1990)
    assert of(v.clear(Settle), Settled)[0].prices[MAR] == 2000
    assert (v.house.risk.equity(1), v.house.risk.margin(1)[0]) == (1_833_960_000, 2_232_000_000)
    events = v.clear(MarkStep)
    assert [(e.action, e.qty) for e in of(events, Liquidation)] == [("reduce", 10)]
    assert not refused(events) and v.position(1) == 0


def test_a_position_below_min_qty_can_still_be_liquidated():
    """min_qty 10: a partial fill leaves account 5 long 3, which no order may close (3 is
    below the minimum), but a liquidation order may."""
    v = Venue(params(fees=NO_FEES),
              product=Product(gpu_class="H100", reference_price=2100, min_qty=10))
    for account in (3, 4, 5):
        v.clear(Deposit, account_id=account, amount=10**13)
    v.place(4, Side.BUY, 10, 2100)
    v.place(3, Side.SELL, 13, 2100)                         # 10 fill, 3 rest
    v.place(5, Side.BUY, 10, 2100, tif=TimeInForce.IOC)     # takes the 3
    assert v.position(5) == 3
    v.place(4, Side.BUY, 10, 2090)
    assert refused(v.place(5, Side.SELL, 3, reduce_only=True)) == \
        [RejectReason.INVALID_QUANTITY]
    assert not refused(v.place(5, Side.SELL, 3, reduce_only=True, liquidation=True))
    assert v.position(5) == 0


def test_two_one_lot_quotes_without_a_trade_cannot_set_the_settlement():
    """With no trade in the closing window, the settlement was the last trade clamped into
    the best bid and ask (last_clamped), so a quote pair moved it as far as the band allowed.

    Account 2 is short 1,000 at 2.100 (no fees) against account 1, long on exactly its
    initial margin, $257,796; day 1 settles at 2.100. On day 2 nothing trades; at the close
    account 2 bids 1 lot at 1.890 and offers 1 lot at 1.891: the day settled at 1.891,
    account 1 paid 1,000 x 0.209 x 744 h = $155,496, was liquidated into account 2's bid at
    the new band's edge, and the fund paid its $38,316 deficit. Now the book's prices are
    its impact bid and ask (10 lots a side by default): a one-lot pair gives none, and the
    day settles at the mark, 2.100."""
    v = Venue(ClearingParams(fees=NO_FEES))
    v.clear(Deposit, account_id=INSURANCE, amount=10**12)
    v.clear(Deposit, account_id=1, amount=257_796_000_000)
    v.clear(Deposit, account_id=2, amount=10**12)
    v.place(2, Side.SELL, 1000, 2100)
    assert not refused(v.place(1, Side.BUY, 1000, 2100))
    assert of(v.clear(Settle), Settled)[0].prices[MAR] == 2100
    v.ts += 23 * HOUR
    v.place(2, Side.BUY, 1, 1890)
    v.place(2, Side.SELL, 1, 1891)
    settled = of(v.clear(Settle), Settled)[0]
    assert (settled.prices[MAR], settled.tiers[MAR]) == (2100, "mark")
    assert v.collateral(1) == 257_796_000_000