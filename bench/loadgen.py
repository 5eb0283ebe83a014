"""Gateway load generator: order entry over websockets, gpux against a bare echo server.

    python -m bench.loadgen [--connections 1 50] [--seconds 5] [--warmup 1]
        [--modes pipelined sync paced] [--window 32] [--rate 5000] [--repeat 3]
        [--server-cpus 0] [--client-cpus 1] [--procs 2] [--paced-procs 1]
        [--targets echo gpux gpux-unsafe gpux-picows gpux-cluster gpux-gateway
         gpux-gateways]
        [--preload N] [--profile DIR] [--gc-log DIR] [--py-spy DIR] [-v]

Each connection logs in (auth.login, its own market-maker account) and then
sends order entry on H100-2027-03 (the default market's H100 March contract,
reference price 2.100, band 1.890..2.310, tick 0.001):

  * 3 of every 4 orders are passive limits of qty 1 (buys 1.960..1.999, sells
    2.201..2.240, alternating), each cancelled (order.cancel by the order_id
    of its reply): once the reply is in, the connection's next request is
    that cancel;
  * the 4th is an IOC of qty 1 that crosses (buy at 2.150, sell at 2.050,
    alternating) into the resting liquidity one setup connection places before
    the run (20 x 10,000 lots a side), so trades happen; they never trade with
    each other (the passive prices don't cross) nor self-trade.

So 4 places lead to 3 cancels: 7 order requests, each one JSON-RPC request
answered by one response. "orders/s" counts those order requests (places and
cancels) acknowledged per second, which is what "msgs/s" counts on the echo
server: the same client sends the same frames over the same number of
connections to bench.echo_server, whose replies carry an order_id so the
client sends it the same cancels.

Modes:
  pipelined  each connection keeps ``--window`` requests in flight (closed loop);
             throughput is what the server sustains.
  sync       window 1: one request at a time per connection.
  paced      open loop at ``--rate`` requests/s in all (spread over the
             connections and client processes), whatever the replies do;
             the client polls its clock (it spins, so its CPU reads 100%)
             and sends each request when it is due, so they leave evenly
             spaced rather than in bursts.
Latency is, for each request sent in the measured window, the time from
handing its frame to the socket to reading its response (monotonic clock, in
the client process).

Each measurement runs in a fresh server process (pinned to ``--server-cpus``),
driven by ``--procs`` client processes (pinned to ``--client-cpus``); the
connections are split between them. Paced mode uses ``--paced-procs`` (1):
two spinning pacers on one core take turns by time slices of milliseconds,
which would show up as latency that is the client's. A ``--warmup`` period precedes the
``--seconds`` measured. Echo and gpux alternate within a repetition, and the
table gives the median of ``--repeat`` repetitions of each cell; it also
gives the CPU the server and the clients used during the window (100% = one
core), so a run shows which side was saturated.

gpux journals every command and acks a batch (one event-loop turn) after one
write and one fdatasync. ``--targets gpux gpux-unsafe`` measures that against
the unsafe mode (``gpux serve --durability unsafe-no-fsync``: acked once
written), side by side (``make durability``); ``--targets gpux gpux-picows``
measures the websocket library, websockets against picows (``[server]
transport``), behind the same adapter; ``--targets gpux-cluster gpux`` a `gpux
matcher` whose every batch must also be acknowledged by a stream replicated on
three nats-server nodes (started here, unpinned) against the embedded server;
``gpux-gateway`` and ``gpux-gateways`` the same cluster with the clients connected
through one or two `gpux gateway` processes (each client process to one of them).
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import tempfile
import time
from array import array
from collections import Counter, deque
from pathlib import Path

import msgspec

from bench import wsraw
from bench.throughput import machine
from bench.harness import (
    SYMBOL, ServerProcess, account_names, cpu_jiffies, fmt_us, gpux_config, login_params,
    machine_busy, parse_cpus, percentile, pin, py_spy, raise_nofile,
)
from gateway.cluster.natsd import NatsCluster

MODES = ("pipelined", "sync", "paced")
SETUP, PASSIVE, CROSS, CANCEL = 0, 1, 2, 3
LIQUIDITY_ORDERS = 20          # per side, 10,000 lots each
LIQ_ASK, LIQ_BID = "2.150", "2.050"
MAX_IN_FLIGHT = 20_000         # paced mode: a connection this far behind stops sending

PLACE_HEAD = b'{"jsonrpc":"2.0","id":%d,"method":"order.place","params":'
CANCEL_REQUEST = b'{"jsonrpc":"2.0","id":%d,"method":"order.cancel","params":{"order_id":%d}}'


def _place_params(side: str, price: str, tif: str) -> bytes:
    return msgspec.json.encode({"symbol": SYMBOL, "side": side, "type": "limit", "qty": 1,
                                "price": price, "tif": tif}) + b"}"


PASSIVE_PARAMS = [p for i in range(40) for p in (
    _place_params("buy", f"{(1960 + i) / 1000:.3f}", "gtc"),
    _place_params("sell", f"{(2240 - i) / 1000:.3f}", "gtc"))]
CROSS_PARAMS = [_place_params("buy", LIQ_ASK, "ioc"), _place_params("sell", LIQ_BID, "ioc")]


class Result(msgspec.Struct):
    order_id: int | None = None
    status: str | None = None


class Error(msgspec.Struct):
    code: int = 0
    message: str = ""
    data: dict | None = None


class Response(msgspec.Struct):
    id: int | str | None = None
    result: Result | None = None
    error: Error | None = None


_decode_response = msgspec.json.Decoder(Response).decode


class Stats:
    """What one client process counts; the window is [m0, m1) in monotonic ns."""

    def __init__(self) -> None:
        self.m0 = 0
        self.m1 = 1 << 62
        self.stop = 1 << 62          # no new requests from here on
        self.acks = 0                # responses read inside the window
        self.sent = 0                # requests sent inside the window
        self.errors = 0
        self.reasons: Counter = Counter()
        self.lat = array("q")        # ns, requests sent inside the window
        self.skipped = 0             # paced: requests not sent, the connection too far behind
        self.first_ns: int | None = None
        self.last_ns = 0


class LoadConn(wsraw.WsProtocol):
    """One logged-in connection sending the order mix, closed or open loop."""

    def __init__(self, host: str, port: int, stats: Stats, window: int,
                 limit: int | None = None) -> None:
        super().__init__(host, port)
        self.stats = stats
        self.window = window          # 0: open loop (paced)
        self.limit = limit            # stop after this many order requests (tests)
        self.in_flight: dict[int, tuple[int, int]] = {}
        self.cancels: deque[int] = deque()
        self.n_passive = 0
        self.n_places = 0
        self.n_sent = 0
        self.want = 0
        self.running = False
        self.rx_ns = 0
        self.drained: asyncio.Future | None = None

    # -- Setup calls (login, liquidity) ----------------------------------------------

    # -- The order mix -----------------------------------------------------------------

    def next_request(self, now: int) -> bytes:
        request_id = next(self.ids)
        if self.cancels:
            kind = CANCEL
            payload = CANCEL_REQUEST % (request_id, self.cancels.popleft())
        else:
            i = self.n_places
            self.n_places += 1
            if i % 4 == 3:
                kind = CROSS
                payload = PLACE_HEAD % request_id + CROSS_PARAMS[(i >> 2) & 1]
            else:
                kind = PASSIVE
                payload = PLACE_HEAD % request_id + PASSIVE_PARAMS[
                    self.n_passive % len(PASSIVE_PARAMS)]
                self.n_passive += 1
        self.in_flight[request_id] = (now, kind)
        self.n_sent += 1
        return payload

    def send_requests(self, n: int, now: int) -> None:
        if self.limit is not None:
            n = min(n, self.limit - self.n_sent)
        if n <= 0:
            return
        stats = self.stats
        if stats.m0 <= now < stats.m1:
            stats.sent += n
        self.send_many([self.next_request(now) for _ in range(n)])

    def start(self, now: int) -> None:
        self.running = True
        if self.window:
            self.send_requests(self.window, now)

    def data_received(self, data: bytes) -> None:
        self.rx_ns = time.monotonic_ns()
        super().data_received(data)

    def on_message(self, payload: bytes) -> None:
        r = _decode_response(payload)
        request_id = r.id
        if request_id is None:
            return                                  # a notification
        entry = self.in_flight.pop(request_id, None)
        if entry is None:
            future = self.calls.pop(request_id, None)
            if future is not None and not future.done():
                future.set_result(r)
            return
        sent, kind = entry
        now = self.rx_ns
        stats = self.stats
        if r.error is not None:
            stats.errors += 1
            data = r.error.data or {}
            stats.reasons[data.get("reason", str(r.error.code))] += 1
        elif kind == PASSIVE:
            result = r.result
            if (result is not None and result.order_id is not None
                    and result.status in (None, "open", "partially_filled")):
                self.cancels.append(result.order_id)
        if stats.m0 <= now < stats.m1:
            stats.acks += 1
        if stats.m0 <= sent < stats.m1:
            stats.lat.append(now - sent)
        if stats.first_ns is None:
            stats.first_ns = now
        stats.last_ns = now
        self.want += 1

    def on_batch(self) -> None:
        if self.running and self.window and self.want:
            now = self.rx_ns
            if now < self.stats.stop:
                self.send_requests(self.want, now)
        self.want = 0
        if (self.drained is not None and not self.in_flight and not self.drained.done()
                and (not self.running or self.finished())):
            self.drained.set_result(None)

    def finished(self) -> bool:
        """A connection with a request limit is done once all of them are answered."""
        return self.limit is not None and self.n_sent >= self.limit and not self.in_flight


async def _login(conn: LoadConn, name: str, nonce: str) -> None:
    r = await asyncio.wait_for(conn.call("auth.login", login_params(name, nonce)), 10)
    if r.error is not None:
        raise RuntimeError(f"login {name} failed: {r.error.message}")


async def place_liquidity(host: str, port: int, name: str) -> None:
    """Rest LIQUIDITY_ORDERS x 10,000 lots at LIQ_ASK and at LIQ_BID for the crossing IOCs."""
    stats = Stats()
    conn = await wsraw.connect(lambda: LoadConn(host, port, stats, 0), host, port)
    await _login(conn, name, f"liq-{os.getpid()}-{time.time_ns()}")
    futures = []
    for _ in range(LIQUIDITY_ORDERS):
        for side, price in (("sell", LIQ_ASK), ("buy", LIQ_BID)):
            futures.append(conn.call("order.place", {
                "symbol": SYMBOL, "side": side, "type": "limit", "qty": 10_000,
                "price": price}))
    for r in await asyncio.wait_for(asyncio.gather(*futures), 10):
        if r.error is not None:
            raise RuntimeError(f"liquidity order refused: {r.error.message}")
    await wsraw.close_all([conn])


async def preload(host: str, port: int, name: str, n: int) -> None:
    """Send ``n`` order requests of the mix (64 in flight), so the server holds their state."""
    stats = Stats()
    conn = await wsraw.connect(lambda: LoadConn(host, port, stats, 64, n), host, port)
    await _login(conn, name, f"pre-{os.getpid()}-{time.time_ns()}")
    conn.drained = asyncio.get_running_loop().create_future()
    conn.start(time.monotonic_ns())
    await asyncio.wait_for(conn.drained, 30 + n / 5000)
    if stats.errors:
        raise RuntimeError(f"preload: {stats.errors} errors {dict(stats.reasons)}")
    await wsraw.close_all([conn])


async def _pace(conns: list[LoadConn], rate: float, t0: int, stop: int) -> None:
    """Open loop: ``rate`` requests/s in all over ``conns``, sent on each timer tick."""
    sent = 0
    turn = itertools.cycle(range(len(conns)))
    per_conn = [0] * len(conns)
    while True:
        now = time.monotonic_ns()
        if now >= stop:
            return
        due = int((now - t0) * rate / 1e9) - sent
        if due > 0:
            for _ in range(due):
                per_conn[next(turn)] += 1
            for i, n in enumerate(per_conn):
                if n:
                    conn = conns[i]
                    if len(conn.in_flight) < MAX_IN_FLIGHT:
                        conn.send_requests(n, now)
                    else:
                        conn.stats.skipped += n
                    per_conn[i] = 0
            sent += due
        await asyncio.sleep(0.0002)


async def _client(spec: dict, pipe) -> dict:
    host, port = spec["host"], spec["port"]
    stats = Stats()
    window = spec["window"]
    limit = spec.get("limit")
    conns: list[LoadConn] = []

    async def open_one(name: str) -> LoadConn:
        conn = await wsraw.connect(lambda: LoadConn(host, port, stats, window, limit),
                                   host, port)
        await _login(conn, name, f"n-{os.getpid()}-{time.time_ns()}")
        return conn

    if spec.get("liquidity"):
        await place_liquidity(host, port, spec["liquidity"])
    if spec.get("preload"):
        await preload(host, port, "pre-001", spec["preload"])
    sem = asyncio.Semaphore(32)

    async def bounded(name: str) -> LoadConn:
        async with sem:
            return await open_one(name)

    conns = list(await asyncio.gather(*(bounded(n) for n in spec["accounts"])))
    pipe.send(("ready",))
    loop = asyncio.get_running_loop()
    _, t0, m0, m1 = await loop.run_in_executor(None, pipe.recv)
    stats.m0, stats.m1, stats.stop = m0, m1, m1
    if limit is not None:
        stats.stop = 1 << 62
    delay = (t0 - time.monotonic_ns()) / 1e9
    if delay > 0:
        await asyncio.sleep(delay)
    while time.monotonic_ns() < t0:     # the loop's timers are in ms and may fire early
        pass
    cpu: dict[str, float] = {}

    def mark(key: str) -> None:
        cpu[key] = time.process_time()

    loop.call_later(max(0.0, (m0 - time.monotonic_ns()) / 1e9), mark, "m0")
    if m1 < (1 << 61):
        loop.call_later(max(0.0, (m1 - time.monotonic_ns()) / 1e9), mark, "m1")
    now = time.monotonic_ns()
    for conn in conns:
        conn.drained = loop.create_future()
        conn.start(now)
    if window == 0:
        await _pace(conns, spec["rate"], t0, m1)
    elif limit is None:
        await asyncio.sleep(max(0.0, (m1 - time.monotonic_ns()) / 1e9))
    else:
        await asyncio.wait([c.drained for c in conns], timeout=spec.get("drain_timeout", 30.0))
    # Drain: every request sent gets its response (or the connection is reported stuck).
    for conn in conns:
        conn.running = False
        if not conn.in_flight and not conn.drained.done():
            conn.drained.set_result(None)
    await asyncio.wait([c.drained for c in conns], timeout=spec.get("drain_timeout", 10.0))
    stuck = sum(len(c.in_flight) for c in conns)
    await wsraw.close_all(conns)
    if "m1" not in cpu:
        mark("m1")
    return {"acks": stats.acks, "sent": stats.sent, "errors": stats.errors,
            "skipped": stats.skipped,
            "reasons": dict(stats.reasons), "lat": stats.lat.tobytes(), "stuck": stuck,
            "cpu": cpu["m1"] - cpu.get("m0", cpu["m1"]),
            "first_ns": stats.first_ns, "last_ns": stats.last_ns,
            "closed": sum(1 for c in conns if c.close_code not in (None, 1000, 1001))}


def client_process(spec: dict, pipe) -> None:
    """Entry point of a client process: run its connections, send back its counts."""
    import uvloop
    raise_nofile()
    pin(spec.get("cpus"))
    try:
        result = uvloop.run(_client(spec, pipe))
        pipe.send(("done", result))
    except BaseException as exc:         # report, so the parent does not wait forever
        pipe.send(("failed", f"{type(exc).__name__}: {exc}"))
        raise


def run_clients(server, *, mode: str, connections: int, accounts: list[str], seconds: float,
                warmup: float, window: int, rate: float, procs: int, cpus=None,
                limit: int | None = None, liquidity: str | None = None,
                timeout: float = 120.0, py_spy_out=None, preload_n: int = 0,
                endpoints: list[tuple[str, int]] | None = None) -> dict:
    """Run one measurement against a started server; return the merged counts.

    ``limit`` (tests): each connection sends that many order requests and the
    whole run is measured instead of a timed window. ``endpoints``: where the clients
    connect (a cluster's gateways, one per client process in turn), if not the server.
    """
    endpoints = endpoints or [(server.host, server.port)]
    procs = max(1, min(procs, connections))
    ctx = mp.get_context("fork")
    if mode == "sync":
        window = 1
    elif mode == "paced":
        window = 0
    children = []
    for p in range(procs):
        names = accounts[p:connections:procs]
        share = len(names) / connections
        host, port = endpoints[p % len(endpoints)]
        spec = {"host": host, "port": port, "accounts": names, "window": window,
                "rate": rate * share, "limit": limit, "cpus": cpus,
                "liquidity": liquidity if p == 0 else None,
                "preload": preload_n if p == 0 else 0}
        parent_end, child_end = ctx.Pipe()
        proc = ctx.Process(target=client_process, args=(spec, child_end), daemon=True)
        proc.start()
        children.append((proc, parent_end))
    try:
        for proc, pipe in children:
            if not pipe.poll(timeout + preload_n / 5000):
                raise RuntimeError("a client process did not get ready")
            message = pipe.recv()
            if message[0] != "ready":
                raise RuntimeError(f"client process: {message[1]}")
        t0 = time.monotonic_ns() + 100_000_000
        m0 = t0 + int(warmup * 1e9)
        m1 = m0 + int(seconds * 1e9) if limit is None else 1 << 62
        for _, pipe in children:
            pipe.send(("start", t0, m0, m1))
        server_cpu = None
        busy = steal = None
        if limit is None:
            time.sleep(max(0.0, (m0 - time.monotonic_ns()) / 1e9))
            server_cpu0, jiffies0 = server.cpu_seconds(), cpu_jiffies()
            spy = py_spy(server.pid, seconds, py_spy_out, cpus) if py_spy_out else None
            time.sleep(max(0.0, (m1 - time.monotonic_ns()) / 1e9))
            server_cpu = server.cpu_seconds() - server_cpu0
            busy, steal = machine_busy(jiffies0, cpu_jiffies())
            if spy is not None:
                spy.wait(seconds + 30)
        results = []
        for proc, pipe in children:
            if not pipe.poll(timeout):
                raise RuntimeError("a client process did not finish")
            message = pipe.recv()
            if message[0] != "done":
                raise RuntimeError(f"client process: {message[1]}")
            results.append(message[1])
    finally:
        for proc, _ in children:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
    lat = array("q")
    reasons: Counter = Counter()
    for r in results:
        chunk = array("q")
        chunk.frombytes(r["lat"])
        lat.extend(chunk)
        reasons.update(r["reasons"])
    lat = sorted(lat)
    acks = sum(r["acks"] for r in results)
    if limit is not None:
        firsts = [r["first_ns"] for r in results if r["first_ns"] is not None]
        elapsed = (max(r["last_ns"] for r in results) - t0) / 1e9 if firsts else 0.0
    else:
        elapsed = seconds
    return {
        "mode": mode, "connections": connections, "acks": acks,
        "rate": acks / elapsed if elapsed > 0 else 0.0, "sent": sum(r["sent"] for r in results),
        "errors": sum(r["errors"] for r in results), "reasons": dict(reasons),
        "stuck": sum(r["stuck"] for r in results), "closed": sum(r["closed"] for r in results),
        "skipped": sum(r["skipped"] for r in results),
        "p50": percentile(lat, 50), "p99": percentile(lat, 99), "p999": percentile(lat, 99.9),
        "samples": len(lat),
        "server_cpu": None if server_cpu is None else server_cpu / seconds,
        "client_cpu": [r["cpu"] / elapsed if elapsed > 0 else 0.0 for r in results],
        "machine_busy": busy, "steal": steal, "window": (m0, m1),
    }


def measure(target: str, *, mode: str, connections: int, seconds: float, warmup: float,
            window: int, rate: float, procs: int, server_cpus=None, client_cpus=None,
            limit: int | None = None, profile_dir=None, py_spy_dir=None, gc_dir=None,
            tag: str = "", preload_n: int = 0) -> dict:
    """Start a fresh ``target`` server ("echo" or "gpux"), run one measurement, stop it.

    ``preload_n``: order requests sent (and answered) before the run, so the
    server starts it holding that much order state, as one that has been up a while.
    ``profile_dir``: run gpux under bench.serve_profiled (cProfile and GC pauses
    of the whole run); ``gc_dir``: the GC pauses only; ``py_spy_dir``: sample the
    measured window with py-spy.
    Files are named ``{target}-{mode}-{connections}{tag}``.
    """
    accounts = account_names("lg", max(connections, 1))
    gpux = target.startswith("gpux")
    config = (gpux_config(accounts + ["liq-001", "pre-001"], queue_hard=1 << 20)
              if gpux else None)
    if target == "gpux-picows":
        config += '\n[server]\ntransport = "picows"\n'

    args = ["--durability", DURABILITY[target]] if gpux else None
    nats = None
    if target in GATEWAYS:                   # a matcher on a 3-node JetStream cluster
        nats = NatsCluster(Path(tempfile.mkdtemp(prefix="gpux-loadgen-nats-"))).start()
        args += ["--nats", ",".join(nats.urls), "--name", "loadgen"]
    name = f"{target}-{mode}-{connections}{tag}"
    env = None
    if profile_dir and gpux:
        os.makedirs(profile_dir, exist_ok=True)
        env = {"GPUX_CPROFILE": os.path.join(profile_dir, name + ".prof"),
               "GPUX_GC_LOG": os.path.join(profile_dir, name + ".gc.json")}
    elif gc_dir and gpux:
        os.makedirs(gc_dir, exist_ok=True)
        env = {"GPUX_GC_LOG": os.path.join(gc_dir, name + ".gc.json")}
    spy_out = None
    if py_spy_dir:
        os.makedirs(py_spy_dir, exist_ok=True)
        spy_out = os.path.join(py_spy_dir, name + ".txt")
    kind = "matcher" if nats is not None else "gpux" if gpux else target
    edges: list[ServerProcess] = []
    try:
        server = ServerProcess(kind, cpus=server_cpus, config_text=config, env=env,
                               profiled=env is not None, args=args)
        for i in range(GATEWAYS.get(target, 0)):
            edges.append(ServerProcess(
                "gateway", config_text=config, log_name=f"gw{i + 1}.log",
                workdir=server.dir / f"gw{i + 1}",
                args=["--nats", ",".join(nats.urls), "--name", f"loadgen-{i + 1}"]))
    except BaseException:
        for process in edges:
            process.stop()
        if nats is not None:
            nats.stop()
        raise
    try:
        result = run_clients(server, mode=mode, connections=connections, accounts=accounts,
                             seconds=seconds, warmup=warmup, window=window, rate=rate,
                             procs=procs, cpus=client_cpus, limit=limit, liquidity="liq-001",
                             py_spy_out=spy_out, preload_n=preload_n,
                             endpoints=[(e.host, e.port) for e in edges] or None)
    finally:
        for process in edges:
            process.stop()
        code = server.stop()
        if nats is not None:
            nats.stop()
            shutil.rmtree(nats.nodes[0].dir.parent, ignore_errors=True)
    result["target"] = target
    result["server_exit"] = code
    gc_log = (env or {}).get("GPUX_GC_LOG")
    if gc_log and os.path.exists(gc_log):
        with open(gc_log) as f:
            pauses = msgspec.json.decode(f.read())["pauses"]
        m0, m1 = result["window"]
        result["gc_in_window"] = {int(g): [d for t, d in p if m0 <= t < m1]
                                  for g, p in pauses.items()}
    return result


# -- The command line -----------------------------------------------------------------

#: gpux acks a batch once fdatasync returns (the default), or once written (unsafe).
DURABILITY = {"gpux": "fsync", "gpux-unsafe": "unsafe-no-fsync", "gpux-picows": "fsync",
              "gpux-cluster": "fsync", "gpux-gateway": "fsync", "gpux-gateways": "fsync"}
#: Cluster targets: how many gateways the clients connect through (0: to the matcher).
GATEWAYS = {"gpux-cluster": 0, "gpux-gateway": 1, "gpux-gateways": 2}

def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _cpu(results, key) -> str:
    v = _median([r[key] if key == "server_cpu" else max(r[key]) for r in results])
    return "-" if v is None else f"{100 * v:.0f}%"


def versus(cells: dict, modes, connection_counts, first: str, second: str,
           names: tuple[str, str]) -> str:
    """Two gpux targets side by side: rates, their ratio, and latencies."""
    a, b = names
    lines = [f"{'mode':<10} {'conns':>5} {a + ' orders/s':>15} {b + ' orders/s':>16} "
             f"{'ratio':>6}  {a + ' p50':>10} {'p99':>8}  {b + ' p50':>10} {'p99':>8}"]
    for mode in modes:
        for n in connection_counts:
            one, two = cells.get((first, mode, n), []), cells.get((second, mode, n), [])
            s_rate = _median([r["rate"] for r in one])
            u_rate = _median([r["rate"] for r in two])
            ratio = f"{s_rate / u_rate:.2f}" if s_rate and u_rate else "-"
            lat = [fmt_us(_median([r[k] for r in rs])) for rs in (one, two)
                   for k in ("p50", "p99")]
            lines.append(f"{mode:<10} {n:>5} {s_rate or 0:>15,.0f} {u_rate or 0:>16,.0f} "
                         f"{ratio:>6}  {lat[0]:>10} {lat[1]:>8}  {lat[2]:>10} {lat[3]:>8}")
    return "\n".join(lines)


def table(cells: dict, modes, connection_counts) -> str:
    head = (f"{'mode':<10} {'conns':>5} {'echo msgs/s':>12} {'gpux orders/s':>14} {'ratio':>6}"
            f" {'p50':>8} {'p99':>8} {'p99.9':>8}  {'echo p50':>8} {'echo p99':>8}"
            f" {'echo p99.9':>10}  {'cpu srv/cli echo':>16} {'gpux':>10}  errors")
    lines = [head]
    for mode in modes:
        for n in connection_counts:
            echo, gpux = cells.get(("echo", mode, n), []), cells.get(("gpux", mode, n), [])
            e_rate = _median([r["rate"] for r in echo])
            g_rate = _median([r["rate"] for r in gpux])
            ratio = f"{g_rate / e_rate:.2f}" if e_rate and g_rate is not None else "-"
            lat = {k: fmt_us(_median([r[k] for r in gpux])) for k in ("p50", "p99", "p999")}
            elat = {k: fmt_us(_median([r[k] for r in echo])) for k in ("p50", "p99", "p999")}
            errors = sum(r["errors"] + r["stuck"] for r in echo + gpux)
            cpu_e = f"{_cpu(echo, 'server_cpu')}/{_cpu(echo, 'client_cpu')}" if echo else "-"
            cpu_g = f"{_cpu(gpux, 'server_cpu')}/{_cpu(gpux, 'client_cpu')}" if gpux else "-"
            lines.append(
                f"{mode:<10} {n:>5} {e_rate or 0:>12,.0f} {g_rate or 0:>14,.0f} {ratio:>6}"
                f" {lat['p50']:>8} {lat['p99']:>8} {lat['p999']:>8}  {elat['p50']:>8}"
                f" {elat['p99']:>8} {elat['p999']:>10}  {cpu_e:>16} {cpu_g:>10}  {errors}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 50])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--window", type=int, default=32,
                        help="pipelined: requests in flight per connection")
    parser.add_argument("--rate", type=float, default=5000.0, help="paced: requests/s in all")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--targets", nargs="+", choices=("echo", "gpux", "gpux-unsafe",
                                                         "gpux-picows", "gpux-cluster",
                                                         "gpux-gateway", "gpux-gateways"),
                        default=["echo", "gpux"])
    parser.add_argument("--procs", type=int, default=2,
                        help="client processes (at most one per connection)")
    parser.add_argument("--paced-procs", type=int, default=1,
                        help="client processes in paced mode (each spins on its clock)")
    parser.add_argument("--server-cpus", default="0", help='e.g. "0"; "" = no pinning')
    parser.add_argument("--client-cpus", default="1", help='e.g. "1"; "" = no pinning')
    parser.add_argument("--verbose", "-v", action="store_true", help="print every measurement")
    parser.add_argument("--preload", type=int, default=0, metavar="N",
                        help="send N order requests before each run (server state as after "
                             "a while up); default 0")
    parser.add_argument("--profile", metavar="DIR",
                        help="run gpux under cProfile + GC pause log (bench.serve_profiled)")
    parser.add_argument("--gc-log", metavar="DIR",
                        help="log gpux's garbage-collection pauses (bench.serve_profiled)")
    parser.add_argument("--py-spy", metavar="DIR",
                        help="sample each server's measured window with py-spy (raw stacks)")
    args = parser.parse_args(argv)
    server_cpus, client_cpus = parse_cpus(args.server_cpus), parse_cpus(args.client_cpus)
    print(f"# {machine()}; server CPUs {server_cpus or 'any'}, {args.procs} client "
          f"process(es) ({args.paced_procs} when paced) on CPUs {client_cpus or 'any'}; "
          f"window {args.window}, paced rate "
          f"{args.rate:,.0f}/s; {args.seconds:g} s measured after {args.warmup:g} s warm-up; "
          f"median of {args.repeat}", flush=True)
    cells: dict[tuple, list] = {}
    for rep in range(args.repeat):
        for mode in args.modes:
            for n in args.connections:
                for target in args.targets:
                    r = measure(target, mode=mode, connections=n, seconds=args.seconds,
                                warmup=args.warmup, window=args.window, rate=args.rate,
                                procs=args.paced_procs if mode == "paced" else args.procs,
                                server_cpus=server_cpus,
                                client_cpus=client_cpus, profile_dir=args.profile,
                                py_spy_dir=args.py_spy, gc_dir=args.gc_log,
                                tag=f"-rep{rep + 1}",
                                preload_n=args.preload)
                    cells.setdefault((target, mode, n), []).append(r)
                    if args.verbose:
                        cli = "/".join(f"{100 * c:.0f}%" for c in r["client_cpu"])
                        print(f"  rep {rep + 1} {target:<4} {mode:<9} {n:>3} conns: "
                              f"{r['rate']:>9,.0f}/s p50 {fmt_us(r['p50'])} p99 "
                              f"{fmt_us(r['p99'])} p99.9 {fmt_us(r['p999'])} cpu server "
                              f"{100 * (r['server_cpu'] or 0):.0f}% client {cli}"
                              f" machine {100 * (r['machine_busy'] or 0):.0f}% busy"
                              f" ({100 * (r['steal'] or 0):.0f}% steal)"
                              f" errors {r['errors']} {r['reasons'] or ''} stuck {r['stuck']}"
                              + (f" skipped {r['skipped']}" if r["skipped"] else ""),
                              flush=True)
                        if "gc_in_window" in r:
                            full = r["gc_in_window"][2]
                            print(f"    gpux GC in the window: {len(r['gc_in_window'][0])} gen0,"
                                  f" {len(r['gc_in_window'][1])} gen1, {len(full)} gen2 "
                                  f"collections (gen2 pauses: "
                                  f"{', '.join(fmt_us(d) for d in full) or '-'})", flush=True)
    if "echo" in args.targets:
        print(table(cells, args.modes, args.connections))
    if "gpux-unsafe" in args.targets:      # what acking after fdatasync costs
        print(versus(cells, args.modes, args.connections, "gpux", "gpux-unsafe",
                     ("fsync", "unsafe")))
    if "gpux-picows" in args.targets:      # the websocket library
        print(versus(cells, args.modes, args.connections, "gpux-picows", "gpux",
                     ("picows", "websockets")))
    for target, name in (("gpux-cluster", "cluster"), ("gpux-gateway", "1 gateway"),
                         ("gpux-gateways", "2 gateways")):
        if target in args.targets and "gpux" in args.targets:    # against the embedded
            print(versus(cells, args.modes, args.connections, target, "gpux",
                         (name, "embedded")))
    failed = sum(r["errors"] + r["stuck"] for rs in cells.values() for r in rs)
    if failed:
        print(f"# {failed} requests failed or went unanswered", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
