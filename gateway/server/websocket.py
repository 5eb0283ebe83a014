"""The websocket and HTTP server: connections in, the request core, frames out.

One event loop (uvloop) and one writer of the engine: each frame is handed to
the core (gateway.core.requests) and run to completion synchronously, so no
lock is needed; connections take turns (gateway.server.inbound), and each
one's frames run in the order it sent them. At
the end of a turn ``seal`` takes the core's outbox (replies, private updates,
market data, each encoded once) and gives it to the durability worker, which
releases it once the journal holds the turn's commands; then each
connection's share goes to its socket in one write.

The timers (gateway.server.timers) are tasks on the same loop; on start the
state is recovered from the data directory (gateway.server.startup).
"""
from __future__ import annotations

import asyncio
import datetime
import logging
import os
import socket
import time
from pathlib import Path

import websockets
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request as HttpRequest

from gateway.config import Config
from gateway.core.effects import CLOSE_BINARY, CLOSE_TOO_MANY, Heartbeat
from gateway.core.limits import TokenBucket
from gateway.core.outbox import CLOSE, CURRENT, LATEST, REPLY, Outbox
from gateway.server import timers
from gateway.server.connection import BatchingConnection, Connection
from gateway.server.durability import Durability
from gateway.server.inbound import Inbound
from gateway.server.startup import Held, Started
from gateway.web.pages import StaticPages

log = logging.getLogger("gpux.gateway")

WS_PATH = "/ws"
OPENING_PRUNE = 10_000         # addresses' buckets of new connections kept before a sweep


class Server:
    """The exchange behind a websocket endpoint.

    Args:
        config: Products, accounts, limits and durability (gateway.config).
        data_dir: The demo accounts, the journal and the snapshots.
        as_of: The listing date of a new data directory; default the config's, else
            today (UTC). A directory keeps the date it was first started with.
        clock: Nanoseconds since the epoch; tests pass their own.
        held: The state a cluster's matcher brought up (gateway.cluster.matcher).

    Raises:
        DataDirBusy: another server is running on ``data_dir``.
        ConfigError: ``as_of`` differs from the data directory's listing date.
        JournalError: the journal is damaged other than at its very end.
    """

    def __init__(self, config: Config, data_dir: Path, *, as_of: datetime.date | None = None,
                 clock=time.time_ns, held: Held | None = None) -> None:
        self.config = config
        self.limits = config.limits
        self.data_dir = data_dir
        started = Started(config, data_dir, as_of, clock, held)
        self.lock, self.journal, self.core = started.lock, started.journal, started.core
        self.accounts, self.account_list = started.accounts, started.account_list
        self.recovered, self.venue, self.feed = started.recovered, started.venue, started.feed
        self.house = self.venue.house
        self.instruments = [m.instrument for m in self.venue.exchange.markets.values()]
        self.connections: set[Connection] = set()
        self._per_address: dict[str | None, int] = {}
        self._opening: dict[str | None, TokenBucket] = {}    # new connections, per address
        self.durability: Durability | None = None
        self._resync: set[Connection] = set()
        self._flushes: list[Connection] = []
        self._seal_scheduled = False
        self._flush_scheduled = False
        self.inbound = Inbound(None, self._handle, self.end_turn)    # its loop: start's
        self._next_conn = 1
        self._ws_server = None
        self._tasks: list[asyncio.Task] = []
        self.pages = StaticPages()
        self.port: int | None = None

    # -- Lifecycle ------------------------------------------------------------------

    async def start(self, host: str | None = None, port: int | None = None,
                    replicate=None) -> None:
        """Listen (port 0 picks a free port; ``self.port`` says which) and start the timers.

        Args:
            replicate: In a cluster, ``(durability) -> Replicator``: every batch must reach
                the replicated stream too before what it caused is released.
        """
        host = host if host is not None else self.config.server.host
        port = port if port is not None else self.config.server.port
        self.loop = self.inbound.loop = asyncio.get_running_loop()
        self.durability = Durability(self.journal, self.loop, self._release, self.data_dir,
                                     self.config.journal, (self.venue, self.feed),
                                     self.recovered.snapshot_seq, self.seal)
        if replicate is not None:
            self.durability.replicator = replicate(self.durability)
            self.seal()         # what the start journaled (funding, ended sessions) goes too
        await self._listen(host, port)
        self._tasks = [self.loop.create_task(timers.tickers(self)),
                       self.loop.create_task(timers.schedule(self))]

    async def _listen(self, host: str, port: int) -> None:
        if self.config.server.transport == "picows":
            from gateway.server.picows_transport import serve_picows
            self._ws_server = await serve_picows(self, host, port)
        else:
            self._ws_server = await websockets.serve(
                self._connection, host, port, create_connection=BatchingConnection,
                process_request=self._route, compression=None,
                max_size=self.limits.max_frame_bytes * 4, max_queue=4, close_timeout=2,
                ping_interval=20, ping_timeout=20)
        self.port = self._ws_server.sockets[0].getsockname()[1]

    def local_url(self, host: str | None = None) -> str:
        """The websocket URL a client on this machine reaches the server at."""
        host = host if host is not None else self.config.server.host
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"ws://{host}:{self.port}{WS_PATH}"

    async def stop(self) -> None:
        """Stop listening, close every connection (code 1001), stop the timers, and leave a
        snapshot of the final state beside the journal."""
        for task in self._tasks:
            task.cancel()
        if self._ws_server is not None:
            if self.config.server.transport == "picows":
                self._ws_server.close()
                writers = [c.writer_task for c in self.connections]
                for conn in list(self.connections):
                    conn.close(1001, "server shutting down")
                if writers:
                    await asyncio.wait(writers, timeout=3)
            else:
                self._ws_server.close(close_connections=True)
                await self._ws_server.wait_closed()
        self.close()

    def close(self) -> None:
        """Commit what is pending, write a snapshot (a clean shutdown's) and close the
        journal."""
        if self.journal.closed:
            return
        try:
            self.inbound.finish()               # what was read runs before the journal ends
            self.seal()
            if self.durability is None:         # never started: nothing to release
                self.journal.close()
            else:
                self.durability.close()
        finally:
            os.close(self.lock)

    def crash(self) -> None:
        """Stop writing the journal at once, dropping what has not been written, as a crash
        would (for tests that restart on the same directory in this process)."""
        if self.durability is not None:
            self.durability.halt()

    # -- Connections ----------------------------------------------------------------

    def _route(self, connection: ServerConnection, request: HttpRequest):
        """A websocket handshake on /ws goes on; a plain GET gets the market page's files."""
        upgrade = any(v.strip().lower() == "websocket"
                      for v in request.headers.get_all("Upgrade"))   # the header may repeat
        if request.path.split("?", 1)[0] == WS_PATH:
            return None         # without an upgrade, websockets answers 426 itself
        if upgrade:
            return connection.respond(404, f"gpux: the websocket endpoint is {WS_PATH}\n")
        return self.pages.respond(connection, request)

    async def _connection(self, ws: ServerConnection) -> None:
        """One websockets connection, from its handshake to its end."""
        conn = self.opened(ws)
        try:
            async for frame in ws:
                if isinstance(frame, bytes):        # a binary message: the protocol is text
                    conn.close(*CLOSE_BINARY)
                    break
                if self.received(conn, frame):      # the inbox is full: read no more
                    room = self.loop.create_future()
                    conn.resume_reading = lambda: room.done() or room.set_result(None)
                    # ...until it has room, or the connection closes (a cluster gateway's
                    # may wait for a leader that never answers).
                    closed = self.loop.create_task(ws.wait_closed())
                    await asyncio.wait((room, closed), return_when=asyncio.FIRST_COMPLETED)
                    closed.cancel()
                if conn.closing is not None:
                    break
        except websockets.ConnectionClosed:
            pass
        finally:
            self.ended(conn)
            if not conn.writer_task.done():
                conn.close(1000, "")
                await asyncio.wait([conn.writer_task], timeout=3)
                conn.writer_task.cancel()

    # -- Any transport: a connection opens, sends frames, ends --------------------

    def opened(self, sock) -> Connection:
        """A connection whose handshake is done: its session, its queue and writer."""
        if self.limits.socket_send_buffer:
            raw = sock.transport.get_extra_info("socket")
            if raw is not None:
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF,
                               self.limits.socket_send_buffer)
        state = self.core.open(self._next_conn, self.loop.time())
        self._next_conn += 1
        conn = Connection(sock, state, self.limits, self._wants_flush, self._wants_snapshot)
        self.connections.add(conn)
        conn.writer_task = self.loop.create_task(conn.writer())
        peer = sock.transport.get_extra_info("peername")
        conn.address = peer[0] if peer else None
        held = self._per_address[conn.address] = self._per_address.get(conn.address, 0) + 1
        if held > self.limits.max_connections_per_address or not self._may_open(conn.address):
            conn.close(*CLOSE_TOO_MANY)
        return conn

    def _may_open(self, address) -> bool:
        """Whether the address's bucket of new connections holds one (a reconnect loop
        costs a handshake and a login each time). Full buckets are forgotten now and then,
        so addresses seen once do not pile up."""
        now = self.loop.time()
        opening = self._opening
        bucket = opening.get(address)
        if bucket is None:
            if len(opening) >= OPENING_PRUNE:
                for key in [k for k, b in opening.items() if b.full(now)]:
                    del opening[key]
            bucket = opening[address] = TokenBucket(self.limits.new_connections_per_address,
                                                    now)
        return bucket.take(now) == 0.0

    def received(self, conn: Connection, frame: str | bytes) -> bool:
        """A frame read: it runs in its turn (gateway.server.inbound), unless the connection
        is closing. True when the transport must stop reading the connection until
        ``conn.resume_reading()``."""
        if conn.closing is not None:
            return False
        return self.inbound.received(conn, frame)

    def _handle(self, conn: Connection, frame: str | bytes) -> None:
        handled = self.core.handle(conn.state, frame, self.loop.time())
        for effect in handled.effects:
            if type(effect) is Heartbeat:
                self._set_heartbeat(conn, effect.interval)

    def ended(self, conn: Connection) -> None:
        """The connection is gone: what it sent runs, then its session ends
        (cancel-on-disconnect's cancels)."""
        if conn not in self.connections:
            return
        self.connections.discard(conn)
        left = self._per_address[conn.address] - 1
        if left:
            self._per_address[conn.address] = left
        else:
            del self._per_address[conn.address]
        if conn.heartbeat_task is not None:
            conn.heartbeat_task.cancel()
        self.inbound.ended(conn, lambda: self.session_ended(conn))

    def session_ended(self, conn: Connection) -> None:
        """After a gone connection's last frame ran: its session ends."""
        self.core.disconnected(conn.state)
        self.end_turn()

    def _set_heartbeat(self, conn: Connection, interval: int) -> None:
        if conn.heartbeat_task is not None:
            conn.heartbeat_task.cancel()
            conn.heartbeat_task = None
        if interval:
            conn.heartbeat_task = self.loop.create_task(timers.heartbeat(self, conn, interval))

    # -- Turns ----------------------------------------------------------------------

    def end_turn(self) -> None:
        """Seal once the loop has run what is ready now (a turn's worth of frames)."""
        if not self._seal_scheduled:
            self._seal_scheduled = True
            self.loop.call_soon(self.seal)

    def seal(self) -> None:
        """End the turn: the core's outbox goes to durability, to be released once the
        journal holds the turn's commands; then connections that got frames write them."""
        self._seal_scheduled = True      # what is queued during the seal goes out with it
        if self._resync:
            resync, self._resync = self._resync, set()
            for conn in resync:
                channels = conn.conflated - conn.resyncing
                if channels:
                    conn.resyncing |= channels      # conflated until their CURRENT goes
                    self._caught_up(conn, channels)
        outbox = self.core.seal()
        self.inbound.sealed()
        self._hand_over(outbox)
        self._flush()
        self._seal_scheduled = False

    def _caught_up(self, conn: Connection, channels: set[str]) -> None:
        """A connection whose streams were conflated has caught up: their current state."""
        self.core.resync(conn.state, channels)

    def _hand_over(self, outbox: Outbox) -> None:
        """A turn's outbox, released once the journal holds its commands."""
        if self.durability is None:
            self.journal.commit()
            self._release(outbox)
        else:
            self.durability.seal(outbox)

    def _release(self, outbox: Outbox) -> None:
        """Hand each connection its frames of a turn whose commands are on disk."""
        for kind, state, payload, channel in outbox.entries:
            conn = state.transport
            if conn is not None:
                deliver(conn, kind, payload, channel)

    def _flush(self) -> None:
        """Each connection that got frames writes them, in one write each."""
        self._flush_scheduled = False
        flushes, self._flushes = self._flushes, []
        for conn in flushes:
            conn.flush()

    def _wants_flush(self, conn: Connection) -> None:
        self._flushes.append(conn)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _wants_snapshot(self, conn: Connection) -> None:
        self._resync.add(conn)
        self.end_turn()


def deliver(conn, kind: int, payload, channel: str | None) -> None:
    """One outbox entry to its connection (a websocket's, or a cluster gateway's)."""
    if kind == LATEST:
        conn.push_latest(channel, payload)
    elif kind == CURRENT:
        conn.current(channel, payload)
    elif kind == CLOSE:
        conn.close(*payload)
    elif kind == REPLY:
        conn.reply(payload)
    else:
        conn.push(payload)
