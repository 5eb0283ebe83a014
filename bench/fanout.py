"""Market-data fan-out: many subscribers to one symbol's book and trades, one trader.

    python -m bench.fanout [--subscribers 500] [--rate 200] [--seconds 5] [--warmup 2]
        [--procs 2] [--repeat 3] [--server-cpus 0] [--client-cpus 1] [--verify]
        [--py-spy DIR] [-v]

A fresh ``gpux serve`` (pinned to ``--server-cpus``) gets ``--subscribers``
websocket connections, spread over ``--procs`` client processes, each
subscribed to ``book.H100-2027-03`` and ``trades.H100-2027-03`` (no login:
public channels). A trader process (its own connection, logged in) sends
``--rate`` order requests a second at an even pace, in a cycle of four: a
passive limit of qty 1 (1.960..1.999 or 2.201..2.240), an IOC of qty 1 that
crosses into resting liquidity (placed first by another account), the
cancel of the passive order, another crossing IOC. Every request changes
the book (one delta) and half of them trade (one trades message).

Delay is measured from the moment the trader hands the request that caused
a message to its socket to the moment a subscriber reads the message, both
on CLOCK_MONOTONIC (system-wide on Linux, so comparable across processes):
a trades message is matched to its request by trade_id (from the fills of
the IOC's reply); a book delta by seq, through the trader's own
``book.H100-2027-03`` subscription, on which the server sends each reply
before the delta it caused (a delta is matched to the earliest request
answered since the previous delta).

Every subscriber checks its stream: each delta's ``prev_seq`` must be the
``seq`` it saw last (a gap is counted), a snapshot after the first is a
resync (the server conflated a slow subscriber), and with ``--verify`` it
keeps the book and checks every message's CRC32 checksum. Counts are over
the ``--seconds`` window after ``--warmup``; the table has the median of
``--repeat`` runs. Its columns: "deltas pub/s", the book deltas the trader's
requests caused (the server folds the requests of one event-loop turn into
one delta, so a busy server publishes fewer deltas than it gets requests);
"deltas dlv/s" and "trades msgs dlv/s", messages read by all subscribers
together; "dlv ratio", deltas delivered / (published x subscribers); delays
of deltas and of trades; gaps, resyncs and abnormal closes summed over the
runs; CPU of the server and of the subscriber processes (100% = one core).
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import shutil
import statistics
import sys
import tempfile
import time
import zlib
from array import array
from pathlib import Path

import msgspec

from bench import wsraw
from bench.harness import (
    SYMBOL, ServerProcess, cpu_jiffies, fmt_us, gpux_config, login_params, machine_busy,
    parse_cpus, percentile, pin, py_spy, raise_nofile,
)
from bench.loadgen import (
    CANCEL_REQUEST, CROSS_PARAMS, PASSIVE_PARAMS, PLACE_HEAD, machine, place_liquidity,
)
from gateway.cluster.natsd import NatsCluster

BOOK = f"book.{SYMBOL}"
TRADES = f"trades.{SYMBOL}"


class Fill(msgspec.Struct):
    trade_id: int


class Result(msgspec.Struct):
    order_id: int | None = None
    status: str | None = None
    fills: list[Fill] = []


class Error(msgspec.Struct):
    code: int = 0
    message: str = ""
    data: dict | None = None


class NoteParams(msgspec.Struct):
    channel: str = ""
    data: msgspec.Raw = msgspec.Raw(b"null")


class Message(msgspec.Struct):
    """A response (id) or a notification (method, params)."""
    id: int | str | None = None
    result: msgspec.Raw = msgspec.Raw(b"null")
    error: Error | None = None
    method: str | None = None
    params: NoteParams | None = None


class BookMsg(msgspec.Struct):
    type: str
    seq: int
    prev_seq: int | None = None
    bids: list[tuple[str, int, int]] = []
    asks: list[tuple[str, int, int]] = []
    checksum: int | None = None


class TradeMsg(msgspec.Struct):
    trade_id: int


_decode_message = msgspec.json.Decoder(Message).decode
_decode_result = msgspec.json.Decoder(Result).decode
_decode_book = msgspec.json.Decoder(BookMsg).decode
_decode_trades = msgspec.json.Decoder(list[TradeMsg]).decode


def book_checksum(bids: dict, asks: dict) -> int:
    """PROTOCOL.md's checksum of a local book: {price_str: qty} per side."""
    top_bids = sorted(bids, key=float, reverse=True)[:10]
    top_asks = sorted(asks, key=float)[:10]
    text = ("|".join(f"{p}:{bids[p]}" for p in top_bids) + "#"
            + "|".join(f"{p}:{asks[p]}" for p in top_asks))
    return zlib.crc32(text.encode())


# -- Subscribers ---------------------------------------------------------------------

class SubStats:
    def __init__(self, verify: bool) -> None:
        self.verify = verify
        self.m0, self.m1 = 0, 1 << 62
        self.deltas = 0          # book deltas read inside the window
        self.trade_msgs = 0      # trades messages read inside the window
        self.trades = 0          # trades in them
        self.gaps = 0
        self.resyncs = 0
        self.bad_checksums = 0
        self.errors = 0
        # (key, receive time) of every message read from m0 on: key seq for
        # deltas, -trade_id for trades.
        self.keys = array("q")
        self.times = array("q")


class Subscriber(wsraw.WsProtocol):
    def __init__(self, host: str, port: int, stats: SubStats) -> None:
        super().__init__(host, port)
        self.stats = stats
        self.last_seq: int | None = None
        self.snapshots = 0
        self.deltas_total = 0
        self.subscribed: asyncio.Future = asyncio.get_running_loop().create_future()
        self.bids: dict[str, int] = {}
        self.asks: dict[str, int] = {}
        self.rx_ns = 0

    def data_received(self, data: bytes) -> None:
        self.rx_ns = time.monotonic_ns()
        super().data_received(data)

    def on_message(self, payload: bytes) -> None:
        m = _decode_message(payload)
        stats = self.stats
        if m.id is not None:
            if m.error is not None:
                stats.errors += 1
            if not self.subscribed.done():
                self.subscribed.set_result(m)
            return
        if m.params is None:
            return
        channel = m.params.channel
        now = self.rx_ns
        in_window = stats.m0 <= now < stats.m1
        if channel == BOOK:
            book = _decode_book(m.params.data)
            if book.type == "snapshot":
                self.snapshots += 1
                if self.snapshots > 1:
                    stats.resyncs += 1
                if stats.verify:
                    self.bids = {p: q for p, q, _ in book.bids}
                    self.asks = {p: q for p, q, _ in book.asks}
            else:
                self.deltas_total += 1
                if book.prev_seq != self.last_seq:
                    stats.gaps += 1
                if stats.verify:
                    for side, levels in ((self.bids, book.bids), (self.asks, book.asks)):
                        for p, q, _ in levels:
                            if q:
                                side[p] = q
                            else:
                                side.pop(p, None)
                if in_window:
                    stats.deltas += 1
                if now >= stats.m0:
                    stats.keys.append(book.seq)
                    stats.times.append(now)
            if stats.verify and book_checksum(self.bids, self.asks) != book.checksum:
                stats.bad_checksums += 1
            self.last_seq = book.seq
        elif channel == TRADES:
            trades = _decode_trades(m.params.data)
            if in_window:
                stats.trade_msgs += 1
                stats.trades += len(trades)
            if now >= stats.m0:
                for t in trades:
                    stats.keys.append(-t.trade_id)
                    stats.times.append(now)


async def _subscribers(spec: dict, pipe) -> dict:
    host, port = spec["host"], spec["port"]
    stats = SubStats(spec.get("verify", False))
    sem = asyncio.Semaphore(50)

    async def open_one(i: int) -> Subscriber:
        async with sem:
            sub = await wsraw.connect(lambda: Subscriber(host, port, stats), host, port)
            sub.send(msgspec.json.encode({"jsonrpc": "2.0", "id": 1, "method": "subscribe",
                                          "params": {"channels": [BOOK, TRADES]}}))
            r = await asyncio.wait_for(sub.subscribed, 30)
            if r.error is not None:
                raise RuntimeError(f"subscribe refused: {r.error.message}")
            return sub

    subs = list(await asyncio.gather(*(open_one(i) for i in range(spec["count"]))))
    pipe.send(("ready",))
    loop = asyncio.get_running_loop()
    _, t0, m0, m1, end = await loop.run_in_executor(None, pipe.recv)
    stats.m0, stats.m1 = m0, m1
    cpu: dict[str, float] = {}
    loop.call_later(max(0.0, (m0 - time.monotonic_ns()) / 1e9),
                    lambda: cpu.__setitem__("m0", time.process_time()))
    loop.call_later(max(0.0, (m1 - time.monotonic_ns()) / 1e9),
                    lambda: cpu.__setitem__("m1", time.process_time()))
    await asyncio.sleep(max(0.0, (end - time.monotonic_ns()) / 1e9))
    await wsraw.close_all(subs)
    cpu.setdefault("m0", 0.0)
    cpu.setdefault("m1", time.process_time())
    return {"deltas": stats.deltas, "trade_msgs": stats.trade_msgs, "trades": stats.trades,
            "gaps": stats.gaps, "resyncs": stats.resyncs, "bad_checksums": stats.bad_checksums,
            "errors": stats.errors, "keys": stats.keys.tobytes(), "times": stats.times.tobytes(),
            "closed": sum(1 for s in subs if s.close_code not in (None, 1000, 1001)),
            "min_deltas": min(s.deltas_total for s in subs) if subs else 0,
            "no_snapshot": sum(1 for s in subs if s.snapshots == 0),
            "cpu": cpu["m1"] - cpu["m0"]}


# -- The trader ----------------------------------------------------------------------

class Trader(wsraw.WsProtocol):
    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.in_flight: dict[int, tuple[int, int]] = {}     # id -> (sent, kind)
        self.answered: list[int] = []      # send times of requests answered since the last delta
        self.delta_sent: dict[int, int] = {}      # seq -> send time of its request
        self.trade_sent: dict[int, int] = {}      # trade_id -> send time
        self.cancels: list[int] = []
        self.errors = 0
        self.reasons: dict[str, int] = {}
        self.n = 0
        self.passive = 0
        self.cross = 0
        self.rx_ns = 0

    def data_received(self, data: bytes) -> None:
        self.rx_ns = time.monotonic_ns()
        super().data_received(data)

    def send_next(self) -> None:
        request_id = next(self.ids)
        slot = self.n % 4
        self.n += 1
        if slot == 0:
            kind = 1
            payload = PLACE_HEAD % request_id + PASSIVE_PARAMS[self.passive % len(PASSIVE_PARAMS)]
            self.passive += 1
        elif slot == 2 and self.cancels:
            kind = 3
            payload = CANCEL_REQUEST % (request_id, self.cancels.pop())
        else:
            kind = 2
            payload = PLACE_HEAD % request_id + CROSS_PARAMS[self.cross & 1]
            self.cross += 1
        now = time.monotonic_ns()
        self.in_flight[request_id] = (now, kind)
        self.send(payload)

    def on_message(self, payload: bytes) -> None:
        m = _decode_message(payload)
        if m.id is not None:
            entry = self.in_flight.pop(m.id, None)
            if entry is None:
                future = self.calls.pop(m.id, None)
                if future is not None and not future.done():
                    future.set_result(m)
                return
            sent, kind = entry
            self.answered.append(sent)
            if m.error is not None:
                self.errors += 1
                reason = (m.error.data or {}).get("reason", str(m.error.code))
                self.reasons[reason] = self.reasons.get(reason, 0) + 1
                return
            result = _decode_result(m.result)
            if kind == 1 and result.status == "open":
                self.cancels.append(result.order_id)
            for fill in result.fills:
                self.trade_sent[fill.trade_id] = sent
            return
        if m.params is not None and m.params.channel == BOOK:
            book = _decode_book(m.params.data)
            if book.type == "delta" and self.answered:
                self.delta_sent[book.seq] = min(self.answered)
            self.answered.clear()


async def _trader(spec: dict, pipe) -> dict:
    host, port = spec["host"], spec["port"]
    await place_liquidity(host, port, spec["liquidity"])
    trader = await wsraw.connect(lambda: Trader(host, port), host, port)
    r = await asyncio.wait_for(trader.call("auth.login", login_params(
        spec["account"], f"fan-{time.time_ns()}")), 10)
    if r.error is not None:
        raise RuntimeError(f"login failed: {r.error.message}")
    r = await asyncio.wait_for(trader.call("subscribe", {"channels": [BOOK]}), 10)
    if r.error is not None:
        raise RuntimeError(f"subscribe failed: {r.error.message}")
    pipe.send(("ready",))
    loop = asyncio.get_running_loop()
    _, t0, m0, m1, end = await loop.run_in_executor(None, pipe.recv)
    rate = spec["rate"]
    limit = spec.get("limit")
    sent = 0
    while True:                    # even pacing: request k is due at t0 + k / rate
        now = time.monotonic_ns()
        if now >= m1 or (limit is not None and sent >= limit):
            break
        due = int((now - t0) * rate / 1e9) + 1 - sent if now >= t0 else 0
        for _ in range(max(0, due)):
            trader.send_next()
            sent += 1
        next_due = t0 + int(sent * 1e9 / rate)
        await asyncio.sleep(max(0.0, (next_due - time.monotonic_ns()) / 1e9))
    deadline = time.monotonic_ns() + 5_000_000_000
    while trader.in_flight and time.monotonic_ns() < deadline:
        await asyncio.sleep(0.01)
    await asyncio.sleep(max(0.0, (end - time.monotonic_ns()) / 1e9))
    await wsraw.close_all([trader])
    return {"sent": sent, "errors": trader.errors, "reasons": trader.reasons,
            "stuck": len(trader.in_flight), "delta_sent": trader.delta_sent,
            "trade_sent": trader.trade_sent}


def _run(coro_fn, spec: dict, pipe) -> None:
    import uvloop
    raise_nofile()
    pin(spec.get("cpus"))
    try:
        pipe.send(("done", uvloop.run(coro_fn(spec, pipe))))
    except BaseException as exc:
        pipe.send(("failed", f"{type(exc).__name__}: {exc}"))
        raise


def subscriber_process(spec: dict, pipe) -> None:
    _run(_subscribers, spec, pipe)


def trader_process(spec: dict, pipe) -> None:
    _run(_trader, spec, pipe)


# -- One run -------------------------------------------------------------------------

def run_fanout(*, subscribers: int, rate: float, seconds: float, warmup: float, procs: int,
               server_cpus=None, client_cpus=None, verify: bool = False,
               limit: int | None = None, grace: float = 1.0, queue_soft: int | None = None,
               timeout: float = 120.0, py_spy_out=None, gateways: int = 0,
               gateway_cpus=None) -> dict:
    """Start a fresh gpux server, run the fan-out once, stop it; return the counts.

    ``gateways``: a cluster instead (a matcher pinned to ``server_cpus``, three
    nats-server nodes and that many gateways on ``gateway_cpus``); the subscribers and
    the trader connect to the gateways, each process to one of them in turn.
    """
    config = gpux_config(["fan-trader", "fan-liq"], queue_soft=queue_soft)
    cluster = Cluster(config, server_cpus, gateways, gateway_cpus) if gateways else None
    server = cluster.matcher if cluster else ServerProcess("gpux", cpus=server_cpus,
                                                           config_text=config)
    endpoints = cluster.endpoints if cluster else [(server.host, server.port)]
    ctx = mp.get_context("fork")
    children = []
    try:
        procs = max(1, min(procs, subscribers))
        for p in range(procs):
            count = subscribers // procs + (1 if p < subscribers % procs else 0)
            host, port = endpoints[p % len(endpoints)]
            spec = {"host": host, "port": port, "count": count,
                    "verify": verify, "cpus": client_cpus}
            a, b = ctx.Pipe()
            proc = ctx.Process(target=subscriber_process, args=(spec, b), daemon=True)
            proc.start()
            children.append(("sub", proc, a))
        host, port = endpoints[-1]
        spec = {"host": host, "port": port, "rate": rate, "limit": limit,
                "account": "fan-trader", "liquidity": "fan-liq", "cpus": client_cpus}
        a, b = ctx.Pipe()
        proc = ctx.Process(target=trader_process, args=(spec, b), daemon=True)
        proc.start()
        children.append(("trader", proc, a))
        for _, _, pipe in children:
            if not pipe.poll(timeout):
                raise RuntimeError("a client process did not get ready")
            message = pipe.recv()
            if message[0] != "ready":
                raise RuntimeError(f"client process: {message[1]}")
        t0 = time.monotonic_ns() + 200_000_000
        m0 = t0 + int(warmup * 1e9)
        m1 = m0 + int(seconds * 1e9)
        end = m1 + int(grace * 1e9)
        for _, _, pipe in children:
            pipe.send(("start", t0, m0, m1, end))
        servers = cluster.processes if cluster else [server]
        time.sleep(max(0.0, (m0 - time.monotonic_ns()) / 1e9))
        cpu0, jiffies0 = [s.cpu_seconds() for s in servers], cpu_jiffies()
        spy = py_spy(server.pid, seconds, py_spy_out, client_cpus) if py_spy_out else None
        time.sleep(max(0.0, (m1 - time.monotonic_ns()) / 1e9))
        server_cpu = [(s.cpu_seconds() - c) / seconds for s, c in zip(servers, cpu0)]
        busy, _ = machine_busy(jiffies0, cpu_jiffies())
        if spy is not None:
            spy.wait(seconds + 30)
        results = {"sub": [], "trader": []}
        for role, proc, pipe in children:
            if not pipe.poll(timeout + seconds + warmup):
                raise RuntimeError(f"the {role} process did not finish")
            message = pipe.recv()
            if message[0] != "done":
                raise RuntimeError(f"{role} process: {message[1]}")
            results[role].append(message[1])
    finally:
        for _, proc, _ in children:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
        if cluster:
            cluster.stop()
        else:
            server.stop()
    trader = results["trader"][0]
    subs = results["sub"]
    delta_sent, trade_sent = trader["delta_sent"], trader["trade_sent"]
    delta_delays, trade_delays = [], []
    for r in subs:
        keys, times = array("q"), array("q")
        keys.frombytes(r["keys"])
        times.frombytes(r["times"])
        for key, t in zip(keys, times):
            if key >= 0:
                sent = delta_sent.get(key)
                if sent is not None and m0 <= sent < m1:
                    delta_delays.append(t - sent)
            else:
                sent = trade_sent.get(-key)
                if sent is not None and m0 <= sent < m1:
                    trade_delays.append(t - sent)
    delta_delays.sort()
    trade_delays.sort()
    published = sum(1 for sent in delta_sent.values() if m0 <= sent < m1)
    return {
        "subscribers": subscribers, "rate": rate, "sent": trader["sent"],
        "trader_errors": trader["errors"], "trader_reasons": trader["reasons"],
        "trader_stuck": trader["stuck"],
        "published_per_s": published / seconds,
        "deltas_per_s": sum(r["deltas"] for r in subs) / seconds,
        "trade_msgs_per_s": sum(r["trade_msgs"] for r in subs) / seconds,
        "trades_per_s": sum(r["trades"] for r in subs) / seconds,
        "gaps": sum(r["gaps"] for r in subs), "resyncs": sum(r["resyncs"] for r in subs),
        "bad_checksums": sum(r["bad_checksums"] for r in subs),
        "sub_errors": sum(r["errors"] for r in subs),
        "closed": sum(r["closed"] for r in subs),
        "no_snapshot": sum(r["no_snapshot"] for r in subs),
        "min_deltas": min(r["min_deltas"] for r in subs),
        "delta_p50": percentile(delta_delays, 50), "delta_p99": percentile(delta_delays, 99),
        "delta_p999": percentile(delta_delays, 99.9),
        "trade_p50": percentile(trade_delays, 50), "trade_p99": percentile(trade_delays, 99),
        "delta_samples": len(delta_delays), "trade_samples": len(trade_delays),
        "server_cpu": sum(server_cpu), "processes_cpu": server_cpu,
        "client_cpu": [r["cpu"] / seconds for r in subs],
        "machine_busy": busy,
    }


class Cluster:
    """A matcher on three nats-server nodes, and ``gateways`` gateways in front of it."""

    def __init__(self, config: str, matcher_cpus, gateways: int, gateway_cpus) -> None:
        self.nats = NatsCluster(Path(tempfile.mkdtemp(prefix="gpux-fanout-nats-"))).start()
        self.processes: list[ServerProcess] = []
        nats = ["--nats", ",".join(self.nats.urls)]
        try:
            self.matcher = ServerProcess("matcher", cpus=matcher_cpus, config_text=config,
                                         args=nats + ["--name", "fanout"])
            self.processes.append(self.matcher)
            for i in range(gateways):
                self.processes.append(ServerProcess(
                    "gateway", cpus=gateway_cpus, config_text=config,
                    workdir=self.matcher.dir / f"gw{i + 1}", args=nats + ["--name",
                                                                          f"fan-{i + 1}"]))
        except BaseException:
            self.stop()
            raise
        self.endpoints = [(g.host, g.port) for g in self.processes[1:]]

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.nats.stop()
        shutil.rmtree(self.nats.nodes[0].dir.parent, ignore_errors=True)


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def table(runs_by_rate: dict) -> str:
    head = (f"{'subs':>5} {'rate/s':>7} {'deltas pub/s':>12} {'deltas dlv/s':>13}"
            f" {'trades msgs dlv/s':>18} {'dlv ratio':>9} {'delta p50':>9} {'p99':>8}"
            f" {'p99.9':>8} {'trade p50':>9} {'p99':>8} {'gaps':>5} {'resync':>6}"
            f" {'closed':>6} {'cpu srv':>7} {'cpu cli':>7}")
    lines = [head]
    for (subs, rate), runs in runs_by_rate.items():
        pub = _median([r["published_per_s"] for r in runs])
        dlv = _median([r["deltas_per_s"] for r in runs])
        ratio = dlv / (pub * subs) if pub else 0.0
        lines.append(
            f"{subs:>5} {rate:>7,.0f} {pub:>12,.0f} {dlv:>13,.0f}"
            f" {_median([r['trade_msgs_per_s'] for r in runs]):>18,.0f} {ratio:>9.2f}"
            f" {fmt_us(_median([r['delta_p50'] for r in runs])):>9}"
            f" {fmt_us(_median([r['delta_p99'] for r in runs])):>8}"
            f" {fmt_us(_median([r['delta_p999'] for r in runs])):>8}"
            f" {fmt_us(_median([r['trade_p50'] for r in runs])):>9}"
            f" {fmt_us(_median([r['trade_p99'] for r in runs])):>8}"
            f" {sum(r['gaps'] for r in runs):>5} {sum(r['resyncs'] for r in runs):>6}"
            f" {sum(r['closed'] for r in runs):>6}"
            f" {100 * _median([r['server_cpu'] for r in runs]):>6.0f}%"
            f" {100 * _median([sum(r['client_cpu']) for r in runs]):>6.0f}%")
    return "\n".join(lines)


def spy_path(directory: str | None, subs: int, rate: float, rep: int) -> str | None:
    if not directory:
        return None
    import os
    os.makedirs(directory, exist_ok=True)
    return os.path.join(directory, f"fanout-{subs}-{rate:g}-rep{rep + 1}.txt")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, nargs="+", default=[500])
    parser.add_argument("--rate", type=float, nargs="+", default=[200.0],
                        help="trader requests/s (each changes the book; half trade)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--procs", type=int, default=2, help="subscriber processes")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--server-cpus", default="0")
    parser.add_argument("--client-cpus", default="1")
    parser.add_argument("--verify", action="store_true", help="check every book checksum")
    parser.add_argument("--gateways", type=int, default=0,
                        help="a cluster: a matcher (on --server-cpus) and this many gateways "
                        "the clients connect to (default 0: one gpux serve)")
    parser.add_argument("--gateway-cpus", default="",
                        help="CPUs of the gateways (default any)")
    parser.add_argument("--verbose", "-v", action="store_true")
    parser.add_argument("--py-spy", metavar="DIR",
                        help="sample the server's measured window with py-spy (raw stacks)")
    args = parser.parse_args(argv)
    server_cpus, client_cpus = parse_cpus(args.server_cpus), parse_cpus(args.client_cpus)
    print(f"# {machine()}; server CPUs {server_cpus or 'any'}; trader + {args.procs} "
          f"subscriber process(es) on CPUs {client_cpus or 'any'}; {args.seconds:g} s measured "
          f"after {args.warmup:g} s warm-up; median of {args.repeat}", flush=True)
    runs: dict[tuple, list] = {}
    problems = 0
    for rep in range(args.repeat):
        for subs in args.subscribers:
            for rate in args.rate:
                r = run_fanout(subscribers=subs, rate=rate, seconds=args.seconds,
                               warmup=args.warmup, procs=args.procs, server_cpus=server_cpus,
                               client_cpus=client_cpus, verify=args.verify,
                               py_spy_out=spy_path(args.py_spy, subs, rate, rep),
                               gateways=args.gateways,
                               gateway_cpus=parse_cpus(args.gateway_cpus))
                runs.setdefault((subs, rate), []).append(r)
                problems += (r["trader_errors"] + r["trader_stuck"] + r["sub_errors"]
                             + r["bad_checksums"] + r["no_snapshot"])
                if args.verbose:
                    print(f"  rep {rep + 1} subs {subs} rate {rate:g}: published "
                          f"{r['published_per_s']:,.0f}/s delivered {r['deltas_per_s']:,.0f}"
                          f" deltas/s + {r['trade_msgs_per_s']:,.0f} trades msgs/s; delta "
                          f"p50 {fmt_us(r['delta_p50'])} p99 {fmt_us(r['delta_p99'])} p99.9 "
                          f"{fmt_us(r['delta_p999'])}; trade p99 {fmt_us(r['trade_p99'])}; "
                          f"gaps {r['gaps']} resyncs {r['resyncs']} closed {r['closed']} "
                          f"checksum errors {r['bad_checksums']}; trader errors "
                          f"{r['trader_errors']} {r['trader_reasons'] or ''}; cpu server "
                          f"{100 * r['server_cpu']:.0f}%"
                          + (" (matcher " + ", gateways ".join(
                              "/".join(f"{100 * c:.0f}%" for c in part) for part in (
                                  r["processes_cpu"][:1], r["processes_cpu"][1:])) + ")"
                             if len(r["processes_cpu"]) > 1 else "")
                          + " subscribers "
                          + "/".join(f"{100 * c:.0f}%" for c in r["client_cpu"])
                          + f"; machine {100 * r['machine_busy']:.0f}% busy", flush=True)
    print(table(runs))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
