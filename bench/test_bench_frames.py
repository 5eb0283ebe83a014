"""What refusing repeated keys costs a request (issue 21, 9), side by side in one run.

The decoder takes a repeated key's last value, so every frame is also scanned
for repeated keys (gateway.core.jsonkeys). Measured on an order and on a mass
quote of 10 pairs: the envelope's decoding alone, with the scan, and with the
alternative the scan replaced (the standard library's decoder with a hook that
sees every object's pairs); and a whole order through the request core (place
then cancel, in-process), which is what the scan adds to.

    .venv/bin/python -m pytest bench/test_bench_frames.py --benchmark-only
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import msgspec
import pytest

from gateway.core import schema
from gateway.core.jsonkeys import duplicate_key

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "gateway"))
from inproc import InProcess  # noqa: E402
from live import SYMBOL  # noqa: E402

ORDER = json.dumps({"jsonrpc": "2.0", "id": 12345, "method": "order.place", "params": {
    "symbol": SYMBOL, "side": "buy", "qty": 3, "price": "2.000", "tif": "gtc",
    "client_order_id": "mm-000123", "post_only": True}})
QUOTE = json.dumps({"jsonrpc": "2.0", "id": 12346, "method": "order.mass_quote", "params": {
    "quotes": [{"symbol": SYMBOL, "side": side, "level": level, "qty": 5,
                "price": f"1.{990 - level}" if side == "buy" else f"2.{10 + level}"}
               for level in range(10) for side in ("buy", "sell")]}})
FRAMES = {"order": ORDER, "quote": QUOTE}


def _envelope(frame):
    return msgspec.json.decode(frame, type=schema.Request)


def _scanned(frame):
    _envelope(frame)
    return duplicate_key(frame)


def _refuse(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("repeated key")
    return dict(pairs)


def _stdlib(frame):
    _envelope(frame)
    return json.loads(frame, object_pairs_hook=_refuse)


@pytest.mark.parametrize("kind", FRAMES)
@pytest.mark.parametrize("how", ["envelope", "envelope+scan", "envelope+stdlib"])
def test_decode(benchmark, kind, how):
    benchmark.group = f"decode {kind}"
    frame = FRAMES[kind]
    fn = {"envelope": _envelope, "envelope+scan": _scanned, "envelope+stdlib": _stdlib}[how]
    assert fn(frame) is not None if how == "envelope" else fn(frame) is not False
    benchmark(fn, frame)


def test_whole_order(benchmark, tmp_path):
    """An order placed and cancelled through Core.handle (journal without fsync)."""
    benchmark.group = "decode order"
    venue = InProcess(tmp_path / "data", "[limits.roles.trader]\norders = [1e7, 10000000]\n"
                      "requests = [1e7, 10000000]\naccount_orders = [1e7, 10000000]\n"
                      "account_requests = [1e7, 10000000]\n")
    session = venue.session("trader-1")
    core = venue.core
    place = ORDER.replace('"mm-000123"', "null")
    cancel = '{"jsonrpc": "2.0", "id": 2, "method": "order.cancel", "params": {"order_id": %d}}'

    def round_trip():
        order_id = json.loads(core.handle(session, place, venue.now).reply)["result"]["order_id"]
        core.handle(session, cancel % order_id, venue.now)
        core.seal()
    round_trip()
    assert venue.venue.exchange.order(1) is not None
    benchmark(round_trip)
