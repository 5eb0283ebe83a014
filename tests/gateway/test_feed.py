"""gateway.feed: what subscribers rebuild from snapshot + deltas is the engine's book."""
from __future__ import annotations

import datetime

from hypothesis import given, settings, strategies as st

from engine.contracts import Product, date_to_ns, make_instrument, parse_symbol
from engine.exchange import Exchange
from engine.messages import CancelOrder, PlaceOrder, Side, TimeInForce
from engine.prices import format_price
from gateway.feed import Feed
from live import Rebuilt

SYMBOL = "H100-2027-03"
T0 = date_to_ns(datetime.date(2027, 1, 4))

commands = st.lists(st.tuples(
    st.sampled_from(["place", "place", "cancel", "seal"]),
    st.sampled_from([Side.BUY, Side.SELL]),
    st.integers(995, 1005),
    st.integers(1, 5),
    st.sampled_from([TimeInForce.GTC, TimeInForce.GTC, TimeInForce.IOC]),
    st.integers(1, 40)), max_size=120)


@settings(max_examples=150, deadline=None)
@given(commands)
def test_deltas_rebuild_the_engines_book_whatever_the_turns(steps):
    """However commands fall into turns, a strict rebuild equals the engine's book after each seal."""
    inst = make_instrument(Product(gpu_class="H100", reference_price=1000),
                           parse_symbol(SYMBOL).period)
    exchange = Exchange([inst])
    feed = Feed([SYMBOL])
    book = Rebuilt()
    book.apply({"type": "snapshot", **feed.symbols[SYMBOL].book.snapshot()})
    ts = T0

    def seal():
        for channel, data in feed.seal({f"book.{SYMBOL}"}):
            if channel.startswith("book."):
                book.apply(data)
        engine_book = exchange.markets[SYMBOL].book
        assert book.levels() == (
            [[format_price(p), q, n] for p, q, n in engine_book.depth(1, 1000)],
            [[format_price(p), q, n] for p, q, n in engine_book.depth(-1, 1000)])
        assert book.seq == exchange.markets[SYMBOL].book_seq

    for kind, side, price, qty, tif, pick in steps:
        ts += 1
        if kind == "seal":
            seal()
            continue
        if kind == "place":
            cmd = PlaceOrder(ts_ns=ts, account_id=pick % 3, symbol=SYMBOL, side=side, qty=qty,
                             price=price, tif=tif)
        else:
            cmd = CancelOrder(ts_ns=ts, account_id=pick % 3, order_id=pick)
        feed.apply(exchange.process(cmd))
    seal()
