"""Both websocket libraries behind the adapter say the same on the wire: the page over plain
HTTP, the upgrade, a fragmented request, and each close code the server sends.

The rest of the suite runs on the default (picows); these run on both.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import time

import pytest
from websockets.exceptions import ConnectionClosed

from gateway.core.auth import sign
from live import SYMBOL, Ws, http_get, run

TRANSPORTS = ["picows", "websockets"]


def config(transport: str, extra: str = "") -> str:
    return f'[server]\ntransport = "{transport}"\n{extra}'


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_page_and_the_upgrade(make_server, transport):
    live = make_server(config(transport))
    page = http_get(live, "/")
    assert page.status == 200 and page.getheader("Content-Type") == "text/html; charset=utf-8"
    assert "default-src 'none'" in page.getheader("Content-Security-Policy")
    assert int(page.getheader("Content-Length")) == len(page.body) > 0
    again = http_get(live, "/", **{"If-None-Match": page.getheader("ETag")})
    assert (again.status, again.body) == (304, b"")
    assert http_get(live, "/nope").status == 404
    assert http_get(live, "/ws").status == 426
    assert http_get(live, "/x", Upgrade="websocket", Connection="Upgrade",
               **{"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                  "Sec-WebSocket-Version": "13"}).status == 404


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_orders_streams_and_a_fragmented_request(make_server, transport):
    live = make_server(config(transport))

    async def scenario():
        ws = await Ws.open(live, "trader-1")
        await ws.result("subscribe", channels=[f"book.{SYMBOL}"])
        assert (await ws.note(f"book.{SYMBOL}"))["data"]["type"] == "snapshot"
        request = json.dumps({"jsonrpc": "2.0", "id": 99, "method": "order.place", "params": {
            "symbol": SYMBOL, "side": "buy", "qty": 2, "price": "2.000"}})
        await ws.ws.send(request[i:i + 7] for i in range(0, len(request), 7))   # fragments
        reply = await ws.response(99)
        assert reply["result"]["status"] == "open"
        delta = (await ws.note(f"book.{SYMBOL}"))["data"]
        assert (delta["type"], delta["bids"]) == ("delta", [["2.000", 2, 1]])
        # Whatever type the library hands over (text or bytes), a repeated key is refused.
        await ws.ws.send(request.replace('"id": 99', '"id": 100').replace(
            '"side": "buy"', '"side": "buy", "side": "sell"'))
        reply = await ws.response(100)
        assert reply["error"]["data"]["reason"] == "invalid_request"
        assert len(await ws.result("order.list")) == 1
        await ws.close()
    run(scenario())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_close_codes(make_server, transport):
    """1009 after frame_too_large, 1008 for flooding, 4001 for a silent client, 1003 for a
    binary frame."""
    live = make_server(config(transport, "[limits]\nflood_strikes = 2\n"
                                         "[limits.roles.trader]\norders = [0.1, 1]\n"))

    async def closed_with(ws) -> tuple[int, str]:
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await ws.recv()
        return closed.value.rcvd.code, closed.value.rcvd.reason

    async def scenario():
        ws = await Ws.open(live, "trader-1")
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "session.test",
                                  "params": {"pad": "x" * 70_000}}))
        assert (await ws.recv())["error"]["data"]["reason"] == "frame_too_large"
        assert (await closed_with(ws))[0] == 1009
        ws = await Ws.open(live, "trader-1")
        order = dict(symbol=SYMBOL, side="buy", qty=1, price="2.000")
        await ws.result("order.place", **order)
        await ws.error("order.place", **order)
        await ws.error("order.place", **order)
        code, reason = await closed_with(ws)
        assert code == 1008 and "flooding" in reason
        ws = await Ws.open(live, "trader-2")
        await ws.result("session.heartbeat", interval=1)
        code, reason = await closed_with(ws)
        assert code == 4001 and "heartbeat" in reason
        # The protocol is text: a binary frame was processed as text (issue 21, 9); now the
        # connection is closed with 1003 and nothing in it runs.
        ws = await Ws.open(live, "trader-1")
        await ws.ws.send(json.dumps({"jsonrpc": "2.0", "id": 9, "method": "order.place",
                                     "params": order}).encode())
        code, reason = await closed_with(ws)
        assert code == 1003 and "text" in reason
        # A text frame that is not UTF-8: websockets closes with 1007 as RFC 6455 says, and
        # picows handed it to the core unchecked (internal_error); now both close with 1007.
        ws = await Ws.open(live, "trader-1")
        bad = json.dumps({"jsonrpc": "2.0", "id": 10, "method": "order.place",
                          "params": order}).encode().replace(b"buy", b"b\xffy")
        ws.ws.transport.write(RawWs.frame(bad))
        assert (await closed_with(ws))[0] == 1007
    run(scenario())
    assert live.call(lambda: len(live.server.venue.exchange.orders)) == 1


class RawWs:
    """A bare websocket client on a plain socket with a tiny receive buffer, so that it can
    stop reading (as a stuck or hostile client does) while it goes on sending."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", port))
        self.sock.settimeout(5)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                          f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                          f"Sec-WebSocket-Version: 13\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head
        self.ids = iter(range(1, 10**9))

    @staticmethod
    def frame(payload: bytes, opcode: int = 1) -> bytes:
        mask, n = os.urandom(4), len(payload)
        if n < 126:
            head = bytes((0x80 | opcode, 0x80 | n))
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))

    def send(self, method: str, **params) -> int:
        request_id = next(self.ids)
        self.sock.sendall(self.frame(json.dumps({"jsonrpc": "2.0", "id": request_id,
                                                 "method": method, "params": params}).encode()))
        return request_id

    def reply(self, request_id: int) -> dict:
        """Read frames until the reply to ``request_id`` (small, unfragmented frames only)."""
        buf = b""
        while True:
            while len(buf) < 2 or len(buf) < self._length(buf):
                buf += self.sock.recv(65536)
            size = self._length(buf)
            message, buf = json.loads(buf[self._header(buf):size]), buf[size:]
            if message.get("id") == request_id:
                return message

    @staticmethod
    def _header(buf: bytes) -> int:
        n = buf[1] & 0x7F
        return 2 if n < 126 else 4 if n == 126 else 10

    def _length(self, buf: bytes) -> int:
        n = buf[1] & 0x7F
        if n == 126:
            if len(buf) < 4:
                return 4
            n = struct.unpack_from("!H", buf, 2)[0]
        elif n == 127:
            if len(buf) < 10:
                return 10
            n = struct.unpack_from("!Q", buf, 2)[0]
        return self._header(buf) + n

    def call(self, method: str, **params) -> dict:
        return self.reply(self.send(method, **params))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_connection_the_server_closes_ends_even_if_the_client_does_not_read(
        make_server, transport):
    """A client the server closes (here for flooding) while it reads nothing is cut off
    within the close timeout, and its session ends: cancel-on-disconnect cancels its quote.
    (Once, with picows, the close waited for the client to read what was queued for it, and
    the session lived on until the auto-ping gave up, about 40 s.)"""
    live = make_server(config(transport))
    client = RawWs(live.server.port)
    maker = live.account("maker-1")
    ts, nonce = int(time.time() * 1000), f"n-{time.monotonic_ns()}"
    assert "result" in client.call("auth.login", api_key=maker.api_key, timestamp=ts,
                                   nonce=nonce, signature=sign(maker.api_secret, ts, nonce))
    assert "result" in client.call("session.cancel_on_disconnect", enabled=True)
    placed = client.call("order.mass_quote", quotes=[
        {"symbol": SYMBOL, "side": "buy", "price": "2.000", "qty": 5}])
    assert placed["result"]["quotes"][0]["error"] is None, placed
    account_id = live.server.accounts.by_name["maker-1"].account_id
    open_orders = lambda: live.server.venue.exchange.open_order_count(account_id)  # noqa: E731
    assert live.call(open_orders) == 1
    # From here on the client never reads: large replies fill the socket, then flooding.
    try:
        for _ in range(400):
            client.send("market.instruments")
        deadline = time.monotonic() + 6.0
        while time.monotonic() < deadline and live.call(open_orders):
            try:
                client.send("session.test")
            except OSError:
                pass                   # the server cut it off: what should happen
            time.sleep(0.25)
        closing = live.call(lambda: [c.closing for c in live.server.connections])
        assert live.call(open_orders) == 0, (
            f"6 s after the server closed the connection {closing} it is still open and "
            "its cancel-on-disconnect quote is still in the book")
    finally:
        client.sock.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_close_without_a_code_is_answered_with_a_valid_close_frame(make_server, transport):
    """A client's close frame with no status code (legal, RFC 6455 5.5.1) is answered with a
    close frame with none, or a valid one: never code 0, which picows reports for none."""
    live = make_server(config(transport))
    client = RawWs(live.server.port)
    try:
        client.sock.sendall(RawWs.frame(b"", opcode=8))
        data = b""
        while len(data) < 2 or len(data) < client._length(data):
            chunk = client.sock.recv(65536)
            if not chunk:
                break
            data += chunk
        assert data[:1] == b"\x88", data
        payload = data[client._header(data):client._length(data)]
        code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
        assert code is None or 1000 <= code <= 4999 and code not in (1004, 1005, 1006), \
            f"the server's close frame carries status code {code}"
    finally:
        client.sock.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_pipelined_burst_does_not_hold_up_another_connection(make_server, transport):
    """A client that pipelines 2,000 orders hands the server 2,000 frames in one or two
    reads; run one after another, another client's order waited for all of them. Now
    connections take turns: the other order is placed while most of the burst is still to
    run, which the order ids show (an order of events, not a time)."""
    live = make_server(config(transport, "[limits.roles.trader]\n"
                                         "orders = [1000000.0, 1000000]\n"
                                         "account_orders = [1000000.0, 1000000]\n"
                                         "max_open_orders = 5000\n"))

    async def scenario():
        burst, other = await Ws.open(live, "trader-1"), await Ws.open(live, "trader-2")
        order = {"symbol": SYMBOL, "side": "buy", "qty": 1, "price": "1.900"}
        frames = [json.dumps({"jsonrpc": "2.0", "id": 1000 + i, "method": "order.place",
                              "params": order}) for i in range(2000)]
        burst.ws.transport.write(b"".join(RawWs.frame(f.encode()) for f in frames))  # at once
        placed = (await other.result("order.place", **order))["order_id"]
        ids = [(await burst.response(1000 + i))["result"]["order_id"] for i in range(2000)]
        before = sum(1 for order_id in ids if order_id < placed)
        assert before < 500, before          # one after another: 1,116 to 1,592 of them
        await burst.close()
        await other.close()
    run(scenario())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_connections_per_address_are_capped(make_server, transport):
    """Issue 20: nothing bounded the connections one address could hold open (the stall
    budget's attackers held hundreds). Past ``max_connections_per_address`` a new one is
    closed at once with 1013 (try again later); one that ends makes room."""
    live = make_server(config(transport, "[limits]\nmax_connections_per_address = 3\n"))

    async def scenario():
        held = [await Ws.open(live) for _ in range(3)]
        for ws in held:
            assert "server_time" in await ws.result("session.test")
        extra = await Ws.open(live)
        with pytest.raises(ConnectionClosed) as closed:
            await extra.result("session.test")
        assert closed.value.rcvd.code == 1013
        await held[0].close()
        await asyncio.sleep(0.2)                 # the server sees it go
        again = await Ws.open(live)
        assert "server_time" in await again.result("session.test")
        for ws in held[1:] + [again]:
            await ws.close()
    run(scenario())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_new_connections_per_address_are_rate_limited(make_server, transport):
    """A reconnect loop cost a handshake and a login each time, unbounded (the stall
    budget's churn attack held the server at 94%). An address opens connections at
    ``new_connections_per_address`` (a bucket: 5 at once here); past it a new one is
    closed at once with 1013, and once the bucket refills one is taken again."""
    live = make_server(config(transport, "[limits]\n"
                                         "new_connections_per_address = [10.0, 5]\n"))

    async def scenario():
        opened = [await Ws.open(live) for _ in range(5)]
        for ws in opened:
            await ws.close()
        extra = await Ws.open(live)
        with pytest.raises(ConnectionClosed) as closed:
            await extra.result("session.test")
        assert closed.value.rcvd.code == 1013
        await asyncio.sleep(0.3)                 # three tokens back
        again = await Ws.open(live)
        assert "server_time" in await again.result("session.test")
        await again.close()
    run(scenario())


def test_the_new_connection_buckets_of_addresses_gone_quiet_are_forgotten(make_server,
                                                                          monkeypatch):
    """Past OPENING_PRUNE addresses, a new one sweeps away the buckets that have refilled
    (as good as new), so addresses seen once do not pile up; one still spending stays."""
    from gateway.server import websocket as websocket_module
    monkeypatch.setattr(websocket_module, "OPENING_PRUNE", 3)
    live = make_server("[limits]\nnew_connections_per_address = [100.0, 5]\n")
    server = live.server
    for address in ("10.0.0.1", "10.0.0.2"):
        assert live.call(server._may_open, address)
    time.sleep(0.05)                                  # both refilled
    for _ in range(5):
        live.call(server._may_open, "10.0.0.3")       # its burst spent: not full
    assert live.call(server._may_open, "10.0.0.4")
    assert set(server._opening) - {"127.0.0.1"} == {"10.0.0.3", "10.0.0.4"}
