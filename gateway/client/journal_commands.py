"""`gpux journal verify` and `gpux journal dump`: the operator's view of a data directory.

Both only read: a torn last batch is reported, not cut (the next start cuts it).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import msgspec


def add_commands(sub) -> None:
    journal = sub.add_parser("journal", help="check or print the journal of a data directory")
    commands = journal.add_subparsers(dest="journal_command", required=True)
    verify = commands.add_parser(
        "verify", help="check every record, replay into a scratch state, print the state hash")
    verify.add_argument("--data-dir", default="data", help="data directory (default ./data)")
    verify.add_argument("--config", type=argparse.FileType("r"), default=None,
                        help="the TOML config the server runs with (products, accounts)")
    verify.set_defaults(run=_verify)
    dump = commands.add_parser("dump", help="print the records as JSON lines")
    dump.add_argument("--data-dir", default="data", help="data directory (default ./data)")
    dump.add_argument("--from", dest="first", type=int, default=1, help="first seq to print")
    dump.add_argument("--to", dest="last", type=int, default=None, help="last seq to print")
    dump.set_defaults(run=_dump)


def _verify(args) -> int:
    from engine.contracts import ConfigError
    from gateway.core.auth import Accounts, demo_accounts
    from gateway.config import load_config
    from gateway.storage.journal import JournalError
    from gateway.storage.recovery import LISTING_FILE, build, listing_date, verify
    from gateway.storage.snapshots import SnapshotError

    data_dir = Path(args.data_dir)
    if not (data_dir / LISTING_FILE).exists():
        print(f"gpux: {data_dir} is not a gpux data directory (no {LISTING_FILE})",
              file=sys.stderr)
        return 2
    try:
        config = load_config(args.config.read() if args.config else None)
    except ConfigError as e:
        print(f"gpux: bad config: {e}", file=sys.stderr)
        return 2
    as_of = listing_date(data_dir, None)
    accounts = list(Accounts(list(config.account) or demo_accounts(data_dir), 0).by_id.values())
    try:
        result = verify(data_dir, lambda: build(config, as_of, accounts))
    except (JournalError, SnapshotError) as e:
        print(f"gpux: the journal does not verify: {e}", file=sys.stderr)
        return 1
    replay = result.replay
    span = (f"seq {result.first_seq:,}..{result.last_seq:,}" if result.first_seq is not None
            else "no records")
    print(f"journal: {result.files} file(s), {span}, listed {as_of}")
    print(f"replayed: {replay.count:,} commands from "
          + (f"the snapshot at seq {result.start:,}" if result.start else "the start"))
    for kind, n in sorted(replay.kinds.items(), key=lambda kv: -kv[1]):
        print(f"  {kind:<20} {n:>12,}")
    print(f"failed commands: {replay.failed} (the server halted the instrument after each)")
    torn = result.torn
    print("torn last batch: none" if torn is None else
          f"torn last batch: {torn.path} offset {torn.offset} ({torn.length} bytes); "
          "it was never acknowledged and the next start drops it")
    bad = [seq for seq, ok in result.snapshots.items() if not ok]
    print(f"snapshots checked: {len(result.snapshots)}"
          + (f"; MISMATCH at seq {', '.join(map(str, bad))}" if bad else ", all equal"))
    print(f"state hash: {result.digest.hex()}")
    return 1 if bad else 0


def _dump(args) -> int:
    from gateway.storage.journal import JournalError, Reader
    from gateway.storage.recovery import journal_dir

    encode = msgspec.json.Encoder().encode
    out = sys.stdout.buffer
    try:
        for record in Reader(journal_dir(Path(args.data_dir)), after=args.first - 1):
            if args.last is not None and record.seq > args.last:
                break
            fields = msgspec.to_builtins(record.cmd)
            if "seq" in fields:                  # a Failed marker names the seq that raised
                fields["failed_seq"] = fields.pop("seq")
            out.write(encode({"seq": record.seq, **fields}) + b"\n")
    except JournalError as e:
        out.flush()
        print(f"gpux: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:          # | head
        return 0
    out.flush()
    return 0
