"""gateway.client.sdk: local books, order entry, resyncs and reconnects, against a live server."""
from __future__ import annotations

import asyncio
import json
import socket
import threading
import zlib

import pytest

import live
from gateway.client.sdk import (
    BAD_SNAPSHOT, CHECKSUM_MISMATCH, GAP, Client, ClientError, ConnectError, ConnectionLost,
    LocalBook, LoginError, backoff, book_checksum,
)
from gateway.core.methods import METHODS
from gateway.core.effects import HEARTBEAT
from gateway.server.websocket import Server
from live import SYMBOL, TIMEOUT, run

OTHER = "H100-2027-04"


def client_for(server: live.LiveServer, name: str | None = None, **kw) -> Client:
    """A client of ``server`` logged in as ``name`` (anonymous if None), reconnecting quickly."""
    keys = {}
    if name is not None:
        account = server.account(name)
        keys = dict(api_key=account.api_key, api_secret=account.api_secret)
    return Client(server.url, backoff_initial_s=0.01, backoff_max_s=0.1, **keys, **kw)


def session_of(server: live.LiveServer, account: str | None = None, channel: str | None = None):
    """The server's Connection logged in as ``account`` or subscribed to ``channel`` (exactly
    one); its ``state`` is the core's SessionState."""
    def find():
        found = [c for c in server.server.connections
                 if (account is None or (c.state.account and c.state.account.account == account))
                 and (channel is None or channel in c.state.channels)]
        assert len(found) == 1, found
        return found[0]
    return server.call(find)


def push(server: live.LiveServer, session, message: dict) -> None:
    """Send ``message`` to one client from the server, as if the server had written it."""
    server.call(session.push, json.dumps(message).encode())


def notification(channel: str, data: dict) -> dict:
    return {"jsonrpc": "2.0", "method": "subscription",
            "params": {"channel": channel, "data": data}}


def wrap_method(monkeypatch, name: str, after) -> list:
    """Run ``after(session, params, result)`` on the server after each call of method ``name``;
    return the list of params it was called with."""
    calls = []
    method = METHODS[name]

    def handler(server, session, params):
        result = method.handler(server, session, params)
        calls.append(params)
        after(session, params, result)
        return result
    monkeypatch.setitem(METHODS, name, method._replace(handler=handler))
    return calls


def drop_once():
    """An ``after`` that cuts the connection abruptly once the server has handled the first
    request, before its answer goes out."""
    dropped = []

    def after(session, params, result) -> None:
        if not dropped:
            dropped.append(session)
            session.transport.ws.transport.abort()
    return after


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- LocalBook ------------------------------------------------------------------------------

def snapshot(seq: int, bids: list, asks: list) -> dict:
    return {"type": "snapshot", "seq": seq, "bids": bids, "asks": asks,
            "checksum": book_checksum(bids, asks)}


def delta(book_after: tuple[list, list], seq: int, prev_seq: int, bids: list, asks: list) -> dict:
    return {"type": "delta", "seq": seq, "prev_seq": prev_seq, "bids": bids, "asks": asks,
            "checksum": book_checksum(*book_after)}


class TestLocalBook:
    """PROTOCOL.md "Market data": snapshot, then deltas; qty 0 removes; checksum after each."""

    def test_checksum_is_the_protocols_example(self):
        """The checksum is the CRC32 of PROTOCOL.md's text form, over the top 10 levels only."""
        assert book_checksum([["2.145", 10, 1], ["2.144", 3, 2]], [["2.150", 7, 1]]) == \
            zlib.crc32(b"2.145:10|2.144:3#2.150:7")
        assert book_checksum([], []) == zlib.crc32(b"#")
        bids = [[f"2.{i:03d}", 1, 1] for i in range(120, 100, -1)]
        assert book_checksum(bids, []) == book_checksum(bids[:10], [])

    def test_deltas_add_change_and_remove_levels_best_first(self):
        """Deltas update levels in price order (not string order), and qty 0 removes one."""
        book = LocalBook(SYMBOL)
        assert book.apply(snapshot(7, [["2.100", 5, 1]], [["2.200", 4, 1]])) is None
        assert book.valid and book.seq == 7
        bids = [["10.000", 1, 1], ["2.100", 9, 2], ["2.050", 3, 1]]   # 10 > 2.1 as numbers
        asks = [["2.150", 2, 1]]
        removed = ["2.200", 0, 0]
        assert book.apply(delta((bids, asks), 8, 7, bids, asks + [removed])) is None
        assert (book.valid, book.seq, book.bids, book.asks) == (True, 8, bids, asks)
        assert book.best_bid() == ["10.000", 1, 1] and book.best_ask() == ["2.150", 2, 1]

    def test_a_gap_invalidates_until_the_next_snapshot(self):
        """A delta whose prev_seq is not the last seq is a gap; deltas then wait for a snapshot."""
        book = LocalBook(SYMBOL)
        book.apply(snapshot(3, [["2.100", 5, 1]], []))
        assert book.apply(delta(([], []), 6, 5, [["2.100", 0, 0]], [])) == GAP
        assert not book.valid and book.bids == [["2.100", 5, 1]]
        assert book.apply(delta(([], []), 7, 6, [["2.100", 0, 0]], [])) is None
        assert book.seq == 3 and not book.valid
        assert book.apply(snapshot(7, [], [["2.300", 1, 1]])) is None
        assert (book.valid, book.seq, book.bids, book.asks) == (True, 7, [], [["2.300", 1, 1]])

    def test_a_checksum_mismatch_invalidates(self):
        """A delta that leaves the book different from the server's fails its checksum."""
        book = LocalBook(SYMBOL)
        book.apply(snapshot(1, [["2.100", 5, 1]], []))
        message = delta(([["2.100", 6, 2]], []), 2, 1, [["2.100", 6, 2]], [])
        message["bids"] = [["2.100", 7, 2]]          # garbled: the server said 6
        assert book.apply(message) == CHECKSUM_MISMATCH and not book.valid

    def test_a_snapshot_that_fails_its_checksum_is_not_valid(self):
        """A snapshot is only trusted when its checksum matches."""
        book = LocalBook(SYMBOL)
        message = snapshot(1, [["2.100", 5, 1]], [])
        message["checksum"] += 1
        assert book.apply(message) == BAD_SNAPSHOT and not book.valid


def test_backoff_doubles_up_to_the_cap_with_jitter_below_each_step():
    """Reconnect delays double from the initial one to the cap; jitter takes off at most half."""
    high = backoff(0.25, 2.0, rng=lambda: 1.0)
    assert [next(high) for _ in range(6)] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    low = backoff(0.25, 2.0, rng=lambda: 0.0)
    assert [next(low) for _ in range(5)] == [0.125, 0.25, 0.5, 1.0, 1.0]


# -- Sessions and orders --------------------------------------------------------------------

def test_login_place_and_fills(live_server):
    """Two logged-in clients trade: results, the maker's fills stream and a resend agree."""
    async def scenario():
        async with client_for(live_server, "trader-1") as seller, \
                client_for(live_server, "trader-2") as buyer:
            assert seller.account["account"] == "trader-1" and seller.account["role"] == "trader"
            fills = seller.stream("fills")
            await seller.subscribe("fills")
            sold = await seller.place(SYMBOL, "sell", 10, "2.15")
            assert (sold["status"], sold["price"]) == ("open", "2.150")
            assert sold["client_order_id"].startswith("gpux-")      # generated
            bought = await buyer.place(SYMBOL, "buy", 4, "2.2", tif="ioc")
            assert (bought["status"], bought["filled_qty"]) == ("filled", 4)
            channel, data = await asyncio.wait_for(fills.__anext__(), TIMEOUT)
            assert channel == "fills"
            assert [(f["order_id"], f["price"], f["qty"], f["liquidity"]) for f in data] == \
                [(sold["order_id"], "2.150", 4, "maker")]
            again = await seller.place(SYMBOL, "sell", 10, "2.150",
                                       client_order_id=sold["client_order_id"])
            assert again["duplicate"] is True and again["order_id"] == sold["order_id"]
            assert [o["remaining_qty"] for o in await seller.orders()] == [6]
    run(scenario())


def test_an_error_response_raises_a_typed_client_error(live_server):
    """A rejected order raises ClientError with the server's code, reason and field."""
    async def scenario():
        async with client_for(live_server, "trader-1") as client:
            with pytest.raises(ClientError) as caught:
                await client.place(SYMBOL, "buy", 1, "9.000")
            error = caught.value
            assert (error.code, error.reason, error.field, error.method) == \
                (301, "price_out_of_band", "price", "order.place")
            with pytest.raises(TypeError):
                await client.place(SYMBOL, "buy", 1, 2.1)
            assert await client.orders() == []
    run(scenario())


def test_replace_cancel_and_get_order(live_server):
    """The order helpers replace, cancel and read an order by client_order_id."""
    async def scenario():
        async with client_for(live_server, "trader-1") as client:
            await client.place(SYMBOL, "buy", 3, "2.000", client_order_id="r-1")
            replaced = await client.replace(client_order_id="r-1", price="2.01", qty=5)
            assert (replaced["price"], replaced["qty"]) == ("2.010", 5)
            cancelled = await client.cancel(client_order_id="r-1")
            assert cancelled["status"] == "cancelled"
            assert (await client.get_order(client_order_id="r-1"))["status"] == "cancelled"
            with pytest.raises(ClientError) as caught:      # not resent: the error stands
                await client.cancel(client_order_id="r-1")
            assert caught.value.reason == "order_closed"
            await client.place(SYMBOL, "sell", 1, "2.200")
            assert await client.cancel_all(SYMBOL) == 1
    run(scenario())


def test_unreachable_server_raises_connect_error():
    """Connecting to a port nobody listens on raises ConnectError caused by the refusal."""
    async def scenario():
        url = f"ws://127.0.0.1:{free_port()}/ws"
        with pytest.raises(ConnectError) as caught:
            await Client(url).connect()
        assert caught.value.reason == "unreachable"
        assert isinstance(caught.value.__cause__, ConnectionRefusedError)
        assert f"cannot connect to {url}" in str(caught.value)
    run(scenario())


def test_bad_credentials_raise_login_error(live_server):
    """A wrong secret is refused at connect with the server's reason, and nothing stays open."""
    async def scenario():
        client = Client(live_server.url, api_key=live_server.account("trader-1").api_key,
                        api_secret="0" * 64)
        with pytest.raises(LoginError) as caught:
            await client.connect()
        assert (caught.value.code, caught.value.reason) == (402, "invalid_signature")
        with pytest.raises(ConnectionLost):
            await client.call("session.test")
    run(scenario())


# -- Local books over the wire --------------------------------------------------------------

def test_local_book_equals_market_book_after_two_traders_trade(live_server):
    """A book rebuilt from snapshot and deltas equals market.book and never needed a resync."""
    async def scenario():
        async with client_for(live_server) as watcher, \
                client_for(live_server, "maker-1") as maker, \
                client_for(live_server, "trader-2") as taker:
            for i in range(5):
                await maker.place(SYMBOL, "buy", 10 + i, f"2.0{5 + i}")
                await maker.place(SYMBOL, "sell", 10 + i, f"2.1{5 + i}")
            await watcher.subscribe(f"book.{SYMBOL}")
            book = await watcher.wait_book(SYMBOL)
            await taker.place(SYMBOL, "buy", 25, "2.160", tif="ioc")     # takes 2 levels
            await taker.place(SYMBOL, "sell", 20, "2.085")     # takes 14, rests 6
            await taker.place(SYMBOL, "buy", 5, "2.000")
            await maker.place(SYMBOL, "buy", 7, "2.050")
            await maker.cancel_all(SYMBOL)
            await maker.place(SYMBOL, "sell", 3, "2.170")
            # Responses and notifications share the socket in order, so this answer
            # comes after every delta up to its seq.
            expected = await watcher.call("market.book", symbol=SYMBOL)
            assert book.valid and book.resyncs == 0
            assert book.seq == expected["seq"] > 1
            assert (book.bids, book.asks) == (expected["bids"], expected["asks"])
            assert (book.bids, book.asks) == ([["2.000", 5, 1]],
                                              [["2.085", 6, 1], ["2.170", 3, 1]])
    run(scenario())


def test_a_gap_resubscribes_only_that_symbol(live_server, monkeypatch):
    """A gapped delta invalidates one book; the client asks for that symbol's snapshot alone."""
    subscribes = wrap_method(monkeypatch, "subscribe", lambda *_: None)

    async def scenario():
        async with client_for(live_server) as client:
            seen = []
            client.on("*", lambda channel, data: seen.append((channel, data["type"])))
            await client.subscribe(f"book.{SYMBOL}", f"book.{OTHER}")
            book, other = await client.wait_book(SYMBOL), await client.wait_book(OTHER)
            seen.clear()
            client._on_message(notification(f"book.{SYMBOL}", {
                "type": "delta", "seq": book.seq + 3, "prev_seq": book.seq + 2,
                "bids": [], "asks": [], "checksum": 0}))
            assert not book.valid and book.resyncs == 1 and other.valid
            assert await client.wait_book(SYMBOL) is book and book.valid
            await client.call("session.test")        # everything sent before has arrived
            assert seen == [(f"book.{SYMBOL}", "delta"), (f"book.{SYMBOL}", "snapshot")]
            assert other.valid and other.resyncs == 0
    run(scenario())
    assert [p.channels for p in subscribes] == [[f"book.{SYMBOL}", f"book.{OTHER}"],
                                                [f"book.{SYMBOL}"]]


def test_a_corrupted_delta_from_the_server_is_detected_and_repaired(live_server, monkeypatch):
    """A delta on the wire whose checksum disagrees triggers a resubscribe of that symbol only."""
    subscribes = wrap_method(monkeypatch, "subscribe", lambda *_: None)

    async def scenario():
        async with client_for(live_server) as client, \
                client_for(live_server, "trader-1") as trader:
            await client.subscribe(f"book.{SYMBOL}", f"book.{OTHER}")
            book = await client.wait_book(SYMBOL)
            await client.wait_book(OTHER)
            session = session_of(live_server, channel=f"book.{SYMBOL}")
            push(live_server, session, notification(f"book.{SYMBOL}", {
                "type": "delta", "seq": book.seq + 1, "prev_seq": book.seq,
                "bids": [["2.000", 5, 1]], "asks": [], "checksum": 12345}))
            await client.call("session.test")        # answered after the bad delta arrived
            assert book.resyncs == 1
            assert await client.wait_book(SYMBOL) is book
            placed = await trader.place(SYMBOL, "buy", 2, "2.010")
            expected = await client.call("market.book", symbol=SYMBOL)
            assert (book.seq, book.bids, book.asks) == \
                (expected["seq"], expected["bids"], expected["asks"])
            assert book.bids == [[placed["price"], 2, 1]]          # the bogus 2.000 is gone
            assert client.book(OTHER).resyncs == 0
    run(scenario())
    assert [p.channels for p in subscribes][1:] == [[f"book.{SYMBOL}"]]


def test_a_conflated_stream_repaired_by_the_server_needs_no_resync(make_server):
    """When the server skips deltas for a slow reader and sends snapshots, books stay valid."""
    server = make_server("[limits]\nqueue_soft = 2\n")
    symbols = [f"H100-{month}" for month in ("2026-12", "2027-01", "2027-02", "2027-03")]

    async def scenario():
        async with client_for(server) as watcher, client_for(server, "maker-1") as maker:
            stream = watcher.stream()
            await watcher.subscribe(*(f"book.{s}" for s in symbols))
            for symbol in symbols:
                await maker.place(symbol, "buy", 1, "2.000")
            await maker.cancel_all()           # one turn: a message per book, past queue_soft
            done, kinds = set(), []            # books that reached seq 2; message types
            while len(done) < len(symbols):
                channel, data = await asyncio.wait_for(stream.__anext__(), TIMEOUT)
                kinds.append(data["type"])
                if data["seq"] == 2:
                    done.add(channel)
            assert kinds[len(symbols):].count("snapshot") >= 1      # conflation happened
            for symbol in symbols:
                book = watcher.book(symbol)
                assert (book.valid, book.seq, book.resyncs, book.bids) == (True, 2, 0, [])
    run(scenario())


def test_a_heartbeat_test_request_is_answered(live_server, monkeypatch):
    """The client answers the server's test_request with session.test on its own."""
    answered = threading.Event()
    wrap_method(monkeypatch, "session.test", lambda *_: answered.set())

    async def scenario():
        async with client_for(live_server, "viewer-1") as client:
            await client.set_heartbeat(30)
            session = session_of(live_server, account="viewer-1")
            assert live_server.call(lambda: session.state.heartbeat_s) == 30
            live_server.call(session.push, HEARTBEAT)
            assert await asyncio.to_thread(answered.wait, TIMEOUT)
            assert client.connected
    run(scenario())


# -- Reconnects -----------------------------------------------------------------------------

def test_a_place_resent_after_a_dropped_connection_is_not_placed_twice(live_server, monkeypatch):
    """The connection dies after the order is placed; the resend returns it as a duplicate."""
    places = wrap_method(monkeypatch, "order.place", drop_once())

    async def scenario():
        async with client_for(live_server, "trader-1") as client:
            order = await client.place(SYMBOL, "buy", 3, "2.000")
            assert client.sessions == 2
            assert order["duplicate"] is True and order["status"] == "open"
            assert [o["order_id"] for o in await client.orders()] == [order["order_id"]]
    run(scenario())
    assert len(places) == 2 and places[0] == places[1]
    assert live_server.call(lambda: len(live_server.server.venue.exchange.orders)) == 1


def test_a_cancel_resent_after_a_dropped_connection_returns_the_order(live_server, monkeypatch):
    """The first cancel worked but its answer was lost; the resend's order_closed is no error."""
    async def scenario():
        async with client_for(live_server, "trader-1") as client:
            placed = await client.place(SYMBOL, "sell", 2, "2.200")
            wrap_method(monkeypatch, "order.cancel", drop_once())
            cancelled = await client.cancel(placed["order_id"])
            assert client.sessions == 2
            assert (cancelled["order_id"], cancelled["status"], cancelled["cancel_reason"]) == \
                (placed["order_id"], "cancelled", "user")
    run(scenario())


def test_without_reconnect_a_lost_connection_fails_requests_and_streams(live_server, monkeypatch):
    """With reconnect off, the request in flight raises ConnectionLost naming the order's id."""
    wrap_method(monkeypatch, "order.place", drop_once())

    async def scenario():
        async with client_for(live_server, "trader-1", reconnect=False) as client:
            stream = client.stream()
            with pytest.raises(ConnectionLost) as caught:
                await client.place(SYMBOL, "buy", 1, "2.000", client_order_id="lost-1")
            assert caught.value.data["params"]["client_order_id"] == "lost-1"
            with pytest.raises(ConnectionLost):
                await asyncio.wait_for(stream.__anext__(), TIMEOUT)
            with pytest.raises(ConnectionLost):
                await client.orders()
            assert client.sessions == 1 and not client.connected
    run(scenario())


def test_close_does_not_wait_on_a_server_that_stopped_answering(live_server):
    """close() gives the server close_timeout_s for its part of the closing handshake, then
    drops the connection; pending requests fail with ConnectionLost."""
    frozen = threading.Event()

    async def scenario():
        client = await client_for(live_server, "trader-1").connect()
        live_server.loop.call_soon_threadsafe(frozen.wait, TIMEOUT * 4)
        pending = asyncio.ensure_future(client.orders())
        await asyncio.sleep(0.05)
        async with asyncio.timeout(TIMEOUT):
            await client.close()
        with pytest.raises(ConnectionLost):
            await pending
        assert not client.connected
    try:
        run(scenario())
    finally:
        frozen.set()


class FixedPortServer(Server):
    """A Server on its config's port even when asked for any port (LiveServer asks for 0)."""

    async def start(self, host=None, port=None) -> None:
        await super().start(host, self.config.server.port)


def test_reconnects_to_a_restarted_server_and_restores_the_session(make_server, monkeypatch):
    """After a restart on the same port: logged in again; settings, subscriptions, books back."""
    first = make_server()
    port = first.server.port

    async def scenario():
        async with client_for(first, "trader-1") as client:
            await client.set_heartbeat(30)
            await client.set_cancel_on_disconnect(True)
            await client.subscribe(f"book.{SYMBOL}", "orders")
            await client.place(SYMBOL, "buy", 1, "2.000")
            book = await client.wait_book(SYMBOL)
            assert book.seq == 1
            await asyncio.to_thread(first.stop)
            monkeypatch.setattr(live, "Server", FixedPortServer)
            second = await asyncio.to_thread(make_server, f"[server]\nport = {port}\n")
            assert second.url == first.url
            await client.call("session.test")               # waits for the new session
            assert client.sessions == 2 and client.connected
            # The restarted server recovered the book: the order was cancelled on disconnect.
            assert book.valid and (book.seq, book.bids) == (2, [])
            session = session_of(second, account="trader-1")
            assert second.call(lambda: (session.state.heartbeat_s, session.state.cancel_on_disconnect,
                                        sorted(session.state.channels))) == \
                (30, True, [f"book.{SYMBOL}", "orders"])
            updates = client.stream("orders")
            order = await client.place(SYMBOL, "sell", 2, "2.200")
            channel, data = await asyncio.wait_for(updates.__anext__(), TIMEOUT)
            assert (channel, data["order_id"], data["status"]) == \
                ("orders", order["order_id"], "open")
    run(scenario())


def test_a_channel_the_restarted_server_refuses_is_dropped_and_the_rest_restored(
        make_server, monkeypatch):
    """A symbol the new server does not list loses its book; the other subscriptions come back."""
    first = make_server()
    kept, delisted = "H100-2026-12", SYMBOL
    only_december = ('[[product]]\ngpu_class = "H100"\nreference_price = "2.10"\n'
                     'months = 1\n')

    async def scenario():
        async with client_for(first) as client:
            await client.subscribe(f"book.{kept}", f"book.{delisted}", f"trades.{kept}")
            await asyncio.to_thread(first.stop)
            monkeypatch.setattr(live, "Server", FixedPortServer)
            # Another listing is another exchange: it needs its own data directory.
            second = await asyncio.to_thread(
                make_server, f"[server]\nport = {first.server.port}\n{only_december}",
                "other-data")
            await client.call("session.test")               # waits for the new session
            assert (await client.wait_book(kept)).valid
            with pytest.raises(KeyError):
                client.book(delisted)
            session = session_of(second, channel=f"book.{kept}")
            assert second.call(lambda: sorted(session.state.channels)) == \
                [f"book.{kept}", f"trades.{kept}"]
    run(scenario())


def test_the_client_lists_every_open_order_page_by_page(live_server):
    """Client.orders asks order.list page by page (it pages now) and returns them all."""
    async def scenario():
        a = live_server.account("trader-1")
        async with Client(live_server.url, api_key=a.api_key, api_secret=a.api_secret) as c:
            placed = [(await c.place("H100-2027-03", "buy", 1, f"{1.95 + k / 1000:.3f}"))
                      ["order_id"] for k in range(12)]
            assert [o["order_id"] for o in await c.orders(page=5)] == placed
            assert [o["order_id"] for o in await c.orders()] == placed
    run(scenario())
