"""Fixtures for the gateway: a real server on 127.0.0.1 in its own thread and event loop."""
from __future__ import annotations

import pytest

from gateway.storage.recovery import build, canonical_state, state_digest, verify
from live import AS_OF, LiveServer


def stop_and_check_replay(server: LiveServer) -> None:
    """Stop the server; then its journal, replayed alone, must give the state it ended in
    (every command journaled, each decoding to what ran)."""
    if not server.loop.is_running():         # crashed: its test checked what it needed
        return
    server.stop()
    live = server.server
    verified = verify(server.data_dir, lambda: build(live.config, AS_OF,
                                                     live.accounts.by_id.values()))
    assert verified.torn is None
    assert verified.digest == state_digest(live.venue, live.feed), first_difference(
        (verified.replay.venue, verified.replay.feed), (live.venue, live.feed))
    assert all(verified.snapshots.values()), verified.snapshots


def first_difference(a, b) -> str:
    """Where two (venue, feed) states first differ, for a failing digest comparison."""
    def walk(x, y, path):
        if isinstance(x, (list, tuple)) and type(x) is type(y) and len(x) == len(y):
            for i, (p, q) in enumerate(zip(x, y)):
                found = walk(p, q, path + [p if isinstance(p, str) else i])
                if found:
                    return found
            return None
        return None if x == y else f"at {path}: {x!r:.300} != {y!r:.300}"
    return walk(canonical_state(*a), canonical_state(*b), []) or "engine state"


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
