"""The clearing house and the engine composed as gateway/core/venue.py composes them, for the
tests of clearing: any symbols, a clock the test moves, and small readers."""
from __future__ import annotations

import datetime

from clearing.house import ClearingHouse, ClearingParams
from clearing.ledger import FeeSchedule
from clearing.messages import SubmitObservation
from engine.contracts import Product, date_to_ns, make_instrument, parse_symbol
from engine.exchange import Exchange
from engine.messages import OrderRejected, OrderType, PlaceOrder, TimeInForce


def params(**kw) -> ClearingParams:
    """Clearing's parameters with any closing volume settling at its VWAP: these scenarios
    trade a few lots; the minimum volume has tests of its own."""
    return ClearingParams(**{"settlement_min_volume": 1, "settlement_min_oi_bps": 0, **kw})


MAR, APR = "H100-2027-03", "H100-2027-04"
T0 = date_to_ns(datetime.date(2027, 1, 15))
HOUR = 3600 * 10**9
DAY = 24 * HOUR
FEE, INSURANCE, PROVIDERS = 90, 91, (81, 82, 83)
NO_FEES = FeeSchedule(taker_centi_bps=0)


class Venue:
    """The house and the engine composed as gateway/core/venue.py composes them, any symbols."""

    def __init__(self, params=params(), symbols=(MAR,), t0=T0,
                 product=Product(gpu_class="H100", reference_price=2100)):
        self.insts = [make_instrument(product, parse_symbol(s).period) for s in symbols]
        self.house = ClearingHouse(self.insts, params, fee_account=FEE,
                                   insurance_account=INSURANCE, providers=PROVIDERS)
        self.ex = Exchange(self.insts, self.house)
        self.ts = t0

    @property
    def inst(self):
        """The first (or only) instrument."""
        return self.insts[0]

    def market(self, symbol):
        m = self.ex.markets[symbol]
        return m.book.best_bid(), m.book.best_ask(), m.last_price, m.book

    def clear(self, cmd_type, **kw):
        self.ts = max(self.ts + 1, kw.pop("at", 0))
        events, engine = self.house.process(cmd_type(ts_ns=self.ts, **kw), self.market)
        for cmd in engine:
            events.extend(self.ex.process(cmd))
        return events

    def engine(self, cmd_type, **kw):
        self.ts += 1
        return self.ex.process(cmd_type(ts_ns=self.ts, **kw))

    def place(self, account, side, qty, price=None, symbol=MAR, **kw):
        if price is None:
            kw.setdefault("order_type", OrderType.MARKET)
            kw.setdefault("tif", TimeInForce.IOC)
        return self.engine(PlaceOrder, account_id=account, symbol=symbol, side=side, qty=qty,
                           price=price, **kw)

    def observe(self, provider, price, hours=100):
        return self.clear(SubmitObservation, provider_id=provider, gpu_class="H100", price=price,
                          hours=hours, observed_ns=self.ts + 1, at=self.ts + 1)

    def collateral(self, account):
        return self.house.ledger.accounts[account].collateral

    def position(self, account, symbol=MAR):
        pos = self.house.ledger.accounts[account].positions.get(symbol)
        return 0 if pos is None else pos.qty

    def conserved(self):
        led = self.house.ledger
        return sum(a.collateral for a in led.accounts.values()) == led.deposited


def of(events, kind):
    return [e for e in events if type(e) is kind]


def refused(events):
    return [e.reason for e in events if type(e) is OrderRejected]
