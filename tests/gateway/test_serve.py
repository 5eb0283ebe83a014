"""`gpux serve` as a real process: demo accounts, a trade over the socket, clean shutdown."""
from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import subprocess
import sys

import pytest

from live import TIMEOUT, Ws, run


class Process:
    """`gpux serve` on a free port; ``url`` once it says it is listening."""

    def __init__(self, data_dir, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--data-dir", str(data_dir),
             "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines = []
        for line in self.proc.stdout:
            self.lines.append(line)
            found = re.search(r"listening on (ws://\S+)", line)
            if found:
                self.url = found[1]
                break
        else:
            raise AssertionError(f"no listening line: {self.lines} {self.proc.stderr.read()}")

    def stop(self, sig=signal.SIGTERM) -> tuple[int, str]:
        self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=TIMEOUT * 2)
        self.lines.append(out)
        return self.proc.returncode, err


class Keys:
    """The demo accounts file read as a client would: account name -> api key and secret."""

    def __init__(self, url: str, path) -> None:
        self.url = url
        self.by_name = {a["account"]: a for a in json.loads(path.read_text())}

    def account(self, name):
        a = self.by_name[name]
        return type("Account", (), {"api_key": a["api_key"], "api_secret": a["api_secret"]})


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
    assert "48 instruments listed" in printed
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
    run_ = subprocess.run([sys.executable, "-m", "gateway.cli", "serve", "--config", str(config),
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
        run_ = subprocess.run([sys.executable, "-m", "gateway.cli", "serve", "--port", str(port),
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
