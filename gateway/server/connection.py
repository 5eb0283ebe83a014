"""One websocket connection's outbound side: its queue, its writer, conflation.

Who the connection is (its account, limits, subscriptions) is the core's
SessionState (``state``); this module only moves frames to the socket.

Nothing the exchange does ever waits on a client. Messages for a client go
into its bounded queue, and at the end of each event-loop turn the server
flushes every queue that got something: all of a connection's frames of the
turn go to its socket in one write (one system call for many frames), with
no task switch per connection. A socket that cannot take more (the client
reads slowly) leaves its frames queued, and a writer task waits for it to
drain. A client that falls behind that way gets its book streams and
tickers conflated past ``queue_soft`` queued messages (the backlog is
skipped and the current state, a snapshot with the current seq, follows once
it catches up; the channel stays skipped until that snapshot is released, so
that no message of the backlog's turns goes out before it), and is disconnected
with a reason past ``queue_hard`` messages or ``queue_hard_bytes``.
"""
from __future__ import annotations

import asyncio
from collections import deque

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from gateway.config import Limits
from gateway.core.effects import CLOSE_SLOW_CONSUMER
from gateway.core.session import SessionState


class BatchingConnection(ServerConnection):
    """A websockets connection that hands all pending frames to the socket in one write.

    The one place that reaches past websockets' public API, so it is pinned
    (pyproject: websockets < 18) and tests/gateway/test_transport.py fails when
    what it uses changes: the Sans-I/O ``protocol`` (its ``send_text`` and
    ``state`` are public API of websockets.protocol), and the asyncio
    connection's ``send_data``, ``paused`` and ``drain``. websockets' own
    ``send`` is a coroutine per message, and writes each frame with its own
    transport.write (a system call each); writelines gives uvloop every frame of
    a batch at once.
    """

    def send_data(self) -> None:
        chunks = self.protocol.data_to_send()
        if chunks and all(chunks):
            self.transport.writelines(chunks)
        else:                       # an empty chunk means half-close: websockets' own path
            for chunk in chunks:
                if chunk:
                    self.transport.writelines([chunk])
                elif self.transport.can_write_eof():
                    self.transport.write_eof()
                else:
                    self.transport.close()

    @property
    def writable(self) -> bool:
        """Whether the socket takes more now (it is not paused by a full buffer)."""
        return not self.paused

    def write_frames(self, frames) -> bool:
        """Queue text frames (already encoded UTF-8 JSON) and write them in one go; False
        when the connection is no longer open (nothing is written)."""
        protocol = self.protocol
        if protocol.state is not State.OPEN:
            return False
        send_text = protocol.send_text
        for frame in frames:
            send_text(frame)
        self.send_data()
        return True

    async def writable_again(self) -> None:
        """Wait for a full socket to drain."""
        if self.paused:
            await self.drain()


def _nothing() -> None:
    pass


class Connection:
    """The outbound side of one connection, and its inbox.

    Args:
        ws: The websocket.
        state: The core's state of this session (its ``transport`` is this connection).
        limits: The server's limits.
        on_pending: Called when the queue gets its first frame since the last flush.
        on_wants_snapshot: Called when a conflated connection has caught up.
    """

    def __init__(self, ws: BatchingConnection, state: SessionState, limits: Limits,
                 on_pending, on_wants_snapshot) -> None:
        self.ws = ws
        self.state = state
        state.transport = self
        self.limits = limits
        self.conflated: set[str] = set()       # channels skipped until the client catches up
        self.resyncing: set[str] = set()       # ...and their current state is on its way
        self.heartbeat_task: asyncio.Task | None = None
        self.writer_task: asyncio.Task | None = None
        self.closing: tuple[int, str] | None = None     # close once the queue is sent
        self.closed = False                             # the writer has finished
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._pending = False                  # the server will flush this queue
        self._wake = asyncio.Event()           # for the writer: drained, or closing
        self._on_pending = on_pending
        self._on_wants_snapshot = on_wants_snapshot
        # Inbound (gateway.server.inbound): frames read and not yet run, and how the
        # transport starts reading again once the inbox has room.
        self.inbox: deque = deque()
        self.reading_paused = False
        self.turn = -1                         # the turn its share below is of
        self.turn_ends = 0.0                   # when its share of that turn is used up
        self.resume_reading = _nothing
        self.ended = None                      # gone with a backlog: what to do after it
        self.address: str | None = None        # the peer's, for the per-address cap

    # -- Outbound ---------------------------------------------------------------

    def _enqueue(self, frame: bytes) -> None:
        self._queue.append(frame)
        self._queued_bytes += len(frame)
        if not self._pending:
            self._pending = True
            self._on_pending(self)

    def push(self, frame: bytes) -> None:
        """Queue a message that may not be dropped; a queue past the hard limit closes."""
        if self.closed:
            return
        if (len(self._queue) >= self.limits.queue_hard
                or self._queued_bytes >= self.limits.queue_hard_bytes):
            self.close(CLOSE_SLOW_CONSUMER, "slow consumer: outbound queue full")
            return
        self._enqueue(frame)

    def current(self, channel: str, frame: bytes) -> None:
        """A channel's current state: its stream is whole again from here."""
        self.conflated.discard(channel)
        self.resyncing.discard(channel)
        self.push(frame)

    def reply(self, frame: bytes) -> None:
        """A request's reply (a cluster gateway counts them; here it is any message)."""
        self.push(frame)

    def push_latest(self, channel: str, frame: bytes) -> None:
        """Queue a message that a fresh one can replace (a book delta, a ticker).

        When the queue is long the channel is conflated instead: its messages are
        skipped, and once the client has caught up the server sends the channel's
        current state (a book snapshot with the current seq, the current ticker).
        """
        if self.closed or channel in self.conflated:
            return
        if len(self._queue) >= self.limits.queue_soft:
            self.conflated.add(channel)
            return
        self._enqueue(frame)

    def queued(self) -> int:
        return len(self._queue)

    def flush(self) -> None:
        """Write what is queued now, unless the socket is full (then the writer waits)."""
        self._pending = False
        if self.closed:
            return
        if not self._queue:
            # A backlog written in one go may have filled the socket again: once it has
            # drained, the snapshots are asked for though nothing more is queued.
            if len(self.conflated) > len(self.resyncing) and self.ws.writable \
                    and self.closing is None:
                self._on_wants_snapshot(self)
            return
        if not self.ws.writable or self.closing is not None:
            self._wake.set()
            return
        self._write()
        if not self.ws.writable:
            self._wake.set()
        elif len(self.conflated) > len(self.resyncing):
            self._on_wants_snapshot(self)

    def _write(self) -> None:
        """Hand every queued frame to the socket in one write."""
        self.ws.write_frames(self._queue)
        self._queue.clear()
        self._queued_bytes = 0

    def close(self, code: int, reason: str) -> None:
        """Close the connection after the frames already queued have been sent."""
        if self.closing is None:
            self.closing = (code, reason)
            self._wake.set()
            if code == CLOSE_SLOW_CONSUMER or not self.ws.writable:
                # The writer may be stuck waiting for a client that does not read.
                self._closer = asyncio.get_running_loop().create_task(
                    self.ws.close(code, reason))

    async def writer(self) -> None:
        """Wait for a full socket to drain and write what queued meanwhile; close when asked."""
        ws = self.ws
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                await ws.writable_again()
                if self.closing is not None:
                    if self._queue:
                        self._write()
                    await ws.close(*self.closing)
                    return
                self.flush()
        except (ConnectionClosed, OSError):
            return
        finally:
            self.closed = True
            self._queue.clear()
