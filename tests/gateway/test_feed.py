"""gateway.core.feed: what subscribers rebuild from snapshot + deltas is the engine's book."""
from __future__ import annotations

import datetime
import pickle

from hypothesis import given, settings, strategies as st

from clearing.messages import IndexValue, Settled
from engine.contracts import Product, date_to_ns, make_instrument, parse_symbol
from engine.exchange import Exchange
from engine.messages import CancelOrder, PlaceOrder, Side, TimeInForce
from engine.prices import format_price
from gateway.core.feed import INDEX_POINTS_KEPT, Feed
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


MINUTE_NS = 60 * 10**9


def test_index_history_keeps_the_last_value_of_each_minute():
    """Values within a minute make one point, the last; no value makes none; a day is kept."""
    feed = Feed([SYMBOL])
    feed.apply([IndexValue("H100", None, "none", T0)])
    feed.apply([IndexValue("H100", 2100, "builtin", T0 + 1)])
    feed.apply([IndexValue("H100", 2105, "builtin", T0 + MINUTE_NS - 1)])
    feed.apply([IndexValue("H100", 2110, "builtin", T0 + MINUTE_NS)])
    feed.apply([IndexValue("B200", 4200, "builtin", T0)])
    t0_ms = T0 // 10**6
    assert list(feed.index_history["H100"]) == [[t0_ms + 59_999, "2.105"],
                                                [t0_ms + 60_000, "2.110"]]
    for minute in range(2, 2 + INDEX_POINTS_KEPT):
        feed.apply([IndexValue("H100", 2000 + minute % 50, "builtin", T0 + minute * MINUTE_NS)])
    history = feed.index_history["H100"]
    assert len(history) == INDEX_POINTS_KEPT and history[0][0] == t0_ms + 2 * 60_000


def test_session_volume_starts_again_at_each_daily_settlement():
    """Volume counts since listing; session volume since the last daily settlement."""
    inst = make_instrument(Product(gpu_class="H100", reference_price=1000),
                           parse_symbol(SYMBOL).period)
    exchange = Exchange([inst])
    feed = Feed([SYMBOL])

    def cross(ts, qty):
        for account, side in ((1, Side.SELL), (2, Side.BUY)):
            feed.apply(exchange.process(PlaceOrder(ts_ns=ts, account_id=account, symbol=SYMBOL,
                                                   side=side, qty=qty, price=1000)))
    cross(T0, 3)
    feed.apply([Settled({SYMBOL: 1000}, {SYMBOL: "vwap"}, T0 + 1)])
    assert feed.ticker_dirty == {SYMBOL}
    cross(T0 + 2, 4)
    ticker = feed.symbols[SYMBOL].ticker()
    assert (ticker["volume"], ticker["session_volume"]) == (7, 4)


def test_a_feed_pickled_before_the_index_history_loads_with_none():
    """A snapshot written before these fields existed still loads, with them empty."""
    feed = Feed([SYMBOL])
    del feed.index_history
    del feed.symbols[SYMBOL].session_volume
    loaded = pickle.loads(pickle.dumps(feed))
    assert loaded.index_history == {} and loaded.symbols[SYMBOL].session_volume == 0
