"""A 12-month strip over the websocket: its latency beside the single orders it replaces.

    python -m bench.strips [--n 2000] [--block 100] [--server-cpus 0] [--client-cpus 1]

A real `gpux serve` (no demo) on the embedded default market; two makers rest 3
levels a side on every H100 month (as bench/test_bench_strips.py, 10,000 lots a
level), then one client, one request in flight at a time, sends in alternating
blocks of ``--block``: ``strip`` (order.place_strip, 1 lot in each of the 12 months,
alternately bought and sold, FOK), ``ioc`` (one order.place IOC of 1 lot in one
month) and ``12 ioc`` (the strip's 12 legs as 12 IOC orders sent at once, timed until
the last answer). Latency is from sending to the answer, at the client; figures are
p50/p99 over ``--n`` of each and the requests a second that one client gets at one
in flight. The machine is shared: run it with nothing else running.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import time

from websockets.asyncio.client import connect

from bench.harness import (
    ServerProcess, account_names, gpux_config, latency_table, login_params, parse_cpus, pin,
)
from bench.throughput import machine

LEVELS = (1, 6, 11)


class Rpc:
    """One websocket, one request at a time (or a burst), answers matched by id."""

    def __init__(self, ws) -> None:
        self.ws, self.next_id = ws, 0

    async def burst(self, calls: list[tuple[str, dict]]) -> list[dict]:
        ids = []
        for method, params in calls:
            self.next_id += 1
            ids.append(self.next_id)
            await self.ws.send(json.dumps({"jsonrpc": "2.0", "id": self.next_id,
                                           "method": method, "params": params}))
        answers: dict[int, dict] = {}
        while len(answers) < len(ids):
            message = json.loads(await self.ws.recv())
            if message.get("id") in ids:
                answers[message["id"]] = message
        out = [answers[i] for i in ids]
        for answer in out:
            if "error" in answer:
                raise RuntimeError(f"refused: {answer['error']}")
        return out


async def session(url: str, name: str) -> Rpc:
    ws = await connect(url, max_size=None)
    rpc = Rpc(ws)
    await rpc.burst([("auth.login", login_params(name, f"n-{name}-{time.time_ns()}"))])
    return rpc


async def books(url: str, makers: list[str], months: list[str]) -> None:
    for maker, wider in zip(makers, (0, 2)):
        rpc = await session(url, maker)
        calls = [("order.place", {"symbol": s, "side": side, "qty": 10_000,
                                  "price": f"{(2100 + sign * (level + wider)) / 1000:.3f}"})
                 for s in months for level in LEVELS
                 for side, sign in (("buy", -1), ("sell", 1))]
        await rpc.burst(calls)
        await rpc.ws.close()


async def measure(url: str, taker: str, months: list[str], n: int, block: int) -> dict:
    rpc = await session(url, taker)
    times: dict[str, list[float]] = {"strip": [], "ioc": [], "12 ioc": []}
    k = 0

    def requests(kind: str, buy: bool) -> list[tuple[str, dict]]:
        side, price = ("buy", "2.120") if buy else ("sell", "2.080")
        if kind == "strip":
            return [("order.place_strip", {"symbols": months, "side": side, "qty": 1,
                                           "price": price})]
        legs = months if kind == "12 ioc" else months[k % 12:k % 12 + 1]
        return [("order.place", {"symbol": s, "side": side, "qty": 1, "price": price,
                                 "tif": "ioc"}) for s in legs]
    while min(len(v) for v in times.values()) < n:
        for kind in times:
            for _ in range(block):
                calls = requests(kind, k % 2 == 0)
                k += 1
                began = time.perf_counter()
                await rpc.burst(calls)
                times[kind].append(time.perf_counter() - began)
    await rpc.ws.close()
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--block", type=int, default=100)
    parser.add_argument("--server-cpus")
    parser.add_argument("--client-cpus")
    args = parser.parse_args(argv)
    pin(parse_cpus(args.client_cpus))
    names = account_names("strip", 3)

    async def run(url: str) -> dict:
        probe = await connect(url)
        rpc = Rpc(probe)
        [listed] = await rpc.burst([("market.instruments", {})])
        await probe.close()
        months = [i["symbol"] for i in listed["result"] if i["gpu_class"] == "H100"
                  and i["tenor"] == "month" and i["status"] == "open"
                  and i["last_trading_time"] > time.time() * 1000 + 3_600_000][:12]
        await books(url, names[:2], months)
        return await measure(url, names[2], months, args.n, args.block)
    with ServerProcess("gpux", cpus=parse_cpus(args.server_cpus),
                       config_text=gpux_config(names)) as server:
        times = asyncio.run(run(f"ws://{server.host}:{server.port}/ws"))
    print(machine())
    print(latency_table(times))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
