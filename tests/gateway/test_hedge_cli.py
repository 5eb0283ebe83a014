"""`gpux hedge` against a live server: the plan as a table, JSON and CSV, and a lender's
report rendered to PDF by headless Chromium, whose text holds the plan's figures."""
from __future__ import annotations

import csv
import datetime
import io
import json

import pytest

from engine.contracts import date_to_ns
from gateway.client.sdk import Client
from live import LiveServer, run, stop_and_check_replay
from test_cli_client import gpux
from test_page import browser, chromium, page_of, plan_on_page

PLAN = ["--class", "H100", "--gpus", "100", "--start", "2027-01", "--months", "6",
        "--utilisation", "0.80", "--opex", "0.50", "--principal", "150000", "--rate", "0.12",
        "--tenor", "6", "--hedge-ratio", "0.5"]
REQUEST = dict(gpu_class="H100", gpus=100, start="2027-01", months=6, utilisation="0.80",
               opex="0.50", debt={"principal": "150000", "rate": "0.12", "tenor": 6},
               hedge_ratio="0.5")


def plan_over_the_wire(live) -> dict:
    async def ask():
        async with Client(live.url) as client:
            return await client.call("analytics.hedge_plan", **REQUEST)
    return run(ask())


def test_hedge_prints_the_plan_as_json_csv_and_a_table(live_server):
    """--json is the method's result; --csv a row a month; the table the headline figures
    and a line a month. The curve's time moves between two asks, so the figures that do
    not depend on it are compared."""
    result = gpux("hedge", *PLAN, "--json", "--url", live_server.url)
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    wire = plan_over_the_wire(live_server)
    assert [m["hedge_symbol"] for m in plan["months"]] == \
        [m["hedge_symbol"] for m in wire["months"]]
    assert plan["locked_revenue"] == wire["locked_revenue"] and \
        plan["debt_service"] == wire["debt_service"]
    rows = list(csv.DictReader(io.StringIO(gpux("hedge", *PLAN, "--csv",
                                                "--url", live_server.url).stdout)))
    assert [r["month"] for r in rows] == [f"2027-{m:02d}" for m in range(1, 7)]
    assert {r["contracts"] for r in rows} == {"50"} and rows[0]["hedge_symbol"] == "H100-2027-01"
    text = gpux("hedge", *PLAN, "--url", live_server.url).stdout
    assert "debt service " + wire["debt_service"] in text
    assert "locked revenue " + wire["locked_revenue"] in text
    assert len([line for line in text.splitlines() if line.startswith("2027-")]) == 6


def test_a_report_that_cannot_be_written_is_a_one_line_error(live_server, tmp_path):
    """The plan is printed all the same; the report's failure is one line, exit 1."""
    for where in (tmp_path / "missing" / "plan.html", tmp_path):
        result = gpux("hedge", *PLAN, "--report", str(where), "--url", live_server.url)
        assert result.returncode == 1 and "locked revenue" in result.stdout
        assert result.stderr.startswith("gpux: cannot write the report to") and \
            result.stderr.count("\n") == 1, result.stderr


def test_bad_hedge_inputs_exit_with_the_field(live_server):
    refused = gpux("hedge", *PLAN[:-2], "--hedge-ratio", "1.5", "--url", live_server.url)
    assert refused.returncode == 1 and "invalid_params" in refused.stderr \
        and "hedge_ratio" in refused.stderr
    usage = gpux("hedge", *[("2027/01" if a == "2027-01" else a) for a in PLAN],
                 "--url", live_server.url)
    assert usage.returncode == 2 and "YYYY-MM" in usage.stderr
    past = gpux("hedge", *[("60" if a == "6" else a) for a in PLAN], "--url", live_server.url)
    assert past.returncode == 1 and "horizon_beyond_curve" in past.stderr


def test_the_report_renders_to_a_pdf_that_says_the_plans_figures(live_server, tmp_path):
    """--report writes one self-contained page (no script, nothing fetched, charts as
    inline SVG); Chromium prints it to PDF, and the PDF's text has the title, the headline
    figures and every month."""
    pypdf = pytest.importorskip("pypdf")
    executable = chromium()
    report = tmp_path / "plan.html"
    result = gpux("hedge", *PLAN, "--json", "--report", str(report), "--url", live_server.url)
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    html = report.read_text()
    assert "<script" not in html and "http://" not in html.replace(
        'xmlns="http://www.w3.org/2000/svg"', "") and html.count("<svg") == 2
    pdf = tmp_path / "plan.pdf"

    async def render():
        async with browser(executable) as b:
            page = await b.new_page()
            requests = []
            page.on("request", lambda r: requests.append(r.url))
            await page.goto(report.as_uri())
            await page.pdf(path=str(pdf), format="A4", print_background=True)
            assert requests == [report.as_uri()]
    run(render())
    text = " ".join(p.extract_text() for p in pypdf.PdfReader(str(pdf)).pages)
    text = " ".join(text.split())
    assert "Hedge plan: 100 H100 GPUs from 2027-01, 6 months" in text
    for figure in (plan["hedged"]["min_dscr"]["p99"], plan["unhedged"]["min_dscr"]["p99"],
                   plan["hedged"]["debt_capacity"], plan["locked_revenue"],
                   plan["debt_service"], plan["liquidity_needed"]):
        assert figure in text, figure
    assert all(f"2027-{m:02d}" in text for m in range(1, 7))
    assert "DSCR by month" in text and "Assumptions" in text


WORKED = """
[[product]]
gpu_class = "H100"
reference_price = "2.000"
vol = "0.50"
"""
WORKED_ARGS = ["--class", "H100", "--gpus", "100", "--start", "2027-04", "--months", "3",
               "--utilisation", "0.80", "--opex", "0.50", "--principal", "150000",
               "--rate", "0.12", "--tenor", "3", "--hedge-ratio", "0.5"]


@pytest.fixture
def worked_server(tmp_path):
    """The README example's market over a real socket: H100 flat at 2.000, its clock
    stopped at 1 January 2027 00:00 UTC (so tau is the example's to 9 decimals)."""
    frozen = date_to_ns(datetime.date(2027, 1, 1))
    server = LiveServer(tmp_path / "data", WORKED, clock=lambda: frozen)
    yield server
    stop_and_check_replay(server)


def test_the_worked_example_through_the_command_line(worked_server):
    """The hand-checked figures (tests/clearing/test_hedge.py) from `gpux hedge`."""
    plan = json.loads(gpux("hedge", *WORKED_ARGS, "--json", "--url", worked_server.url).stdout)
    assert (plan["debt_service"], plan["locked_revenue"]) == ("51003.32", "218400.00")
    assert (plan["hedged"]["min_dscr"]["p99"], plan["unhedged"]["min_dscr"]["p99"]) == \
        ("1.0711", "0.2683")
    assert [m["tau"] for m in plan["months"]] == ["0.287474333", "0.370978782", "0.454483231"]
    text = gpux("hedge", *WORKED_ARGS, "--url", worked_server.url).stdout
    assert "debt service 51003.32 USD a month" in text
    assert [line.split()[-1] for line in text.splitlines()
            if line.startswith("2027-0")] == ["1.1438", "1.1408", "1.0711"]


def test_the_worked_example_on_the_page(worked_server):
    """The planner on the page shows the example's figures."""
    executable = chromium()
    url = page_of(worked_server.url, "H100")
    fields = {"gpus": "100", "start": "2027-04", "months": "3", "utilisation": "0.80",
              "opex": "0.50", "principal": "150000", "rate": "0.12", "tenor": "3",
              "hedge_ratio": "0.5"}

    async def scenario():
        async with browser(executable) as b:
            page = await b.new_page()
            await page.goto(url)
            await page.wait_for_selector('#status[data-state="live"]', timeout=20_000)
            shown = await plan_on_page(page, fields)
            assert (shown["p99-hedged"], shown["p99-unhedged"], shown["locked"]) == \
                ("1.0711", "0.2683", "218400.00")
            assert "debt service 51003.32 USD a month" in \
                await page.text_content("#planner-status")
    run(scenario(), timeout=60)
