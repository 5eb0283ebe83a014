"""`make cluster`: the cluster on one machine, to try a failover by hand.

    python -m gateway.cluster.local [--dir cluster] [--port 8765]

Starts three nats-server nodes with JetStream (gateway.cluster.natsd), a
leading `gpux matcher` and a standby, each with its own data directory under
``--dir``, and prints where to connect. The accounts are the demo's, written
once into ``--dir``/gpux.toml (every matcher must know the same ones). A
matcher that exits (kill the leader to see the standby take over) is started
again as the standby on its own directory. Ctrl-C stops everything.
"""
from __future__ import annotations

import argparse
import signal
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


def start_matcher(directory: Path, name: str, port: int, config: Path, urls: list[str],
                  standby: bool) -> subprocess.Popen:
    log = open(directory / f"{name}.log", "ab")
    command = [sys.executable, "-m", "gateway.client.cli", "matcher", "--data-dir",
               str(directory / name), "--port", str(port), "--config", str(config),
               "--nats", ",".join(urls), "--name", name] + (["--standby"] if standby else [])
    try:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default="cluster", help="where everything is kept")
    parser.add_argument("--port", type=int, default=8765,
                        help="the first matcher's port; the second's is the next one")
    args = parser.parse_args(argv)
    directory = Path(args.dir).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    config = config_file(directory)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    nats = NatsCluster(directory / "nats").start()
    ports = {"a": args.port, "b": args.port + 1}
    matchers: dict[str, subprocess.Popen] = {}
    try:
        matchers["a"] = start_matcher(directory, "a", ports["a"], config, nats.urls, False)
        time.sleep(1.0)             # a leads a new exchange before b follows it
        matchers["b"] = start_matcher(directory, "b", ports["b"], config, nats.urls, True)
        print(f"gpux cluster in {directory}: nats {' '.join(nats.urls)}")
        for name, port in ports.items():
            print(f"  matcher {name}: ws://127.0.0.1:{port}/ws (log {directory / name}.log)")
        print(f"The leader listens; the standby listens once it leads. Accounts: {config}. "
              f"Kill the leader (kill -9 <pid>) to see the standby take over. Ctrl-C stops.",
              flush=True)
        while not stopping:
            for name, process in list(matchers.items()):
                if process.poll() is not None:
                    print(f"matcher {name} exited ({process.returncode}); starting it again "
                          f"as the standby", flush=True)
                    matchers[name] = start_matcher(directory, name, ports[name], config,
                                                   nats.urls, True)
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for process in matchers.values():
            process.send_signal(signal.SIGTERM)
        for process in matchers.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        nats.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
