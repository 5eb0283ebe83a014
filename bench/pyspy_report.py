"""Summarise py-spy's raw (collapsed) stacks: where the sampled process spent its time.

    python -m bench.pyspy_report FILE.txt [--top 25] [--under FUNCTION]

Prints the functions with the largest inclusive share (the function or
anything it called was running) and the largest self share (it was the
innermost Python frame), as percentages of all samples. ``--under`` keeps
only the samples whose stack contains that function, to look inside one
part (e.g. ``seal``).
"""
from __future__ import annotations

import argparse
import re
import sys
from collections import Counter

_FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def frame_name(frame: str) -> str:
    """``flush (gateway/server/connection.py:123)`` -> ``flush
    (gateway/server/connection.py)``: the lines of a function merged."""
    m = _FRAME.match(frame)
    if not m:
        return frame
    path = m.group("file")
    for marker in ("site-packages/", "/work/main/", "lib/python3."):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{m.group('fn')} ({path})"


def load(path: str, under: str | None = None) -> list[tuple[list[str], int]]:
    stacks = []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            stack, _, count = line.rpartition(" ")
            frames = [frame_name(fr) for fr in stack.split(";")]
            if under and not any(fr.startswith(under + " ") for fr in frames):
                continue
            stacks.append((frames, int(count)))
    return stacks


def report(stacks, top: int = 25) -> str:
    total = sum(c for _, c in stacks)
    if not total:
        return "no samples"
    inclusive: Counter = Counter()
    own: Counter = Counter()
    for frames, count in stacks:
        for fr in set(frames):
            inclusive[fr] += count
        own[frames[-1]] += count
    lines = [f"{total} samples", "", "inclusive  function"]
    lines += [f"{100 * c / total:8.1f}%  {fr}" for fr, c in inclusive.most_common(top)]
    lines += ["", "self       function"]
    lines += [f"{100 * c / total:8.1f}%  {fr}" for fr, c in own.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pyspy_report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--under", help="only samples under this function name")
    args = parser.parse_args(argv)
    print(report(load(args.file, args.under), args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
