"""Fixtures for the gateway: a real server on 127.0.0.1 in its own thread and event loop."""
from __future__ import annotations

import pytest

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
