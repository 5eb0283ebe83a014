"""Strips (order.place_strip): all or none across the legs, limited by the hours-weighted
average price, compared exactly. Checked against an oracle that prices each leg from its
book's depth, under hypothesis."""
from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings, strategies as st

from engine.contracts import Period, PeriodKind, Product, make_instrument
from engine.exchange import Exchange
from engine.messages import (
    InstrumentStatus, OrderRejected, PlaceOrder, PlaceStrip, RejectReason, SetInstrumentStatus,
    Side, StripExecuted, TimeInForce, Timer, Trade,
)

PRODUCT = Product(gpu_class="H100", reference_price=2000, months=12)
MONTHS = [make_instrument(PRODUCT, Period(PeriodKind.MONTH, 2027, m)) for m in range(1, 13)]
SYMBOLS = [i.symbol for i in MONTHS]
HOURS = {i.symbol: i.contract_hours for i in MONTHS}
TS = 1_700_000_000 * 10**9
TAKER = 99

side_orders = st.lists(st.tuples(st.integers(1, 3), st.integers(0, 150), st.integers(1, 8)),
                       min_size=1, max_size=4)
levels = st.tuples(side_orders, side_orders).map(       # asks at 2.001 and up, bids below
    lambda both: both[0] + [(m, -1 - o, q) for m, o, q in both[1]])


def seeded(books) -> Exchange:
    """An exchange whose books hold ``books[i]``: (maker, offset from 2.000, lots) orders on
    both sides (asks above, bids below, so none crosses)."""
    ex = Exchange(MONTHS)
    ts = TS
    for symbol, orders in zip(SYMBOLS, books):
        for maker, offset, lots in orders:
            ts += 1
            side = Side.SELL if offset >= 0 else Side.BUY
            price = 2001 + offset if side is Side.SELL else 2000 + offset
            events = ex.process(PlaceOrder(ts_ns=ts, account_id=maker, symbol=symbol, side=side,
                                           qty=lots, price=price))
            assert not [e for e in events if type(e) is OrderRejected]
    return ex


def oracle(ex: Exchange, symbols, side: Side, qty: int, limit: int | None) -> int:
    """The largest equal quantity every leg fills inside its band whose average meets the
    limit, from each book's depth alone, trying every size from the top."""
    depths = []
    for symbol in symbols:
        market = ex.markets[symbol]
        edge = market.band_high if side is Side.BUY else market.band_low
        opposite = -1 if side is Side.BUY else 1
        depths.append([(p, q) for p, q, _ in market.book.depth(opposite, 1000)
                       if (p <= edge if side is Side.BUY else p >= edge)])
    for lots in range(qty, 0, -1):
        paid = []
        for depth in depths:
            left, cost = lots, 0
            for price, size in depth:
                take = min(left, size)
                cost += take * price
                left -= take
            if left:
                break
            paid.append(cost)
        else:
            if limit is None:
                return lots
            average = Fraction(sum(HOURS[s] * c for s, c in zip(symbols, paid)),
                               lots * sum(HOURS[s] for s in symbols))
            if (average <= limit) if side is Side.BUY else (average >= limit):
                return lots
    return 0


@settings(max_examples=150, deadline=None)
@given(books=st.lists(levels, min_size=12, max_size=12), first=st.integers(0, 9),
       legs=st.integers(2, 3), side=st.sampled_from([Side.BUY, Side.SELL]),
       qty=st.integers(1, 20), limit=st.integers(1850, 2150),
       tif=st.sampled_from([TimeInForce.FOK, TimeInForce.IOC]))
def test_never_a_partial_strip_and_the_average_limit_holds_exactly(
        books, first, legs, side, qty, limit, tif):
    symbols = SYMBOLS[first:first + legs]
    ex = seeded(books)
    want = oracle(ex, symbols, side, qty, limit)
    quoted, _ = ex.strip_quote(symbols, side, qty)
    assert quoted == oracle(ex, symbols, side, qty, None)
    untouched = seeded(books)
    untouched.process(Timer(ts_ns=TS + 10_000))
    events = ex.process(PlaceStrip(ts_ns=TS + 10_000, account_id=TAKER, symbols=symbols,
                                   side=side, qty=qty, price=limit, tif=tif))
    if tif is TimeInForce.FOK and want < qty:
        [rejected] = [e for e in events if type(e) is OrderRejected]
        assert rejected.reason is RejectReason.STRIP_NOT_FILLABLE
        assert ex.state_hash() == untouched.state_hash()      # a refused strip changes nothing
        return
    [done] = [e for e in events if type(e) is StripExecuted]
    assert done.filled_qty == want
    traded = {s: [] for s in symbols}
    for e in events:
        if type(e) is Trade:
            assert TAKER == e.taker_account_id
            traded[e.symbol].append((e.price, e.qty))
    for symbol in symbols:                                    # every leg the same quantity
        assert sum(q for _, q in traded[symbol]) == want
    if want:
        average = Fraction(sum(HOURS[s] * p * q for s in symbols for p, q in traded[s]),
                           want * sum(HOURS[s] for s in symbols))
        assert (average <= limit) if side is Side.BUY else (average >= limit)
        assert [leg[3] for leg in done.legs] == [sum(p * q for p, q in traded[s])
                                                 for s in symbols]
    else:
        assert not any(traded.values())


def test_a_strip_on_a_halted_or_unknown_leg_is_refused_naming_the_leg():
    ex = seeded([[(1, 0, 5)]] * 12)
    ex.process(SetInstrumentStatus(ts_ns=TS + 100, symbol=SYMBOLS[2],
                                   status=InstrumentStatus.HALTED))
    before = ex.state_hash()            # (a command at the same time moves no clock)
    [halted] = ex.process(PlaceStrip(ts_ns=TS + 100, account_id=TAKER, symbols=SYMBOLS[1:4],
                                     side=Side.BUY, qty=1, price=2100))
    assert (halted.reason, halted.symbol) == (RejectReason.INSTRUMENT_NOT_TRADING, SYMBOLS[2])
    [unknown] = ex.process(PlaceStrip(ts_ns=TS + 100, account_id=TAKER,
                                      symbols=["H100-2028-12", "H100-2029-01"], side=Side.BUY,
                                      qty=1, price=2100))
    assert (unknown.reason, unknown.symbol) == (RejectReason.UNKNOWN_INSTRUMENT, "H100-2028-12")
    assert ex.state_hash() == before


@pytest.mark.parametrize("symbols", [
    ["H100-2027-01"],                                         # one leg
    ["H100-2027-01", "H100-2027-03"],                         # a gap
    ["H100-2027-02", "H100-2027-01"],                         # not in delivery order
    ["H100-2027-01", "H100-2027-01"],                         # repeated
    ["H100-2027-12", "H100-2028-Q1"],                         # mixed tenors
    ["H100-2027-01", "H200-2027-02"],                         # mixed classes
    [f"H100-{2027 + (m // 12)}-{m % 12 + 1:02d}" for m in range(37)],   # 37 legs
])
def test_legs_that_are_no_strip_are_refused_as_invalid_strip(symbols):
    ex = seeded([[(1, 0, 5)]] * 12)
    ex.process(Timer(ts_ns=TS + 100))
    before = ex.state_hash()
    [refused] = ex.process(PlaceStrip(ts_ns=TS + 100, account_id=TAKER, symbols=symbols,
                                      side=Side.BUY, qty=1, price=2100))
    assert (refused.reason, refused.field) == (RejectReason.INVALID_STRIP, "symbols")
    assert ex.state_hash() == before
