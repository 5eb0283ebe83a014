"""The `gpux` command line: `serve` runs the exchange; the other commands are its clients."""
from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path


def _serve(args) -> int:
    import uvloop

    from engine.contracts import ConfigError
    from gateway.config import load_config
    from gateway.server.process import serve

    try:
        config = load_config(args.config.read() if args.config else None)
    except ConfigError as e:
        print(f"gpux: bad config: {e}", file=sys.stderr)
        return 2
    import msgspec
    if args.as_of is not None:
        config = msgspec.structs.replace(
            config, server=msgspec.structs.replace(config.server, as_of=args.as_of))
    if args.durability is not None:
        config = msgspec.structs.replace(
            config, journal=msgspec.structs.replace(config.journal, durability=args.durability))

    def ready(server, demo) -> None:
        if not config.account:
            print(f"gpux: demo accounts (secrets in {server.data_dir / 'demo-accounts.json'}):")
            for a in server.account_list:
                print(f"  {a.account:<10} {a.role:<15} api_key {a.api_key}")
        host = args.host or config.server.host
        r = server.recovered
        if r.seq == 0 and r.dropped_bytes == 0:
            print(f"gpux: a new exchange in {server.data_dir}; durability "
                  f"{config.journal.durability}")
        else:
            print(f"gpux: recovered to seq {r.seq:,} in {r.seconds:.2f} s (snapshot at seq "
                  f"{r.snapshot_seq:,}, {r.replayed:,} commands replayed"
                  + (f", a torn last batch of {r.dropped_bytes} bytes dropped"
                     if r.dropped_bytes else "")
                  + f"); durability {config.journal.durability}")
        print(f"gpux: {len(server.instruments)} instruments listed; "
              f"listening on ws://{host}:{server.port}/ws", flush=True)
        if demo is not None:
            print(f"gpux: demo participants trading (seed {demo.seed}): "
                  + ", ".join(r.account for r in demo.cast)
                  + (f"; missing from the accounts: {', '.join(demo.missing)}"
                     if demo.missing else ""))
        print(f"gpux: the market page is at http://{host}:{server.port}/", flush=True)

    from gateway.storage.journal import JournalError
    from gateway.storage.recovery import DataDirBusy
    try:
        uvloop.run(serve(config, Path(args.data_dir), host=args.host, port=args.port,
                         demo_seed=args.demo_seed if args.demo else None, ready=ready))
    except (ConfigError, DataDirBusy) as e:
        print(f"gpux: {e}", file=sys.stderr)
        return 2
    except JournalError as e:
        print(f"gpux: cannot recover: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"gpux: cannot listen: {e}", file=sys.stderr)
        return 1
    print("gpux: stopped", flush=True)
    return 0


def _demo(args) -> int:
    from engine.contracts import ConfigError
    from gateway.demo.run import run
    try:
        run(args.commands, args.seed, args.as_of, args.config.read() if args.config else None)
    except ConfigError as e:
        print(f"gpux: bad product config: {e}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpux", description="gpux: GPU-hour forward exchange")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the exchange (websocket JSON-RPC server)")
    serve.add_argument("--data-dir", default="data",
                       help="data directory: journal, snapshots, demo accounts (default ./data)")
    serve.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8765; 0 = any)")
    serve.add_argument("--config", type=argparse.FileType("r"), default=None,
                       help="TOML config: [server], [limits], [[account]], [[product]]")
    serve.add_argument("--as-of", type=datetime.date.fromisoformat, default=None,
                       help="listing date YYYY-MM-DD of a new data directory (default: today, "
                       "UTC)")
    serve.add_argument("--durability", choices=("fsync", "unsafe-no-fsync"), default=None,
                       help="fsync each batch before acking it (default), or the unsafe mode "
                       "for benchmarks: acked once written, lost if the machine fails")
    serve.add_argument("--demo", action="store_true",
                       help="also run simulated participants (market makers, takers, an "
                       "operator, a lab, index providers) trading over the websocket")
    serve.add_argument("--demo-seed", type=int, default=7,
                       help="seed of the demo participants and their prices (default 7)")
    serve.set_defaults(run=_serve)

    demo = sub.add_parser("demo", help="run the default market with simulated participants")
    demo.add_argument("--commands", type=int, default=200_000, help="how many commands to send")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--as-of", type=datetime.date.fromisoformat, default=None,
                      help="listing date YYYY-MM-DD (default: today, UTC)")
    demo.add_argument("--config", type=argparse.FileType("r"), default=None,
                      help="product config TOML (default: the embedded one)")
    demo.set_defaults(run=_demo)

    from gateway.client import commands, hedge_commands, journal_commands
    commands.add_commands(sub)
    hedge_commands.add_commands(sub)
    journal_commands.add_commands(sub)

    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
