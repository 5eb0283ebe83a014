"""`gpux serve` as a real process: demo accounts, a trade over the socket, clean shutdown."""
from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys

import pytest

from live import TIMEOUT, Keys, Process, Ws, run


def test_serve_writes_demo_accounts_once_and_trades(tmp_path):
    """The first start writes funded demo accounts; a restart keeps them; SIGTERM exits 0."""
    data = tmp_path / "data"
    server = Process(data)
    accounts = json.loads((data / "demo-accounts.json").read_text())
    roles = [a["role"] for a in accounts]
    assert roles.count("trader") >= 2 and roles.count("index_provider") >= 3
    assert {"market_maker", "viewer", "admin"} <= set(roles)
    assert all(float(a["collateral"]) > 0 for a in accounts
               if a["role"] in ("trader", "market_maker"))
    assert (data / "demo-accounts.json").stat().st_mode & 0o077 == 0
    printed = "".join(server.lines)
    assert "92 instruments listed" in printed
    assert all(a["api_key"] in printed and a["api_secret"] not in printed for a in accounts)
    keys = Keys(server.url, data / "demo-accounts.json")

    async def trade():
        a = await Ws.open(keys, "trader-1")
        b = await Ws.open(keys, "trader-2")
        # The process lists from today's date and runs on the real clock: take its first
        # H100 contract and trade at its reference price.
        inst = next(i for i in await a.result("market.instruments") if i["gpu_class"] == "H100")
        symbol, price = inst["symbol"], inst["reference_price"]
        await a.result("order.place", symbol=symbol, side="sell", qty=2, price=price)
        filled = await b.result("order.place", symbol=symbol, side="buy", qty=2, price=price)
        assert filled["status"] == "filled"
        await a.close()
        await b.close()
    run(trade())
    code, err = server.stop()
    assert code == 0, err
    assert "stopped" in server.lines[-1]

    again = Process(data)
    assert json.loads((data / "demo-accounts.json").read_text()) == accounts
    code, err = again.stop(signal.SIGINT)
    assert code == 0, err


def test_shutdown_closes_connections_with_going_away(tmp_path):
    """On SIGTERM a connected client sees close code 1001 and the process exits 0."""
    server = Process(tmp_path / "data")
    keys = Keys(server.url, tmp_path / "data" / "demo-accounts.json")

    async def scenario():
        ws = await Ws.open(keys, "viewer-1")
        server.proc.send_signal(signal.SIGTERM)
        with pytest.raises(Exception) as closed:
            while True:
                await ws.recv()
        assert getattr(closed.value, "rcvd", None) is not None
        assert closed.value.rcvd.code == 1001
    run(scenario())
    assert server.proc.wait(TIMEOUT * 2) == 0


def test_serve_with_a_bad_config_says_what_is_wrong(tmp_path):
    """An unknown key in the config is refused before listening, naming the key."""
    config = tmp_path / "gpux.toml"
    config.write_text("[limits]\nmax_frame_bites = 10\n")
    run_ = subprocess.run([sys.executable, "-m", "gateway.client.cli", "serve", "--config", str(config),
                           "--data-dir", str(tmp_path / "d"), "--port", "0"],
                          capture_output=True, text=True, timeout=TIMEOUT * 4)
    assert run_.returncode == 2
    assert "bad config" in run_.stderr and "max_frame_bites" in run_.stderr


def test_serve_on_a_busy_port_says_so(tmp_path):
    """A port already in use is a clear error, not a traceback."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run_ = subprocess.run([sys.executable, "-m", "gateway.client.cli", "serve", "--port", str(port),
                               "--data-dir", str(tmp_path / "d")],
                              capture_output=True, text=True, timeout=TIMEOUT * 4)
    assert run_.returncode == 1
    assert "cannot listen" in run_.stderr and "Traceback" not in run_.stderr


def test_a_path_other_than_ws_is_not_found(tmp_path):
    """Only /ws speaks websocket; another path is an HTTP 404."""
    server = Process(tmp_path / "data")
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    async def scenario():
        with pytest.raises(InvalidStatus) as refused:
            await connect(server.url.replace("/ws", "/other"))
        assert refused.value.response.status_code == 404
    try:
        asyncio.run(scenario())
    finally:
        server.stop()


def test_serve_demo_makes_a_live_market_and_carries_on_after_a_restart(tmp_path):
    """`gpux serve --demo`: within seconds every month of every class is quoted both sides and
    trades print; after a clean stop, a restart on the same data makes them trade on."""
    data = tmp_path / "data"

    async def live_market(url: str, after_trade: int) -> int:
        """Wait until every month is quoted and a trade after ``after_trade`` prints; return
        that trade's id."""
        ws = await Ws.open(Keys(url, data / "demo-accounts.json"))
        instruments = await ws.result("market.instruments")
        await ws.result("subscribe", channels=[f"trades.{i['symbol']}" for i in instruments])
        classes = sorted({i["gpu_class"] for i in instruments})
        while True:
            curve = [m for c in classes for m in await ws.result("market.curve", gpu_class=c)]
            if all(m["best_bid"] and m["best_ask"] for m in curve):
                break
            await asyncio.sleep(0.5)
        while True:
            try:
                trades = (await ws.note())["data"]
            except TimeoutError:        # a quiet spell between takers: the run's timeout rules
                continue
            last = max(t["trade_id"] for t in trades)
            if last > after_trade:
                await ws.close()
                return last

    server = Process(data, "--demo")
    try:
        first = run(live_market(server.url, 0), timeout=60)
    finally:
        code, err = server.stop()
    assert code == 0, err
    printed = "".join(server.lines)
    assert "demo participants trading (seed 7)" in printed and "missing" not in printed
    assert "the market page is at http://127.0.0.1:" in printed

    again = Process(data, "--demo")
    try:
        assert run(live_market(again.url, first), timeout=60) > first
    finally:
        code, err = again.stop()
    assert code == 0, err


LARGE_BLOCKS = """
import ctypes, sys
from gateway.server.allocator import keep_large_blocks_mapped

class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Mallinfo2
if sys.argv[1] == "kept":
    assert keep_large_blocks_mapped()
table = bytearray(8 << 20)     # a large table grown and freed (a dict resized, a big answer)
del table
heap = libc.mallinfo2().arena
blocks = [bytearray(1 << 20) for _ in range(16)]
print(libc.mallinfo2().hblkhd >> 20, (libc.mallinfo2().arena - heap) >> 20)
"""


def test_large_blocks_stay_mapped_so_a_server_gives_them_back():
    """glibc raises its mmap threshold to the size of each mapped block freed (up to 32 MiB),
    and blocks under it then come from the main heap, which only shrinks from its top: a
    server at a steady order rate, its live allocations flat (heaptrack), grew about 1 MiB a
    minute in free holes of that heap. A server keeps large blocks mapped, so freeing one
    gives it back: after an 8 MiB block is freed, sixteen blocks of 1 MiB are still mapped,
    not carved from the heap."""
    def probe(mode: str) -> tuple[int, int]:
        out = subprocess.run([sys.executable, "-c", LARGE_BLOCKS, mode], capture_output=True,
                             text=True, check=True).stdout
        mapped, heap_grew = out.split()
        return int(mapped), int(heap_grew)
    mapped, heap_grew = probe("glibc")              # what glibc does by itself
    assert mapped == 0 and heap_grew >= 15
    mapped, heap_grew = probe("kept")
    assert mapped >= 16 and heap_grew == 0


def test_each_server_command_keeps_large_blocks_mapped(monkeypatch):
    """serve, matcher and gateway all start through _run_server."""
    from gateway.client import cli
    from gateway.server import allocator
    calls = []
    monkeypatch.setattr(allocator, "keep_large_blocks_mapped", lambda: calls.append(1) or True)

    async def main():
        return None
    assert cli._run_server(main()) == 0
    assert calls == [1]
