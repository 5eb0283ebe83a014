"""What the cluster's tests share (their fixtures are in conftest.py): every process a
test started is stopped after it, whatever happens in it."""
from __future__ import annotations

import subprocess
import sys

from gateway.cluster.natsd import NatsCluster

RUNNING: list = []           # processes and clusters a test started, stopped after it


def started(process):
    RUNNING.append(process)
    return process


def own_cluster(base) -> NatsCluster:
    return started(NatsCluster(base).start())


def gpux_cli(command: str, tmp_path, config: str, *args: str) -> subprocess.CompletedProcess:
    """`gpux matcher` or `gpux gateway` run to its end on ``config`` (its data directory:
    ``tmp_path``/m or /g)."""
    path = tmp_path / "gpux.toml"
    path.write_text(config)
    return subprocess.run([sys.executable, "-m", "gateway.client.cli", command, "--data-dir",
                           str(tmp_path / command[0]), "--config", str(path), "--port", "0",
                           *args], capture_output=True, text=True, timeout=60)
