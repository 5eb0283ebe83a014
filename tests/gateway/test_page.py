"""The market page in headless Chromium against a real `gpux serve --demo` process.

Debian's chromium (installed by `make test`, tests/install-chromium.sh) is
driven by Playwright through its executable path: no browser is downloaded.
Where it cannot be installed these tests say so and are skipped, except where
GPUX_REQUIRE_BROWSER=1 (CI), where that is a failure. Screenshots go to
GPUX_ARTIFACTS (default build/test-artifacts/).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import time
from pathlib import Path

import pytest

from engine.contracts import date_to_ns
from gateway.client.sdk import Client
from gateway.web.pages import STATIC
from live import AS_OF, TIMEOUT, LiveServer, Process, run, stop_and_check_replay

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("GPUX_ARTIFACTS", ROOT / "build" / "test-artifacts"))
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]
LAPTOP, PHONE = {"width": 1366, "height": 768}, {"width": 390, "height": 844}
WAIT_MS = int(20_000 * TIMEOUT / 5)


def chromium() -> str:
    """Debian's chromium, or skip (fail where the browser test is required)."""
    path = shutil.which("chromium")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        path, why = None, "Playwright for Python is not installed (pip install playwright)"
    else:
        why = ("Debian's chromium is not installed and could not be installed here "
               "(tests/install-chromium.sh)")
    if path is None:
        if os.environ.get("GPUX_REQUIRE_BROWSER") == "1":
            pytest.fail(f"the browser test must run here: {why}")
        pytest.skip(why)
    return path


def page_of(ws_url: str, fragment: str = "") -> str:
    """The market page's address on the server of ``ws_url``, with a #fragment if given."""
    return ws_url.removesuffix("/ws").replace("ws://", "http://") + "/" + (
        f"#{fragment}" if fragment else "")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Watched:
    """A page, with what it logged as an error and every websocket frame it sent."""

    def __init__(self, page) -> None:
        self.page = page
        self.errors: list[str] = []
        self.sent: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("websocket", lambda ws: ws.on("framesent", lambda frame: self.sent.append(frame)))


@contextlib.asynccontextmanager
async def browser(executable: str):
    from playwright.async_api import async_playwright
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            yield b
        finally:
            await b.close()


async def open_page(b, url: str, viewport: dict) -> Watched:
    context = await b.new_context(viewport=viewport)
    watched = Watched(await context.new_page())
    await watched.page.goto(url)
    return watched


async def wait_live(page) -> None:
    """The page says it is live, its table has a bid and an offer for every contract of the
    class (12 months, 8 quarters, 3 years), and the ladder of its contract shows both sides
    with the checksum verified."""
    await page.wait_for_selector('#status[data-state="live"]', timeout=WAIT_MS)
    await page.wait_for_function("""() => {
        const rows = [...document.querySelectorAll('#curve-table tr[data-symbol]')];
        const priced = (td) => td && /\\d\\.\\d{3}/.test(td.textContent);
        return rows.length === 23 && rows.every((r) => priced(r.cells[1]) && priced(r.cells[2]))
            && document.querySelector('#ladder tr[data-side="bid"]')
            && document.querySelector('#ladder tr[data-side="ask"]')
            && document.querySelector('#book-state[data-check="ok"]');
    }""", timeout=WAIT_MS)


def trader(data_dir: Path, url: str, name: str) -> Client:
    account = next(a for a in json.loads((data_dir / "demo-accounts.json").read_text())
                   if a["account"] == name)
    return Client(url, api_key=account["api_key"], api_secret=account["api_secret"])


async def see_a_trade(page, data_dir: Path, url: str, symbol: str) -> None:
    """Buy at the best offer from Python and wait for the trade in the page's trade list."""
    async with trader(data_dir, url, "trader-1") as client:
        for _ in range(20):     # the offer read may be gone by the time the order arrives
            book = await client.call("market.book", symbol=symbol, depth=1)
            if book["asks"]:
                order = await client.place(symbol, "buy", 3, book["asks"][0][0], tif="ioc")
                if order["fills"]:
                    break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError(f"no offer in {symbol} could be taken")
    fill = order["fills"][0]
    row = f'#trades tr[data-trade-id="{fill["trade_id"]}"]'
    await page.wait_for_selector(row, timeout=WAIT_MS)
    cells = await page.eval_on_selector_all(f"{row} td", "tds => tds.map(t => t.textContent)")
    assert cells[1:4] == [fill["price"], str(fill["qty"]), "buy"]


async def choose(page, symbol: str) -> None:
    """Click a contract's box on the chart; wait for its book, verified."""
    await page.click(f'#curve-chart [data-symbol="{symbol}"]')
    await page.wait_for_function(
        f"() => document.querySelector('#selected').textContent.includes('{symbol}')")
    await page.wait_for_selector('#book-state[data-check="ok"]', timeout=WAIT_MS)


async def plan_on_page(page, fields: dict[str, str]) -> dict[str, str]:
    """Fill the planner's form, press Plan, wait for the answer; its headline figures."""
    for name, value in fields.items():
        await page.fill(f'#planner-form [name="{name}"]', value)
    await page.click("#planner-form button[type=submit]")
    await page.wait_for_selector('#planner-result[data-state="done"]', timeout=WAIT_MS)
    return await page.eval_on_selector_all(
        "#planner-figures [data-figure]",
        "divs => Object.fromEntries(divs.map((d) => [d.dataset.figure, "
        "d.querySelector('dd').textContent]))")


def selected_symbol(page):
    return page.evaluate("() => decodeURIComponent(location.hash.slice(1))")


def test_the_page_shows_the_live_market_and_a_trade_placed_from_python(tmp_path):
    """With the demo trading, the page goes live with every month quoted; choosing a month on
    the curve shows its ladder; a trade placed through the Python client appears in the
    page's trade list; the page loads all its modules, sends no login, logs no error, and fits
    a laptop and a phone (screenshots of both)."""
    executable = chromium()
    data = tmp_path / "data"
    server = Process(data, "--demo")
    page_url = page_of(server.url)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    async def scenario():
        async with browser(executable) as b:
            laptop = await open_page(b, page_url, LAPTOP)
            page = laptop.page
            await wait_live(page)
            assert await page.text_content("#index-value") not in ("", "–", None)
            # The page's script is its ES modules, every one of them loaded (from app.js).
            loaded = await page.evaluate("() => performance.getEntriesByType('resource')"
                                         ".map((r) => new URL(r.name).pathname)")
            assert sorted(p[1:] for p in loaded if p.endswith(".js")) \
                == sorted(p.name for p in STATIC.glob("*.js"))
            # The chart has a lane of boxes per tenor, on one time axis; the table a group.
            lanes = await page.eval_on_selector_all(
                "#curve-chart rect.lane-box", "boxes => boxes.map((b) => b.dataset.tenor)")
            assert [lanes.count(t) for t in ("month", "quarter", "year")] == [12, 8, 3]
            groups = await page.eval_on_selector_all(
                "#curve-table tr.group", "rows => rows.map((r) => r.textContent)")
            assert groups == ["Months", "Quarters", "Years"]
            # A quarter chosen on the chart shows its book and what it cascades into.
            quarter = await page.get_attribute(
                '#curve-chart rect.lane-box[data-tenor="quarter"]', "data-symbol")
            await choose(page, quarter)
            assert "cascades into" in await page.text_content("#contract-info")
            # Choose the third month on the chart: its ladder replaces the quarter's.
            symbol = await page.get_attribute(
                "#curve-chart [data-symbol]:nth-of-type(3)", "data-symbol")
            await choose(page, symbol)
            assert symbol in page.url
            await see_a_trade(page, data, server.url, symbol)
            # The trade is in the contract's one-minute candles (market.candles, then live).
            await page.wait_for_selector("#price-chart rect.candle", timeout=WAIT_MS)
            await page.screenshot(path=ARTIFACTS / "page-laptop.png", full_page=True)

            phone = await open_page(b, f"{page_url}#{symbol}", PHONE)
            await wait_live(phone.page)
            assert symbol in await phone.page.text_content("#selected")
            width = await phone.page.evaluate(
                "() => [document.documentElement.scrollWidth, window.innerWidth]")
            assert width[0] <= width[1], f"the page overflows the phone's width: {width}"
            await phone.page.screenshot(path=ARTIFACTS / "page-phone.png", full_page=True)

            for watched in (laptop, phone):
                assert watched.errors == []
                assert watched.sent and not any("auth.login" in f for f in watched.sent)
                assert not any('"order.' in f for f in watched.sent)
    try:
        run(scenario(), timeout=120)
    finally:
        code, err = server.stop()
    assert code == 0, err
    assert (ARTIFACTS / "page-laptop.png").stat().st_size > 10_000
    assert (ARTIFACTS / "page-phone.png").stat().st_size > 10_000


def test_the_page_says_it_is_disconnected_and_comes_back_by_itself(tmp_path):
    """Killed server: the page shows it is disconnected; the server restarted on the same
    port: the page reconnects with no reload and shows live data again."""
    executable = chromium()
    data, port = tmp_path / "data", free_port()
    server = Process(data, "--demo", "--port", str(port))
    page_url = f"http://127.0.0.1:{port}/"

    async def scenario():
        nonlocal server
        async with browser(executable) as b:
            watched = await open_page(b, page_url, LAPTOP)
            page = watched.page
            await wait_live(page)
            server.stop(signal.SIGKILL)
            await page.wait_for_selector('#status[data-state="disconnected"]', timeout=WAIT_MS)
            assert "disconnected" in (await page.text_content("#status")).lower()
            await page.screenshot(path=ARTIFACTS / "page-disconnected.png")
            await asyncio.sleep(1)
            server = Process(data, "--demo", "--port", str(port))
            await wait_live(page)
            assert page.url.startswith(page_url)        # the same page, never reloaded
            assert await page.evaluate("() => performance.getEntriesByType('navigation')"
                                       ".length") == 1
            # Live again, not showing what it had: a trade made now appears.
            await see_a_trade(page, data, server.url, await selected_symbol(page))
    try:
        run(scenario(), timeout=120)
    finally:
        code, err = server.stop()
    assert code == 0, err


def test_the_page_asks_again_when_refused_and_follows_the_listing(tmp_path):
    """Between the page and a real server: the page's first subscribe is refused, and later
    the resubscribe that repairs a corrupted book; each time it asks again and goes live,
    the ladder verified. A month halted by the admin is shown halted without a reload."""
    executable = chromium()
    data = tmp_path / "data"
    server = Process(data, "--demo")
    page_url = page_of(server.url)
    refuse = {"subscribe": 1, "book": 0}     # how many of each are still to be refused
    corrupt = {"book": 0}
    subscribes: list[list[str]] = []

    def route(ws) -> None:
        upstream = ws.connect_to_server()

        def from_page(message) -> None:
            request = json.loads(message)
            if request.get("method") == "subscribe":
                channels = request["params"]["channels"]
                subscribes.append(channels)
                kind = "book" if all(c.startswith("book.") for c in channels) else "subscribe"
                if refuse[kind]:
                    refuse[kind] -= 1
                    ws.send(json.dumps({"jsonrpc": "2.0", "id": request["id"], "error": {
                        "code": -32000, "message": "not now", "data": {"reason": "busy"}}}))
                    return
            upstream.send(message)

        def from_server(message) -> None:
            note = json.loads(message)
            data_ = (note.get("params") or {}).get("data")
            if (corrupt["book"] and note.get("method") == "subscription"
                    and isinstance(data_, dict) and data_.get("type") == "delta"):
                corrupt["book"] -= 1
                data_["checksum"] = (data_["checksum"] + 1) % 2**32
                message = json.dumps(note)
            ws.send(message)

        ws.on_message(from_page)
        upstream.on_message(from_server)

    async def scenario():
        async with browser(executable) as b:
            context = await b.new_context(viewport=LAPTOP)
            await context.route_web_socket("**/ws", route)
            watched = Watched(await context.new_page())
            page = watched.page
            await page.goto(page_url)
            await wait_live(page)
            assert refuse["subscribe"] == 0 and len(subscribes) >= 2

            before = len(subscribes)
            refuse["book"], corrupt["book"] = 1, 1
            await page.wait_for_function(
                "() => document.querySelector('#book-state').dataset.check !== 'ok'",
                timeout=WAIT_MS, polling=10)
            await page.wait_for_selector('#book-state[data-check="ok"]', timeout=WAIT_MS)
            books = [c for c in subscribes[before:] if all(x.startswith("book.") for x in c)]
            assert refuse["book"] == 0 and len(books) >= 2, subscribes[before:]

            halted = await page.get_attribute("#curve-table tr[data-symbol]:last-child",
                                              "data-symbol")
            assert halted != await selected_symbol(page)
            async with trader(data, server.url, "admin") as admin:
                await admin.call("admin.halt", symbol=halted)
            await page.wait_for_function(
                f"""() => (document.querySelector('#curve-table tr[data-symbol="{halted}"]')
                          || {{}}).textContent?.includes('halted')""", timeout=WAIT_MS)
            assert watched.errors == [], watched.errors
    try:
        run(scenario(), timeout=120)
    finally:
        code, err = server.stop()
    assert code == 0, err


def test_the_page_follows_a_rolling_listing_without_a_reload(tmp_path):
    """A server whose clock jumps to the first quarter's last trading time: its listing step
    cascades the year and the quarter and lists what came into range, and the page, told on
    the instruments channel, drops what is gone and shows what is new without a reload: its
    table and its chart hold exactly the class's listed contracts, 8 quarters and 3 years
    among them (the months in delivery stay listed until their final settlement)."""
    executable = chromium()
    start = time.time_ns()
    jump = [0]
    base = date_to_ns(AS_OF) + 12 * 3600 * 10**9
    live = LiveServer(tmp_path / "data", clock=lambda: base + jump[0] + time.time_ns() - start)
    page_url = page_of(live.url, "H100")
    quarter = min((i for i in live.server.instruments if i.kind == "quarter"
                   and i.gpu_class == "H100"), key=lambda i: i.last_trading_ns)

    def listed() -> list[str]:
        return live.call(lambda: sorted(s for s in live.server.venue.exchange.markets
                                        if s.startswith("H100-")))

    async def shown(page) -> list[str]:
        table = await page.eval_on_selector_all(
            "#curve-table tr[data-symbol]", "rows => rows.map((r) => r.dataset.symbol)")
        chart = await page.eval_on_selector_all(
            "#curve-chart rect.lane-box", "boxes => boxes.map((b) => b.dataset.symbol)")
        return sorted(table) if sorted(table) == sorted(chart) else ["table != chart"]

    async def follows(page, want: list[str]) -> None:
        deadline = time.monotonic() + WAIT_MS / 1000
        while (got := await shown(page)) != want:
            assert time.monotonic() < deadline, (got, want)
            await asyncio.sleep(0.2)

    async def scenario():
        async with browser(executable) as b:
            watched = await open_page(b, page_url, LAPTOP)
            page = watched.page
            await page.wait_for_selector('#status[data-state="live"]', timeout=WAIT_MS)
            before = listed()
            assert len(before) == 23 and quarter.symbol in before
            await follows(page, before)
            jump[0] = quarter.last_trading_ns + 3600 * 10**9 - base
            deadline = time.monotonic() + WAIT_MS / 1000
            while quarter.symbol in (after := listed()):
                assert time.monotonic() < deadline, "the listing step did not run"
                await asyncio.sleep(0.2)
            assert {quarter.symbol, "H100-2027"} <= set(before) - set(after)
            assert {"H100-2029-Q1", "H100-2030"} <= set(after) - set(before)
            await follows(page, after)
            tenors = await page.eval_on_selector_all(
                "#curve-table tr[data-symbol]", "rows => rows.map((r) => r.dataset.tenor)")
            assert (tenors.count("quarter"), tenors.count("year")) == (8, 3)
            assert watched.errors == [], watched.errors
            await page.screenshot(path=ARTIFACTS / "page-rolled.png", full_page=True)
    try:
        run(scenario(), timeout=120)
    finally:
        stop_and_check_replay(live)


def test_the_planner_asks_for_a_plan_and_draws_it(tmp_path):
    """The planner panel sends its inputs as analytics.hedge_plan for the selected class (a
    read: no login, no order) and shows the headline figures the method returns and a chart
    of the DSCR by month, hedged and unhedged, with bands and targets; a bad input shows the
    method's typed error and the field."""
    executable = chromium()
    noon = date_to_ns(AS_OF) + 12 * 3600 * 10**9
    live = LiveServer(tmp_path / "data", clock=lambda: noon)   # the plan depends on the time
    page_url = page_of(live.url, "H100")
    inputs = {"gpus": "100", "start": "2027-01", "months": "6", "utilisation": "0.80",
              "opex": "0.50", "principal": "150000", "rate": "0.12", "tenor": "6",
              "hedge_ratio": "0.5"}

    async def scenario():
        async with browser(executable) as b:
            watched = await open_page(b, page_url, LAPTOP)
            page = watched.page
            await page.wait_for_selector('#status[data-state="live"]', timeout=WAIT_MS)
            shown = await plan_on_page(page, inputs)
            async with Client(live.url) as client:
                plan = await client.call("analytics.hedge_plan", gpu_class="H100", gpus=100,
                                         start="2027-01", months=6, utilisation="0.80",
                                         opex="0.50", hedge_ratio="0.5", debt={
                                             "principal": "150000", "rate": "0.12",
                                             "tenor": 6})
            assert (shown["locked"], shown["liquidity"] != "") == (plan["locked_revenue"], True)
            assert shown["capacity-unhedged"] == plan["unhedged"]["debt_capacity"]
            lines = await page.eval_on_selector_all(
                "#planner-chart path.plan-line", "ps => ps.map((p) => p.getAttribute('class'))")
            assert sorted(lines) == sorted(["plan-line hedged p50", "plan-line hedged p99",
                                            "plan-line hedged p90", "plan-line unhedged p50",
                                            "plan-line unhedged p99"])
            assert len(await page.query_selector_all("#planner-chart .plan-target")) == 2
            await page.screenshot(path=ARTIFACTS / "page-planner.png", full_page=True)
            await page.fill('#planner-form [name="hedge_ratio"]', "1.5")
            await page.click("#planner-form button[type=submit]")
            await page.wait_for_selector('#planner-result[data-state="error"]', timeout=WAIT_MS)
            assert "invalid_params (hedge_ratio)" in await page.text_content("#planner-status")
            assert watched.errors == [], watched.errors
            assert not any("auth.login" in f or '"order.' in f for f in watched.sent)
    try:
        run(scenario(), timeout=120)
    finally:
        stop_and_check_replay(live)
