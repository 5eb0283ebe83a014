"""Smoke runs of the gateway load generators against real server processes.

Tiny versions of bench.loadgen and bench.fanout, so the generators stay
correct between benchmark runs: every request must be answered without an
error, and every subscriber must see a gap-free, checksum-true book stream.
No timing is asserted; the numbers come from ``python -m bench.loadgen`` and
``python -m bench.fanout``.
"""
from __future__ import annotations

import pytest

from bench.fanout import run_fanout
from bench.loadgen import measure


@pytest.mark.parametrize("target", ["echo", "gpux"])
def test_loadgen_every_order_is_acknowledged(target):
    """One connection, 200 order requests (places, crossing IOCs, cancels), 8 in flight."""
    r = measure(target, mode="pipelined", connections=1, seconds=0, warmup=0, window=8,
                rate=0, procs=1, limit=200)
    assert r["errors"] == 0, r["reasons"]
    assert (r["acks"], r["sent"], r["samples"], r["stuck"], r["closed"]) == (200, 200, 200, 0, 0)
    assert r["server_exit"] == 0


def test_loadgen_two_processes_one_at_a_time():
    """Four connections over two client processes, one request at a time, 50 each."""
    r = measure("gpux", mode="sync", connections=4, seconds=0, warmup=0, window=1, rate=0,
                procs=2, limit=50)
    assert r["errors"] == 0, r["reasons"]
    assert (r["acks"], r["stuck"], r["closed"]) == (200, 0, 0)
    assert len(r["client_cpu"]) == 2


def test_fanout_subscribers_see_every_delta_in_order():
    """Five subscribers, a trader at 100 requests/s for 1.5 s; book checksums verified."""
    r = run_fanout(subscribers=5, rate=100, seconds=1.0, warmup=0.5, procs=1, verify=True,
                   grace=0.5)
    assert (r["trader_errors"], r["trader_stuck"], r["sub_errors"]) == (0, 0, 0), \
        r["trader_reasons"]
    assert (r["gaps"], r["resyncs"], r["bad_checksums"], r["closed"], r["no_snapshot"]) == \
        (0, 0, 0, 0, 0)
    assert r["min_deltas"] >= 50            # each subscriber saw the trader's book changes
    assert r["trades_per_s"] > 0 and r["delta_samples"] > 0 and r["trade_samples"] > 0
