"""Load generator: engine commands per second, measured in one process and one run.

    python -m bench.throughput [--n N] [--rounds R] [--n-exchange N] [--n-reference N]

Measures, on both streams of bench/streams.py (the gpux mix and the
exchange-core mix):

  (a) the Cython OrderBook through its per-command Python API (replay_book),
  (b) the whole Exchange: prebuilt command Structs in, event lists out,
  (c) the pure-Python ReferenceBook (tests/oracle.py) through the same driver as (a).

Rounds are interleaved (round 1 of every case, then round 2, ...), each on a
freshly built book or Exchange, with a gc.collect() before and the collector
off during the timed part. Every round's result is checked against the
summary the stream's generator computed, and the Exchange is first run once,
untimed, with its events counted (fills, notional, self-trade stops, no
rejections), so a faster but wrong engine fails instead of printing a number.

It also measures the Python floor: what one call of an empty Cython method
costs from a Python loop, which bounds what a per-command API can reach.
"""
from __future__ import annotations

import argparse
import gc
import os
import platform
import resource
import statistics
import sys
import time

from bench.streams import (
    STREAMS, exchange_commands, exchange_summary, instrument, replay_book, replay_exchange,
    replay_exchange_events,
)
from engine.book import OrderBook
from engine.exchange import Exchange
from tests.oracle import ReferenceBook

CASES = ("a", "b", "c")
LABELS = {
    "a": "(a) Cython book, per-command API",
    "b": "(b) Exchange, Struct in, events out",
    "c": "(c) reference book (sortedcontainers)",
}
STREAM_LABELS = {"gpux": "gpux mix", "exchange_core": "exchange-core mix"}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import Cython
    import msgspec
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"nproc {nproc}, {cpu}, {platform.python_implementation()} "
            f"{platform.python_version()}, {platform.system()} {platform.release()}, "
            f"Cython {Cython.__version__}, msgspec {msgspec.__version__}")


def timed(run, state, data, keep_gc: bool) -> tuple[float, float, int, object]:
    """Run once on a fresh state; return (seconds, kernel seconds, page faults, result).

    Kernel time is almost all first touches of new memory (page faults); it
    shows how much of a round is the process growing rather than the engine.
    """
    gc.collect()
    if not keep_gc:
        gc.disable()
    try:
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        result = run(state, data)
        seconds = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        gc.enable()
    return seconds, r1.ru_stime - r0.ru_stime, r1.ru_minflt - r0.ru_minflt, result


def floor_ns(reps: int = 2_000_000, repeat: int = 5) -> dict[str, float]:
    """Return ns per call of a few near-empty OrderBook methods, the bare loop subtracted."""
    book = OrderBook()
    best_bid, would_take = book.best_bid, book.would_take
    r = range(reps)

    def loop():
        for _ in r:
            pass

    def call_best_bid():
        for _ in r:
            best_bid()

    def call_len():
        for _ in r:
            len(book)

    def call_would_take():
        for _ in r:
            would_take(1, 100)

    def best(fn):
        times = []
        for _ in range(repeat):
            gc.collect()
            gc.disable()
            t0 = time.perf_counter_ns()
            fn()
            times.append(time.perf_counter_ns() - t0)
            gc.enable()
        return min(times) / reps

    base = best(loop)
    return {
        "bare for-loop iteration": base,
        "book.best_bid() on an empty book": best(call_best_bid) - base,
        "len(book)": best(call_len) - base,
        "book.would_take(1, 100)": best(call_would_take) - base,
    }


def calls_per_command(stats: dict) -> float:
    """Book API calls replay_book makes per command, from the stream's op counts."""
    # limit: would_take + add (+ match when it crosses, rare); ioc: match;
    # cancel: cancel; replace: cancel + would_take + add.
    per = {"limit": 2, "ioc": 1, "cancel": 1, "replace": 3}
    total = sum(stats[k] for k in per)
    return sum(per[k] * stats[k] for k in per) / total


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.throughput",
                                description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=1_000_000, help="commands per book round (a, c)")
    p.add_argument("--n-exchange", type=int, default=None,
                   help="commands per Exchange round (b); default --n")
    p.add_argument("--n-reference", type=int, default=None,
                   help="commands per reference-book round (c); default --n")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--streams", default="gpux,exchange_core")
    p.add_argument("--keep-gc", action="store_true",
                   help="leave the garbage collector on during timed rounds")
    args = p.parse_args(argv)
    sizes = {"a": args.n, "b": args.n_exchange or args.n, "c": args.n_reference or args.n}
    names = args.streams.split(",")

    print(f"machine: {machine()}")
    print(f"rounds {args.rounds}, seed {args.seed}, gc "
          f"{'on' if args.keep_gc else 'off during timed rounds'}", flush=True)

    # Streams and Structs, all before any timing.
    t0 = time.perf_counter()
    streams = {}
    for name in names:
        for n in sorted(set(sizes.values())):
            streams[name, n] = STREAMS[name](n, args.seed)
    commands = {name: exchange_commands(streams[name, sizes["b"]]) for name in names}
    print(f"generated {len(streams)} streams and {len(names)} Struct lists in "
          f"{time.perf_counter() - t0:.1f} s", flush=True)

    def require(ok, *what):
        if not ok:               # not assert: python -O must not turn the checks off
            raise SystemExit(f"wrong result, not timing it: {what}")

    def check_book(stream, result):
        require(result == stream.expected, stream.mix, result, stream.expected)

    def check_exchange(stream, ex):
        got = exchange_summary(ex).core()
        require(got == stream.expected.core(), stream.mix, got, stream.expected)

    cases = {
        "a": (OrderBook, replay_book, lambda s: s.commands, check_book),
        "b": (lambda: Exchange([instrument()]), replay_exchange, lambda s: commands[s.mix],
              None),
        "c": (ReferenceBook, replay_book, lambda s: s.commands, check_book),
    }

    # Untimed: the Exchange's events must agree with the generator (also a warm-up).
    for name in names:
        s = streams[name, sizes["b"]]
        got = replay_exchange_events(Exchange([instrument()]), commands[name])
        require(got == s.expected, name, got, s.expected)
    print("checked: Exchange events agree with the generator's model on every stream",
          flush=True)

    rates: dict[tuple[str, str], list[float]] = {}
    kernel: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for r in range(args.rounds):
        for name in names:
            for case in CASES:
                make, run, data, check = cases[case]
                stream = streams[name, sizes[case]]
                state = make()
                seconds, sys_s, faults, result = timed(run, state, data(stream), args.keep_gc)
                if check is None:
                    check_exchange(stream, state)
                else:
                    check(stream, result)
                del state, result
                rates.setdefault((name, case), []).append(len(stream) / seconds)
                kernel.setdefault((name, case), []).append((sys_s / seconds,
                                                            1000 * faults / len(stream)))
        print(f"round {r + 1}/{args.rounds} done", flush=True)

    floor = floor_ns()

    # -- the table ----------------------------------------------------------------
    def m(name, case):
        return statistics.median(rates[name, case])

    def k(name, case, i):
        return statistics.median(v[i] for v in kernel[name, case])

    w0, w = 42, 24

    def row(label, cell):
        print(f"{label:<{w0}}" + "".join(f"{cell(n):>{w}}" for n in names))

    def per_case(fmt):
        return lambda n: " / ".join(fmt(n, c) for c in CASES)

    print()
    row("median commands/s (min..max)", lambda n: STREAM_LABELS[n])
    for case in CASES:
        row(LABELS[case], lambda n: f"{m(n, case) / 1e6:.3f} M ({min(rates[n, case]) / 1e6:.2f}"
                                    f"..{max(rates[n, case]) / 1e6:.2f})")
    for label, x, y in (("(a)/(c)", "a", "c"), ("(b)/(c)", "b", "c"), ("(a)/(b)", "a", "b")):
        row(label, lambda n: f"{m(n, x) / m(n, y):.2f}x")
    row("ns per command, (a) / (b) / (c)", per_case(lambda n, c: f"{1e9 / m(n, c):.0f}"))
    row("kernel share of a round, (a) / (b) / (c)",
        per_case(lambda n, c: f"{100 * k(n, c, 0):.0f}%"))
    row("page faults per 1000 commands", per_case(lambda n, c: f"{k(n, c, 1):.0f}"))
    print()
    print("commands per round: " + ", ".join(f"{LABELS[c][:3]} {sizes[c]:,}" for c in CASES))
    for name in names:
        st = streams[name, sizes["a"]].stats
        exp = streams[name, sizes["a"]].expected
        total = sum(st[k] for k in ("limit", "ioc", "cancel", "replace"))
        mix = ", ".join(f"{k} {100 * st[k] / total:.1f}%" for k in ("limit", "ioc", "cancel",
                                                                    "replace"))
        print(f"{STREAM_LABELS[name]}: {mix}; mean {st['mean_resting']:.0f} resting orders over "
              f"{st['mean_levels']:.0f} levels; {exp.fills:,} fills, {exp.stp_stops:,} "
              f"self-trade stops; {calls_per_command(st):.2f} book calls per command")
    print()
    print("Python floor (ns per call from a Python for-loop, the bare loop subtracted):")
    for label, ns in floor.items():
        print(f"  {label:<36} {ns:6.1f} ns")
    call = floor["book.would_take(1, 100)"]
    loop = floor["bare for-loop iteration"]
    for name in names:
        cpc = calls_per_command(streams[name, sizes["a"]].stats)
        per_cmd = 1e9 / m(name, "a")
        fl = loop + cpc * call
        print(f"  {STREAM_LABELS[name]}: {cpc:.2f} calls x {call:.0f} ns + loop {loop:.0f} ns "
              f"= {fl:.0f} ns of (a)'s {per_cmd:.0f} ns per command ({100 * fl / per_cmd:.0f}%); "
              f"ceiling at this call count {1e3 / fl:.1f} M commands/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
