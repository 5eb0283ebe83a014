"""The two websocket libraries behind the one adapter: the websockets internals
gateway/server/connection.py relies on, checked on the installed version (a change in
them fails here, by name, before it fails anywhere else), and each library's batched
write on a real socket."""
from __future__ import annotations

import asyncio
import inspect

import pytest
import websockets
from websockets.asyncio.connection import Connection
from websockets.protocol import Protocol, State

from gateway.server.connection import BatchingConnection
from gateway.server.picows_transport import PicowsSocket
from live import Ws, run


def test_the_internals_the_connection_uses_are_there():
    assert issubclass(BatchingConnection, Connection)
    assert inspect.iscoroutinefunction(Connection.drain)
    assert "send_data" in vars(Connection) and callable(Connection.send_data)
    source = inspect.getsource(Connection.__init__)
    for name in ("self.protocol =", "self.paused:"):
        assert name in source, f"websockets {websockets.__version__}: no {name}"
    assert "self.transport =" in inspect.getsource(Connection.connection_made)
    for method in ("pause_writing", "resume_writing"):      # what sets and clears `paused`
        assert "self.paused =" in inspect.getsource(getattr(Connection, method))
    assert callable(Protocol.send_text) and callable(Protocol.data_to_send)
    assert State.OPEN


@pytest.mark.parametrize("transport", ["websockets", "picows"])
def test_frames_written_in_one_go_reach_the_client_in_order(make_server, transport):
    """The server's batching write (several frames, one writelines) on a real socket: what a
    subscriber gets is exactly the frames, in order, each whole."""
    live_server = make_server(f'[server]\ntransport = "{transport}"\n')

    async def scenario():
        ws = await Ws.open(live_server)
        await ws.result("session.test")     # the server has the connection (opened after 101)
        conn = live_server.call(lambda: next(iter(live_server.server.connections)))
        assert isinstance(conn.ws, BatchingConnection if transport == "websockets"
                          else PicowsSocket) and conn.ws.writable
        frames = [f'{{"n": {i}, "pad": "{"x" * (i * 97 % 5000)}"}}'.encode()
                  for i in range(200)]
        assert live_server.call(conn.ws.write_frames, frames) is True
        received = [await ws.recv() for _ in frames]
        assert [r["n"] for r in received] == list(range(200))
        await ws.close()
        await asyncio.sleep(0.1)
        assert live_server.call(conn.ws.write_frames, [b"{}"]) is False     # closed: no write
    run(scenario())
