"""A strip's pre-trade check (clearing.risk.check_strip): its legs fill together or not at
all, so they are judged as the positions they become, together."""
from __future__ import annotations

from clearing.ledger import FeeSchedule
from clearing.messages import Deposit
from composed import Venue, params, refused
from engine.contracts import Product
from engine.messages import (
    OrderType, PlaceOrder, PlaceStrip, RejectReason, Side, StripExecuted, TimeInForce, Timer,
)

STRIP_SYMBOLS = ["H100-2027-Q2", "H100-2027-04", "H100-2027-05", "H100-2027-06"]


def _strip_venue():
    """Account 1 short one Q2 2027 lot with 800 USD; account 3 offers a lot in each of its
    months; account 4 has 100 USD and nothing else."""
    v = Venue(params(fees=FeeSchedule(maker_centi_bps=0, taker_centi_bps=0)),
              symbols=STRIP_SYMBOLS, product=Product(gpu_class="H100", reference_price=2100,
                                                     months=12, quarters=8))
    for account, usd in ((1, 800), (2, 10**6), (3, 10**6), (4, 100)):
        v.clear(Deposit, account_id=account, amount=usd * 10**6)
    v.place(2, Side.BUY, 1, 2100, symbol=STRIP_SYMBOLS[0])
    v.place(1, Side.SELL, 1, 2100, symbol=STRIP_SYMBOLS[0])
    for month in STRIP_SYMBOLS[1:]:
        v.place(3, Side.SELL, 1, 2100, symbol=month)
    return v


def totals(v) -> dict:
    return {a: {s: p.qty for s, p in acc.positions.items()}
            for a, acc in v.house.ledger.accounts.items()}


def test_a_strip_of_a_quarters_months_flattens_it():
    """Short Q2 at 2.100 seen from 15 January is short each of its months: April 15% x 720 h,
    May and June 10% x 744 h and x 720 h, $226.80 + $156.24 + $151.20 = $534.24 (initial
    x1.1). Buying April alone offsets April in the scan ($307.44 left) and is a spread of 720
    hours (2% of 2.100: $30.24); the strip of the three months offsets every month, leaving
    only the spread of the quarter's 2,184 hours against them: $91.728."""
    v = _strip_venue()
    assert v.position(1, STRIP_SYMBOLS[0]) == -1
    assert v.house.risk.margin(1) == (534_240_000, 587_664_000)
    alone = v.engine(PlaceOrder, account_id=1, symbol=STRIP_SYMBOLS[1], side=Side.BUY, qty=1,
                     price=2100, order_type=OrderType.LIMIT, tif=TimeInForce.IOC)
    assert refused(alone) == []
    assert v.house.risk.margin(1)[0] == 534_240_000 - 226_800_000 + 30_240_000
    v.place(2, Side.BUY, 1, 2100, symbol=STRIP_SYMBOLS[1])
    v.place(1, Side.SELL, 1, 2100, symbol=STRIP_SYMBOLS[1])        # back to the quarter alone
    v.place(3, Side.SELL, 1, 2100, symbol=STRIP_SYMBOLS[1])
    events = v.engine(PlaceStrip, account_id=1, symbols=STRIP_SYMBOLS[1:], side=Side.BUY,
                      qty=1, price=2100)
    assert refused(events) == []
    [done] = [e for e in events if type(e) is StripExecuted]
    assert done.filled_qty == 1
    assert [v.position(1, s) for s in STRIP_SYMBOLS] == [-1, 1, 1, 1]
    assert v.house.risk.margin(1) == (91_728_000, 100_900_800)


def test_a_strip_refused_for_margin_changes_nothing():
    v = _strip_venue()
    v.engine(Timer)
    before = (v.ex.state_hash(), totals(v), v.house.risk.margin(4))
    events = v.ex.process(PlaceStrip(ts_ns=v.ts, account_id=4, symbols=STRIP_SYMBOLS[1:],
                                     side=Side.BUY, qty=1, price=2100))
    assert refused(events) == [RejectReason.INSUFFICIENT_MARGIN]
    assert (v.ex.state_hash(), totals(v), v.house.risk.margin(4)) == before
