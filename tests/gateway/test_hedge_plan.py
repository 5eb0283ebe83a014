"""analytics.hedge_plan over the wire: the README's worked example, the live market's plan
over a real websocket, and bad inputs, each a typed error naming the field."""
from __future__ import annotations

import datetime

import pytest

from engine.contracts import date_to_ns
from inproc import InProcess
from live import Ws, run

CONFIG = """
[[product]]
gpu_class = "H100"
reference_price = "2.000"
vol = "0.50"
"""
EXAMPLE = dict(gpu_class="H100", gpus=100, start="2027-04", months=3, utilisation="0.80",
               opex="0.50", debt={"principal": "150000", "rate": "0.12", "tenor": 3},
               hedge_ratio="0.5")


@pytest.fixture
def venue(tmp_path):
    """The README example's market: H100 marked flat at 2.000, seen from 1 January 2027."""
    v = InProcess(tmp_path / "data", CONFIG)
    v.ns = date_to_ns(datetime.date(2027, 1, 1))
    return v


def test_the_worked_example_over_the_wire(venue):
    """The figures of tests/clearing/test_hedge.py's hand-checked example, as PROTOCOL words
    them: strings of 2 decimals for USD, 4 for DSCRs, 9 for tau."""
    plan = venue.result(venue.session(), "analytics.hedge_plan", **EXAMPLE)
    assert (plan["gpu_class"], plan["gpus"], plan["vol"], plan["debt_service"]) == \
        ("H100", 100, "0.5000", "51003.32")
    assert plan["as_of"] == date_to_ns(datetime.date(2027, 1, 1)) // 10**6
    april, may, june = plan["months"]
    assert (april["month"], april["symbol"], april["source"], april["hedge_symbol"],
            april["hours"], april["forward"], april["tau"], april["contracts"]) == \
        ("2027-04", "H100-2027-04", "month", "H100-2027-04", 720, "2.000", "0.287474333", 50)
    assert [m["tau"] for m in (may, june)] == ["0.370978782", "0.454483231"]
    assert april["dscr"]["p99"] == "1.1438"
    assert plan["hedged"]["min_dscr"]["p99"] == "1.0711"
    assert plan["unhedged"]["min_dscr"]["p99"] == "0.2683"
    assert plan["locked_revenue"] == "218400.00"              # 50 x 2,184 h x 2.000
    assert plan["executable"] == {"avg_price": None, "legs": [
        {"symbol": f"H100-2027-0{m}", "qty": 50, "avg_price": None, "available_qty": 0}
        for m in (4, 5, 6)]}
    assert float(plan["initial_margin"]) > 0
    assert plan["liquidity_needed"] == \
        f"{float(plan['initial_margin']) + float(plan['vm_stress']):.2f}"
    needed = plan["contracts_needed"]
    assert needed is not None and plan["hedge_ratio_needed"] == f"{needed / 100:.4f}"


def test_the_volatility_given_comes_back_in_its_plain_form(venue):
    for given, shown in (("0.50", "0.50"), ("00.5", "0.5"), ("-0", "0"), ("-0.0", "0.0")):
        plan = venue.result(venue.session(), "analytics.hedge_plan", **{**EXAMPLE,
                                                                       "vol": given})
        assert plan["vol"] == shown


def test_a_plan_reads_and_changes_nothing(venue):
    before = venue.digest()
    venue.result(venue.session(), "analytics.hedge_plan", **EXAMPLE)
    assert venue.digest() == before


BAD = [
    ({"gpus": -5}, -32602, "invalid_params", "gpus"),
    ({"gpus": "100"}, -32602, "invalid_params", "gpus"),
    ({"months": 0}, -32602, "invalid_params", "months"),
    ({"start": "2027-4"}, -32602, "invalid_params", "start"),
    ({"start": "2027-13"}, -32602, "invalid_params", "start"),
    ({"opex": 0.5}, -32602, "invalid_params", "opex"),
    ({"opex": "cheap"}, -32602, "invalid_params", "opex"),
    ({"utilisation": "1.5"}, -32602, "invalid_params", "utilisation"),
    ({"debt": {"principal": "150000", "rate": "2.0", "tenor": 3}}, -32602, "invalid_params",
     "debt.rate"),
    ({"debt": {"principal": "150000", "rate": "0.1", "tenor": 0}}, -32602, "invalid_params",
     "debt.tenor"),
    ({"debt": {"principal": "150000", "rate": "0.1"}}, -32602, "invalid_params",
     "debt.tenor"),
    ({"debt": {"principal": "-1", "rate": "0.1", "tenor": 3}}, -32602, "invalid_params",
     "debt.principal"),
    ({"hedge_ratio": "1.01"}, -32602, "invalid_params", "hedge_ratio"),
    ({"vol": "-0.1"}, -32602, "invalid_params", "vol"),
    ({"extrapolate": "yes"}, -32602, "invalid_params", "extrapolate"),
    ({"leverage": 3}, -32602, "invalid_params", "leverage"),
    ({"gpu_class": "Z9"}, 210, "unknown_gpu_class", "gpu_class"),
    ({"vol": "1.6"}, -32602, "invalid_params", "vol"),
    ({"start": "9999-12", "months": 1, "debt": {"principal": "1", "rate": "0", "tenor": 1}},
     -32602, "invalid_params", "months"),
    ({"months": 60, "debt": {"principal": "1", "rate": "0", "tenor": 60}}, 217,
     "horizon_beyond_curve", "months"),
]


@pytest.mark.parametrize("change, code, reason, field", BAD)
def test_bad_inputs_are_typed_errors_naming_the_field(venue, change, code, reason, field):
    before = venue.digest()
    error = venue.error(venue.session(), "analytics.hedge_plan", **{**EXAMPLE, **change})
    assert (error["code"], error["data"]["reason"], error["data"].get("field")) == \
        (code, reason, field), error
    assert venue.digest() == before


def test_past_the_curve_with_extrapolate(venue):
    """60 months from April 2027: the listing of 2026-11-25 holds months to November 2027,
    quarters to 2028 and years to 2029; after that the last listed forward, unhedged."""
    plan = venue.result(venue.session(), "analytics.hedge_plan", **{
        **EXAMPLE, "months": 60, "extrapolate": True,
        "debt": {"principal": "150000", "rate": "0.12", "tenor": 36}})
    sources = [m["source"] for m in plan["months"]]
    assert sources[:8] == ["month"] * 8 and "quarter" in sources and "year" in sources
    assert sources[-1] == "extrapolated" and plan["months"][-1]["hedge_symbol"] is None
    assert [m["dscr"] is None for m in plan["months"]] == [False] * 36 + [True] * 24


def test_the_live_markets_plan_over_a_websocket(live_server):
    """Anyone, not logged in, asks a real server for a plan on the default market."""
    async def scenario():
        ws = await Ws.open(live_server)
        plan = await ws.result("analytics.hedge_plan", **{**EXAMPLE, "start": "2027-01",
                                                         "months": 12})
        assert len(plan["months"]) == 12 and plan["vol"] == "0.5000"
        assert all(m["forward"] == "2.100" for m in plan["months"])
        assert [m["hedge_symbol"] for m in plan["months"]][:2] == ["H100-2027-01",
                                                                   "H100-2027-02"]
        error = await ws.error("analytics.hedge_plan", **{**EXAMPLE, "gpus": 0})
        assert error["data"] == {"reason": "invalid_params", "field": "gpus"} | {
            k: v for k, v in error["data"].items() if k not in ("reason", "field")}
        await ws.close()
    run(scenario())
