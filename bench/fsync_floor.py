"""The disk's floor under an fsync'd ack: one small append and fdatasync, timed.

    python -m bench.fsync_floor [--n 2000] [--dir /tmp]

What a journal batch costs at the least on this machine's disk: no server, no
socket, only ``os.write`` of ``--bytes`` and ``os.fdatasync``, repeated. An
acknowledgement that waits for the disk can be no faster than this.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

from bench.harness import fmt_us, percentile


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--bytes", type=int, default=300)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    args = parser.parse_args(argv)
    record = os.urandom(args.bytes)
    with tempfile.NamedTemporaryFile(dir=args.dir) as f:
        fd = f.fileno()
        times = []
        for _ in range(args.n):
            started = time.perf_counter_ns()
            os.write(fd, record)
            os.fdatasync(fd)
            times.append(time.perf_counter_ns() - started)
    times.sort()
    print(f"# {args.n} appends of {args.bytes} B + fdatasync in {args.dir}")
    print(f"p50 {fmt_us(percentile(times, 50))}  p90 {fmt_us(percentile(times, 90))}  "
          f"p99 {fmt_us(percentile(times, 99))}  max {fmt_us(times[-1])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
