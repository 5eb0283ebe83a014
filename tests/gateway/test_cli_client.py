"""The `gpux` client commands, run as real processes against a live server."""
from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

from gateway.client.sdk import Client
from live import SYMBOL, TIMEOUT, run

ROOT = Path(__file__).resolve().parents[2]
ENV = {k: v for k, v in os.environ.items() if not k.startswith("GPUX_API_")}


def gpux(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway.client.cli", *args], capture_output=True,
                          text=True, timeout=60, cwd=ROOT, env=env or ENV)


def at(live) -> list[str]:
    """The options that point a command at the live server and its demo accounts."""
    return ["--url", live.url, "--data-dir", str(live.data_dir)]


def place(live, account: str, *args, **kw) -> dict:
    """Place an order through the library client (not the CLI) and return it."""
    async def go():
        a = live.account(account)
        async with Client(live.url, api_key=a.api_key, api_secret=a.api_secret) as client:
            return await client.place(SYMBOL, *args, **kw)
    return run(go())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lines:
    """A running command whose stdout lines can be awaited one at a time."""

    def __init__(self, *args: str, env: dict | None = None) -> None:
        # A command started with SIGINT ignored keeps ignoring it (Python installs its
        # handler only over the default), and a test run started in the background by a
        # non-interactive shell has it ignored: Ctrl-C is given back as a terminal has it.
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            self.proc = subprocess.Popen([sys.executable, "-m", "gateway.client.cli", *args],
                                         cwd=ROOT, env=env or ENV, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True)
        finally:
            signal.signal(signal.SIGINT, previous)
        self._lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self._lines.put(line)

    def next_line(self) -> str:
        return self._lines.get(timeout=TIMEOUT * 2)

    def next_json(self) -> dict:
        return json.loads(self.next_line())

    def next_block(self) -> list[str]:
        """The lines up to the next blank one."""
        lines = []
        while (line := self.next_line()) != "\n":
            lines.append(line.rstrip("\n"))
        return lines

    def finish(self) -> int:
        try:
            return self.proc.wait(TIMEOUT * 2)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def test_place_list_and_cancel(live_server):
    """An order placed from the command line is listed, then cancelled by its client_order_id."""
    placed = gpux("place", SYMBOL, "buy", "3", "--price", "2.05", "--client-order-id", "cli-1",
                  "--account", "trader-1", *at(live_server))
    assert placed.returncode == 0, placed.stderr
    order = json.loads(placed.stdout)
    assert (order["client_order_id"], order["price"], order["qty"], order["status"]) == \
        ("cli-1", "2.050", 3, "open")

    listed = gpux("orders", "--json", "--account", "trader-1", *at(live_server))
    assert [o["order_id"] for o in json.loads(listed.stdout)] == [order["order_id"]]
    table = gpux("orders", "--account", "trader-1", *at(live_server)).stdout.splitlines()
    assert table[0].split()[:3] == ["order_id", "client_order_id", "symbol"]
    assert table[1].split() == [str(order["order_id"]), "cli-1", SYMBOL, "buy", "limit",
                                "2.050", "3", "0", "open"]

    cancelled = gpux("cancel", "--client-order-id", "cli-1", "--account", "trader-1",
                     *at(live_server))
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout)["status"] == "cancelled"
    assert gpux("orders", "--account", "trader-1", *at(live_server)).stdout == \
        "no open orders\n"


def test_a_rejected_order_exits_1_with_the_reason(live_server):
    """The server's error is printed with its reason and code, and nothing is placed."""
    result = gpux("place", SYMBOL, "sell", "1", "--price", "9", "--account", "trader-1",
                  *at(live_server))
    assert result.returncode == 1 and result.stdout == ""
    assert "gpux: order.place failed: price_out_of_band (code 301)" in result.stderr
    assert live_server.call(lambda: len(live_server.server.venue.exchange.orders)) == 0


def test_book_once_prints_the_ladder(live_server):
    """`book --once` prints the snapshot as a ladder, asks above bids, without logging in."""
    place(live_server, "trader-1", "sell", 5, "2.150")
    place(live_server, "trader-1", "sell", 2, "2.160")
    place(live_server, "trader-2", "buy", 4, "2.050")
    result = gpux("book", SYMBOL, "--once", *at(live_server))
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    assert lines == [
        [SYMBOL, "seq", "3"],
        ["orders", "bid", "qty", "price", "ask", "qty", "orders"],
        ["2.160", "2", "1"],
        ["2.150", "5", "1"],
        ["1", "4", "2.050"],
    ]


def test_book_redraws_on_each_change_until_interrupted(live_server):
    """Without --once, `book` prints a new ladder per change and exits 0 on Ctrl-C."""
    book = Lines("book", SYMBOL, *at(live_server))
    assert book.next_block()[0] == f"{SYMBOL}  seq 0"
    place(live_server, "trader-1", "sell", 5, "2.150")
    ladder = book.next_block()
    assert ladder[0] == f"{SYMBOL}  seq 1" and ladder[2].split() == ["2.150", "5", "1"]
    book.proc.send_signal(signal.SIGINT)
    assert book.finish() == 0


def test_book_stops_on_ctrl_c_even_when_its_server_does_not_answer(live_server):
    """Ctrl-C ends a live `book` at once: it does not wait on a server that has stopped
    answering (its loop frozen here, as a stopped or overloaded process would be)."""
    book = Lines("book", SYMBOL, *at(live_server))
    assert book.next_block()[0] == f"{SYMBOL}  seq 0"
    frozen = threading.Event()
    live_server.loop.call_soon_threadsafe(frozen.wait, TIMEOUT * 4)
    try:
        book.proc.send_signal(signal.SIGINT)
        assert book.finish() == 0
    finally:
        frozen.set()


def test_watch_streams_json_lines_and_stops_after_count(live_server):
    """`watch` prints each notification as a JSON line, the snapshot first; stops at --count."""
    watch = Lines("watch", f"book.{SYMBOL}", f"trades.{SYMBOL}", "--count", "4", *at(live_server))
    first = watch.next_json()                       # subscribed: changes from now on are seen
    assert (first["channel"], first["data"]["type"]) == (f"book.{SYMBOL}", "snapshot")
    place(live_server, "trader-1", "sell", 5, "2.150")
    place(live_server, "trader-2", "buy", 2, "2.150")
    rest = [watch.next_json() for _ in range(3)]
    assert watch.finish() == 0
    assert [(m["channel"], m["data"][0]["qty"] if isinstance(m["data"], list)
             else m["data"]["asks"]) for m in rest] == [
        (f"book.{SYMBOL}", [["2.150", 5, 1]]),
        (f"book.{SYMBOL}", [["2.150", 3, 1]]),
        (f"trades.{SYMBOL}", 2),
    ]


def test_watch_of_a_private_channel_logs_in_from_the_environment(live_server):
    """GPUX_API_KEY/GPUX_API_SECRET log `watch orders` in; the account's order updates follow."""
    account = live_server.account("trader-2")
    env = {**ENV, "GPUX_API_KEY": account.api_key, "GPUX_API_SECRET": account.api_secret}
    watch = Lines("watch", f"book.{SYMBOL}", "orders", "--count", "3", "--url", live_server.url,
                  env=env)
    assert watch.next_json()["data"]["type"] == "snapshot"
    order = place(live_server, "trader-2", "buy", 1, "2.000")
    update, book = watch.next_json(), watch.next_json()
    assert watch.finish() == 0
    assert (update["channel"], update["data"]["order_id"], update["data"]["status"]) == \
        ("orders", order["order_id"], "open")
    assert (book["channel"], book["data"]["bids"]) == (f"book.{SYMBOL}", [["2.000", 1, 1]])


def test_an_unreachable_server_is_a_clear_error():
    """With nothing listening, commands say how to start the server and exit 1."""
    url = f"ws://127.0.0.1:{free_port()}/ws"
    for args in (["book", SYMBOL, "--once"], ["orders", "--api-key", "k" * 8,
                                              "--api-secret", "s" * 16]):
        result = gpux(*args, "--url", url)
        assert result.returncode == 1
        assert result.stderr == f"gpux: cannot connect to {url}: is `gpux serve` running?\n"


def test_bad_credentials_are_a_clear_error(live_server):
    """A wrong secret fails the login with the server's reason and exit 1."""
    result = gpux("orders", "--api-key", live_server.account("trader-1").api_key,
                  "--api-secret", "0" * 64, "--url", live_server.url)
    assert result.returncode == 1
    assert result.stderr.startswith("gpux: login failed: invalid_signature: ")


def test_missing_or_unknown_credentials_are_usage_errors(tmp_path):
    """Trading commands without credentials, or with no accounts file, exit 2 before connecting."""
    result = gpux("place", SYMBOL, "buy", "1", "--price", "2.1")
    assert result.returncode == 2 and "place needs credentials" in result.stderr
    result = gpux("orders", "--account", "nobody", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert f"{tmp_path / 'demo-accounts.json'} does not exist" in result.stderr


def test_instruments_and_curve_list_months_quarters_and_years(live_server):
    """`instruments` and `curve` show every listed contract of the class, whatever its tenor,
    read from the server each time (so what a rolling listing adds is there)."""
    result = gpux("instruments", "--class", "H100", *at(live_server))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["symbol", "tenor", "delivery", "hours"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert len(rows) == 23
    assert rows["H100-2027-Q2"][1:4] == ["quarter", "2027-04-01..2027-07-01", "2184"]
    assert rows["H100-2027-Q2"][-3:] == ["H100-2027-04", "H100-2027-05", "H100-2027-06"]
    assert rows["H100-2028"][1:5] == ["year", "2028-01-01..2029-01-01", "8784", "open"]
    years = json.loads(gpux("instruments", "--tenor", "year", "--json", *at(live_server)).stdout)
    assert sorted(i["symbol"] for i in years if i["gpu_class"] == "H100") == \
        ["H100-2027", "H100-2028", "H100-2029"]
    place(live_server, "trader-1", "buy", 2, "2.050")
    curve = gpux("curve", "H100", *at(live_server)).stdout.splitlines()
    assert curve[0].split() == ["symbol", "tenor", "delivery", "start", "bid", "ask", "last",
                                "mark"]
    march = next(line.split() for line in curve if line.startswith(SYMBOL))
    assert march == [SYMBOL, "month", "2027-03-01", "2.050", "-", "-", "2.100"]
    assert len(curve) == 24
    bad = gpux("curve", "Z9", *at(live_server))
    assert bad.returncode == 1 and "unknown_gpu_class" in bad.stderr


def test_strip_quotes_and_trades_every_leg_or_none(live_server):
    """`strip --quote` says what a strip would fill at without logging in; `strip` buys the
    same quantity in every leg at once, or, refused, trades nothing and exits 1."""
    legs = ["H100-2027-04", "H100-2027-05", "H100-2027-06"]

    async def offers():
        a = live_server.account("trader-2")
        async with Client(live_server.url, api_key=a.api_key, api_secret=a.api_secret) as c:
            for symbol, price in zip(legs, ("2.100", "2.110", "2.120")):
                await c.place(symbol, "sell", 5, price)
    run(offers())
    quote = gpux("strip", *legs, "--side", "buy", "--qty", "5", "--quote", *at(live_server))
    assert quote.returncode == 0, quote.stderr
    assert json.loads(quote.stdout)["available_qty"] == 5
    refused = gpux("strip", *legs, "--side", "buy", "--qty", "6", "--price", "2.200",
                   "--account", "trader-1", *at(live_server))
    assert refused.returncode == 1 and "strip_not_fillable" in refused.stderr
    done = gpux("strip", *legs, "--side", "buy", "--qty", "5", "--price", "2.110",
                "--client-order-id", "cli-strip", "--account", "trader-1", *at(live_server))
    assert done.returncode == 0, done.stderr
    strip = json.loads(done.stdout)
    assert (strip["status"], strip["filled_qty"], strip["client_order_id"]) == \
        ("filled", 5, "cli-strip")
    assert [leg["filled_qty"] for leg in strip["legs"]] == [5, 5, 5]
    usage = gpux("strip", *legs, "--side", "buy", "--qty", "1", "--account", "trader-1",
                 *at(live_server))
    assert usage.returncode == 2 and "--price" in usage.stderr
