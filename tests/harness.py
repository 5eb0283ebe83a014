"""The engine tests' harness: an exchange on one test instrument, and books written as tables.

Prices in these tests are ticks around 1000 (a reference price of $1.000, a
band of +-10%: 900..1100 ticks), so tables read like a rulebook.
"""
from __future__ import annotations

import datetime
import textwrap

import pytest

from engine.book import OrderBook
from engine.contracts import Instrument, Product, date_to_ns, make_instrument, parse_symbol
from engine.exchange import Exchange
from engine.messages import (
    BookLevelChanged, CancelOrder, MatchRecord, OrderCancelled, OrderRejected, OrderType,
    PlaceOrder, ReplaceOrder, SelfTradePrevention, Side, TimeInForce, Timer, Trade,
)
from oracle import PositionGate, ReferenceBook

SYMBOL = "H100-2027-03"
BUY, SELL = Side.BUY, Side.SELL
GTC, GTD, IOC, FOK = TimeInForce.GTC, TimeInForce.GTD, TimeInForce.IOC, TimeInForce.FOK
LOADER = 900          # the account `load` rests its orders for
T0 = date_to_ns(datetime.date(2027, 1, 4))


def instrument(symbol: str = SYMBOL, reference_price: int = 1000) -> Instrument:
    """Return an H100 contract (March 2027 by default) with a 900..1100 tick band."""
    product = Product(gpu_class="H100", reference_price=reference_price)
    return make_instrument(product, parse_symbol(symbol).period)


class Harness:
    """An Exchange plus a clock and short ways to send commands and read results."""

    def __init__(self, book_factory, instruments=None, risk=None) -> None:
        self.ex = Exchange(instruments or [instrument()], risk, book_factory=book_factory,
                           check_invariants=True)
        self.ts = T0
        self.events: list = []

    def send(self, cmd) -> list:
        self.events = self.ex.process(cmd)
        return self.events

    def tick(self, ns: int = 1) -> int:
        self.ts += ns
        return self.ts

    def place(self, side, price=None, qty=1, account=1, **kw) -> list:
        kw.setdefault("symbol", SYMBOL)
        if price is None and "order_type" not in kw:
            kw["order_type"] = OrderType.MARKET
        return self.send(PlaceOrder(ts_ns=self.tick(), account_id=account, side=side,
                                    price=price, qty=qty, **kw))

    def cancel(self, order_id=None, account=1, **kw) -> list:
        return self.send(CancelOrder(ts_ns=self.tick(), account_id=account,
                                     order_id=order_id, **kw))

    def replace(self, order_id, account=1, **kw) -> list:
        return self.send(ReplaceOrder(ts_ns=self.tick(), account_id=account,
                                      order_id=order_id, **kw))

    def timer(self, ts: int) -> list:
        self.ts = ts
        return self.send(Timer(ts_ns=ts))

    def accepted_id(self, events=None) -> int:
        """Return the order id of the OrderAccepted in the last command's events."""
        return next(e.order_id for e in (events or self.events)
                    if type(e).__name__ == "OrderAccepted")

    def load(self, table: str, account: int = LOADER) -> list[int]:
        """Rest one order per table row ("bid price ask"); return their ids in row order."""
        ids = []
        lines = textwrap.dedent(table).strip("\n").splitlines()
        mid = lines[0].index("price")
        for row in lines[1:]:
            cells = row.split()
            if row.index(cells[0]) < mid:      # a bid: qty stands left of the price
                self.place(BUY, int(cells[1]), int(cells[0]), account=account)
            else:
                self.place(SELL, int(cells[0]), int(cells[1]), account=account)
            assert not rejected(self.events), self.events
            ids.append(self.accepted_id())
        return ids

    def ladder(self, symbol: str = SYMBOL) -> str:
        """Return the book as a table: asks from the highest down, then bids (visible qty)."""
        book = self.ex.markets[symbol].book
        rows = ["bid  price  ask"]
        for price, qty, _ in reversed(book.depth(-1, 1000)):
            rows.append(f"     {price:>5}  {qty:>3}")
        for price, qty, _ in book.depth(1, 1000):
            rows.append(f"{qty:>3}  {price:>5}")
        return "\n".join(r.rstrip() for r in rows)


def table(text: str) -> str:
    """Normalise a ladder written in a test to Harness.ladder's layout."""
    lines = textwrap.dedent(text).strip("\n").splitlines()
    mid = lines[0].index("price")
    rows = ["bid  price  ask"]
    for row in lines[1:]:
        cells = row.split()
        if row.index(cells[0]) < mid:
            rows.append(f"{int(cells[0]):>3}  {int(cells[1]):>5}")
        else:
            rows.append(f"     {int(cells[0]):>5}  {int(cells[1]):>3}")
    return "\n".join(r.rstrip() for r in rows)


def of(kind, events):
    return [e for e in events if isinstance(e, kind)]


def trades(events) -> list[tuple[int, int]]:
    return [(e.price, e.qty) for e in of(Trade, events)]


def cancelled(events) -> list[tuple[int, str, int]]:
    return [(e.order_id, e.reason.name, e.qty) for e in of(OrderCancelled, events)]


def rejected(events) -> list[str]:
    return [e.reason.name for e in of(OrderRejected, events)]


def levels(events) -> list[tuple[int, int, int, int]]:
    return [(e.side, e.price, e.qty, e.orders) for e in of(BookLevelChanged, events)]


@pytest.fixture(params=[OrderBook, ReferenceBook], ids=["cython", "reference"])
def book_factory(request):
    return request.param


@pytest.fixture
def ex(book_factory):
    """A harness on the test instrument; after the test, every book checks itself."""
    harness = Harness(book_factory)
    yield harness
    check_and_sweep(harness)


@pytest.fixture
def gated(book_factory):
    """A harness whose exchange has a risk gate that keeps positions (PositionGate)."""
    harness = Harness(book_factory, risk=PositionGate())
    yield harness
    check_and_sweep(harness)


def check_and_sweep(harness: Harness) -> None:
    """Every book checks itself, then IOC sweeps by a fresh account must empty it."""
    for market in harness.ex.markets.values():
        market.book.check_invariants()
        for order in harness.ex.orders.values():
            assert order.qty >= order.filled_qty + order.leaves_qty >= 0
    # Sweep both sides with IOC orders of a fresh account: the book must empty.
    for side, price in ((BUY, 10**6), (SELL, 1)):
        for market in harness.ex.markets.values():
            book = market.book
            passed = 0
            while len(book.depth(-side, 1)):
                lvl_price, _, _ = book.depth(-side, 1)[0]
                total = sum(o[3] + o[4] for o in book.orders(-side) if o[2] == lvl_price)
                records = book.match(side, lvl_price, total, -1,
                                     SelfTradePrevention.CANCEL_NEWEST, passed)
                halted = records and records[-1][0] == MatchRecord.REDUCE_ONLY_HALT
                passed = records[-1][1] if halted else 0
    for market in harness.ex.markets.values():
        assert len(market.book) == 0
        market.book.check_invariants()
