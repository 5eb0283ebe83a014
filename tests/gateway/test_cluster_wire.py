"""The messages between a cluster's gateways and its leader, each side on its own: the
leader's sessions of a gateway's connections (gateway.cluster.proxy) and a gateway's
link to the leader (gateway.cluster.edge), with the server and NATS stood in for."""
from __future__ import annotations

import asyncio
import types
from collections import deque

from bench.crash import LISTED, SYMBOL, crash_config
from engine.messages import PlaceOrder, Side
from gateway.cluster.edge import Upstream, kept, leader_asked
from gateway.cluster.proxy import OUTGOING_BYTES, Proxies
from gateway.cluster.wire import (
    CLOSE_SESSION_LOST, CLOSE_TOO_BIG_FOR_NATS, END, FRAME, GATEWAY_HEARTBEAT_S,
    GATEWAY_TIMEOUT_S, HEADROOM, OPEN,
    OVERSIZED, RESYNC, ToGateway, ToLeader, decode_to_gateway, decode_to_leader, encode,
)
from gateway.core.requests import Oversized
from gateway.config import Limits, load_config
from gateway.core.auth import Accounts
from gateway.core.outbox import CLOSE, CURRENT, LATEST, REPLY, SEND
from gateway.core.projection import Projection
from gateway.server.connection import Connection
from gateway.server.websocket import deliver
from gateway.storage.recovery import Replay, build, funding

LOST = list(CLOSE_SESSION_LOST)
MAX_FRAME = 1000


class LeaderServer:
    """What Proxies uses of the leader's server, recording what it is asked."""

    def __init__(self) -> None:
        self.frames: list[tuple[int, bytes]] = []
        self.ended: list[int] = []
        self.resynced: list[tuple[int, list]] = []
        self.inbound = types.SimpleNamespace(ended=lambda conn, then: then())
        self.core = types.SimpleNamespace(
            open=lambda conn_id, now: types.SimpleNamespace(conn_id=conn_id, transport=None),
            resync=lambda state, channels: self.resynced.append((state.conn_id, channels)))

    def received(self, remote, frame) -> bool:
        self.frames.append((remote.conn_id, frame))
        return False

    def session_ended(self, remote) -> None:
        self.ended.append(remote.conn_id)

    def end_turn(self) -> None:
        pass


async def sent_to_gateways(proxies: Proxies) -> list[ToGateway]:
    await asyncio.sleep(0)                 # the sends scheduled for the end of the turn
    out = []
    while not proxies._outgoing.empty():
        _, data = proxies._outgoing.get_nowait()
        out.append(decode_to_gateway(data))
    return out


def to_leader(seq: int, entries: list, live=None, gateway: str = "g1") -> ToLeader:
    return decode_to_leader(encode(ToLeader(gateway, seq, entries, live)))


def run(test):
    asyncio.run(test())


def test_a_gateways_connection_is_a_session_at_the_leader():
    async def test():
        server = LeaderServer()
        proxies = Proxies(server, None, epoch=7)
        proxies.received(to_leader(1, [(OPEN, 4, None), (FRAME, 4, b'{"id":1}')]))
        assert server.frames == [(4, b'{"id":1}')]
        remote = proxies.peers["g1"].conns[4]
        remote.reply(b"r1")
        remote.push(b"n1")
        remote.push_latest("book.X", b"d1")
        remote.close(1008, "flooding")
        remote.close(1008, "again")          # one close only
        [message] = await sent_to_gateways(proxies)
        assert (message.epoch, message.seq) == (7, 1)
        assert message.entries == [(REPLY, 4, b"r1", None), (SEND, 4, b"n1", None),
                                   (LATEST, 4, b"d1", "book.X"),
                                   (CLOSE, 4, [1008, "flooding"], None)]
        proxies.received(to_leader(2, [(RESYNC, 4, ["book.X"]), (END, 4, None)]))
        assert server.resynced == [(4, ["book.X"])] and server.ended == [4]
        assert proxies.peers["g1"].conns == {}
    run(test)


def test_a_frame_of_a_connection_the_leader_does_not_know_closes_it():
    """Opened at another leader (or its OPEN lost): the session is not here."""
    async def test():
        server = LeaderServer()
        proxies = Proxies(server, None, epoch=2)
        proxies.received(to_leader(5, [(FRAME, 9, b"{}"), (END, 8, None)]))
        assert server.frames == [] and server.ended == []
        [message] = await sent_to_gateways(proxies)
        assert message.entries == [(CLOSE, 9, LOST, None)]
    run(test)


def test_a_gap_in_a_gateways_messages_ends_its_sessions():
    async def test():
        server = LeaderServer()
        proxies = Proxies(server, None, epoch=1)
        proxies.received(to_leader(1, [(OPEN, 1, None), (OPEN, 2, None)]))
        proxies.received(to_leader(2, []))
        assert server.ended == []
        proxies.received(to_leader(4, [(OPEN, 3, None)]))        # 3 was lost
        assert sorted(server.ended) == [1, 2] and list(proxies.peers["g1"].conns) == [3]
        [message] = await sent_to_gateways(proxies)
        assert sorted(message.entries) == [(CLOSE, 1, LOST, None), (CLOSE, 2, LOST, None)]
    run(test)


def test_a_heartbeat_ends_the_sessions_its_gateway_no_longer_has_and_closes_unknown_ones():
    async def test():
        server = LeaderServer()
        proxies = Proxies(server, None, epoch=1)
        proxies.received(to_leader(1, [(OPEN, 1, None), (OPEN, 2, None)]))
        proxies.received(to_leader(2, [], live=[1, 5]))          # 2's END lost; 5 unknown
        assert server.ended == [2] and list(proxies.peers["g1"].conns) == [1]
        [message] = await sent_to_gateways(proxies)
        assert message.entries == [(CLOSE, 5, LOST, None)]
    run(test)


def test_a_silent_gateway_is_gone_with_its_sessions():
    async def test():
        server = LeaderServer()
        proxies = Proxies(server, None, epoch=1)
        proxies.received(to_leader(1, [(OPEN, 1, None)], gateway="quiet"))
        proxies.received(to_leader(1, [(OPEN, 1, None)], gateway="talks"))
        heard = proxies.peers["quiet"].heard
        proxies.peers["talks"].heard = heard + GATEWAY_TIMEOUT_S
        proxies.sweep(heard + GATEWAY_TIMEOUT_S - 0.1)
        assert server.ended == []
        proxies.sweep(heard + GATEWAY_TIMEOUT_S + 0.1)
        assert server.ended == [1] and list(proxies.peers) == ["talks"]
        # If it was only slow, it is a stranger now: its connections are closed.
        await sent_to_gateways(proxies)               # (heartbeats to both)
        proxies.received(to_leader(2, [(FRAME, 1, b"{}")], gateway="quiet"))
        [message] = await sent_to_gateways(proxies)
        assert message.entries == [(CLOSE, 1, LOST, None)] and message.seq == 1
    run(test)


def test_a_message_that_is_not_a_gateways_is_dropped():
    async def test():
        server = LeaderServer()
        proxies = Proxies(server, None, epoch=1)
        for data in (b"", b"\x93garbage", encode([1, 2])):
            await proxies._message(types.SimpleNamespace(data=data))
        assert proxies.peers == {} and server.frames == []
    run(test)


# -- The gateway's side ------------------------------------------------------------


class Conn:
    """What Upstream and deliver use of a gateway's websocket connection."""

    def __init__(self, conn_id: int) -> None:
        self.state = types.SimpleNamespace(conn_id=conn_id)
        self.remote, self.awaiting, self.upstream_paused = False, deque(), False
        self.got: list = []
        self.conflated: set[str] = set()
        self.resyncing: set[str] = set()
        self.resumed = 0

    def push(self, frame):
        self.got.append(("push", frame))

    def reply(self, frame):
        self.got.append(("reply", frame))

    def push_latest(self, channel, frame):
        self.got.append(("latest", channel, frame))

    def current(self, channel, frame):
        self.conflated.discard(channel)
        self.resyncing.discard(channel)
        self.got.append(("push", frame))

    def close(self, code, reason):
        self.got.append(("close", code))

    def resume_reading(self):
        self.resumed += 1


def sent_to_leader(upstream: Upstream) -> list[ToLeader]:
    out = []
    while not upstream._outgoing.empty():
        out.append(decode_to_leader(upstream._outgoing.get_nowait()))
    return out


async def from_leader(upstream: Upstream, epoch: int, seq: int, entries: list) -> None:
    await upstream._message(types.SimpleNamespace(data=encode(ToGateway(epoch, seq,
                                                                        entries))))


def test_a_gateway_hands_a_connection_to_the_leader_in_order():
    async def test():
        upstream = Upstream(None, None, "g1", MAX_FRAME)
        conn, other = Conn(3), Conn(4)
        upstream.forward(conn, '{"method":"auth.login"}')
        upstream.forward(conn, b'{"method":"order.place"}')
        upstream.resync(conn, ["orders"])
        upstream.end(other)                    # never the leader's: nothing to say
        upstream.end(conn)
        await asyncio.sleep(0)
        [message] = sent_to_leader(upstream)
        assert message.seq == 1 and message.live is None
        assert message.entries == [(OPEN, 3, None), (FRAME, 3, b'{"method":"auth.login"}'),
                                   (FRAME, 3, b'{"method":"order.place"}'),
                                   (RESYNC, 3, ["orders"]), (END, 3, None)]
        assert len(conn.awaiting) == 2 and upstream.conns == {}
        upstream.forward(other, "{}")
        upstream._send(live=sorted(upstream.conns))   # a heartbeat: its connections
        [heartbeat] = sent_to_leader(upstream)
        assert heartbeat.seq == 2 and heartbeat.live == [4]
        upstream._send()                       # nothing pending: nothing sent
        assert sent_to_leader(upstream) == []
    run(test)


def test_the_leaders_answers_reach_their_connections_and_reopen_reading():
    async def test():
        upstream = Upstream(None, None, "g1", MAX_FRAME)
        conn = Conn(3)
        for _ in range(64):
            upstream.forward(conn, "{}")
        conn.upstream_paused = True
        await from_leader(upstream, 7, 1, [(REPLY, 3, b"r", None)] * 31 +
                          [(LATEST, 3, b"d", "book.X"), (CURRENT, 3, b"s", "book.X"),
                           (REPLY, 9, b"not ours", None)])
        assert len(conn.awaiting) == 33 and conn.resumed == 0 and conn.upstream_paused
        await from_leader(upstream, 7, 2, [(REPLY, 3, b"r", None), (SEND, 3, b"n", None)])
        assert len(conn.awaiting) == 32 and conn.resumed == 1 and not conn.upstream_paused
        assert conn.got[31:] == [("latest", "book.X", b"d"), ("push", b"s"), ("reply", b"r"),
                                 ("push", b"n")]
    run(test)


def test_a_gap_in_the_leaders_messages_closes_what_it_served():
    async def test():
        upstream = Upstream(None, None, "g1", MAX_FRAME)
        conn = Conn(3)
        upstream.forward(conn, "{}")
        await from_leader(upstream, 7, 1, [])         # a leader counts from 1
        await from_leader(upstream, 7, 2, [])
        assert conn.got == []
        await from_leader(upstream, 8, 1, [])         # a new leader: its own count
        assert conn.got == []
        await from_leader(upstream, 8, 3, [(SEND, 3, b"after a gap", None)])
        assert conn.got[0] == ("close", 1012)
    run(test)


def test_which_requests_make_a_connection_the_leaders():
    for frame, leaders in (('{"jsonrpc":"2.0","id":1,"method":"auth.login","params":{}}', True),
                           (b'{"method":"session.cancel_on_disconnect"}', False),
                           ('{"method":"market.book","params":{"symbol":"X"}}', False),
                           ('{"method":"order.place"}', False),   # refused here, anonymous
                           ("{not json", False), ("[1]", False), (b"\xff\xfe", False),
                           ('{"method": 5}', False), ("[" * 100_000, False)):
        assert leader_asked(frame) is leaders, frame


def test_a_connection_waiting_for_the_leader_is_read_again_once_it_is_closed():
    """Its reading paused (64 frames unanswered), a close (the leader's, or a leader change)
    must wake its reader, which then sees the close and ends the connection."""
    async def test():
        upstream = Upstream(None, None, "g1", MAX_FRAME)
        first, second = Conn(3), Conn(4)
        for conn in (first, second):
            for _ in range(64):
                upstream.forward(conn, "{}")
            conn.upstream_paused = True
        await from_leader(upstream, 7, 1, [(CLOSE, 3, [1008, "flooding"], None)])
        assert first.got == [("close", 1008)] and first.resumed == 1
        assert second.resumed == 0
        upstream.lost_all()
        assert second.got == [("close", 1012)] and second.resumed == 1
    run(test)


def test_a_frame_past_the_limit_goes_to_the_leader_as_its_size():
    async def test():
        upstream = Upstream(None, None, "g1", MAX_FRAME)
        conn = Conn(3)
        upstream.forward(conn, "x" * MAX_FRAME)
        upstream.forward(conn, "é" * (MAX_FRAME // 2 + 1))        # bytes, not characters
        await asyncio.sleep(0)
        [message] = sent_to_leader(upstream)
        assert message.entries == [(OPEN, 3, None), (FRAME, 3, b"x" * MAX_FRAME),
                                   (OVERSIZED, 3, MAX_FRAME + 2)]
        server = LeaderServer()
        proxies = Proxies(server, None, epoch=1)
        proxies.received(to_leader(1, [(OPEN, 3, None), (OVERSIZED, 3, 5000)]))
        assert server.frames == [(3, Oversized(5000))]
    run(test)


def test_an_answer_nats_cannot_carry_closes_its_connection_only():
    async def test():
        server = LeaderServer()
        proxies = Proxies(server, types.SimpleNamespace(max_payload=HEADROOM + 100), epoch=1)
        proxies.received(to_leader(1, [(OPEN, 1, None), (OPEN, 2, None)]))
        big, fits = proxies.peers["g1"].conns[1], proxies.peers["g1"].conns[2]
        big.reply(b"x" * 101)
        fits.reply(b"x" * 100)
        [message] = await sent_to_gateways(proxies)
        assert message.entries == [(CLOSE, 1, list(CLOSE_TOO_BIG_FOR_NATS), None),
                                   (REPLY, 2, b"x" * 100, None)]
    run(test)


def test_a_deposed_leaders_messages_are_dropped_and_a_new_one_starts_at_one():
    async def test():
        upstream = Upstream(None, None, "g1", MAX_FRAME)
        conn = Conn(3)
        upstream.forward(conn, "{}")
        await from_leader(upstream, 7, 1, [])
        upstream.leader_changed(8)                 # the replica applied epoch 8's Lead
        assert conn.got == [("close", 1012)]
        conn.got.clear()
        late = Conn(4)
        upstream.forward(late, "{}")
        await from_leader(upstream, 7, 2, [(CLOSE, 4, LOST, None)])    # epoch 7: deposed
        assert late.got == []
        await from_leader(upstream, 8, 1, [(REPLY, 4, b"r", None)])
        assert late.got == [("reply", b"r")]
        # A new leader whose first message was lost: a gap.
        await from_leader(upstream, 9, 2, [])
        assert late.got[-1] == ("close", 1012)
    run(test)


def test_a_silent_leader_closes_what_it_served():
    """No message (not even its heartbeat) for GATEWAY_TIMEOUT_S: it is dead or cut off."""
    async def test():
        upstream = Upstream(None, None, "g1", MAX_FRAME)
        conn = Conn(3)
        upstream.forward(conn, "{}")
        heard = upstream.heard
        upstream.check_leader(heard + GATEWAY_TIMEOUT_S - 0.1)
        assert conn.got == []
        upstream.check_leader(heard + GATEWAY_TIMEOUT_S + 0.1)
        assert conn.got == [("close", 1012)]
    run(test)


def test_the_leader_says_it_is_there_to_a_gateway_it_has_not_written_to():
    async def test():
        server = LeaderServer()
        proxies = Proxies(server, None, epoch=3)
        proxies.received(to_leader(1, [(OPEN, 1, None)]))
        now = proxies.loop.time()
        proxies.sweep(now)
        assert await sent_to_gateways(proxies) == []          # it has just heard of it
        proxies.peers["g1"].add(SEND, 1, b"n", None)
        await asyncio.sleep(0)
        proxies.sweep(now + GATEWAY_HEARTBEAT_S / 2)
        [message] = await sent_to_gateways(proxies)
        assert message.entries == [(SEND, 1, b"n", None)]
        proxies.sweep(proxies.loop.time() + GATEWAY_HEARTBEAT_S + 0.01)
        [beat] = await sent_to_gateways(proxies)
        assert (beat.epoch, beat.seq, beat.entries) == (3, 2, [])
    run(test)


def test_one_entry_that_fails_does_not_drop_the_others():
    async def test():
        server = LeaderServer()
        proxies = Proxies(server, None, epoch=1)

        def fails(state, channels):
            raise RuntimeError("a bug")
        server.core.resync = fails
        proxies.received(to_leader(1, [(OPEN, 1, None), (RESYNC, 1, ["x"]),
                                       (FRAME, 1, b"after")]))
        assert server.frames == [(1, b"after")]
        upstream = Upstream(None, None, "g1", MAX_FRAME)
        broken, fine = Conn(3), Conn(4)
        broken.push = None                        # delivering to it raises
        for conn in (broken, fine):
            upstream.forward(conn, "{}")
        await from_leader(upstream, 1, 1, [(SEND, 3, b"x", None), (SEND, 4, b"y", None)])
        assert fine.got == [("push", b"y")]
    run(test)


def test_a_leader_whose_messages_nats_cannot_take_ends_that_gateways_sessions():
    async def test():
        server = LeaderServer()
        proxies = Proxies(server, None, epoch=1)
        proxies.received(to_leader(1, [(OPEN, 1, None)]))
        proxies._queued_bytes = OUTGOING_BYTES            # nothing sent for a while
        proxies.peers["g1"].add(SEND, 1, b"n", None)
        await asyncio.sleep(0)
        assert server.ended == [1] and proxies.peers == {}
        assert proxies._outgoing.empty()
    run(test)


def test_a_gateways_replica_publishes_at_its_seal_what_it_applied_before():
    """The feed holds what has been published: a snapshot a subscriber gets between a
    replayed command and the seal that publishes its delta must line up with that delta
    (the replica moved the feed at once, so the first delta after such a snapshot had a
    prev_seq behind it: a gap)."""
    names = ["crash-001"]
    config = load_config(crash_config(names, "fsync"))
    accounts = list(Accounts(list(config.account), 0).by_id.values())
    venue, feed = build(config, LISTED, accounts)
    replay = Replay(venue, feed)
    for deposit in funding(accounts, 1, 0):
        replay.apply(deposit)
    live = Projection(venue, feed)
    replay.live(live)
    book = feed.symbols[SYMBOL].book
    before = book.seq
    replay.apply(PlaceOrder(ts_ns=2, account_id=accounts[0].account_id, symbol=SYMBOL,
                            side=Side.BUY, qty=1, price=2100))
    assert book.seq == before                   # not published yet: the seal does it
    live.flush()
    assert book.seq == before + 1
    [(channel, delta)] = feed.seal({f"book.{SYMBOL}": {object()}})
    assert (delta["prev_seq"], delta["seq"]) == (before, before + 1)


def test_a_snapshot_the_leader_sends_a_conflated_connection_reaches_it_as_one():
    """Through the real Remote: the gateway must see a CURRENT (it ends the conflation)."""
    async def test():
        server = LeaderServer()
        proxies = Proxies(server, None, epoch=1)
        proxies.received(to_leader(1, [(OPEN, 3, None)]))
        deliver(proxies.peers["g1"].conns[3], CURRENT, b"S", "book.X")
        [message] = await sent_to_gateways(proxies)
        assert message.entries == [(CURRENT, 3, b"S", "book.X")]
        upstream = Upstream(None, None, "g1", MAX_FRAME)
        conn = Conn(3)
        upstream.forward(conn, "{}")
        conn.conflated, conn.resyncing = {"book.X"}, {"book.X"}
        await upstream._message(types.SimpleNamespace(data=encode(message)))
        assert conn.conflated == set() and conn.resyncing == set()
    run(test)


def test_a_leader_change_closes_only_what_an_older_leader_served():
    async def test():
        upstream = Upstream(None, None, "g1", MAX_FRAME)
        old = Conn(3)
        upstream.forward(old, "{}")                 # under no known lead yet
        await from_leader(upstream, 8, 1, [])       # the new leader, before its Lead applies
        new = Conn(4)
        upstream.forward(new, "{}")
        upstream.leader_changed(8)
        assert old.got == [("close", 1012)] and new.got == []
        # The stream is the authority: a lease bucket made anew counts epochs from 1 again.
        upstream.leader_changed(1)
        assert new.got == [("close", 1012)]
        await from_leader(upstream, 1, 1, [(REPLY, 5, b"r", None)])
        assert upstream.epoch == 1 and upstream.expected == 2
    run(test)


def test_a_dropped_gateways_old_sessions_send_it_nothing():
    async def test():
        server = LeaderServer()
        proxies = Proxies(server, None, epoch=1)
        proxies.received(to_leader(1, [(OPEN, 3, None)]))
        remote = proxies.peers["g1"].conns[3]
        proxies.sweep(proxies.loop.time() + GATEWAY_TIMEOUT_S + 1)
        await sent_to_gateways(proxies)
        remote.reply(b"released after the drop")       # its outbox waited for the disk
        proxies.received(to_leader(7, [(OPEN, 5, None)]))
        proxies.peers["g1"].conns[5].reply(b"r")
        [message] = await sent_to_gateways(proxies)
        assert (message.seq, message.entries) == (1, [(REPLY, 5, b"r", None)])
    run(test)


def test_a_conflated_connection_with_nothing_queued_asks_for_its_snapshot():
    """Its backlog went out in one write that filled the socket again: once it drains, the
    snapshot is asked for though nothing more is queued (every channel being conflated)."""
    asked = []
    ws = types.SimpleNamespace(writable=True)
    conn = Connection(ws, types.SimpleNamespace(transport=None), Limits(), lambda c: None,
                      asked.append)
    conn.conflated = {"book.X"}
    conn.flush()
    assert asked == [conn]
    conn.resyncing = {"book.X"}                    # asked once, not again
    conn.flush()
    assert asked == [conn]


def test_a_refusal_of_what_a_connection_asked_before_its_login_closes_it():
    """Its cancel-on-disconnect (say) re-asked of the leader at the login and refused: the
    client must not go on believing its orders are guarded."""
    conn = Conn(3)
    assert kept(conn)(b'{"jsonrpc":"2.0","id":"gpux-gateway","result":{"enabled":true}}') \
        is None and conn.got == []
    assert kept(conn)(b'{"jsonrpc":"2.0","id":"gpux-gateway","error":{"code":429,'
                      b'"message":"too many requests"}}') is None
    assert conn.got == [("close", 1011)]
