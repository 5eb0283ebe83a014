"""Memory at a steady order rate: does a server's resident size stay flat?

    python -m bench.memory [--minutes 60] [--warmup-minutes 10] [--rate 500]

A real `gpux serve` process and one client trading at ``rate`` orders a second for
``minutes``: two market makers, alternating sides so their positions stay near zero;
each step one rests a sell (with a client_order_id), the other takes it (so both close
filled, with a fill each), then the first rests a buy below and cancels it. The server's
resident set size (VmRSS) is sampled every ten seconds; the figure is its growth from the
end of the warm-up to the end (the issue's target: flat within 10%).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from decimal import Decimal

from bench.harness import SYMBOL, ServerProcess, credentials, gpux_config
from gateway.client.sdk import Client

ACCOUNTS = ["mm-1", "mm-2"]
SAMPLE_S = 10.0


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


async def trade(url: str, rate: float, seconds: float, counts: dict) -> None:
    """Steps of four orders (three placed, one cancel) at ``rate`` orders a second."""
    clients = [Client(url, api_key=credentials(n)[0], api_secret=credentials(n)[1])
               for n in ACCOUNTS]
    for c in clients:
        await c.__aenter__()
    try:
        inst = next(i for i in await clients[0].call("market.instruments")
                    if i["symbol"] == SYMBOL)
        price = Decimal(inst["reference_price"])
        below = str(price - Decimal("0.010"))
        step_s = 3 / rate                         # three orders placed a step
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < seconds:
            a, b = clients[n % 2], clients[1 - n % 2]
            await a.call("order.place", symbol=SYMBOL, side="sell", qty=1, price=str(price),
                         client_order_id=f"s-{n}")
            await b.call("order.place", symbol=SYMBOL, side="buy", qty=1, price=str(price),
                         client_order_id=f"b-{n}")
            rest = await a.call("order.place", symbol=SYMBOL, side="buy", qty=1, price=below)
            await a.call("order.cancel", order_id=rest["order_id"])
            n += 1
            counts["orders"] = 3 * n
            late = start + n * step_s - time.monotonic()
            if late > 0:
                await asyncio.sleep(late)
    finally:
        for c in clients:
            await c.__aexit__(None, None, None)


async def measure(minutes: float, warmup: float, rate: float) -> dict:
    server = ServerProcess("gpux", config_text=gpux_config(ACCOUNTS))
    url = f"ws://{server.host}:{server.port}/ws"
    counts = {"orders": 0}
    samples: list[tuple[float, int]] = []
    try:
        task = asyncio.create_task(trade(url, rate, minutes * 60, counts))
        start = time.monotonic()
        while not task.done():
            samples.append((time.monotonic() - start, rss_kib(server.pid)))
            print(json.dumps({"s": round(samples[-1][0]), "rss_mib":
                              round(samples[-1][1] / 1024, 1), "orders": counts["orders"]}),
                  flush=True)
            await asyncio.wait([task], timeout=SAMPLE_S)
        task.result()
        elapsed = time.monotonic() - start
    finally:
        server.stop()
    after = [kib for s, kib in samples if s >= warmup * 60]
    at_warmup, at_end = after[0], after[-1]
    return {"minutes": minutes, "orders": counts["orders"],
            "orders_per_s": round(counts["orders"] / elapsed, 1),
            "rss_mib_at_warmup": round(at_warmup / 1024, 1),
            "rss_mib_at_end": round(at_end / 1024, 1),
            "rss_mib_max_after_warmup": round(max(after) / 1024, 1),
            "rss_mib_median_after_warmup": round(statistics.median(after) / 1024, 1),
            "growth_pct": round(100 * (at_end - at_warmup) / at_warmup, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--warmup-minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=500.0, help="orders placed a second")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.minutes, args.warmup_minutes, args.rate))))


if __name__ == "__main__":
    main()
