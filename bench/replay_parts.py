"""Where a replay's time goes: the same journal replayed through less and less of the path.

    python -m bench.replay_parts [--commands 200000] [--repeat 3]

It writes a journal of ``--commands`` commands with bench.recovery's generator,
decodes it once, then times, each on a fresh state (medians of ``--repeat``):

- reading and decoding the journal;
- the engine alone (its commands only, behind a gate that lets every order through);
- ``Venue.process``: the engine with clearing (the pre-trade check, margin kept order
  by order, the ledger), closed orders archived in memory;
- ``Replay.apply``: that, and the projection (order and fill histories, market data);
- ``recover()``: the whole of it from the data directory, the archive on disk.

Each is given in us per journaled command, so the differences between the rows are
what each part adds. A replay of the journal runs the commands through the order path
again, so no replay of it can be faster than the slowest row it must include.
"""
from __future__ import annotations

import argparse
import gc
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import account_names, gpux_config
from bench.recovery import LISTED, generate, measure_recover
from clearing.messages import ClearingCommand
from engine.contracts import list_instruments
from engine.exchange import Exchange
from engine.risk import PermissiveRisk
from gateway.config import load_config
from gateway.core.auth import Accounts
from gateway.storage.journal import Reader
from gateway.storage.recovery import Replay, build, journal_dir, snapshot_dir


def parts(data_dir: Path, config, accounts) -> tuple[dict, int]:
    """(name -> a function that runs one part over the journal in ``data_dir``, timed; how
    many commands the journal holds)."""
    commands = [record.cmd for record in Reader(journal_dir(data_dir))]
    engine_commands = [c for c in commands if not isinstance(c, ClearingCommand)]

    def timed(run) -> float:
        gc.collect()
        started = time.perf_counter()
        run()
        return time.perf_counter() - started

    def each(process, cmds) -> None:         # (the events are dropped, as a replay's are)
        for cmd in cmds:
            process(cmd)

    def read() -> float:
        return timed(lambda: sum(1 for _ in Reader(journal_dir(data_dir))))

    def engine() -> float:
        process = Exchange(list_instruments(config.products, LISTED), PermissiveRisk()).process
        return timed(lambda: each(process, engine_commands))

    def venue() -> float:
        process = build(config, LISTED, accounts)[0].process
        return timed(lambda: each(process, commands))

    def replay() -> float:
        apply = Replay(*build(config, LISTED, accounts)).apply
        return timed(lambda: each(apply, commands))

    def whole() -> float:                    # (a recovery writes the archive: on a copy)
        copy = data_dir.with_name("copy")
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(data_dir, copy)
        return measure_recover(copy, config, accounts)[0]

    return {"read and decode": read, "engine alone (permissive gate)": engine,
            "+ clearing (Venue.process)": venue, "+ projection (Replay.apply)": replay,
            "+ archive on disk (recover)": whole}, len(commands)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    config = load_config(gpux_config(account_names("acct", 20)))
    accounts = list(Accounts(list(config.account), 0).by_id.values())
    workdir = Path(tempfile.mkdtemp(prefix="gpux-replay-parts-"))
    try:
        generate(workdir, args.commands, 0, config)
        shutil.rmtree(snapshot_dir(workdir / "data"), ignore_errors=True)
        runs, count = parts(workdir / "data", config, accounts)
        print(f"{count:,} journaled commands, medians of {args.repeat}")
        print(f"{'part':<32} {'seconds':>8} {'us/command':>11} {'commands/s':>11}")
        for name, run in runs.items():
            seconds = statistics.median(run() for _ in range(args.repeat))
            print(f"{name:<32} {seconds:>8.2f} {seconds / count * 1e6:>11.1f} "
                  f"{count / seconds:>11,.0f}", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
