"""Kill the real server at random moments and prove that nothing acknowledged is lost.

Each cycle: traders (real websocket clients) place, replace, cancel and cross
orders against each other; the server process is SIGKILLed at a random
moment and started again on the same data directory. Then, before trading
goes on:

- every order a trader saw acknowledged is there, with every fill it was told
  of (same trade, price and quantity), never closed differently than it was
  told, and never with a fill applied twice (fills sum to the filled quantity):
  each cycle checks the orders told of since the last restart and a sample
  of older ones, and the last restart checks every order of the run;
- the request that was in flight at the kill is sent again with the same
  client_order_id: it is placed once, whether or not it reached the journal;
- ``admin.state`` (the server's seq and state digest) equals a fresh replay of
  the journal up to that seq, done here from the files on disk; so does the
  state it reported at a random moment before the kill;
- every fourth kill also leaves part of a commit at the journal's end (as a
  write cut short by power loss would): the restart must drop exactly those
  bytes and lose nothing acknowledged;
- in that replay, positions net to zero in every contract, collateral sums to
  what was deposited, open interest is the sum of long positions, and the
  marked P&L of all accounts sums to zero.

Usage: python -m bench.crash --cycles 100 [--seed 1] [--traders 4]
[--durability fsync|unsafe-no-fsync]. tests/test_crash.py runs 20 cycles.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import itertools
import json
import random
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import msgspec
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from bench.harness import credentials, gpux_config, login_params, ServerProcess
from gateway.core.auth import Accounts
from gateway.config import load_config
from engine.contracts import list_instruments, load_products
from engine.messages import Timer
from gateway.storage.journal import Reader, encode_batch, encode_record, segments
from gateway.storage.recovery import build, journal_dir, verify

# Listed today (UTC, once per run: every restart of a run passes the same date), so the
# contract traded, six months out, is open whatever day the test runs on; the server's
# clock is the real one.
LISTED = datetime.datetime.now(datetime.UTC).date()
SYMBOL = [i.symbol for i in list_instruments(load_products(), LISTED)
          if i.gpu_class == "H100"][5]
SERVE_ARGS = ["--as-of", LISTED.isoformat()]
CLOSED = {"filled", "cancelled", "rejected", "expired"}
ADMIN = "crash-admin"


def crash_config(traders: list[str], durability: str) -> str:
    """Traders as in the load benchmarks, an admin, and frequent snapshots (so kills land
    during a background snapshot and recovery starts from one; not so frequent that the
    forked writers take the machine from the traders); journal files are kept so the
    whole history can be replayed."""
    key, secret = credentials(ADMIN)
    return gpux_config(traders) + (
        f'\n[[account]]\naccount = "{ADMIN}"\nrole = "admin"\napi_key = "{key}"\n'
        f'api_secret = "{secret}"\naccount_id = {len(traders) + 1}\n'
        f'\n[journal]\ndurability = "{durability}"\nsnapshot_every = 1000\n'
        f'snapshot_interval_s = 3\nprune = false\n')


class Lost(Exception):
    """Something acknowledged is not as the client was told."""


class Client:
    """One websocket session: requests with ids, notifications to a handler."""

    def __init__(self, ws, on_note=None) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.waiting: dict[int, asyncio.Future] = {}
        self.on_note = on_note
        self.reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(cls, url: str, name: str, on_note=None) -> "Client":
        client = cls(await connect(url, max_queue=None), on_note)
        await client.result("auth.login", **login_params(name, f"{name}-{time.time_ns()}"))
        return client

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                message = json.loads(frame)
                if "id" in message:
                    future = self.waiting.pop(message["id"], None)
                    if future is not None and not future.done():
                        future.set_result(message)
                elif self.on_note is not None:
                    self.on_note(message["params"]["channel"], message["params"]["data"])
        except ConnectionClosed:
            pass
        finally:
            for future in self.waiting.values():
                if not future.done():
                    future.set_exception(ConnectionError("the connection closed"))
            self.waiting.clear()

    async def call(self, method: str, **params) -> dict:
        request_id = next(self.ids)
        future = asyncio.get_running_loop().create_future()
        self.waiting[request_id] = future
        try:
            await self.ws.send(json.dumps({"jsonrpc": "2.0", "id": request_id,
                                           "method": method, "params": params}))
        except ConnectionClosed:
            self.waiting.pop(request_id, None)
            if future.done():               # the reader failed it first: mark it seen
                future.exception()
            raise ConnectionError("the connection closed") from None
        return await asyncio.wait_for(future, 30)

    async def result(self, method: str, **params):
        response = await self.call(method, **params)
        if "result" not in response:
            raise RuntimeError(f"{method} failed: {response['error']}")
        return response["result"]

    async def close(self) -> None:
        self.reader.cancel()
        await self.ws.close()


class Trader:
    """A trading account, and everything it was told: its orders and its fills."""

    def __init__(self, name: str, rng: random.Random) -> None:
        self.name = name
        self.rng = rng
        self.n = 0
        self.orders: dict[int, dict] = {}       # order_id -> the latest view it was told
        self.fresh: set[int] = set()            # orders told of since the last check
        self.live: dict[int, dict] = {}         # the orders it believes open
        self.fills: dict[int, dict] = {}        # trade_id -> {order_id, price, qty}
        self.in_flight: tuple[str, dict] | None = None
        self.acked = 0
        self.refused: dict[str, int] = {}   # errors the market allows (margin, band...), by reason
        self.client: Client | None = None

    def note(self, channel: str, data) -> None:
        if channel == "orders":
            self.told(data)
        elif channel == "fills":
            for f in data:
                self.fills[f["trade_id"]] = {"order_id": f["order_id"], "price": f["price"],
                                             "qty": f["qty"]}

    def told(self, view: dict) -> None:
        order_id = view["order_id"]
        self.orders[order_id] = view
        self.fresh.add(order_id)
        if view["status"] in CLOSED:
            self.live.pop(order_id, None)
        else:
            self.live[order_id] = view
        for f in view.get("fills", ()):
            self.fills[f["trade_id"]] = {"order_id": view["order_id"], "price": f["price"],
                                         "qty": f["qty"]}

    async def connect(self, url: str) -> None:
        self.client = await Client.open(url, self.name, self.note)
        await self.client.result("subscribe", channels=["orders", "fills"])

    def _next_request(self) -> tuple[str, dict]:
        rng = self.rng
        live = list(self.live.values())
        roll = rng.random()
        if live and (roll < 0.15 or len(live) > 40):    # keep the book (and margin) bounded
            return "order.cancel", {"order_id": rng.choice(live)["order_id"]}
        if live and roll < 0.3:
            order = rng.choice(live)
            return "order.replace", {"order_id": order["order_id"],
                                     "price": f"{2.09 + rng.randrange(21) / 1000:.3f}",
                                     "qty": order["filled_qty"] + rng.randint(1, 5)}
        self.n += 1
        params = {"symbol": SYMBOL, "side": rng.choice(("buy", "sell")),
                  "qty": rng.randint(1, 5), "client_order_id": f"{self.name}-{self.n}"}
        if roll < 0.45:
            params.update(tif="ioc", price=f"{2.08 + rng.randrange(41) / 1000:.3f}")
        else:
            params["price"] = f"{2.09 + rng.randrange(21) / 1000:.3f}"
        return "order.place", params

    async def trade(self, stop: asyncio.Event) -> None:
        """Send one request at a time until the connection dies or ``stop`` is set."""
        while not stop.is_set():
            method, params = self.in_flight = self._next_request()
            try:
                response = await self.client.call(method, **params)
            except ConnectionError:
                return                       # in flight at the kill: checked after restart
            self.in_flight = None
            if "result" in response:
                self.acked += 1
                self.told(response["result"])
                continue
            reason = response["error"]["data"]["reason"]
            self.refused[reason] = self.refused.get(reason, 0) + 1
            if reason == "order_closed":        # closed by a fill it had not heard of yet
                try:
                    got = await self.client.call("order.get", order_id=params["order_id"])
                except ConnectionError:
                    return
                if "result" in got:
                    self.told(got["result"])
            if reason not in (
                    "unknown_order", "order_closed", "price_out_of_band", "insufficient_margin",
                    "position_limit", "self_trade_prevented",
                    "invalid_quantity"):      # a replace below a fill it had not heard of
                raise RuntimeError(f"{method} {params}: {response['error']}")


class Tally(msgspec.Struct):
    cycles: int = 0
    acked: int = 0              # requests acknowledged to the traders, over all cycles
    refused: dict[str, int] = {}  # requests answered with an error the market allows, by reason
    orders_checked: int = 0     # order checks after restarts (an order is checked every cycle)
    fills_checked: int = 0
    resent: int = 0             # in-flight places sent again after a restart
    resent_existing: int = 0    # ... of which the journal already held the order
    undelivered_fills: int = 0  # durable fills the kill kept from reaching a trader
    replayed: int = 0           # commands replayed here to compare with the server
    states_compared: int = 0    # server digests (after restart, and before the kill) checked
    snapshot_starts: int = 0    # restarts that began from a snapshot
    torn: int = 0               # restarts that dropped a torn commit (appended by the test)
    torn_by_kill: int = 0       # restarts that dropped a write the kill itself cut short
    lost: int = 0               # anything acknowledged and not found as told
    problems: list[str] = []


async def check_trader(trader: Trader, tally: Tally, every: bool, sample: int = 200) -> None:
    """After a restart: the in-flight place lands once; the orders are as the trader was told.

    ``every`` checks every order; otherwise those told of since the last check and
    ``sample`` older ones (the older ones are also covered by the digest comparison
    with a fresh replay of the journal, which holds every acknowledged command).
    """
    client = trader.client
    if trader.in_flight is not None:
        method, params = trader.in_flight
        trader.in_flight = None
        if method == "order.place":
            first = await client.call(method, **params)
            again = await client.call(method, **params)
            if "result" in first:
                tally.resent += 1
                tally.resent_existing += bool(first["result"].get("duplicate"))
                if not again["result"].get("duplicate") or \
                        again["result"]["order_id"] != first["result"]["order_id"]:
                    raise Lost(f"{params['client_order_id']} was placed twice")
                trader.told(first["result"])
    if every:
        ids = list(trader.orders)
    else:
        older = [i for i in trader.orders if i not in trader.fresh]
        ids = list(trader.fresh) + trader.rng.sample(older, min(sample, len(older)))
    views = []
    for start in range(0, len(ids), 500):      # within the server's outbound queue limit
        views += await asyncio.gather(*(client.call("order.get", order_id=i)
                                        for i in ids[start:start + 500]))
    told_fills: dict[int, list] = {}
    for trade_id, f in trader.fills.items():
        told_fills.setdefault(f["order_id"], []).append((trade_id, f))
    for order_id, response in zip(ids, views):
        told = trader.orders[order_id]
        if "result" not in response:
            raise Lost(f"order {order_id} of {trader.name} is gone: {response['error']}")
        now = response["result"]
        fills = {f["trade_id"]: f for f in now["fills"]}
        if len(fills) != len(now["fills"]) or sum(f["qty"] for f in fills.values()) != \
                now["filled_qty"]:
            raise Lost(f"order {order_id}: fills {now['fills']} do not add up to "
                       f"{now['filled_qty']}")
        for trade_id, f in told_fills.get(order_id, ()):
            got = fills.get(trade_id)
            if got is None or (got["price"], got["qty"]) != (f["price"], f["qty"]):
                raise Lost(f"order {order_id}: fill {trade_id} {f} is now {got}")
            tally.fills_checked += 1
        if now["filled_qty"] < told["filled_qty"] or (
                told["status"] in CLOSED and (now["status"], now["filled_qty"]) !=
                (told["status"], told["filled_qty"])):
            raise Lost(f"order {order_id} was told {told['status']} {told['filled_qty']}, "
                       f"is {now['status']} {now['filled_qty']}")
        tally.undelivered_fills += len(fills) - len(told_fills.get(order_id, ()))
        tally.orders_checked += 1
        trader.told(now)
    trader.fresh = set()            # what it was told by the checks is checked


def check_replay(data_dir: Path, config, accounts, seq: int, digest: str, tally: Tally,
                 before_kill: tuple[int, str] | None = None) -> None:
    """A fresh replay of the journal up to ``seq`` must be the server's state, and conserve.

    ``before_kill``: (seq, digest) that ``admin.state`` gave while trading, before the
    kill: the replay must pass through that state too.
    """
    at = [before_kill[0]] if before_kill else []
    result = verify(data_dir, lambda: build(config, LISTED, accounts), until=seq, at=at)
    tally.replayed += result.replay.count
    if result.digest.hex() != digest:
        raise Lost(f"the server's state at seq {seq} differs from the journal's replay")
    if before_kill and result.digests.get(before_kill[0], b"").hex() != before_kill[1]:
        raise Lost(f"the state the server had before the kill, at seq {before_kill[0]}, is "
                   "not the journal's replay at that seq")
    tally.states_compared += 1 + bool(before_kill)
    if not all(result.snapshots.values()):
        raise Lost(f"snapshots differ from the replay: {result.snapshots}")
    house = result.replay.venue.house
    ledger = house.ledger
    accounts_ = ledger.accounts.values()
    if sum(a.collateral for a in accounts_) != ledger.deposited:
        raise Lost("collateral does not sum to what was deposited")
    for symbol in ledger.contracts:
        if sum(a.positions[symbol].qty for a in accounts_ if symbol in a.positions) != 0:
            raise Lost(f"positions in {symbol} do not net to zero")
        longs = sum(max(a.positions[symbol].qty, 0) for a in accounts_ if symbol in a.positions)
        if ledger.open_interest(symbol) != longs:
            raise Lost(f"open interest of {symbol} is not its long positions")
    marks = {s: m.price for s, m in house.marks.items()}
    if sum(ledger.pnl_since_settlement(a, marks) for a in accounts_) != 0:
        raise Lost("marked P&L does not sum to zero")


async def sample_state(url: str, delay: float) -> tuple[int, str] | None:
    """``admin.state`` after ``delay`` seconds of trading (None if the kill came first)."""
    await asyncio.sleep(delay)
    try:
        admin = await Client.open(url, ADMIN)
        state = await admin.result("admin.state")
        await admin.close()
    except (ConnectionError, OSError, WebSocketException, asyncio.TimeoutError):
        return None                 # the kill came during the handshake or the call
    return state["seq"], state["state_hash"]


def tear_the_tail(data_dir: Path, rng: random.Random) -> int:
    """Append part of a commit to the journal, as a write cut short by power loss would
    leave it; return how many bytes recovery must drop: those, and any the kill left of a
    write it cut short (never acknowledged: the sync had not returned), and nothing else."""
    directory = journal_dir(data_dir)
    reader = Reader(directory)
    last_seq = 0
    for record in reader:
        last_seq = record.seq
    already = reader.torn.length if reader.torn else 0
    records = encode_record(Timer(ts_ns=time.time_ns()))
    batch = encode_batch(last_seq + 1, 1, records) + records
    cut = batch[:rng.randrange(1, len(batch))]
    with open(segments(directory)[-1][1], "ab") as f:
        f.write(cut)
    return already + len(cut)


_RECOVERED = re.compile(r"recovered to seq ([\d,]+) in [\d.]+ s \(snapshot at seq ([\d,]+), "
                        r"([\d,]+) commands replayed(, a torn last batch of (\d+) bytes "
                        r"dropped)?\)")


def restarted(workdir: Path, config_text: str, tally: Tally, torn_bytes: int):
    """Start the server again; count what its recovery line says it did."""
    server = ServerProcess("gpux", config_text=config_text, workdir=workdir, args=SERVE_ARGS)
    match = _RECOVERED.search(server.output())
    if match is None:
        raise Lost(f"the restarted server did not report its recovery:\n{server.output()}")
    tally.snapshot_starts += int(match.group(2).replace(",", "")) > 0
    dropped = int(match.group(5) or 0)
    if torn_bytes and dropped != torn_bytes:
        raise Lost(f"{torn_bytes} bytes of torn commits at the end; recovery dropped {dropped}")
    tally.torn += bool(torn_bytes)
    tally.torn_by_kill += bool(dropped) and not torn_bytes
    return server


async def run_cycles(cycles: int, seed: int, n_traders: int, durability: str,
                     workdir: Path, log=print, window: tuple[float, float] = (0.3, 2.0),
                     tear_every: int = 4) -> Tally:
    """Run ``cycles`` kill/restart cycles, each after ``window`` (min, max) seconds of
    trading; every ``tear_every``-th kill also leaves a torn commit at the journal's end.
    Return what was checked (``lost`` and ``problems`` say what failed)."""
    rng = random.Random(seed)
    names = [f"crash-{i:03d}" for i in range(1, n_traders + 1)]
    config_text = crash_config(names, durability)
    config = load_config(config_text)
    accounts = list(Accounts(list(config.account), 0).by_id.values())
    traders = [Trader(n, random.Random(rng.random())) for n in names]
    tally = Tally()
    server = ServerProcess("gpux", config_text=config_text, workdir=workdir, args=SERVE_ARGS)
    data_dir = workdir / "data"
    before_kill = None
    try:
        for cycle in range(1, cycles + 2):
            url = f"ws://{server.host}:{server.port}/ws"
            for t in traders:
                await t.connect(url)
            if cycle > 1:
                for t in traders:
                    await check_trader(t, tally, every=cycle == cycles + 1)
                admin = await Client.open(url, ADMIN)
                state = await admin.result("admin.state")
                await admin.close()
                check_replay(data_dir, config, accounts, state["seq"], state["state_hash"],
                             tally, before_kill)
            if cycle == cycles + 1:           # the last restart is checked, not killed
                for t in traders:
                    await t.client.close()
                break
            stop = asyncio.Event()
            tasks = [asyncio.create_task(t.trade(stop)) for t in traders]
            seconds = rng.uniform(*window)
            sampler = asyncio.create_task(sample_state(url, rng.uniform(0, seconds)))
            await asyncio.sleep(seconds)
            server.kill()                   # mid-stride: requests in flight, maybe a snapshot
            await asyncio.gather(*tasks)
            before_kill = await sampler
            for t in traders:
                await t.client.close()
            torn_bytes = tear_the_tail(data_dir, rng) if cycle % tear_every == 0 else 0
            server = restarted(workdir, config_text, tally, torn_bytes)
            tally.cycles = cycle
            tally.acked = sum(t.acked for t in traders)
            tally.refused = {r: sum(t.refused.get(r, 0) for t in traders)
                             for r in sorted(set().union(*(t.refused for t in traders)))}
            if cycle % 10 == 0 or cycle == cycles:
                log(f"cycle {cycle}: {tally.acked:,} acked, {tally.orders_checked:,} order "
                    f"checks, {tally.lost} lost")
    except Lost as e:
        tally.lost += 1
        tally.problems.append(str(e))
    finally:
        server.stop()
    return tally


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--traders", type=int, default=4)
    parser.add_argument("--durability", choices=("fsync", "unsafe-no-fsync"), default="fsync")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="gpux-crash-"))
    started = time.monotonic()
    tally = asyncio.run(run_cycles(args.cycles, args.seed, args.traders, args.durability,
                                   workdir))
    print(json.dumps(msgspec.to_builtins(tally) | {
        "seconds": round(time.monotonic() - started, 1), "durability": args.durability,
        "seed": args.seed}, indent=1))
    if args.keep or tally.lost:
        print(f"data directory: {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if tally.lost else 0


if __name__ == "__main__":
    sys.exit(main())
