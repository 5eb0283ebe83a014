"""Summarise a GC pause log written by bench.serve_profiled (GPUX_GC_LOG).

    python -m bench.gc_report FILE.gc.json [...]

Each pause is ``[start, duration]`` in CLOCK_MONOTONIC ns.
"""
from __future__ import annotations

import json
import sys


def summary(path: str) -> str:
    with open(path) as f:
        log = json.load(f)
    lines = [f"{path}: {log['objects']:,} objects tracked at exit"]
    for gen, pauses in sorted(log["pauses"].items()):
        pauses = sorted(d for _, d in pauses)
        if not pauses:
            lines.append(f"  gen {gen}: none")
            continue
        lines.append(f"  gen {gen}: {len(pauses)} collections, total {sum(pauses) / 1e6:.1f} ms, "
                     f"max {pauses[-1] / 1e6:.1f} ms, largest "
                     + ", ".join(f"{p / 1e6:.1f}" for p in pauses[-6:]) + " ms")
    if log.get("types"):
        lines.append("  tracked objects by type: " + ", ".join(
            f"{name} {count:,}" for name, count in log["types"][:10]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    for path in (argv if argv is not None else sys.argv[1:]):
        print(summary(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
