"""Engine throughput: two seeded streams through the Cython book, the Exchange and the reference.

Run with ``make bench`` or ``pytest bench/test_bench_engine.py --benchmark-only``;
the default test run (testpaths = tests) never collects this file. Each round
rebuilds its book or Exchange in ``setup``, collects garbage there and runs
with the collector off (the Exchange keeps every order, so a generation-2
collection in the middle of a round would measure the collector). Commands per
second are in ``extra_info["commands_per_s"]`` of the saved JSON
(``--benchmark-autosave``); the printed times are per round of N commands.

Workloads (bench/streams.py), 1,000,000 commands each, seed 7, accounts 1..100,
self-trade prevention mode 0:

- gpux: 55% new limits within a few ticks of the touch, 30% cancels, 10% IOC
  takes, 5% replaces near the touch; about 500 resting orders over about 14 levels.
- exchange_core: 9% GTC, 3% IOC, 6% cancel, 82% move; about 1,000 resting
  orders over about 730 levels.
"""
from __future__ import annotations

import gc

import pytest

from bench.streams import (
    STREAMS, Summary, exchange_commands, exchange_summary, instrument, replay_book,
    replay_exchange, replay_exchange_events,
)
from engine.book import OrderBook
from engine.exchange import Exchange
from tests.oracle import ReferenceBook

N = 1_000_000
SEED = 7

# What each stream must produce (fills, filled qty, notional, self-trade stops,
# orders left resting, last trade price); a faster but wrong change fails here.
EXPECTED = {
    "gpux": Summary(fills=292_666, filled_qty=1_379_620, notional=137_962_165_883,
                    stp_stops=2_986, resting=460, last_price=99_998),
    "exchange_core": Summary(fills=40_733, filled_qty=132_647, notional=13_264_837_971,
                             stp_stops=429, resting=955, last_price=100_004),
}


@pytest.fixture(scope="module", params=sorted(STREAMS))
def stream(request):
    s = STREAMS[request.param](N, SEED)
    assert s.expected == EXPECTED[s.mix], "the generator changed: update EXPECTED"
    return s


def _timed(target):
    """Wrap target so the round runs with the garbage collector off (setup turns it off)."""
    def run(*args):
        try:
            return target(*args)
        finally:
            gc.enable()
    return run


def _fresh(make, data):
    def setup():
        state = make()
        gc.collect()
        gc.disable()
        return (state, data), {}
    return setup


def _report(benchmark, n):
    if benchmark.stats is None:          # --benchmark-disable: ran once, nothing timed
        return
    median = benchmark.stats.stats.median
    benchmark.extra_info["commands"] = n
    benchmark.extra_info["commands_per_s"] = round(n / median)


def test_cython_book(benchmark, stream):
    """OrderBook's per-command API from Python (the replay_book driver), N commands."""
    benchmark.group = f"engine-{stream.mix}"
    result = benchmark.pedantic(_timed(replay_book), setup=_fresh(OrderBook, stream.commands),
                                rounds=10, iterations=1)
    assert result == EXPECTED[stream.mix]
    _report(benchmark, len(stream))


def test_reference_book(benchmark, stream):
    """tests/oracle.py ReferenceBook through the same driver, N commands (1.5-2.5 s a round)."""
    benchmark.group = f"engine-{stream.mix}"
    result = benchmark.pedantic(_timed(replay_book),
                                setup=_fresh(ReferenceBook, stream.commands),
                                rounds=3, iterations=1)
    assert result == EXPECTED[stream.mix]
    _report(benchmark, len(stream))


def test_exchange(benchmark, stream):
    """Exchange.process on prebuilt PlaceOrder/CancelOrder/ReplaceOrder Structs, events dropped.

    N commands (about 1 s a round here). Each round must end with the bare books'
    volume, resting orders and last price; one more, untimed run counts the
    events: the same fills, notional and self-trade stops, and no rejection.
    """
    benchmark.group = f"engine-{stream.mix}"
    commands = exchange_commands(stream)
    rounds = 3
    current, ends = [], []

    def make():
        if current:                      # check (and free) the previous round's Exchange
            ends.append(exchange_summary(current.pop()).core())
        current.append(Exchange([instrument()]))
        return current[0]

    benchmark.pedantic(_timed(replay_exchange), setup=_fresh(make, commands),
                       rounds=rounds, iterations=1)
    ends.append(exchange_summary(current.pop()).core())
    assert ends and ends == [EXPECTED[stream.mix].core()] * len(ends)   # 1 when disabled
    _report(benchmark, len(stream))
    assert replay_exchange_events(Exchange([instrument()]), commands) == EXPECTED[stream.mix]
