"""The `gpux` command line: `serve` runs the exchange; the other commands are its clients."""
from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path


def _config(args):
    """The config the server and matcher commands run with (None: it is bad, said so)."""
    import msgspec

    from engine.contracts import ConfigError
    from gateway.config import load_config
    try:
        config = load_config(args.config.read() if args.config else None)
    except ConfigError as e:
        print(f"gpux: bad config: {e}", file=sys.stderr)
        return None
    if args.as_of is not None:
        config = msgspec.structs.replace(
            config, server=msgspec.structs.replace(config.server, as_of=args.as_of))
    if args.durability is not None:
        config = msgspec.structs.replace(
            config, journal=msgspec.structs.replace(config.journal, durability=args.durability))
    return config


def _started(server, config, host) -> None:
    """What a server says once it listens: how it came up, and where."""
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


def _serve(args) -> int:
    from gateway.server.process import serve

    config = _config(args)
    if config is None:
        return 2

    def ready(server, demo) -> None:
        if not config.account:
            print(f"gpux: demo accounts (secrets in {server.data_dir / 'demo-accounts.json'}):")
            for a in server.account_list:
                print(f"  {a.account:<10} {a.role:<15} api_key {a.api_key}")
        host = args.host or config.server.host
        _started(server, config, host)
        if demo is not None:
            print(f"gpux: demo participants trading (seed {demo.seed}): "
                  + ", ".join(r.account for r in demo.cast)
                  + (f"; missing from the accounts: {', '.join(demo.missing)}"
                     if demo.missing else ""))
        print(f"gpux: the market page is at http://{host}:{server.port}/", flush=True)

    return _run_server(serve(config, Path(args.data_dir), host=args.host, port=args.port,
                             demo_seed=args.demo_seed if args.demo else None, ready=ready))


def _run_server(main, refusals: tuple = ()) -> int:
    """Run a server's coroutine on uvloop until it stops; its exit status, with why it could
    not start said on stderr (``refusals``: more exceptions that mean a bad start, 2)."""
    import uvloop

    from engine.contracts import ConfigError
    from gateway.server import allocator
    from gateway.storage.journal import JournalError
    from gateway.storage.recovery import DataDirBusy
    allocator.keep_large_blocks_mapped()       # it runs for months
    try:
        uvloop.run(main)
    except (ConfigError, DataDirBusy) + refusals as e:
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


def _matcher(args) -> int:
    import socket

    from gateway.cluster.matcher import MatcherError, run_matcher
    from gateway.cluster.stream import StreamDamaged, Unavailable

    config = _config(args)
    if config is None:
        return 2
    name = args.name or f"{socket.gethostname()}:{Path(args.data_dir).resolve()}"
    urls = _nats_urls(args)

    def ready(server) -> None:
        print(f"gpux: {name} leads", flush=True)
        _started(server, config, args.host or config.server.host)

    if args.standby:
        print(f"gpux: {name} follows the stream as a standby", flush=True)
    return _run_server(run_matcher(config, Path(args.data_dir), urls, standby=args.standby,
                                   name=name, host=args.host, port=args.port,
                                   replicas=args.replicas, ready=ready,
                                   wait_s=args.wait_nats),
                       (MatcherError, StreamDamaged, Unavailable))


def _gateway(args) -> int:
    import socket

    from gateway.cluster.edge import run_gateway
    from gateway.cluster.matcher import MatcherError
    from gateway.cluster.stream import StreamDamaged, Unavailable

    config = _config(args)
    if config is None:
        return 2
    name = args.name or socket.gethostname()

    def ready(server) -> None:
        host = args.host or config.server.host
        print(f"gpux: gateway {name} follows the stream at seq "
              f"{server.follower.journal.committed_seq:,}; {len(server.instruments)} "
              f"instruments listed; listening on ws://{host}:{server.port}/ws", flush=True)
        print(f"gpux: the market page is at http://{host}:{server.port}/", flush=True)

    return _run_server(run_gateway(config, Path(args.data_dir), _nats_urls(args), name=name,
                                   host=args.host, port=args.port, replicas=args.replicas,
                                   ready=ready, wait_s=args.wait_nats),
                       (MatcherError, StreamDamaged, Unavailable))


def _nats_urls(args) -> list[str]:
    return [u for part in args.nats for u in part.split(",") if u]


def _cluster_options(parser) -> None:
    """The options `matcher` and `gateway` share: where the JetStream cluster is."""
    parser.add_argument("--nats", action="append", required=True,
                        help="NATS server URL(s) of the JetStream cluster (repeat, or "
                        "comma-separated)")
    parser.add_argument("--replicas", type=int, default=3,
                        help="copies of the stream the cluster keeps (default 3)")
    parser.add_argument("--wait-nats", type=float, default=30.0, metavar="SECONDS",
                        help="how long to wait for the JetStream cluster at the start "
                        "(default 30)")


def _demo(args) -> int:
    from engine.contracts import ConfigError
    from gateway.demo.run import run
    try:
        run(args.commands, args.seed, args.as_of, args.config.read() if args.config else None)
    except ConfigError as e:
        print(f"gpux: bad product config: {e}", file=sys.stderr)
        return 2
    return 0


def _server_options(parser) -> None:
    """The options `serve` and `matcher` share: where the state lives, where to listen, the
    config and durability."""
    parser.add_argument("--data-dir", default="data",
                        help="data directory: journal, snapshots, demo accounts (default ./data)")
    parser.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default 8765; 0 = any)")
    parser.add_argument("--config", type=argparse.FileType("r"), default=None,
                        help="TOML config: [server], [limits], [[account]], [[product]]")
    parser.add_argument("--as-of", type=datetime.date.fromisoformat, default=None,
                        help="listing date YYYY-MM-DD of a new data directory (default: today, "
                        "UTC)")
    parser.add_argument("--durability", choices=("fsync", "unsafe-no-fsync"), default=None,
                        help="fsync each batch before acking it (default), or the unsafe mode "
                        "for benchmarks: acked once written, lost if the machine fails")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpux", description="gpux: GPU-hour forward exchange")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the exchange (websocket JSON-RPC server)")
    _server_options(serve)
    serve.add_argument("--demo", action="store_true",
                       help="also run simulated participants (market makers, takers, an "
                       "operator, a lab, index providers) trading over the websocket")
    serve.add_argument("--demo-seed", type=int, default=7,
                       help="seed of the demo participants and their prices (default 7)")
    serve.set_defaults(run=_serve)

    matcher = sub.add_parser("matcher", help="run the exchange as a cluster's matcher: its "
                             "journal replicated on a NATS JetStream stream")
    _server_options(matcher)
    _cluster_options(matcher)
    matcher.add_argument("--standby", action="store_true",
                         help="follow the leader's stream and take over when its lease "
                         "lapses (default: lead now, or refuse if another matcher leads)")
    matcher.add_argument("--name", default=None,
                         help="this matcher's name in the lease (default host:data-dir)")
    matcher.set_defaults(run=_matcher)

    gateway = sub.add_parser("gateway", help="run a cluster's gateway: websockets and market "
                             "data from its own replica of the stream; accounts' requests "
                             "go to the leading matcher")
    _server_options(gateway)
    _cluster_options(gateway)
    gateway.add_argument("--name", default=None,
                         help="this gateway's name in the leader's logs (default the host's)")
    gateway.set_defaults(run=_gateway)

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
