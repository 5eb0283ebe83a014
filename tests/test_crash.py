"""SIGKILL the real server 20 times mid-trading; nothing acknowledged may be lost.

bench/crash.py does the work (and runs 100 cycles or more from the command
line, ``make crash``): real `gpux serve` processes, real websocket traders,
real files, and after every restart the checks its docstring lists.
"""
from __future__ import annotations

import asyncio

from bench.crash import run_cycles

CYCLES = 20


def test_twenty_kills_lose_nothing_acknowledged(tmp_path):
    tally = asyncio.run(run_cycles(CYCLES, seed=20261125, n_traders=3, durability="fsync",
                                   workdir=tmp_path, log=lambda line: None, window=(0.2, 1.2)))
    assert tally.problems == [] and tally.lost == 0
    assert tally.cycles == CYCLES
    # The run did what it is for: trading; restarts from snapshots, with torn commits
    # dropped; the states before the kills compared too; a request in flight resent.
    assert tally.acked > 1000 and tally.orders_checked > tally.acked
    assert tally.fills_checked > 0 and tally.snapshot_starts > 0 and tally.resent > 0
    assert tally.torn == CYCLES // 4 and tally.states_compared > CYCLES
