"""A 12-month strip on the order path, in-process: the engine and clearing as the server
composes them (gateway.core.venue, built from the embedded default market).

Two makers quote 3 levels a side on every H100 month, as the demo's makers do (bids
1, 6 and 11 ticks under 2.100 and asks as far over, the second maker 2 ticks further
out), deep enough (10,000 lots a level) that a round never empties a level. A round
is 200 strips of 1 lot a leg over the 12 months, alternately bought and sold
(order.place_strip: plan every leg against its book, clearing's check of the legs
together, then each leg an IOC), measured beside the same trades as 12 single IOC
orders a round (order.place, one leg each: what a strip replaces, without its
all-or-none) and beside market.strip_quote (the planning alone). Figures: README
"Strips"; run with ``make bench``.
"""
from __future__ import annotations

import datetime
import gc

import pytest

from bench.harness import AS_OF
from engine.messages import OrderType, PlaceOrder, PlaceStrip, Side, TimeInForce
from gateway.config import AccountConfig, load_config
from gateway.storage.recovery import build, funding

STRIPS = 200
MAKERS, TAKER = (1, 2), 3
LEVELS = (1, 6, 11)


def _venue():
    """The default market with two makers' books on the 12 H100 months; the months."""
    config = load_config("[clearing]\nposition_limit = 10000000\n")
    accounts = [AccountConfig(account=f"bench-{i}", role="market_maker",
                              api_key=f"key-bench-{i}", api_secret=f"secret-{i}-0123456789abc",
                              account_id=i, collateral="1000000000") for i in (*MAKERS, TAKER)]
    as_of = datetime.date.fromisoformat(AS_OF)
    ts = [int(datetime.datetime(2026, 11, 25, 12, tzinfo=datetime.timezone.utc).timestamp()
              * 10**9)]

    def clock():
        ts[0] += 1000
        return ts[0]
    venue, _ = build(config, as_of, accounts, clock)
    for cmd in funding(accounts, venue.now(), 0):
        venue.process(cmd)
    months = [m.symbol for m in venue.exchange.markets.values()
              if m.instrument.gpu_class == "H100" and m.instrument.kind == "month"
              and m.status.name == "OPEN"][:12]
    for maker, wider in zip(MAKERS, (0, 2)):
        for symbol in months:
            for level in LEVELS:
                for side, sign in ((Side.BUY, -1), (Side.SELL, 1)):
                    venue.process(PlaceOrder(
                        ts_ns=venue.now(), account_id=maker, symbol=symbol, side=side,
                        qty=10_000, price=2100 + sign * (level + wider),
                        order_type=OrderType.LIMIT, tif=TimeInForce.GTC))
    return venue, months


def _strips(venue, months):
    for k in range(STRIPS):
        buy = k % 2 == 0
        venue.process(PlaceStrip(ts_ns=venue.now(), account_id=TAKER, symbols=months,
                                 side=Side.BUY if buy else Side.SELL, qty=1,
                                 price=2120 if buy else 2080))


def _single_orders(venue, months):
    for k in range(STRIPS):
        buy = k % 2 == 0
        for symbol in months:
            venue.process(PlaceOrder(ts_ns=venue.now(), account_id=TAKER, symbol=symbol,
                                     side=Side.BUY if buy else Side.SELL, qty=1,
                                     price=2120 if buy else 2080, order_type=OrderType.LIMIT,
                                     tif=TimeInForce.IOC))


def _quotes(venue, months):
    for k in range(STRIPS):
        venue.exchange.strip_quote(months, Side.BUY if k % 2 == 0 else Side.SELL, 1)


def _run(benchmark, body):
    """Rounds of ``body`` on a fresh venue each, garbage collected before, not during."""
    def setup():
        gc.collect()
        return (_venue(),), {}

    def round_(built):
        gc.disable()
        try:
            body(*built)
        finally:
            gc.enable()
    benchmark.pedantic(round_, setup=setup, rounds=15, iterations=1)
    benchmark.extra_info["per_round"] = STRIPS


@pytest.mark.benchmark(group="strips")
def test_strip_12_months(benchmark):
    """200 strips of 12 legs, 1 lot a leg, alternately bought and sold."""
    _run(benchmark, _strips)
    venue, months = _venue()
    _strips(venue, months)
    taker = venue.house.ledger.accounts[TAKER]
    assert all(taker.positions[s].qty == 0 for s in months)       # 100 bought, 100 sold
    assert venue.exchange.markets[months[0]].volume == STRIPS


@pytest.mark.benchmark(group="strips")
def test_the_same_trades_as_single_ioc_orders(benchmark):
    """The baseline: the same 2,400 leg trades as 12 single IOC orders a strip."""
    _run(benchmark, _single_orders)


@pytest.mark.benchmark(group="strips")
def test_strip_quote_12_months(benchmark):
    """200 market.strip_quote plans of 12 legs (read-only)."""
    _run(benchmark, _quotes)
