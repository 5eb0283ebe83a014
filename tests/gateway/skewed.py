"""`gpux serve` with a clock a test moves forward: the seconds in the file named by
GPUX_TEST_SKEW_FILE are added to the time (read again when the file changes).

A real process, so a test can kill it with SIGKILL, that lives through minutes or days
in seconds: what happens to orders closed five minutes ago, or seven days ago.
"""
from __future__ import annotations

import os
import sys
import time

_real = time.time_ns
_path = os.environ["GPUX_TEST_SKEW_FILE"]
_seen = [None, 0]           # the file's mtime, the skew in ns


def _skewed() -> int:
    try:
        mtime = os.stat(_path).st_mtime_ns
    except FileNotFoundError:
        mtime = None
    if mtime != _seen[0]:
        with open(_path) as f:
            _seen[:] = [mtime, int(float(f.read()) * 1e9)]
    return _real() + _seen[1]


time.time_ns = _skewed      # before the server is imported: its default clock is this one

if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())
    from gateway.client.cli import main
    sys.exit(main(sys.argv[1:]))
