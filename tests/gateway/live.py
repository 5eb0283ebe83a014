"""A real gpux server for tests, and a small raw websocket client speaking PROTOCOL.md.

The server runs in its own thread with its own uvloop event loop, so tests
talk to it over real sockets exactly as another process would, and can still
look at its state (``live.call``) between requests.
"""
from __future__ import annotations

import asyncio
import datetime
import http.client
import itertools
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import uvloop
from websockets.asyncio.client import connect

from engine.contracts import date_to_ns
from gateway.core.auth import sign
from gateway.config import load_config
from gateway.demo.participants import Demo, levels_of
from gateway.server.websocket import Server
from gateway.storage.recovery import build, canonical_state, state_digest, verify

AS_OF = datetime.date(2026, 11, 25)
SYMBOL = "H100-2027-03"
# Timeouts scale with GPUX_TEST_TIMEOUT_SCALE on slow machines.
SCALE = float(os.environ.get("GPUX_TEST_TIMEOUT_SCALE", "1"))
TIMEOUT = 5.0 * SCALE


def market_clock():
    """A clock that starts at AS_OF 12:00 UTC and runs at real speed.

    The listing and the tests' contracts are those of AS_OF, so the engine's time
    must be too, whatever day the tests run on.
    """
    start = time.time_ns()
    base = date_to_ns(AS_OF) + 12 * 3600 * 10**9
    return lambda: base + time.time_ns() - start


CRASHED: list = []


class LiveServer:
    """A Server listening on 127.0.0.1 on a free port, run by a background thread."""

    def __init__(self, data_dir: Path, config_text: str | None = None, *,
                 clock=None) -> None:
        if clock is None:
            clock = market_clock()
        self.clock = clock
        self.data_dir = data_dir
        self.config_text = config_text
        self.loop = uvloop.new_event_loop()
        self.server = Server(load_config(config_text), data_dir, as_of=AS_OF, clock=clock)
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.server.start("127.0.0.1", 0))
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, name="gpux-server", daemon=True)
        self.thread.start()
        if not started.wait(TIMEOUT):
            raise RuntimeError("the server did not start")
        self.url = f"ws://127.0.0.1:{self.server.port}/ws"

    def account(self, name: str):
        """Return the AccountConfig named ``name`` (its api_key and api_secret)."""
        return self.server.accounts.by_name[name]

    def call(self, fn, *args):
        """Run ``fn(*args)`` on the server's loop and return its result."""
        async def run():
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(TIMEOUT)

    def crash(self) -> None:
        """Stop as a crash would: the loop halts mid-stride, with no shutdown snapshot and
        the journal left as it is. (tests/test_crash.py kills a real process.)"""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT)
        self.server.crash()                # its journal writer stops too
        os.close(self.server.lock)         # as the dead process's would be
        CRASHED.append(self)       # its tasks stay pending, never to run (nor be collected)

    def restart(self) -> "LiveServer":
        """A new server on the same data directory, its clock going on from this one's."""
        return LiveServer(self.data_dir, self.config_text, clock=self.clock)

    def stop(self) -> None:
        if self.loop.is_running():
            asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(TIMEOUT)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(TIMEOUT)


def start_demo(live: LiveServer, **kw) -> Demo:
    """Run the demo's participants on the server's own loop, as `gpux serve --demo` does."""
    accounts = {a.account: (a.api_key, a.api_secret) for a in live.server.account_list}
    demo = Demo(live.url, accounts, levels_of(live.server.instruments), **kw)
    asyncio.run_coroutine_threadsafe(demo.start(), live.loop).result(TIMEOUT)
    return demo


def stop_demo(live: LiveServer, demo: Demo) -> None:
    asyncio.run_coroutine_threadsafe(demo.stop(), live.loop).result(TIMEOUT)


def wait_for(live: LiveServer, check, seconds: float = 6 * TIMEOUT) -> None:
    """Wait until ``check()``, run on the server's loop, is true."""
    deadline = time.monotonic() + seconds
    while not live.call(check):
        assert time.monotonic() < deadline, f"{check} did not come true"
        time.sleep(0.1)


def quoted(server: Server) -> bool:
    """Whether every listed month has a bid and an offer."""
    return all(f.book.top(True) and f.book.top(False) for f in server.feed.symbols.values())


def traded(server: Server) -> int:
    """Contracts traded so far, over every month."""
    return sum(f.volume for f in server.feed.symbols.values())


class Ws:
    """A raw JSON-RPC client: sends requests, returns responses, keeps notifications."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.notes: list[dict] = []

    @classmethod
    async def open(cls, live: LiveServer, account: str | None = None, **kw) -> "Ws":
        ws = cls(await connect(live.url, **kw))
        if account is not None:
            result = await ws.login(live, account)
            assert "result" in result, result
        return ws

    async def login(self, live: LiveServer, name: str, nonce: str | None = None) -> dict:
        a = live.account(name)
        ts = int(time.time() * 1000)
        nonce = nonce or f"n-{time.monotonic_ns()}"
        return await self.call("auth.login", api_key=a.api_key, timestamp=ts, nonce=nonce,
                               signature=sign(a.api_secret, ts, nonce))

    async def send(self, message) -> None:
        await self.ws.send(message if isinstance(message, str) else json.dumps(message))

    async def recv(self) -> dict:
        return json.loads(await asyncio.wait_for(self.ws.recv(), TIMEOUT))

    async def call(self, method: str, **params) -> dict:
        """Send a request and return its response (notifications meanwhile go to notes)."""
        request_id = next(self.ids)
        await self.send({"jsonrpc": "2.0", "id": request_id, "method": method,
                         "params": params})
        return await self.response(request_id)

    async def response(self, request_id) -> dict:
        while True:
            message = await self.recv()
            if "id" in message and message["id"] == request_id:
                return message
            if "id" in message:
                raise AssertionError(f"response to another request: {message}")
            self.notes.append(message)

    async def result(self, method: str, **params):
        """Call and return the result; fail the test on an error."""
        response = await self.call(method, **params)
        assert "result" in response, response
        return response["result"]

    async def error(self, method: str, **params) -> dict:
        """Call and return the error object; fail the test on a result."""
        response = await self.call(method, **params)
        assert "error" in response, response
        return response["error"]

    async def note(self, channel: str | None = None) -> dict:
        """Return the next notification's params (of ``channel`` if given)."""
        while True:
            for i, n in enumerate(self.notes):
                if channel is None or n.get("params", {}).get("channel") == channel:
                    return self.notes.pop(i)["params"]
            message = await self.recv()
            assert "id" not in message, message
            self.notes.append(message)

    async def close(self) -> None:
        await self.ws.close()


def http_get(live: LiveServer, path: str, **headers):
    """A plain HTTP GET on the server's port; the response with its ``body`` read."""
    conn = http.client.HTTPConnection("127.0.0.1", live.server.port, timeout=TIMEOUT)
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    response.body = response.read()
    conn.close()
    return response


def run(coro, timeout: float = 30.0):
    """Run a test coroutine on a fresh event loop, with an overall timeout."""
    return asyncio.run(asyncio.wait_for(coro, timeout * SCALE))


class Rebuilt:
    """A book rebuilt from the stream the way PROTOCOL.md tells a client to."""

    def __init__(self) -> None:
        self.seq = None
        self.bids: dict[str, list] = {}
        self.asks: dict[str, list] = {}

    def apply(self, data: dict) -> None:
        if data["type"] == "snapshot":
            self.bids = {p: [p, q, n] for p, q, n in data["bids"]}
            self.asks = {p: [p, q, n] for p, q, n in data["asks"]}
        else:
            assert data["prev_seq"] == self.seq, "gap in the book stream"
            for side, levels in ((self.bids, data["bids"]), (self.asks, data["asks"])):
                for p, q, n in levels:
                    if q == 0:
                        del side[p]
                    else:
                        side[p] = [p, q, n]
        self.seq = data["seq"]
        assert data["checksum"] == self.checksum()

    def levels(self):
        bids = sorted(self.bids.values(), key=lambda lv: -float(lv[0]))
        asks = sorted(self.asks.values(), key=lambda lv: float(lv[0]))
        return bids, asks

    def checksum(self) -> int:
        bids, asks = self.levels()
        text = ("|".join(f"{p}:{q}" for p, q, _ in bids[:10]) + "#"
                + "|".join(f"{p}:{q}" for p, q, _ in asks[:10]))
        return zlib.crc32(text.encode())


class Process:
    """`gpux serve` (or ``command``) as a process, on a free port unless ``args`` name one;
    ``url`` once it says it is listening (``wait=False``: not waited for)."""

    def __init__(self, data_dir, *args: str, program: tuple[str, ...] = ("-m",
                 "gateway.client.cli"), env: dict | None = None, command: str = "serve",
                 wait: bool = True) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, *program, command, "--data-dir", str(data_dir), "--port", "0",
             *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=None if env is None else os.environ | env)
        self.lines: list[str] = []
        self.errors: list[str] = []
        self.url: str | None = None
        self._listening = threading.Event()
        # Readers keep both pipes drained, so a chatty process never blocks on a full pipe
        # and no line is left in a buffer when it stops.
        self._readers = [threading.Thread(target=self._read, args=(pipe, out), daemon=True)
                         for pipe, out in ((self.proc.stdout, self.lines),
                                           (self.proc.stderr, self.errors))]
        for reader in self._readers:
            reader.start()
        if wait:
            self.listening(TIMEOUT * 4)

    def listening(self, seconds: float) -> str:
        """Wait until the process says where it listens; return that URL."""
        self._listening.wait(seconds)
        if self.url is None:
            self.proc.kill()
            self.stop_readers()
            raise AssertionError(f"no listening line: {self.lines} {''.join(self.errors)}")
        return self.url

    def _read(self, pipe, out: list[str]) -> None:
        for line in pipe:
            out.append(line)
            found = self.url is None and re.search(r"listening on (ws://\S+)", line)
            if found:
                self.url = found[1]
                self._listening.set()
        self._listening.set()

    def stop_readers(self) -> None:
        self.proc.wait(TIMEOUT * 2)
        for reader in self._readers:
            reader.join(TIMEOUT)

    def stop(self, sig=signal.SIGTERM) -> tuple[int, str]:
        """Signal the process, wait for it to exit; return its exit code and its stderr."""
        self.proc.send_signal(sig)
        self.stop_readers()
        return self.proc.returncode, "".join(self.errors)


class Keys:
    """The demo accounts file read as a client would: account name -> api key and secret."""

    def __init__(self, url: str, path) -> None:
        self.url = url
        self.by_name = {a["account"]: a for a in json.loads(path.read_text())}

    def account(self, name):
        a = self.by_name[name]
        return type("Account", (), {"api_key": a["api_key"], "api_secret": a["api_secret"]})


def stop_and_verify(process: Process, data_dir) -> None:
    """Stop a `gpux serve` process cleanly; then `gpux journal verify` must find every
    snapshot's digest equal to the replay's."""
    code, err = process.stop()
    assert code == 0, err
    checked = subprocess.run([sys.executable, "-m", "gateway.client.cli", "journal", "verify",
                              "--data-dir", str(data_dir)], capture_output=True, text=True)
    assert checked.returncode == 0 and "all equal" in checked.stdout, checked


def stop_and_check_replay(server: LiveServer) -> None:
    """Stop the server; then its journal, replayed alone, must give the state it ended in
    (every command journaled, each decoding to what ran)."""
    if not server.loop.is_running():         # crashed: its test checked what it needed
        return
    server.stop()
    live = server.server
    verified = verify(server.data_dir, lambda: build(live.config, AS_OF,
                                                     live.accounts.by_id.values()))
    assert verified.torn is None
    assert verified.digest == state_digest(live.venue, live.feed), first_difference(
        (verified.replay.venue, verified.replay.feed), (live.venue, live.feed))
    assert all(verified.snapshots.values()), verified.snapshots


def first_difference(a, b) -> str:
    """Where two (venue, feed) states first differ, for a failing digest comparison."""
    def walk(x, y, path):
        if isinstance(x, (list, tuple)) and type(x) is type(y) and len(x) == len(y):
            for i, (p, q) in enumerate(zip(x, y)):
                found = walk(p, q, path + [p if isinstance(p, str) else i])
                if found:
                    return found
            return None
        return None if x == y else f"at {path}: {x!r:.300} != {y!r:.300}"
    return walk(canonical_state(*a), canonical_state(*b), []) or "engine state"


class FullDisk:
    """The archive's connection on a full disk: every batch write fails until ``full`` is
    cleared."""

    def __init__(self, db) -> None:
        self.db, self.full = db, True

    def executemany(self, *args):
        if self.full:
            raise sqlite3.OperationalError("database or disk is full")
        return self.db.executemany(*args)

    def __getattr__(self, name: str):
        return getattr(self.db, name)
