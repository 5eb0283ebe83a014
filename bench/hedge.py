"""A 36-month hedge plan (analytics.hedge_plan) over the websocket, beside a light read.

    python -m bench.hedge [--n 1000] [--months 36] [--server-cpus 0] [--client-cpus 1]

A real `gpux serve` (no demo) on the embedded default market; one anonymous client, one
request in flight, alternating blocks of 100: ``plan`` (a 1,000-GPU cluster over
``--months`` months from next month, half hedged, past the curve by extrapolation) and
``curve`` (market.curve of the class, a read of about the same size of answer). p50/p99
latency at the client. The in-process cost is bench/test_bench_hedge.py's.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import time

from websockets.asyncio.client import connect

from bench.harness import ServerProcess, latency_table, parse_cpus, pin
from bench.throughput import machine

CONFIG = "[limits.roles.anonymous]\nrequests = [1000000.0, 1000000]\n"


def plan_params(months: int) -> dict:
    today = datetime.date.today()
    start = datetime.date(today.year + today.month // 12, today.month % 12 + 1, 1)
    return {"gpu_class": "H100", "gpus": 1000, "start": f"{start:%Y-%m}", "months": months,
            "utilisation": "0.85", "opex": "0.60", "hedge_ratio": "0.5", "extrapolate": True,
            "debt": {"principal": "10000000", "rate": "0.10", "tenor": min(months, 20)}}


async def measure(url: str, n: int, block: int, months: int) -> dict[str, list[float]]:
    requests = {"plan": ("analytics.hedge_plan", plan_params(months)),
                "curve": ("market.curve", {"gpu_class": "H100"})}
    times: dict[str, list[float]] = {k: [] for k in requests}
    async with connect(url, max_size=None) as ws:
        k = 0
        while min(len(v) for v in times.values()) < n:
            for kind, (method, params) in requests.items():
                for _ in range(block):
                    k += 1
                    began = time.perf_counter()
                    await ws.send(json.dumps({"jsonrpc": "2.0", "id": k, "method": method,
                                              "params": params}))
                    while True:
                        answer = json.loads(await ws.recv())
                        if answer.get("id") == k:
                            break
                    times[kind].append(time.perf_counter() - began)
                    if "error" in answer:
                        raise RuntimeError(answer["error"])
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--block", type=int, default=100)
    parser.add_argument("--months", type=int, default=36)
    parser.add_argument("--server-cpus")
    parser.add_argument("--client-cpus")
    args = parser.parse_args(argv)
    pin(parse_cpus(args.client_cpus))
    with ServerProcess("gpux", cpus=parse_cpus(args.server_cpus), config_text=CONFIG) as server:
        times = asyncio.run(measure(f"ws://{server.host}:{server.port}/ws", args.n,
                                    args.block, args.months))
    print(machine())
    print(latency_table(times))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
