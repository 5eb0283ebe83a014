"""Recovery speed: journal records replayed per second, and how long a start takes.

    python -m bench.recovery [--commands 1000000 10000000] [--tail 1000]
                             [--from journal snapshot]

For each size it writes a data directory of that many journaled commands
(20 accounts trading five H100 months: limit orders, IOCs, cancels and
replaces by client_order_id, at most 2,000 orders resting, with a timer and a
mark step every 100 commands and the daily fixing and settlement; one command
a second of market time; closed orders leave memory for the archive file after five
minutes, as in service),
with a snapshot ``--tail`` commands before the end. Then it measures, on the
same files:

- ``recover()`` in this process, from the journal alone and from the snapshot;
- a real ``gpux serve`` process from exec to listening, both ways.

The journal is generated through the same Venue.process the server runs,
in the unsafe mode (no fsync: generating is not what is measured).
"""
from __future__ import annotations

import argparse
import datetime
import gc
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import AS_OF, ServerProcess, account_names, gpux_config
from clearing.messages import FixIndex, MarkStep, Settle
from engine.contracts import date_to_ns
from engine.messages import CancelOrder, PlaceOrder, ReplaceOrder, Side, TimeInForce, Timer
from gateway.core.auth import Accounts
from gateway.config import load_config
from gateway.storage.archive import SqliteArchive, archive_path
from gateway.storage.journal import Journal
from gateway.storage.recovery import (
    Replay, build, funding, journal_dir, listing_date, recover, snapshot_dir, state_digest,
)
from gateway.storage.snapshots import write_snapshot

LISTED = datetime.date.fromisoformat(AS_OF)
SYMBOLS = [f"H100-2027-{m:02d}" for m in range(6, 11)]
STEP_NS = 10**9
MAX_RESTING = 2000      # orders the participants keep resting; the oldest is cancelled
NS_PER_DAY = 86_400 * 10**9
SOURCES = {"journal": "journal alone", "snapshot": "recent snapshot"}


def commands(n: int, accounts: list[int], seed: int = 7):
    """``n`` commands of a plausible day-after-day market, as the gateway would stamp them."""
    rng = random.Random(seed)
    ts = date_to_ns(LISTED) + 10**9
    open_ids: list[tuple[int, str]] = []
    day = ts // NS_PER_DAY
    for i in range(n):
        ts += STEP_NS
        if ts // NS_PER_DAY != day:              # the daily fixing and settlement
            day = ts // NS_PER_DAY
            yield FixIndex(ts_ns=ts)
            yield Settle(ts_ns=ts)
            continue
        if i % 100 == 0:
            yield Timer(ts_ns=ts) if i % 200 == 0 else MarkStep(ts_ns=ts)
            continue
        roll = rng.random()
        if len(open_ids) > MAX_RESTING:          # makers cancel what they no longer want
            account, cid = open_ids.pop(0)
            yield CancelOrder(ts_ns=ts, account_id=account, client_order_id=cid)
            continue
        if open_ids and roll < 0.25:
            account, cid = open_ids.pop(rng.randrange(len(open_ids)))
            yield CancelOrder(ts_ns=ts, account_id=account, client_order_id=cid)
            continue
        if open_ids and roll < 0.35:
            account, cid = open_ids[rng.randrange(len(open_ids))]
            yield ReplaceOrder(ts_ns=ts, account_id=account, client_order_id=cid,
                               price=2050 + rng.randrange(101))
            continue
        account = rng.choice(accounts)
        cid = f"o{i}"
        side = rng.choice((Side.BUY, Side.SELL))
        if roll < 0.5:
            yield PlaceOrder(ts_ns=ts, account_id=account, symbol=rng.choice(SYMBOLS),
                             side=side, qty=rng.randint(1, 5), tif=TimeInForce.IOC,
                             price=2100 + (40 if side is Side.BUY else -40),
                             client_order_id=cid)
            continue
        offset = rng.randrange(1, 60)
        yield PlaceOrder(ts_ns=ts, account_id=account, symbol=rng.choice(SYMBOLS), side=side,
                         qty=rng.randint(1, 10), client_order_id=cid,
                         price=2100 - offset if side is Side.BUY else 2100 + offset)
        open_ids.append((account, cid))


def generate(workdir: Path, n: int, tail: int, config) -> tuple[int, float]:
    """Write ``n`` journaled commands (and a snapshot ``tail`` before the end) into
    ``workdir``/data; return (last seq, seconds)."""
    data_dir = workdir / "data"
    listing_date(data_dir, LISTED)
    accounts = list(Accounts(list(config.account), 0).by_id.values())
    venue, feed = build(config, LISTED, accounts)
    venue.attach_archive(SqliteArchive(archive_path(data_dir)))     # as the server's
    journal = Journal(journal_dir(data_dir), 1, fsync=False)
    venue.record = journal.append
    replay = Replay(venue, feed)
    started = time.perf_counter()
    stream = funding(accounts, date_to_ns(LISTED), config.clearing.insurance_fund)
    for k, cmd in enumerate(stream):
        replay.apply(cmd)
    ids = [a.account_id for a in accounts]
    for k, cmd in enumerate(commands(n - len(stream), ids), start=len(stream) + 1):
        replay.apply(cmd)
        if k % 10_000 == 0:
            journal.commit()
        if k == n - tail:
            journal.commit()
            replay.done()
            venue.archive.sync()
            write_snapshot(snapshot_dir(data_dir), k, (venue, feed), state_digest(venue, feed))
    replay.done()
    journal.close()
    return journal.next_seq - 1, time.perf_counter() - started


def measure_recover(data_dir: Path, config, accounts) -> tuple[float, int, int]:
    gc.collect()
    started = time.perf_counter()
    r = recover(data_dir, lambda: build(config, LISTED, accounts))
    return time.perf_counter() - started, r.replayed, r.snapshot_seq


def measure_start(workdir: Path, config_text: str) -> float:
    started = time.perf_counter()
    server = ServerProcess("gpux", config_text=config_text, workdir=workdir,
                           startup_timeout=3600)
    seconds = time.perf_counter() - started
    server.kill()
    return seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--tail", type=int, default=1000,
                        help="commands after the snapshot (a recent snapshot)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--from", dest="sources", nargs="+", choices=SOURCES, default=SOURCES,
                        help="what to recover from (the journal alone takes minutes at 10 M)")
    args = parser.parse_args(argv)
    config_text = gpux_config(account_names("acct", 20))
    config = load_config(config_text)
    accounts = list(Accounts(list(config.account), 0).by_id.values())
    rows = []
    for n in args.commands:
        workdir = Path(tempfile.mkdtemp(prefix=f"gpux-recovery-{n}-"))
        try:
            seq, gen_s = generate(workdir, n, args.tail, config)
            data_dir = workdir / "data"
            size = sum(p.stat().st_size for p in journal_dir(data_dir).iterdir())
            snap = sum(p.stat().st_size for p in snapshot_dir(data_dir).iterdir())
            print(f"# {seq:,} commands written in {gen_s:.1f} s ({seq / gen_s:,.0f}/s); "
                  f"journal {size / 2**20:,.0f} MiB ({size / seq:.1f} bytes per command), "
                  f"snapshot {snap / 2**20:,.1f} MiB", flush=True)
            aside = workdir / "snapshots-aside"
            results = {}
            for label in [SOURCES[s] for s in dict.fromkeys(args.sources)]:
                if label == "journal alone":
                    snapshot_dir(data_dir).rename(aside)
                elif aside.exists():
                    aside.rename(snapshot_dir(data_dir))
                runs = [measure_recover(data_dir, config, accounts) for _ in range(args.repeat)]
                seconds = statistics.median(r[0] for r in runs)
                replayed, from_seq = runs[0][1], runs[0][2]
                starts = [measure_start(workdir, config_text) for _ in range(args.repeat)]
                results[label] = (seconds, replayed, from_seq, statistics.median(starts))
                print(f"# {label}: recover {seconds:.2f} s ({replayed:,} replayed from seq "
                      f"{from_seq:,}), process start {statistics.median(starts):.2f} s",
                      flush=True)
            rows.append((seq, results))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(f"{'commands':>12} {'from':<16} {'replayed':>12} {'recover s':>10} "
          f"{'records/s':>12} {'start s':>8}")
    for seq, results in rows:
        for label, (seconds, replayed, from_seq, start) in results.items():
            rate = f"{replayed / seconds:,.0f}" if replayed > 10_000 else "-"
            print(f"{seq:>12,} {label:<16} {replayed:>12,} {seconds:>10.2f} {rate:>12} "
                  f"{start:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
