"""Fixtures for the gateway: a real server on 127.0.0.1 in its own thread and event loop;
for the cluster's tests, a JetStream cluster and a new exchange on it."""
from __future__ import annotations

import asyncio

import pytest

from cluster_support import RUNNING
from gateway.cluster.lease import BUCKET
from gateway.cluster.natsd import NatsCluster
from gateway.cluster.stream import STREAM, Stream
from live import LiveServer, stop_and_check_replay


@pytest.fixture
def live_server(tmp_path):
    """Start a server with the embedded default market (listing date 2026-11-25)."""
    server = LiveServer(tmp_path / "data")
    yield server
    stop_and_check_replay(server)


@pytest.fixture
def make_server(tmp_path):
    """Return a function starting a server with a TOML config; all are stopped at the end."""
    started = []

    def make(config_text: str | None = None, name: str = "data", **kw) -> LiveServer:
        server = LiveServer(tmp_path / name, config_text, **kw)
        started.append(server)
        return server

    yield make
    for server in started:
        stop_and_check_replay(server)


@pytest.fixture(autouse=True)
def _stop_what_was_started():
    """Whatever cluster processes a test started (cluster_support.started) stop after it."""
    yield
    while RUNNING:
        RUNNING.pop().stop()


@pytest.fixture(scope="module")
def nats(tmp_path_factory):
    """Three nats-server nodes with JetStream, for a module's tests."""
    cluster = NatsCluster(tmp_path_factory.mktemp("nats")).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def fresh(nats):
    """The module's cluster with no stream and no lease: each test a new exchange."""
    async def clear():
        stream = await Stream.connect(nats.urls)
        await stream.js.delete_stream(STREAM)
        try:
            await stream.js.delete_key_value(BUCKET)
        except Exception:
            pass
        await stream.close()
    asyncio.run(clear())
    return nats
