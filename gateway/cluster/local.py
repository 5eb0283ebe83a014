"""`make cluster`: the cluster on one machine, to try a failover by hand.

    python -m gateway.cluster.local [--dir cluster] [--port 8765]

Starts three nats-server nodes with JetStream (gateway.cluster.natsd), two
`gpux gateway` processes (where clients connect: ``--port`` and the next one), a
leading `gpux matcher` and a standby (the two ports after), each with its own
data directory under ``--dir``, and prints where to connect. The accounts are the
demo's, written once into ``--dir``/gpux.toml (every process must know the same
ones). A matcher that exits (kill the leader to see the standby take over) is
started again as the standby on its own directory; a gateway that exits is
started again. Ctrl-C stops everything.
"""
from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from gateway.cluster.natsd import NatsCluster
from gateway.core.auth import demo_accounts


def config_file(directory: Path) -> Path:
    """The cluster's config: the demo accounts (created once, kept) as TOML."""
    path = directory / "gpux.toml"
    if not path.exists():
        lines = []
        for a in demo_accounts(directory):
            lines += ["[[account]]", f'account = "{a.account}"', f'role = "{a.role}"',
                      f'api_key = "{a.api_key}"', f'api_secret = "{a.api_secret}"',
                      f"account_id = {a.account_id}", f'collateral = "{a.collateral}"',
                      f"trusted = {'true' if a.trusted else 'false'}", ""]
        path.write_text("\n".join(lines))
        path.chmod(0o600)
    return path


def start(directory: Path, name: str, port: int, config: Path, urls: list[str],
          role: str) -> subprocess.Popen:
    """A gateway (``role`` "gateway"), the leading matcher ("leader") or a standby."""
    log = open(directory / f"{name}.log", "ab")
    command = [sys.executable, "-m", "gateway.client.cli",
               "gateway" if role == "gateway" else "matcher", "--data-dir",
               str(directory / name), "--port", str(port), "--config", str(config),
               "--nats", ",".join(urls), "--name", name] + (
                   ["--standby"] if role == "standby" else [])
    try:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()


def _wait_listening(process: subprocess.Popen, port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default="cluster", help="where everything is kept")
    parser.add_argument("--port", type=int, default=8765,
                        help="the first gateway's port; the second gateway and the two "
                        "matchers take the next three")
    args = parser.parse_args(argv)
    directory = Path(args.dir).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    config = config_file(directory)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    nats = NatsCluster(directory / "nats").start()
    ports = {"gw1": args.port, "gw2": args.port + 1, "a": args.port + 2, "b": args.port + 3}
    roles = {"gw1": "gateway", "gw2": "gateway", "a": "leader", "b": "standby"}
    running: dict[str, subprocess.Popen] = {}
    try:
        running["a"] = start(directory, "a", ports["a"], config, nats.urls, "leader")
        _wait_listening(running["a"], ports["a"])   # a leads before the others follow it
        for name in ("b", "gw1", "gw2"):
            running[name] = start(directory, name, ports[name], config, nats.urls,
                                  roles[name])
        print(f"gpux cluster in {directory}: nats {' '.join(nats.urls)}")
        for name, port in ports.items():
            what = "gateway" if roles[name] == "gateway" else "matcher"
            print(f"  {what} {name}: ws://127.0.0.1:{port}/ws (log {directory / name}.log)")
        print(f"Connect to a gateway (the market page: http://127.0.0.1:{args.port}/); the "
              f"standby matcher listens once it leads. Accounts: {config}. Kill the leader "
              f"(kill -9 <pid>) to see the standby take over. Ctrl-C stops.", flush=True)
        while not stopping:
            for name, process in list(running.items()):
                if process.poll() is not None:
                    role = "gateway" if roles[name] == "gateway" else "standby"
                    print(f"{name} exited ({process.returncode}); starting it again"
                          + ("" if role == "gateway" else " as the standby"), flush=True)
                    running[name] = start(directory, name, ports[name], config, nats.urls,
                                          role)
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for process in running.values():
            process.send_signal(signal.SIGTERM)
        for process in running.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        nats.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
