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
    from gateway.server import serve

    try:
        config = load_config(args.config.read() if args.config else None)
    except ConfigError as e:
        print(f"gpux: bad config: {e}", file=sys.stderr)
        return 2
    if args.as_of is not None:
        import msgspec
        config = msgspec.structs.replace(
            config, server=msgspec.structs.replace(config.server, as_of=args.as_of))

    def ready(server) -> None:
        if not config.account:
            print(f"gpux: demo accounts (secrets in {server.data_dir / 'demo-accounts.json'}):")
            for a in server.account_list:
                print(f"  {a.account:<10} {a.role:<15} api_key {a.api_key}")
        host = args.host or config.server.host
        print(f"gpux: {len(server.instruments)} instruments listed; "
              f"listening on ws://{host}:{server.port}/ws", flush=True)

    try:
        uvloop.run(serve(config, Path(args.data_dir), host=args.host, port=args.port,
                         ready=ready))
    except OSError as e:
        print(f"gpux: cannot listen: {e}", file=sys.stderr)
        return 1
    print("gpux: stopped", flush=True)
    return 0


def _demo(args) -> int:
    from engine.contracts import ConfigError
    from gateway.demo import run
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
                       help="data directory (demo accounts; default ./data)")
    serve.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8765; 0 = any)")
    serve.add_argument("--config", type=argparse.FileType("r"), default=None,
                       help="TOML config: [server], [limits], [[account]], [[product]]")
    serve.add_argument("--as-of", type=datetime.date.fromisoformat, default=None,
                       help="listing date YYYY-MM-DD (default: today, UTC)")
    serve.set_defaults(run=_serve)

    demo = sub.add_parser("demo", help="run the default market with simulated participants")
    demo.add_argument("--commands", type=int, default=200_000, help="how many commands to send")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--as-of", type=datetime.date.fromisoformat, default=None,
                      help="listing date YYYY-MM-DD (default: today, UTC)")
    demo.add_argument("--config", type=argparse.FileType("r"), default=None,
                      help="product config TOML (default: the embedded one)")
    demo.set_defaults(run=_demo)

    from gateway import cli_client
    cli_client.add_commands(sub)

    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
