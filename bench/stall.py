"""The stall budget (issue 21): each attack a hostile client can make, against a real server,
while a clean client calls ``session.test`` every 100 ms; the clean client's round trip
per attack beside the unattacked figure of the same run.

    .venv/bin/python -m bench.stall [--seconds 8] [--only flood,nested] [--fills 20000]
        [--observations 6100] [--open-orders 5000] [--server-cpus 0] [--client-cpus 1]

The state the attacks need is built first through the wire, with rate limits raised
(6,100 H200 index observations in the window, an account with 20,000 fills, an account
with 5,000 open orders); the server is then restarted on that data with the **default**
limits, which every attack faces. The attacking accounts are market makers, the most
privileged trading role (500 orders/s, 100 requests/s, 5,000 open orders). The attacks:

- ``index``: 4 anonymous connections, each pipelining 50 subscribe requests for the 12
  H200 month tickers and index.H200, 50 unsubscribes and 50 market.index, again and again;
- ``orders``: a 10,000-lot resting sell, its owner following the orders channel, lifted
  a lot at a time (400 IOCs a second);
- ``fills``: 4 connections of the account with the fills, each pipelining 200
  account.fills of a symbol never traded, again and again;
- ``order_list``: the same from the account with 5,000 open orders, with order.list;
- ``nested``: 20 connections sending frames nested 1,000 deep, as fast as they can;
- ``flood``: 20 connections sending session.test as fast as they can, reconnecting when
  the server closes them;
- ``big_frames``: 10 connections sending 60 KB frames (a repeated key at the end), and
  one past the frame limit now and then;
- ``churn`` then ``slow_consumers``: a market maker requoting 5 symbols at 200 orders/s,
  then the same with 50 subscribers to those books and trades that never read;
- ``half_open``: 100 TCP connections that never finish the upgrade and 100 websockets
  stalled in the middle of a frame.

The server runs on ``--server-cpus``, the attacker and the clean client on
``--client-cpus`` (the attacker at nice 10, so the clean client's figure is the
server's, not a shared core's). Reported per attack: what the attack sent and got
back, the server's CPU, and the clean client's round trips (count, p50, p99, max,
and any that failed or took over 5 s).
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import multiprocessing as mp
import os
import shutil
import tempfile
import time
from pathlib import Path

import msgspec
import uvloop

from bench import wsraw
from bench.harness import (
    ServerProcess, account_toml, high_limits, login_params, parse_cpus, percentile, pin,
)
from bench.loadgen import machine

ACCOUNTS = {"maker-a": "market_maker", "taker-a": "market_maker",
            "filler-a": "market_maker", "filler-b": "market_maker", "lister": "market_maker",
            "churner": "market_maker", "idx-1": "index_provider", "idx-2": "index_provider",
            "idx-3": "index_provider"}
FILL_SYMBOL, UNTRADED, LIST_SYMBOL, LIFT_SYMBOL = (
    "H100-2027-03", "H100-2027-06", "H100-2027-04", "H100-2027-05")
CHURN_SYMBOLS = ["H100-2027-07", "H100-2027-08", "H100-2027-09", "H100-2027-10",
                 "H100-2027-11"]
_decode = msgspec.json.Decoder().decode


def config(prepare: bool) -> str:
    """The server's TOML: the accounts, and (to build the state) limits far above any load;
    the clearing section is the same in both, so the restart replays the same state."""
    lines = ["[clearing]", "position_limit = 10000000", ""]
    if prepare:
        lines += ["[limits]", "flood_strikes = 1000000"]
        for role in ("market_maker", "index_provider"):
            lines += high_limits(role) + ["max_open_orders = 100000"]
    for i, (name, role) in enumerate(ACCOUNTS.items(), start=1):
        lines += account_toml(i, name, role)
    return "\n".join(lines) + "\n"


def request(request_id: int, method: str, params: dict | None = None) -> bytes:
    return msgspec.json.encode({"jsonrpc": "2.0", "id": request_id, "method": method,
                                "params": params or {}})


class Conn(wsraw.WsProtocol):
    """A connection that counts what comes back: answers (by error reason), notifications,
    and the close code; ``calls`` futures resolve by id, ``until(n)`` waits for n answers."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.answers = 0
        self.notes = 0
        self.reasons: collections.Counter = collections.Counter()
        self.last: dict | None = None
        self._want: tuple[int, asyncio.Future] | None = None

    def on_message(self, payload: bytes) -> None:
        if b'"method"' in payload[:40]:
            self.notes += 1
            return
        self.answers += 1
        message = _decode(payload)
        self.last = message
        error = message.get("error")
        if error is not None:
            self.reasons[(error.get("data") or {}).get("reason", "?")] += 1
        future = self.calls.pop(message.get("id"), None)
        if future is not None and not future.done():
            future.set_result(message)
        if self._want is not None and self.answers >= self._want[0]:
            if not self._want[1].done():
                self._want[1].set_result(None)

    def connection_lost(self, exc) -> None:
        super().connection_lost(exc)
        if self._want is not None and not self._want[1].done():
            self._want[1].set_result(None)

    async def until(self, n: int, timeout: float) -> None:
        """Wait until ``n`` answers in all have come, the connection closes, or timeout."""
        if self.answers >= n or self.closed.done():
            return
        future = asyncio.get_running_loop().create_future()
        self._want = (n, future)
        try:
            await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            self._want = None

    async def rpc(self, method: str, params: dict | None = None, timeout: float = 30) -> dict:
        answer = await asyncio.wait_for(self.call(method, params or {}), timeout)
        if "error" in answer:
            raise RuntimeError(f"{method} refused: {answer['error']}")
        return answer["result"]


class Target:
    """Where the server is; opens connections, logged in or not."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    async def open(self, account: str | None = None) -> Conn:
        conn = await wsraw.connect(lambda: Conn(self.host, self.port), self.host, self.port)
        if account is not None:
            await conn.rpc("auth.login", login_params(account, f"{account}-{time.time_ns()}"))
        return conn


class Tally:
    """What one attack sent and got back, over all its connections."""

    def __init__(self) -> None:
        self.sent = 0
        self.answers = 0
        self.notes = 0
        self.closes: collections.Counter = collections.Counter()
        self.reasons: collections.Counter = collections.Counter()

    def take(self, conn: Conn) -> None:
        """Count a connection that is finished with."""
        self.answers += conn.answers
        self.notes += conn.notes
        self.reasons.update(conn.reasons)
        if conn.close_code is not None:
            self.closes[conn.close_code] += 1

    def summary(self) -> str:
        reasons = ", ".join(f"{r} {n}" for r, n in self.reasons.most_common(2))
        closes = ", ".join(f"{c}x{n}" for c, n in sorted(self.closes.items()))
        return (f"sent {self.sent}, answered {self.answers}"
                + (f" ({reasons})" if reasons else "")
                + (f", {self.notes} updates" if self.notes else "")
                + (f", closed {closes}" if closes else ""))


async def repeat_bursts(target: Target, tally: Tally, stop: float, account: str | None,
                        frames, timeout: float = 10.0) -> None:
    """One connection sending ``frames()`` (a list of frames) in one write, waiting for their
    answers, and again until ``stop``; a new connection when the server closes one."""
    while time.monotonic() < stop:
        try:
            conn = await target.open(account)
        except (OSError, RuntimeError, asyncio.TimeoutError):
            await asyncio.sleep(0.1)
            continue
        while time.monotonic() < stop and not conn.closed.done():
            batch = frames()
            conn.send_many(batch)
            tally.sent += len(batch)
            await conn.until(conn.answers + len(batch), timeout)
        await wsraw.close_all([conn], 1.0)
        tally.take(conn)


# -- The attacks -----------------------------------------------------------------------

async def attack_index(target: Target, tally: Tally, stop: float, ctx: dict) -> None:
    channels = [f"ticker.{s}" for s in ctx["h200_months"]] + ["index.H200"]
    ids = iter(range(10**9))

    def frames():
        return ([request(next(ids), "subscribe", {"channels": channels}) for _ in range(50)]
                + [request(next(ids), "unsubscribe", {"channels": channels})
                   for _ in range(50)]
                + [request(next(ids), "market.index", {"gpu_class": "H200"})
                   for _ in range(50)])
    await asyncio.gather(*(repeat_bursts(target, tally, stop, None, frames)
                           for _ in range(4)))


async def attack_orders(target: Target, tally: Tally, stop: float, ctx: dict) -> None:
    """The resting order's owner follows the orders channel; each lift is one more fill."""
    maker = await target.open("maker-a")
    await maker.rpc("subscribe", {"channels": ["orders"]})
    price = f"{(ctx['h100'][LIFT_SYMBOL] + 5) / 1000:.3f}"
    resting = {"symbol": LIFT_SYMBOL, "side": "sell", "qty": 10_000, "price": price}
    await maker.rpc("order.place", resting)
    taker = await target.open("taker-a")
    lift = {"symbol": LIFT_SYMBOL, "side": "buy", "qty": 1, "price": price, "tif": "ioc"}
    placed, tick = 0, time.monotonic()
    while time.monotonic() < stop and not taker.closed.done():
        if placed and placed % 9_000 == 0:
            await maker.rpc("order.place", resting)        # before the first is all lifted
        batch = [request(placed + i + 1000, "order.place", lift) for i in range(4)]
        placed += 4
        taker.send_many(batch)
        tally.sent += 4
        tick += 0.01                                      # 400 a second
        await asyncio.sleep(max(0.0, tick - time.monotonic()))
    await taker.until(placed, 5)
    await wsraw.close_all([maker, taker], 1.0)
    tally.take(maker)
    tally.take(taker)


async def attack_fills(target: Target, tally: Tally, stop: float, ctx: dict) -> None:
    ids = iter(range(10**9))
    await asyncio.gather(*(repeat_bursts(target, tally, stop, "filler-a", lambda: [
        request(next(ids), "account.fills", {"symbol": UNTRADED}) for _ in range(200)])
        for _ in range(4)))


async def attack_order_list(target: Target, tally: Tally, stop: float, ctx: dict) -> None:
    ids = iter(range(10**9))
    await asyncio.gather(*(repeat_bursts(target, tally, stop, "lister", lambda: [
        request(next(ids), "order.list") for _ in range(200)]) for _ in range(4)))


DEEP = (b'{"jsonrpc": "2.0", "id": 7, "method": "session.test", "params": '
        + b'{"a": ' * 1000 + b"1" + b"}" * 1001)


async def attack_nested(target: Target, tally: Tally, stop: float, ctx: dict) -> None:
    await asyncio.gather(*(repeat_bursts(target, tally, stop, None, lambda: [DEEP] * 100)
                           for _ in range(20)))


async def attack_flood(target: Target, tally: Tally, stop: float, ctx: dict) -> None:
    ids = iter(range(10**9))
    await asyncio.gather(*(repeat_bursts(target, tally, stop, None, lambda: [
        request(next(ids), "session.test") for _ in range(500)]) for _ in range(20)))


BIG = (b'{"jsonrpc": "2.0", "id": 8, "method": "session.test", "params": {"pad": "'
       + b"x" * 60_000 + b'", "pad": 1}}')
TOO_BIG = b'{"jsonrpc": "2.0", "id": 9, "method": "session.test", "pad": "' + b"x" * 70_000 + \
    b'"}'


async def attack_big_frames(target: Target, tally: Tally, stop: float, ctx: dict) -> None:
    count = iter(range(10**9))

    def frames():
        return [BIG] * 20 + ([TOO_BIG] if next(count) % 5 == 4 else [])
    await asyncio.gather(*(repeat_bursts(target, tally, stop, None, frames)
                           for _ in range(10)))


async def churn(target: Target, tally: Tally, stop: float, marks: dict) -> None:
    """A market maker requoting CHURN_SYMBOLS' two sides: 200 orders a second."""
    maker = await target.open("churner")
    n = 0
    tick = time.monotonic()
    while time.monotonic() < stop and not maker.closed.done():
        n += 1
        quotes = [{"symbol": s, "side": side, "qty": 1 + n % 7,
                   "price": quote_price(marks[s], side, n)} for s in CHURN_SYMBOLS
                  for side in ("buy", "sell")]
        maker.send_many([request(n, "order.mass_quote", {"quotes": quotes})])
        tally.sent += 1
        tick += 0.05                                      # 10 slots x 20 a second
        await asyncio.sleep(max(0.0, tick - time.monotonic()))
    await maker.until(n, 5)
    await wsraw.close_all([maker], 1.0)
    tally.take(maker)


def quote_price(mid: int, side: str, n: int) -> str:
    """A churning quote 3 to 7 ticks off the mark."""
    ticks = mid + (-(3 + n % 5) if side == "buy" else 3 + n % 5)
    return f"{ticks / 1000:.3f}"


async def attack_churn(target: Target, tally: Tally, stop: float, ctx: dict) -> None:
    await churn(target, tally, stop, ctx["h100"])


async def attack_slow_consumers(target: Target, tally: Tally, stop: float, ctx: dict) -> None:
    channels = [f"{kind}.{s}" for s in CHURN_SYMBOLS for kind in ("book", "trades", "ticker")]
    readers = []
    for _ in range(50):
        conn = await target.open()
        await conn.rpc("subscribe", {"channels": channels})
        conn.transport.pause_reading()                    # and never reads again
        readers.append(conn)
    tally.sent += len(readers)
    await churn(target, tally, stop, ctx["h100"])
    for conn in readers:
        conn.transport.abort()


async def attack_half_open(target: Target, tally: Tally, stop: float, ctx: dict) -> None:
    streams = []
    for _ in range(100):                                 # TCP only: no upgrade ever comes
        reader, writer = await asyncio.open_connection(target.host, target.port)
        writer.write(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
        streams.append((reader, writer))
    stalled = []
    for _ in range(100):                                 # a frame header, then nothing
        conn = await target.open()
        conn.transport.write(bytes([0x81, 0xFE, 0x03, 0xE8, 0, 0, 0, 0]) + b'{"json')
        stalled.append(conn)
    tally.sent = 200
    await asyncio.sleep(max(0.0, stop - time.monotonic()))
    tally.closes["http"] = sum(reader.at_eof() for reader, _ in streams)
    tally.closes["stalled"] = sum(c.closed.done() for c in stalled)
    for _, writer in streams:
        writer.transport.abort()
    for c in stalled:
        c.transport.abort()


async def attack_baseline(target: Target, tally: Tally, stop: float, ctx: dict) -> None:
    await asyncio.sleep(max(0.0, stop - time.monotonic()))


RUNS = {"baseline": attack_baseline, "index": attack_index, "orders": attack_orders,
        "fills": attack_fills, "order_list": attack_order_list, "nested": attack_nested,
        "flood": attack_flood, "big_frames": attack_big_frames, "churn": attack_churn,
        "slow_consumers": attack_slow_consumers, "half_open": attack_half_open}
ATTACKS = list(RUNS)


# -- Building the state ----------------------------------------------------------------

async def prepare(target: Target, h100: dict, fills: int, observations: int,
                  open_orders: int) -> None:
    """The index observations, the account with fills and the one with open orders."""
    probe = await target.open()
    curve = await probe.rpc("market.curve", {"gpu_class": "H200"})
    h200 = next(c["mark_price"] for c in curve if c["tenor"] == "month")
    await wsraw.close_all([probe])
    providers = [await target.open(f"idx-{i}") for i in (1, 2, 3)]
    for start in range(0, observations, 600):
        batch = [request(start + i, "index.submit", {"gpu_class": "H200", "price": h200,
                                                     "hours": 10})
                 for i in range(min(600, observations - start))]
        conn = providers[start // 600 % 3]
        conn.send_many(batch)
        await conn.until(conn.answers + len(batch), 60)
    seller, buyer = await target.open("filler-b"), await target.open("filler-a")
    ask = h100[FILL_SYMBOL] + 5
    for _ in range(-(-fills // 10_000)):
        await seller.rpc("order.place", {"symbol": FILL_SYMBOL, "side": "sell",
                                         "qty": 10_000, "price": f"{ask / 1000:.3f}"})
    lift = {"symbol": FILL_SYMBOL, "side": "buy", "qty": 1, "price": f"{ask / 1000:.3f}",
            "tif": "ioc"}
    for start in range(0, fills, 1000):
        batch = [request(start + i, "order.place", lift) for i in range(min(1000, fills - start))]
        buyer.send_many(batch)
        await buyer.until(buyer.answers + len(batch), 60)
    lister = await target.open("lister")
    low = h100[LIST_SYMBOL] - 100
    for start in range(0, open_orders, 1000):
        batch = [request(start + i, "order.place", {
            "symbol": LIST_SYMBOL, "side": "buy", "qty": 1,
            "price": f"{(low + (start + i) % 80) / 1000:.3f}"})
            for i in range(min(1000, open_orders - start))]
        lister.send_many(batch)
        await lister.until(lister.answers + len(batch), 60)
    bad = sum(sum(c.reasons.values()) for c in providers + [buyer, lister])
    if bad:
        raise RuntimeError(f"preparing: {bad} refusals: "
                           f"{[dict(c.reasons) for c in providers + [buyer, lister]]}")
    await wsraw.close_all(providers + [seller, buyer, lister])


async def marks(target: Target) -> dict:
    """Each H100 month's mark in ticks, and the H200 months' symbols."""
    conn = await target.open()
    out = {}
    for gpu_class in ("H100", "H200"):
        curve = await conn.rpc("market.curve", {"gpu_class": gpu_class})
        out[gpu_class] = {c["symbol"]: round(float(c["mark_price"]) * 1000) for c in curve
                          if c["tenor"] == "month"}
    await wsraw.close_all([conn])
    return out


# -- The clean client --------------------------------------------------------------------

def clean_client(host: str, port: int, cpus, pipe, interval: float = 0.1) -> None:
    """session.test every ``interval`` on one anonymous connection until told to stop;
    sends back [(start, round trip or None for a failure)] on CLOCK_MONOTONIC."""
    pin(cpus)
    samples: list = []

    async def main() -> None:
        target = Target(host, port)
        conn = await target.open()
        tick = time.monotonic()
        while not pipe.poll():
            start = time.monotonic()
            try:
                await asyncio.wait_for(conn.call("session.test", {}), 5)
                samples.append((start, time.monotonic() - start))
            except (asyncio.TimeoutError, ConnectionError, RuntimeError):
                samples.append((start, None))
                conn.transport.abort()
                conn = await target.open()
            tick += interval
            await asyncio.sleep(max(0.0, tick - time.monotonic()))
        await wsraw.close_all([conn])
    uvloop.run(main())
    pipe.send(samples)


# -- The run -----------------------------------------------------------------------------

def run(seconds: float, only: list[str], fills: int, observations: int, open_orders: int,
        server_cpus, client_cpus, nice: int = 0) -> list[dict]:
    """Build the state, restart on default limits, run the attacks; a row per attack.
    ``nice``: this process's (the attacker's) niceness, once the others have started."""
    pin(client_cpus)
    workdir = Path(tempfile.mkdtemp(prefix="gpux-stall-"))
    server = ServerProcess("gpux", cpus=server_cpus, config_text=config(prepare=True),
                           workdir=workdir)
    try:
        target = Target(server.host, server.port)

        async def build() -> dict:
            known = await marks(target)
            await prepare(target, known["H100"], fills, observations, open_orders)
            return known
        known = uvloop.run(build())
        server.stop()
        server = ServerProcess("gpux", cpus=server_cpus, config_text=config(prepare=False),
                               workdir=workdir)
        target = Target(server.host, server.port)
        ctx = {"h200_months": sorted(known["H200"])[:12], "h100": known["H100"]}
        spawn = mp.get_context("spawn")
        parent, child = spawn.Pipe()
        clean = spawn.Process(target=clean_client, args=(server.host, server.port, client_cpus,
                                                      child))
        clean.start()
        os.nice(nice)
        time.sleep(1.0)                                   # the clean client's first calls
        rows = []
        for name in ATTACKS:
            if only and name not in only and name != "baseline":
                continue
            tally = Tally()
            cpu0, t0 = server.cpu_seconds(), time.monotonic()
            uvloop.run(RUNS[name](target, tally, t0 + seconds, ctx))
            t1 = time.monotonic()
            rows.append({"attack": name, "start": t0, "end": t1, "tally": tally.summary(),
                         "cpu": (server.cpu_seconds() - cpu0) / (t1 - t0)})
            time.sleep(1.0)                               # what the attack left, drained
        parent.send("stop")
        samples = parent.recv()
        clean.join()
    finally:
        if server.stop() == 0:
            shutil.rmtree(workdir, ignore_errors=True)
    for row in rows:
        times = sorted(rtt for start, rtt in samples
                       if row["start"] <= start < row["end"] and rtt is not None)
        row["failed"] = sum(1 for start, rtt in samples
                            if row["start"] <= start < row["end"] and rtt is None)
        row["n"] = len(times)
        row["p50"], row["p99"] = percentile(times, 50), percentile(times, 99)
        row["max"] = times[-1] if times else None
    return rows


def ms(value) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


def table(rows: list[dict]) -> str:
    out = ["| attack | clean calls | p50 ms | p99 ms | max ms | failed | server CPU | "
           "the attack |", "| --- | --: | --: | --: | --: | --: | --: | --- |"]
    for r in rows:
        out.append(f"| {r['attack']} | {r['n']} | {ms(r['p50'])} | {ms(r['p99'])} | "
                   f"{ms(r['max'])} | {r['failed']} | {r['cpu']:.0%} | {r['tally']} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--only", default="", help="attacks to run, comma-separated")
    parser.add_argument("--fills", type=int, default=20_000)
    parser.add_argument("--observations", type=int, default=6_100)
    parser.add_argument("--open-orders", type=int, default=5_000)
    parser.add_argument("--server-cpus", default="0")
    parser.add_argument("--client-cpus", default="1")
    args = parser.parse_args(argv)
    only = [a for a in args.only.split(",") if a]
    unknown = set(only) - set(ATTACKS)
    if unknown:
        parser.error(f"unknown attacks: {sorted(unknown)}; there are {ATTACKS}")
    cpus = os.cpu_count() or 1
    about = machine()                    # before this process is pinned to the client CPUs
    rows = run(args.seconds, only, args.fills, args.observations, args.open_orders,
               parse_cpus(args.server_cpus) if cpus > 1 else None,
               parse_cpus(args.client_cpus) if cpus > 1 else None, nice=10)
    print(about)
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
