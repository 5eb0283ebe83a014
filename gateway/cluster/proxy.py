"""The leader's side of the cluster's gateways: their connections as sessions here.

Each connection a gateway hands over (gateway.cluster.wire) becomes a ``Remote``:
to the server it is a connection like a websocket's (its frames take their turns
in gateway.server.inbound, its session runs in the request core, its heartbeat
timer is the server's), but what the outbox releases for it goes to its gateway,
one NATS message per gateway per turn, in order.
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque

import nats

from gateway.cluster.stream import MESSAGE_BYTES
from gateway.cluster.wire import (
    CLOSE_SESSION_LOST, CLOSE_TOO_BIG_FOR_NATS, DEFAULT_MAX_PAYLOAD, END, FRAME,
    GATEWAY_HEARTBEAT_S, GATEWAY_TIMEOUT_S, HEADROOM, OPEN, OVERSIZED, RESYNC, TO_LEADER,
    ToGateway, chunks, decode_to_leader, encode, entry_size, to_gateway,
)
from gateway.core.outbox import CLOSE, CURRENT, LATEST, REPLY, SEND
from gateway.core.requests import Oversized

log = logging.getLogger("gpux.cluster")

# Messages waiting for NATS past this many bytes: the gateway they are for is dropped
# (its sessions end; it sees the gap and closes their connections) rather than the
# leader's memory growing without bound.
OUTGOING_BYTES = 64 << 20


def _nothing() -> None:
    pass


class Remote:
    """A gateway's connection at the leader (what the server asks of a connection)."""

    def __init__(self, peer: "Peer", conn_id: int, state) -> None:
        self.peer, self.conn_id = peer, conn_id
        self.state = state
        state.transport = self
        self.conflated: set[str] = set()      # the gateway conflates; never set here
        self.resyncing: set[str] = set()
        self.heartbeat_task: asyncio.Task | None = None
        self.closing: tuple[int, str] | None = None
        # What gateway.server.inbound keeps on a connection.
        self.inbox: deque = deque()
        self.reading_paused = False
        self.turn = -1
        self.turn_ends = 0.0
        self.resume_reading = _nothing
        self.ended = None

    def push(self, frame: bytes) -> None:
        self.peer.add(SEND, self.conn_id, frame, None)

    def reply(self, frame: bytes) -> None:
        self.peer.add(REPLY, self.conn_id, frame, None)

    def push_latest(self, channel: str, frame: bytes) -> None:
        self.peer.add(LATEST, self.conn_id, frame, channel)

    def current(self, channel: str, frame: bytes) -> None:
        self.peer.add(CURRENT, self.conn_id, frame, channel)    # the gateway ends conflation

    def close(self, code: int, reason: str) -> None:
        if self.closing is None:
            self.closing = (code, reason)
            self.peer.add(CLOSE, self.conn_id, [code, reason], None)


class Peer:
    """One gateway: its connections here, what is to be sent to it, when it was heard."""

    def __init__(self, proxies: "Proxies", gateway: str, now: float) -> None:
        self.proxies = proxies
        self.gateway = gateway
        self.subject = to_gateway(gateway)
        self.conns: dict[int, Remote] = {}
        self.expected = 0                    # its next message's seq
        self.heard = now
        self.sent = 0                        # our last message's seq
        self.sent_at = now
        self.pending: list[tuple] = []
        self.dropped = False                 # its sessions ended: it is sent nothing more

    def add(self, kind: int, conn_id: int, payload, channel: str | None) -> None:
        if self.dropped:
            return
        if not self.pending:
            self.proxies.loop.call_soon(self.proxies.send, self)
        self.pending.append((kind, conn_id, payload, channel))


class Proxies:
    """Serves the gateways' connections on the leader's server until stopped.

    Args:
        server: The leader's server (gateway.server.websocket).
        nc: Its NATS connection.
        epoch: The lead's epoch, in every message (a gateway tells leaders apart by it).
    """

    def __init__(self, server, nc, epoch: int) -> None:
        self.server, self.nc, self.epoch = server, nc, epoch
        self.max_payload = nc.max_payload if nc is not None else DEFAULT_MAX_PAYLOAD
        self.loop = asyncio.get_running_loop()
        self.peers: dict[str, Peer] = {}
        self._outgoing: asyncio.Queue = asyncio.Queue()
        self._queued_bytes = 0
        self._tasks: list[asyncio.Task] = []
        self._sub = None

    async def start(self) -> None:
        self._sub = await self.nc.subscribe(TO_LEADER, cb=self._message)
        self._tasks = [self.loop.create_task(self._sender()),
                       self.loop.create_task(self._sweep())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except nats.errors.Error:
                pass

    # -- From the gateways ------------------------------------------------------

    async def _message(self, msg) -> None:
        try:
            message = decode_to_leader(msg.data)
        except Exception as exc:
            log.error("a message on %s that is not a gateway's (%r): dropped", TO_LEADER, exc)
            return
        try:
            self.received(message)
        except Exception:
            log.exception("gateway %s's message %d failed", message.gateway, message.seq)

    def received(self, message) -> None:
        """A gateway's message: its connections open, send frames, end."""
        now = self.loop.time()
        peer = self.peers.get(message.gateway)
        if peer is None:
            peer = self.peers[message.gateway] = Peer(self, message.gateway, now)
        elif message.seq != peer.expected:
            log.warning("gateway %s: message %d where %d was next; its sessions end",
                        peer.gateway, message.seq, peer.expected)
            self._end_all(peer, close=True)
        peer.heard = now
        peer.expected = message.seq + 1
        for what, conn_id, data in message.entries:
            try:
                self._entry(peer, what, conn_id, data, now)
            except Exception:                    # a bug: the other entries still count
                log.exception("gateway %s's entry %d for connection %d failed", peer.gateway,
                              what, conn_id)
        if message.live is not None:
            self._reconcile(peer, message.live)

    def _entry(self, peer: Peer, what: int, conn_id: int, data, now: float) -> None:
        server = self.server
        remote = peer.conns.get(conn_id)
        if what == FRAME or what == OVERSIZED:
            if remote is None:                   # opened at another leader, or its OPEN lost
                peer.add(CLOSE, conn_id, list(CLOSE_SESSION_LOST), None)
            elif remote.closing is None:
                server.received(remote, data if what == FRAME else Oversized(data))
        elif what == OPEN:
            if remote is not None:
                self._end(remote)
            peer.conns[conn_id] = Remote(peer, conn_id, server.core.open(conn_id, now))
        elif what == END:
            if remote is not None:
                self._end(remote)
        elif what == RESYNC and remote is not None:
            server.core.resync(remote.state, data)
            server.end_turn()

    def _reconcile(self, peer: Peer, live: list[int]) -> None:
        """The gateway's list of its connections here: sessions it no longer has end (an END
        lost), and those it has that are not here are closed."""
        listed = set(live)
        for conn_id in [c for c in peer.conns if c not in listed]:
            self._end(peer.conns[conn_id])
        for conn_id in listed.difference(peer.conns):
            peer.add(CLOSE, conn_id, list(CLOSE_SESSION_LOST), None)

    def _end(self, remote: Remote) -> None:
        """The connection is gone: what it sent still runs, then its session ends."""
        del remote.peer.conns[remote.conn_id]
        remote.closing = remote.closing or (1001, "gone")
        if remote.heartbeat_task is not None:
            remote.heartbeat_task.cancel()
        self.server.inbound.ended(remote, lambda: self.server.session_ended(remote))

    def _end_all(self, peer: Peer, close: bool) -> None:
        for remote in list(peer.conns.values()):
            if close:
                peer.add(CLOSE, remote.conn_id, list(CLOSE_SESSION_LOST), None)
            self._end(remote)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(GATEWAY_HEARTBEAT_S)
            self.sweep(self.loop.time())

    def sweep(self, now: float) -> None:
        """A gateway silent for GATEWAY_TIMEOUT_S is gone, with its connections; one this
        leader has not written to for a heartbeat's time is told it is there (so that it
        sees a lost last message, or this leader's silence)."""
        for peer in list(self.peers.values()):
            if now - peer.heard > GATEWAY_TIMEOUT_S:
                log.warning("gateway %s silent for %.1f s: its %d sessions end", peer.gateway,
                            now - peer.heard, len(peer.conns))
                self._drop(peer)
            elif now - peer.sent_at >= GATEWAY_HEARTBEAT_S and not peer.pending:
                self._publish(peer, [])

    def _drop(self, peer: Peer) -> None:
        self._end_all(peer, close=False)
        peer.dropped = True
        peer.pending.clear()
        del self.peers[peer.gateway]

    # -- To the gateways --------------------------------------------------------

    def send(self, peer: Peer) -> None:
        """What the turn released for a gateway, in messages of at most MESSAGE_BYTES (an
        answer NATS cannot carry closes its connection instead)."""
        pending, peer.pending = peer.pending, []
        most = self.max_payload - HEADROOM
        for i, (kind, conn_id, payload, _) in enumerate(pending):
            if type(payload) is bytes and len(payload) > most:
                log.error("an answer of %d bytes to gateway %s's connection %d is past NATS's "
                          "max_payload (%d): the connection closes", len(payload),
                          peer.gateway, conn_id, self.max_payload)
                pending[i] = (CLOSE, conn_id, list(CLOSE_TOO_BIG_FOR_NATS), None)
        if self._queued_bytes >= OUTGOING_BYTES:
            log.error("%d bytes wait for NATS: gateway %s is dropped, its %d sessions end",
                      self._queued_bytes, peer.gateway, len(peer.conns))
            if self.peers.get(peer.gateway) is peer:
                self._drop(peer)
            return
        for run in chunks(pending, lambda entry: entry_size(entry[2]), MESSAGE_BYTES):
            self._publish(peer, run)

    def _publish(self, peer: Peer, entries: list) -> None:
        peer.sent += 1
        peer.sent_at = self.loop.time()
        data = encode(ToGateway(self.epoch, peer.sent, entries))
        self._queued_bytes += len(data)
        self._outgoing.put_nowait((peer.subject, data))

    async def _sender(self) -> None:
        """Publishes in order (a lost message is a gap the gateway sees)."""
        while True:
            subject, data = await self._outgoing.get()
            try:
                await self.nc.publish(subject, data)
            except nats.errors.Error as exc:
                log.warning("a message to %s was not sent (%r)", subject, exc)
            finally:
                self._queued_bytes -= len(data)

