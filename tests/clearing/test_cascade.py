"""clearing.ledger's cascade: a year (or quarter) becomes the same positions in its periods at
its last settlement price, no cash moves, and the next settlement pays exactly what settling
the year at the hours-weighted mean of its periods' prices would have (compared exactly)."""
from __future__ import annotations

import copy
import datetime

from hypothesis import given, settings, strategies as st

from clearing.house import ClearingHouse, ClearingParams
from clearing.ledger import Contract, FeeSchedule, Ledger
from clearing.messages import ClearingRejected, RollListing
from engine.contracts import (
    Period, PeriodKind, Product, Symbol, cascades_into, date_to_ns, format_symbol,
    list_instruments,
)
from engine.messages import Side, Trade
from engine.reasons import RejectReason

YEAR = Period(PeriodKind.YEAR, 2028, 1)
Y = "H100-2028"
QUARTERS = [format_symbol(Symbol("H100", p)) for p in cascades_into(YEAR)]
HOURS = {Y: YEAR.hours} | {format_symbol(Symbol("H100", p)): p.hours
                           for p in cascades_into(YEAR)}
TICK = 1000
FEE_ACCOUNT = 99
ACCOUNTS = (1, 2, 3, 4)

prices = st.integers(1500, 2500)
trades = st.lists(st.tuples(st.sampled_from(ACCOUNTS), st.sampled_from(ACCOUNTS),
                            st.integers(1, 20), prices), max_size=12)


def new_ledger() -> Ledger:
    return Ledger({s: Contract(h, TICK) for s, h in HOURS.items()},
                  {s: 2000 for s in HOURS}, FeeSchedule(maker_centi_bps=0, taker_centi_bps=0),
                  FEE_ACCOUNT)


def book(led: Ledger, symbol: str, fills) -> None:
    for n, (buyer, seller, qty, price) in enumerate(fills):
        if buyer != seller:
            led.apply_trade(Trade(n + 1, symbol, price, qty, Side.BUY, 1, seller, 0, 2, buyer,
                                  0, 0))


def totals(led: Ledger) -> dict:
    return {a: {s: p.qty for s, p in acc.positions.items()} for a, acc in led.accounts.items()}


@settings(max_examples=200, deadline=None)
@given(before=trades, settle_at=prices, after=trades, in_quarter=trades,
       finals=st.lists(prices, min_size=4, max_size=4))
def test_the_next_settlement_pays_what_settling_the_year_at_the_mean_would(
        before, settle_at, after, in_quarter, finals):
    led = new_ledger()
    for account in ACCOUNTS:
        led.deposit(account, 10**12)
    book(led, Y, before)
    led.settle({Y: settle_at})
    book(led, Y, after)                       # trades since the last settlement are carried
    book(led, QUARTERS[0], in_quarter)        # a position already held in a quarter
    held = copy.deepcopy(totals(led))
    cash = {a: acc.collateral for a, acc in led.accounts.items()}
    # What each account's year and Q1 would pay settled without a cascade, exactly:
    # the year at the hours-weighted mean of the quarters' prices is the integer
    # sum(P_i x H_i) in GPU-hour ticks, so no rounding enters.
    expected = {}
    for account_id, account in led.accounts.items():
        amount = 0
        pos = account.positions.get(Y)
        if pos is not None:
            amount += (pos.qty * sum(p * HOURS[q] for p, q in zip(finals, QUARTERS))
                       + (pos.day_cash - pos.settled_qty * settle_at) * HOURS[Y]) * TICK
        q1 = account.positions.get(QUARTERS[0])
        if q1 is not None:
            amount += (q1.qty * finals[0] - q1.settled_qty * 2000 + q1.day_cash) \
                * HOURS[QUARTERS[0]] * TICK
        expected[account_id] = amount

    moved = led.cascade(Y, QUARTERS)

    assert {a: acc.collateral for a, acc in led.accounts.items()} == cash      # no cash moves
    assert moved == sorted(a for a, p in held.items() if Y in p)
    for account_id, positions in held.items():
        after_cascade = totals(led)[account_id]
        assert Y not in after_cascade
        for quarter in QUARTERS:
            want = positions.get(Y, 0) + positions.get(quarter, 0)
            assert after_cascade.get(quarter, 0) == want
    for symbol in QUARTERS:                   # zero-sum per instrument, open interest kept
        qty = [acc.positions[symbol].qty for acc in led.accounts.values()
               if symbol in acc.positions]
        assert sum(qty) == 0
        assert led.open_interest(symbol) == sum(q for q in qty if q > 0)
    assert led.open_interest(Y) == 0

    vm = led.settle(dict(zip(QUARTERS, finals)))
    assert sum(vm.values()) == 0
    for account_id, amount in expected.items():
        assert vm.get(account_id, 0) == amount, account_id


def test_a_year_with_nothing_open_cascades_to_nothing():
    led = new_ledger()
    assert led.cascade(Y, QUARTERS) == []
    assert all(led.open_interest(q) == 0 for q in QUARTERS)



def test_a_listing_step_dated_before_the_last_one_is_refused_and_changes_nothing():
    """The listing depends only on the command's time, and that never goes back: a
    RollListing stamped before the day of the last one (a bad journal, a bad caller) would
    list again what had cascaded and been delisted, and cascade it a second time. It is
    refused with invalid_params and leaves the house as it was."""
    product = Product(gpu_class="H100", reference_price=2100, months=3, quarters=2, years=1)
    t0 = date_to_ns(datetime.date(2027, 2, 10))
    house = ClearingHouse(list_instruments([product], datetime.date(2027, 2, 10)),
                          ClearingParams(), fee_account=90, insurance_account=91,
                          products=(product,))
    quarter = min((i for i in house.instruments.values() if i.kind == "quarter"),
                  key=lambda i: i.last_trading_ns)
    after = quarter.last_trading_ns + 1
    house.process(RollListing(ts_ns=after), lambda s: (None, None, None, None))
    assert quarter.symbol not in house.instruments
    held = (sorted(house.instruments), house.listed_on, sorted(house.final))
    events, engine = house.process(RollListing(ts_ns=t0), lambda s: (None, None, None, None))
    assert [(type(e), e.reason, e.field) for e in events] == [
        (ClearingRejected, RejectReason.INVALID_PARAMS, "ts_ns")]
    assert engine == []
    assert (sorted(house.instruments), house.listed_on, sorted(house.final)) == held
