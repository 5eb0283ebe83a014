"""`gpux gateway`: a cluster's websockets, page and market data, on any number of hosts.

A gateway follows the replicated stream as a standby does (gateway.cluster.matcher's
Follower: its own directory, journal and snapshots), into a request core of its
own: the market data its replica's feed publishes is the leader's, message for
message, and goes to its own subscribers. A connection is served here until it
logs in (``auth.login``); from then on each of its frames goes to the leading
matcher, which answers it as the embedded server would, and what the leader sends
back goes to the connection (gateway.cluster.wire). What it asked for here before
(heartbeats, cancel-on-disconnect) is asked of the leader first. So the market-data
fan-out is the gateways' for the connections that only read the market (the page,
data consumers, lenders), and a logged-in connection's subscriptions, public ones
included, are the leader's: its replies and the updates they cause keep their
order. (A client that wants both opens two connections, an order-entry session and
a market-data one.)
Subscriptions made before the login stay served here until the leader serves the
same channel (a subscribe after the login) or an unsubscribe ends them.

When the stream gets a new Lead record, the leader changed: the connections it
served are closed (code 1012), and their clients log in again at the new one and
resend by client_order_id. A gateway that dies loses only its connections; the
leader ends their sessions once the gateway has been silent for a few seconds.
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from pathlib import Path

import msgspec
import nats

from gateway.cluster.matcher import Follower, MatcherError, stop_on_signals, unless_stopped
from gateway.cluster.stream import MESSAGE_BYTES, Stream, patiently
from gateway.cluster.wire import (
    CLOSE_SESSION_LOST, END, FRAME, GATEWAY_HEARTBEAT_S, GATEWAY_TIMEOUT_S, HEADROOM, OPEN,
    OVERSIZED, RESYNC, TO_LEADER, ToLeader, chunks, decode_to_gateway, encode, entry_size,
    gateway_id, to_gateway,
)
from gateway.config import Config
from gateway.core.errors import RpcError, RpcReason
from gateway.core.outbox import CLOSE, REPLY, Outbox
from gateway.server import timers
from gateway.server.connection import Connection
from gateway.server.inbound import INBOX_FRAMES
from gateway.server.startup import Held
from gateway.server.websocket import Server, deliver

log = logging.getLogger("gpux.cluster")

CLOSE_NOT_HANDED_OVER = (1011, "the leader refused what this connection asked before its "
                         "login (cancel-on-disconnect, heartbeats): connect again")
# Methods after which a connection is the leader's: they make it an account's session.
TO_THE_LEADER = frozenset({"auth.login"})


class _Method(msgspec.Struct):
    method: str = ""


class _Channels(msgspec.Struct):
    channels: list[str]


class _ChannelsRequest(msgspec.Struct):
    method: str = ""
    params: _Channels | None = None


_method_of = msgspec.json.Decoder(_Method).decode
_channels_of = msgspec.json.Decoder(_ChannelsRequest).decode
_json = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


def _request(method: str, params: dict) -> bytes:
    """A request the gateway makes of the leader for a connection (its answer is kept)."""
    return _encode({"jsonrpc": "2.0", "id": "gpux-gateway", "method": method,
                    "params": params})


def kept(conn):
    """The answer to a request the gateway made of the leader for ``conn`` (not the
    client's): kept here; a refusal closes the connection, whose client would otherwise
    believe it holds what it asked for (cancel-on-disconnect above all)."""
    def answered(reply: bytes) -> None:
        message = _json(reply)
        if "error" in message:
            log.warning("the leader refused what connection %d asked before its login (%s): "
                        "it closes", conn.state.conn_id, message["error"].get("message"))
            conn.close(*CLOSE_NOT_HANDED_OVER)
        return None
    return answered


def leader_asked(frame: str | bytes) -> bool:
    """Whether a frame is a request that makes its connection an account's session (one
    that cannot be read goes to the core here, which says why)."""
    try:
        return _method_of(frame).method in TO_THE_LEADER
    except (msgspec.DecodeError, UnicodeError, RecursionError):
        return False


def _no_commands(cmd):
    """A gateway's state is the stream's: nothing runs a command on it here."""
    log.error("a gateway was asked to run %r: refused", cmd)
    raise RpcError(RpcReason.INTERNAL_ERROR, "internal error")


class EdgeServer(Server):
    """The websocket server of a gateway: its own replica for market data, the leader for
    accounts (see the module doc).

    Args:
        config: The cluster's config (the same products, clearing and accounts).
        follower: The replica, started and caught up; the server takes over its state.
    """

    def __init__(self, config: Config, follower: Follower) -> None:
        super().__init__(config, follower.data_dir, held=Held(
            follower.lock, follower.recovered, follower.journal, False, follows=True))
        self.follower = follower
        self.venue.record = None        # the follower writes the stream's records itself
        self.core.submit = _no_commands
        follower.replay.live(self.core.projection)
        follower.durability.seal_turn = self.seal      # before a snapshot: publish, not drop
        self.upstream: Upstream | None = None
        self._leads = follower.leads

    async def start(self, host: str | None = None, port: int | None = None,
                    replicate=None) -> None:
        host = host if host is not None else self.config.server.host
        port = port if port is not None else self.config.server.port
        self.loop = self.inbound.loop = asyncio.get_running_loop()
        await self._listen(host, port)
        self._tasks = [self.loop.create_task(timers.tickers(self))]

    def close(self) -> None:
        """Run what was read; the follower keeps (and closes) the journal and directory."""
        self.inbound.finish()
        self.seal()

    def _hand_over(self, outbox: Outbox) -> None:
        self._release(outbox)           # what the stream held already: nothing to wait for

    # -- The replica ------------------------------------------------------------

    def applied(self) -> None:
        """A stream message was applied: publish what it changed; a new Lead means the
        leader changed, and the connections it served are closed."""
        if self.follower.recovered.venue is not self.venue:
            raise MatcherError("the gateway's replica had to be rebuilt from the stream "
                               "(its journal was not the stream's): restart it")
        if self.follower.leads != self._leads:
            self._leads = self.follower.leads
            if self.upstream is not None:
                self.upstream.leader_changed(self.follower.epoch)
        self.end_turn()

    # -- Connections ------------------------------------------------------------

    def opened(self, sock) -> Connection:
        conn = super().opened(sock)
        conn.remote = False                # its frames go to the leader
        conn.awaiting = deque()            # per frame sent to the leader and not answered
        conn.upstream_paused = False       # yet: what to do with its reply (or None)
        return conn

    def received(self, conn: Connection, frame) -> bool:
        if conn.closing is not None:
            return False
        full = self.inbound.received(conn, frame)
        if len(conn.awaiting) >= INBOX_FRAMES:    # the leader has a backlog of its: wait
            conn.upstream_paused = True
            return True
        return full

    def _handle(self, conn: Connection, frame) -> None:
        if conn.remote or leader_asked(frame):
            conn.state.last_rx = self.loop.time()      # its heartbeat timer is here too
            if not conn.remote:
                self._hand_over_session(conn)
            on_reply = self._channels_asked(conn, frame) if conn.state.channels else None
            self.upstream.forward(conn, frame, on_reply)
            return
        super()._handle(conn, frame)

    def _hand_over_session(self, conn: Connection) -> None:
        """The connection becomes the leader's: what it asked for here before (heartbeats,
        cancel-on-disconnect) is asked of the leader first, its answers kept here."""
        state = conn.state
        if state.cancel_on_disconnect:
            self.upstream.forward(conn, _request("session.cancel_on_disconnect",
                                                 {"enabled": True}), kept(conn))
        if state.heartbeat_s:
            self._set_heartbeat(conn, 0)           # the leader's timer from now on
            self.upstream.forward(conn, _request("session.heartbeat",
                                                 {"interval": state.heartbeat_s}), kept(conn))

    def _channels_asked(self, conn: Connection, frame):
        """For a connection that subscribed here before its login: what the leader's answer
        to a (un)subscribe changes here. A channel the leader now serves is no longer
        served here (not twice); one unsubscribed ends here too, all or none as the leader
        answers, and the answer names it. None for any other frame."""
        try:
            request = _channels_of(frame)
        except (msgspec.DecodeError, UnicodeError, RecursionError):
            return None
        if request.params is None or request.method not in ("subscribe", "unsubscribe"):
            return None
        named = list(dict.fromkeys(request.params.channels))
        state, subscriptions = conn.state, self.core.subscriptions
        unsubscribe = request.method == "unsubscribe"

        def answered(reply: bytes) -> bytes:
            message = _json(reply)
            result = message.get("result")
            if not isinstance(result, dict) or not isinstance(result.get("channels"), list):
                return reply                             # refused: nothing changes
            there = set(result["channels"])
            here = [c for c in named if c in state.channels and (unsubscribe or c in there)]
            for channel in here:
                subscriptions.drop(state, channel)
            if not unsubscribe:
                return reply
            result["channels"] = [c for c in named if c in there or c in here]
            return _encode(message)
        return answered

    def session_ended(self, conn: Connection) -> None:
        super().session_ended(conn)
        if conn.remote:
            self.upstream.end(conn)

    def _caught_up(self, conn: Connection, channels: set[str]) -> None:
        local = {c for c in channels if c in conn.state.channels}
        if local:
            self.core.resync(conn.state, local)
        if conn.remote and len(local) < len(channels):
            self.upstream.resync(conn, sorted(channels - local))


class Upstream:
    """A gateway's link to the leading matcher (gateway.cluster.wire).

    Args:
        server: The gateway's server.
        nc: Its NATS connection.
        gateway: This gateway's id (gateway.cluster.wire.gateway_id).
    """

    def __init__(self, server: EdgeServer, nc, gateway: str, max_frame_bytes: int) -> None:
        self.server, self.nc, self.gateway = server, nc, gateway
        self.max_frame_bytes = max_frame_bytes
        self.loop = asyncio.get_running_loop()
        self.conns: dict[int, Connection] = {}     # the connections the leader serves
        self.seq = 0
        self.pending: list[tuple] = []
        self.epoch: int | None = None              # the newest lead's
        self.expected = 1                          # its next message's seq
        self.heard = self.loop.time()              # from the leader, last
        self._outgoing: asyncio.Queue = asyncio.Queue()
        self._tasks: list[asyncio.Task] = []
        self._sub = None

    async def start(self) -> None:
        self._sub = await self.nc.subscribe(to_gateway(self.gateway), cb=self._message)
        self._tasks = [self.loop.create_task(self._sender()),
                       self.loop.create_task(self._heartbeat())]

    async def stop(self, timeout: float = 2.0) -> None:
        """Send what is pending (the ENDs of the connections a stop closed: the leader ends
        their sessions now, not once this gateway has been silent), then stop."""
        self._send()
        deadline = self.loop.time() + timeout
        while not self._outgoing.empty() and self.loop.time() < deadline:
            await asyncio.sleep(0.01)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            if self._sub is not None:
                await self._sub.unsubscribe()
            await self.nc.flush(timeout)
        except (nats.errors.Error, asyncio.TimeoutError):
            pass

    # -- To the leader ----------------------------------------------------------

    def forward(self, conn: Connection, frame, on_reply=None) -> None:
        """A frame of ``conn`` to the leader; ``on_reply(reply) -> reply`` when its reply
        comes (the leader answers a connection's frames in order)."""
        conn_id = conn.state.conn_id
        if not conn.remote:
            conn.remote = True
            conn.epoch = self.epoch                 # the lead it was handed to
            self.conns[conn_id] = conn
            self._add(OPEN, conn_id, None)
        conn.awaiting.append(on_reply)
        data = frame.encode() if type(frame) is str else bytes(frame)
        if len(data) > self.max_frame_bytes:        # refused unread: its size will do
            self._add(OVERSIZED, conn_id, len(data))
        else:
            self._add(FRAME, conn_id, data)

    def end(self, conn: Connection) -> None:
        if self.conns.pop(conn.state.conn_id, None) is not None:
            self._add(END, conn.state.conn_id, None)

    def resync(self, conn: Connection, channels: list[str]) -> None:
        self._add(RESYNC, conn.state.conn_id, channels)

    def _add(self, what: int, conn_id: int, data) -> None:
        if not self.pending:
            self.loop.call_soon(self._send)
        self.pending.append((what, conn_id, data))

    def _send(self, live: list[int] | None = None) -> None:
        if not self.pending and live is None:
            return
        pending, self.pending = self.pending, []
        runs = chunks(pending, lambda entry: entry_size(entry[2]), MESSAGE_BYTES) or [[]]
        for i, run in enumerate(runs):
            self.seq += 1
            self._outgoing.put_nowait(encode(ToLeader(
                self.gateway, self.seq, run, live if i == len(runs) - 1 else None)))

    async def _sender(self) -> None:
        while True:
            data = await self._outgoing.get()
            try:
                await self.nc.publish(TO_LEADER, data)
            except nats.errors.Error as exc:
                log.warning("a message to the leader was not sent (%r)", exc)

    async def _heartbeat(self) -> None:
        """Every second: the connections the leader serves (so that it ends the others), and
        whether it is still heard from."""
        while True:
            await asyncio.sleep(GATEWAY_HEARTBEAT_S)
            self._send(sorted(self.conns))
            self.check_leader(self.loop.time())

    def check_leader(self, now: float) -> None:
        """A leader not heard from for GATEWAY_TIMEOUT_S (it sends at least every second) is
        dead or cut off: what it served closes."""
        if now - self.heard > GATEWAY_TIMEOUT_S:
            if self.conns:
                log.warning("the leader has not been heard from for %.1f s: its %d "
                            "connections close", now - self.heard, len(self.conns))
                self.lost_all()
            self.heard = now

    def leader_changed(self, epoch: int) -> None:
        """The replica applied a Lead record (the stream is the authority on who leads):
        what another lead served closes, and only this one's messages count from now on."""
        if epoch != self.epoch:
            self.epoch, self.expected = epoch, 1
        for conn in list(self.conns.values()):
            if conn.epoch != epoch:
                conn.close(*CLOSE_SESSION_LOST)
                _read_again(conn)

    # -- From the leader --------------------------------------------------------

    async def _message(self, msg) -> None:
        try:
            message = decode_to_gateway(msg.data)
        except Exception as exc:
            log.error("a message for gateway %s that is not the leader's (%r): dropped",
                      self.gateway, exc)
            return
        if self.epoch is not None and message.epoch < self.epoch:
            return                                    # a deposed leader's: it leads no more
        if message.epoch != self.epoch:               # a new leader, heard of here first
            self.epoch, self.expected = message.epoch, 1
        if message.seq != self.expected:
            log.warning("message %d of the leader where %d was next: its connections close",
                        message.seq, self.expected)
            self.lost_all()
        self.expected = message.seq + 1
        self.heard = self.loop.time()
        conns = self.conns
        for kind, conn_id, payload, channel in message.entries:
            conn = conns.get(conn_id)
            if conn is not None:
                try:
                    self._deliver(conn, kind, payload, channel)
                except Exception:                 # a bug: the other entries still count
                    log.exception("delivering to connection %d failed", conn_id)

    def _deliver(self, conn: Connection, kind: int, payload, channel) -> None:
        if kind == REPLY and conn.awaiting:
            on_reply = conn.awaiting.popleft()
            if len(conn.awaiting) <= INBOX_FRAMES // 2:
                _read_again(conn)
            if on_reply is not None:
                payload = on_reply(payload)
                if payload is None:                # the gateway's own request's answer
                    return
        deliver(conn, kind, payload, channel)
        if kind == CLOSE:
            _read_again(conn)

    def lost_all(self) -> None:
        """The leader changed (or a message from it was lost): what it served closes."""
        for conn in list(self.conns.values()):
            conn.close(*CLOSE_SESSION_LOST)
            _read_again(conn)


def _read_again(conn: Connection) -> None:
    """Read a connection whose frames wait for the leader again: it has answered enough of
    them, or the connection closes (its reader must see that, and end it)."""
    if conn.upstream_paused:
        conn.upstream_paused = False
        conn.resume_reading()


async def run_gateway(config: Config, data_dir: Path, urls: list[str], *, name: str,
                      host: str | None = None, port: int | None = None, replicas: int = 3,
                      ready=None, wait_s: float = 30.0) -> None:
    """Follow the stream and serve websockets until SIGINT or SIGTERM (see the module doc).

    Raises:
        Unavailable: the JetStream cluster did not answer within ``wait_s``.
        MatcherError: the stream is another config's, or not a journal.
    """
    if not config.account:
        raise MatcherError("a cluster's gateways need the accounts in their config (the "
                           "matchers' own: a replica replays their logins and deposits)")
    stop = stop_on_signals()
    started = await unless_stopped(_replica(config, data_dir, urls, replicas, wait_s), stop)
    if started is None:
        return
    stream, follower = started
    server = upstream = None
    try:
        server = EdgeServer(config, follower)
        await server.start(host, port)
        upstream = server.upstream = Upstream(server, stream.nc, gateway_id(name),
                                              config.limits.max_frame_bytes)
        await upstream.start()
        if ready is not None:
            ready(server)
        # Until a stop; or it raises why it cannot follow (another config, a rebuild).
        await unless_stopped(follower.follow(stream, server.applied), stop)
    finally:
        if server is not None:
            await server.stop()          # the connections' ENDs go to the leader below
        if upstream is not None:
            await upstream.stop()
        follower.close()
        await stream.close()


async def _replica(config, data_dir, urls, replicas, wait_s):
    """Connect, wait for a matcher's first Lead, recover the directory and catch up.

    The replica's journal is not synced: it is a copy of the stream kept for a quick
    restart, and waiting for the disk on each message would hold up the gateway's loop.
    (A directory a power loss damaged is set aside and rebuilt from the stream.)"""
    config = msgspec.structs.replace(config, journal=msgspec.structs.replace(
        config.journal, durability="unsafe-no-fsync"))
    stream = await Stream.connect(urls, replicas, timeout=wait_s)
    follower = Follower(config, data_dir)
    try:
        most = config.limits.max_frame_bytes + HEADROOM
        if stream.nc.max_payload < most:
            raise MatcherError(f"the NATS servers carry messages of at most "
                               f"{stream.nc.max_payload} bytes (max_payload): a request of "
                               f"max_frame_bytes ({config.limits.max_frame_bytes}) would not "
                               f"reach the leader; raise max_payload to at least {most}")
        while await patiently(stream.last, wait_s) == 0:     # no exchange listed yet
            await asyncio.sleep(0.2)
        await follower.start(stream, None)
        await follower.catch_up(stream)
        return stream, follower
    except BaseException:
        follower.close()
        await stream.close()
        raise
