"""``gpux`` with instruments, for finding where a loaded server's time goes.

    GPUX_CPROFILE=out.prof GPUX_GC_LOG=gc.json python -m bench.serve_profiled serve ...

Runs ``gateway.client.cli.main`` with the given arguments, unchanged, and:

  * GPUX_CPROFILE=PATH: under cProfile, stats dumped to PATH when the server
    stops (SIGTERM stops it cleanly); read them with ``python -m pstats``.
  * GPUX_GC_LOG=PATH: times every garbage collection (gc.callbacks) and
    writes ``{"pauses": {generation: [[start, pause], ...]}}`` (CLOCK_MONOTONIC
    ns), with the 20 commonest types of the objects the collector tracks, as JSON
    to PATH at exit.

bench.loadgen uses it with ``--profile DIR`` and ``--gc-log DIR``; py-spy (``--py-spy``)
needs no wrapper: it attaches to the running server.
"""
from __future__ import annotations

import atexit
import cProfile
import gc
import json
import os
import sys
import time
from collections import Counter


def _gc_log(path: str) -> None:
    pauses: dict[int, list[tuple[int, int]]] = {0: [], 1: [], 2: []}
    started = [0]

    def callback(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.monotonic_ns()
        else:
            pauses[info["generation"]].append(
                (started[0], time.monotonic_ns() - started[0]))

    gc.callbacks.append(callback)

    def dump() -> None:
        objects = gc.get_objects()
        types = Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in objects)
        with open(path, "w") as f:
            json.dump({"pauses": pauses, "counts": gc.get_count(), "objects": len(objects),
                       "types": types.most_common(20)}, f)

    atexit.register(dump)


def main() -> int:
    from gateway.client.cli import main as gpux_main

    if os.environ.get("GPUX_GC_LOG"):
        _gc_log(os.environ["GPUX_GC_LOG"])
    profile_path = os.environ.get("GPUX_CPROFILE")
    if not profile_path:
        return gpux_main(sys.argv[1:])
    profiler = cProfile.Profile()
    try:
        return profiler.runcall(gpux_main, sys.argv[1:])
    finally:
        profiler.dump_stats(profile_path)


if __name__ == "__main__":
    sys.exit(main())
