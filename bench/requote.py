"""A market maker's re-quote: every quote slot moved by one order.replace each, against the
same slots moved by order.mass_quote (requests of 96 slots).

    python -m bench.requote [--rounds 200] [--repeat 3] [--server-cpus 0] [--client-cpus 1]

The maker quotes 3 levels a side on every contract of the default listing
that is still trading (92 contracts, 552 slots, until the front month's last
trading day; 88 and 528 after it), then
moves every quote by one tick each round, alternately down and up, so every
slot changes every round. ``replace`` sends one order.replace per order, all in
flight at once (the fastest a client can ask for it); ``mass_quote`` sends
order.mass_quote requests of 96 slots, also at once. A round ends when
every answer is in. Each way runs in a fresh server process (pinned), after
ten warm-up rounds; the table gives the median of ``--repeat`` runs: slots
moved per second, and the median and p99 time of a round.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import statistics
import time

import msgspec

from bench import wsraw
from bench.harness import (
    AS_OF, ServerProcess, account_names, fmt_us, gpux_config, login_params, parse_cpus, percentile,
    pin,
)
from engine.contracts import list_instruments
from engine.prices import format_price
from gateway.config import load_config

LEVELS = 3
SLOTS_PER_REQUEST = 96
WAYS = ("replace", "mass_quote")


class Conn(wsraw.WsProtocol):
    """Resolves each call's future with its decoded response."""

    def on_message(self, payload: bytes) -> None:
        message = msgspec.json.decode(payload)
        future = self.calls.pop(message.get("id"), None)
        if future is not None and not future.done():
            future.set_result(message)


def slots(open_symbols) -> list[tuple[str, str, int, int]]:
    """(symbol, side, level, price in ticks) of every quote: 3 levels a side on every
    contract of the default listing still trading, around its reference price."""
    config = load_config(None)
    out = []
    for inst in list_instruments(config.products, datetime.date.fromisoformat(AS_OF)):
        if inst.symbol not in open_symbols:
            continue
        ref = next(p for p in config.products if p.gpu_class == inst.gpu_class).reference_price
        for level in range(LEVELS):
            out.append((inst.symbol, "buy", level, ref - 20 - 5 * level))
            out.append((inst.symbol, "sell", level, ref + 20 + 5 * level))
    return out


def _check(messages) -> None:
    """Fail on any refusal, of a request or of one of its slots."""
    for message in messages:
        if "error" in message:
            raise RuntimeError(f"refused: {message['error']}")
        for slot in message["result"].get("quotes", ()):
            if slot["error"] is not None:
                raise RuntimeError(f"slot refused: {slot['error']}")


async def _run(host: str, port: int, way: str, rounds: int) -> tuple[int, list[int]]:
    conn = await wsraw.connect(lambda: Conn(host, port), host, port)
    r = await conn.call("auth.login", login_params("maker-001", f"rq-{time.time_ns()}"))
    assert "result" in r, r
    listed = (await conn.call("market.instruments", {}))["result"]
    soon = time.time() * 1000 + 3_600_000       # still trading an hour from now
    book = slots({i["symbol"] for i in listed
                  if i["status"] == "open" and i["last_trading_time"] > soon})
    quote = [{"symbol": s, "side": side, "level": level, "price": format_price(price),
              "qty": 5} for s, side, level, price in book]
    placed = [conn.call("order.mass_quote", {"quotes": quote[i:i + SLOTS_PER_REQUEST]})
              for i in range(0, len(quote), SLOTS_PER_REQUEST)]
    results = await asyncio.gather(*placed)
    _check(results)
    order_ids = [q["order"]["order_id"] for r in results for q in r["result"]["quotes"]]
    times = []
    for n in range(rounds + 10):
        shift = -1 if n % 2 == 0 else 0      # down a tick, then back
        started = time.perf_counter_ns()
        if way == "replace":
            futures = [conn.call("order.replace", {"order_id": order_id,
                                                   "price": format_price(price + shift)})
                       for order_id, (_, _, _, price) in zip(order_ids, book)]
        else:
            moved = [dict(q, price=format_price(price + shift))
                     for q, (_, _, _, price) in zip(quote, book)]
            futures = [conn.call("order.mass_quote",
                                 {"quotes": moved[i:i + SLOTS_PER_REQUEST]})
                       for i in range(0, len(moved), SLOTS_PER_REQUEST)]
        _check(await asyncio.gather(*futures))
        if n >= 10:
            times.append(time.perf_counter_ns() - started)
    await wsraw.close_all([conn])
    return len(book), times


def measure(way: str, rounds: int, server_cpus, client_cpus) -> tuple[int, list[int]]:
    config = gpux_config(account_names("maker", 1))
    with ServerProcess("gpux", cpus=server_cpus, config_text=config) as server:
        if client_cpus:
            pin(client_cpus)
        return asyncio.run(_run(server.host, server.port, way, rounds))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--server-cpus", default="0")
    parser.add_argument("--client-cpus", default="1")
    args = parser.parse_args(argv)
    runs: dict[str, list[list[int]]] = {way: [] for way in WAYS}
    for _ in range(args.repeat):
        for way in WAYS:            # alternating, so drift on the machine hits both
            n_slots, times = measure(way, args.rounds, parse_cpus(args.server_cpus),
                                     parse_cpus(args.client_cpus))
            runs[way].append(sorted(times))
    print(f"# {n_slots} slots, {args.rounds} rounds after 10 warm-up, median of "
          f"{args.repeat} runs; server CPUs {args.server_cpus}, client {args.client_cpus}; "
          f"pid {os.getpid()}")
    print("way          requests/round  slots/s   round p50   round p99")
    for way in WAYS:
        requests = n_slots if way == "replace" else -(-n_slots // SLOTS_PER_REQUEST)
        rate = statistics.median(n_slots * len(t) / (sum(t) / 1e9) for t in runs[way])
        p50 = statistics.median(percentile(t, 50) for t in runs[way])
        p99 = statistics.median(percentile(t, 99) for t in runs[way])
        print(f"{way:<12} {requests:>14}  {rate:>8,.0f}  {fmt_us(p50):>10}  {fmt_us(p99):>10}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
