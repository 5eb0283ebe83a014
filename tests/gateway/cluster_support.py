"""What the cluster's tests share (their fixtures are in conftest.py): every process a
test started is stopped after it, whatever happens in it."""
from __future__ import annotations

from gateway.cluster.natsd import NatsCluster

RUNNING: list = []           # processes and clusters a test started, stopped after it


def started(process):
    RUNNING.append(process)
    return process


def own_cluster(base) -> NatsCluster:
    return started(NatsCluster(base).start())
