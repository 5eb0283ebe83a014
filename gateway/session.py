"""One websocket session: who it is, its limits, its subscriptions and its outbound queue.

Nothing the exchange does ever waits on a client. Messages for a client go
into its bounded queue and a writer task per connection sends whatever has
queued up as one write (one system call for many frames). A client that
does not read falls behind: past ``queue_soft`` queued messages its book
streams and tickers are conflated (the backlog is skipped and the current
state, a snapshot with the current seq, follows once it catches up); past
``queue_hard`` messages or ``queue_hard_bytes`` it is disconnected with a reason.
"""
from __future__ import annotations

import asyncio
from collections import deque

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from gateway.config import AccountConfig, Limits
from gateway.limits import TokenBucket

# Close codes (RFC 6455 and the 4000-4999 application range).
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008            # flooding after rate_limited
CLOSE_TOO_BIG = 1009           # frame_too_large
CLOSE_SLOW_CONSUMER = 4000
CLOSE_HEARTBEAT_TIMEOUT = 4001

ORDER, REQUEST, SUBSCRIBE = "orders", "requests", "subscriptions"
PLACED_PRUNE = 4096


class BatchingConnection(ServerConnection):
    """A websockets connection that hands all pending frames to the socket in one write.

    websockets writes each frame with its own transport.write (a system call
    each); writelines gives uvloop every frame of a batch at once.
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


class Session:
    """The state of one connection.

    Args:
        ws: The websocket.
        conn_id: A number for logs.
        limits: The server's limits.
        now: The loop clock, seconds.
        on_wants_snapshot: Called when a conflated session has caught up.
    """

    def __init__(self, ws: ServerConnection, conn_id: int, limits: Limits, now: float,
                 on_wants_snapshot) -> None:
        self.ws = ws
        self.conn_id = conn_id
        self.limits = limits
        self.account: AccountConfig | None = None
        self.role = "anonymous"
        self.buckets = self._buckets(now)
        self.channels: set[str] = set()
        self.conflated: set[str] = set()       # channels skipped until the client catches up
        self.strikes = 0                       # rate-limited requests in a row
        self.cancel_on_disconnect = False
        self.placed: set[int] = set()          # order ids this session placed
        self.placed_limit = PLACED_PRUNE       # prune closed ones from `placed` past this
        self.heartbeat_s = 0
        self.heartbeat_task: asyncio.Task | None = None
        self.last_rx = now
        self.closing: tuple[int, str] | None = None     # close once the queue is sent
        self.closed = False                             # the writer has finished
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._wake = asyncio.Event()
        self._on_wants_snapshot = on_wants_snapshot

    @property
    def account_id(self) -> int | None:
        return None if self.account is None else self.account.account_id

    def _buckets(self, now: float) -> dict[str, TokenBucket]:
        spec = self.limits.for_role(self.role)
        return {ORDER: TokenBucket(spec.orders, now), REQUEST: TokenBucket(spec.requests, now),
                SUBSCRIBE: TokenBucket(spec.subscriptions, now)}

    def logged_in(self, account: AccountConfig, now: float) -> None:
        self.account = account
        self.role = account.role
        self.buckets = self._buckets(now)

    # -- Outbound ---------------------------------------------------------------

    def push(self, frame: bytes) -> None:
        """Queue a message that may not be dropped; a queue past the hard limit closes."""
        if self.closed:
            return
        if (len(self._queue) >= self.limits.queue_hard
                or self._queued_bytes >= self.limits.queue_hard_bytes):
            self.close(CLOSE_SLOW_CONSUMER, "slow consumer: outbound queue full")
            return
        self._queue.append(frame)
        self._queued_bytes += len(frame)
        self._wake.set()

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
        self._queue.append(frame)
        self._queued_bytes += len(frame)
        self._wake.set()

    def queued(self) -> int:
        return len(self._queue)

    def close(self, code: int, reason: str) -> None:
        """Close the connection after the frames already queued have been sent."""
        if self.closing is None:
            self.closing = (code, reason)
            self._wake.set()
            if code == CLOSE_SLOW_CONSUMER:
                # The writer may be stuck waiting for a client that does not read.
                self._closer = asyncio.get_running_loop().create_task(
                    self.ws.close(code, reason))

    async def writer(self) -> None:
        """Send queued frames in batches until the connection closes."""
        ws, queue = self.ws, self._queue
        low_water = self.limits.queue_soft // 2
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if queue:
                    batch = list(queue)
                    queue.clear()
                    self._queued_bytes = 0
                    async with ws.send_context():
                        for frame in batch:
                            ws.protocol.send_text(frame)
                if self.closing is not None:
                    await ws.close(*self.closing)
                    return
                if self.conflated and len(queue) <= low_water:
                    self._on_wants_snapshot(self)
        except ConnectionClosed:
            return
        finally:
            self.closed = True
            queue.clear()
