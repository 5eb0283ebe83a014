"""The `gpux` command line."""
from __future__ import annotations

import argparse
import datetime
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpux", description="gpux: GPU-hour forward exchange")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the default market with simulated participants")
    demo.add_argument("--commands", type=int, default=200_000, help="how many commands to send")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--as-of", type=datetime.date.fromisoformat, default=None,
                      help="listing date YYYY-MM-DD (default: today, UTC)")
    demo.add_argument("--config", type=argparse.FileType("r"), default=None,
                      help="product config TOML (default: the embedded one)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from engine.contracts import ConfigError
        from gateway.demo import run
        try:
            run(args.commands, args.seed, args.as_of,
                args.config.read() if args.config else None)
        except ConfigError as e:
            print(f"gpux: bad product config: {e}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
