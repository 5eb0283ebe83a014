"""The hedge plan in-process: clearing.hedge.plan alone, and analytics.hedge_plan through the
request core (decoding, the venue's reads, the plan, the answer's encoding).

A 1,000-GPU H100 cluster over 36 months from the first listed month of the embedded
default market (12 months, then quarters, then years, then extrapolated), half hedged,
10 M USD of debt over 20 months (inside what the months and quarters can hedge, so the
hedge the targets need is searched for); one plan per round. Its figures are in the README
("The hedge plan"): the plan must not stall the event loop, so its cost is what to watch.
"""
from __future__ import annotations

import datetime
import json

import msgspec
import pytest

from types import SimpleNamespace

from bench.harness import AS_OF
from clearing.hedge import Contract, Debt, Inputs, plan
from engine.contracts import date_to_ns
from gateway.config import load_config
from gateway.core import codec, schema
from gateway.core.analytics import hedge_plan
from gateway.storage.recovery import build

MONTHS = 36
TENOR = 20             # the months a hedge can cover: months, then quarters inside the plan


def _inputs(start: datetime.date) -> Inputs:
    return Inputs(gpus=1000, start=start, months=MONTHS, opex=0.60, vol=0.5,
                  debt=Debt(10_000_000.0, 0.10, TENOR), hedge_ratio=0.5, extrapolate=True)


def _venue():
    """The embedded default market at noon of its listing day; its first H100 month."""
    as_of = datetime.date.fromisoformat(AS_OF)
    noon = date_to_ns(as_of) + 12 * 3600 * 10**9
    venue, _ = build(load_config(None), as_of, [], clock=lambda: noon)
    first = min(m.instrument.delivery_start for m in venue.exchange.markets.values()
                if m.instrument.kind == "month" and m.instrument.gpu_class == "H100")
    return venue, first, noon


@pytest.mark.benchmark(group="hedge-plan")
def test_plan_36_months(benchmark):
    """clearing.hedge.plan alone, on the default market's H100 curve."""
    venue, first, now = _venue()
    contracts = [Contract(m.symbol, m.instrument.kind, m.instrument.delivery_start,
                          m.instrument.delivery_end, 2100, True)
                 for m in venue.exchange.markets.values() if m.instrument.gpu_class == "H100"]
    result = benchmark(plan, _inputs(first), contracts, now, lambda p: 0, lambda s, q: (0, 0))
    assert len(result.months) == MONTHS and result.contracts_needed is not None


@pytest.mark.benchmark(group="hedge-plan")
def test_hedge_plan_request_36_months(benchmark):
    """analytics.hedge_plan as the request core runs it (params decoded, the plan, the
    answer encoded as the server encodes it)."""
    venue, first, _ = _venue()
    core = SimpleNamespace(venue=venue)
    raw = json.dumps({"gpu_class": "H100", "gpus": 1000, "start": f"{first:%Y-%m}",
                      "months": MONTHS, "opex": "0.60", "hedge_ratio": "0.5",
                      "extrapolate": True, "debt": {"principal": "10000000", "rate": "0.10",
                                                    "tenor": TENOR}}).encode()

    def ask():
        params = codec.decode_params(raw, schema.HedgePlan)
        return msgspec.json.encode(hedge_plan(core, None, params))
    answer = json.loads(benchmark(ask))
    assert len(answer["months"]) == MONTHS
