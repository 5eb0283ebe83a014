"""Both websocket libraries behind the adapter say the same on the wire: the page over plain
HTTP, the upgrade, a fragmented request, and each close code the server sends.

The rest of the suite runs on the default (picows); these run on both.
"""
from __future__ import annotations

import json

import pytest
from websockets.exceptions import ConnectionClosed

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
        await ws.close()
    run(scenario())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_close_codes(make_server, transport):
    """1009 after frame_too_large, 1008 for flooding, 4001 for a silent client."""
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
    run(scenario())
