"""Market data over real websockets: book snapshot + deltas, trades, ticker, slow consumers."""
from __future__ import annotations

import asyncio
import json
import random
import socket

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from inproc import InProcess
from live import SYMBOL, TIMEOUT, Rebuilt, Ws, run

BOOK, TRADES, TICKER = f"book.{SYMBOL}", f"trades.{SYMBOL}", f"ticker.{SYMBOL}"


async def stalled_client(live, channels: list[str], **kw):
    """Connect with a tiny receive buffer, subscribe, and stop reading."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)   # before connect: no autotuning
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", live.server.port))
    ws = await connect(live.url, sock=sock, max_size=2**24, **kw)
    await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "subscribe",
                              "params": {"channels": channels}}))
    ws.transport.pause_reading()
    return ws


def anonymous_session(live):
    return next(c for c in live.server.connections if c.state.account is None)


async def _random_flow(ws: Ws, rng: random.Random, n: int, tag: str) -> list[dict]:
    """Place, replace and cancel orders around 2.100; return the results."""
    results, live_ids = [], []
    for i in range(n):
        roll = rng.random()
        if roll < 0.2 and live_ids:
            r = await ws.call("order.cancel", order_id=live_ids.pop(rng.randrange(len(live_ids))))
        elif roll < 0.3 and live_ids:
            r = await ws.call("order.replace", order_id=rng.choice(live_ids),
                              qty=rng.randint(1, 9))
        else:
            side = rng.choice(("buy", "sell"))
            price = 2100 + rng.randint(-8, 8)
            r = await ws.call("order.place", symbol=SYMBOL, side=side, qty=rng.randint(1, 9),
                              price=f"{price / 1000:.3f}", client_order_id=f"{tag}-{i}",
                              tif=rng.choice(("gtc", "gtc", "gtc", "ioc")))
            if "result" in r and r["result"]["status"] in ("open", "partially_filled"):
                live_ids.append(r["result"]["order_id"])
        results.append(r)
    return results


def test_a_book_rebuilt_from_the_stream_equals_market_book(live_server):
    """Two traders trade; a third connection's snapshot + deltas equal market.book at the end."""
    async def scenario():
        watcher = await Ws.open(live_server)
        await watcher.result("subscribe", channels=[BOOK, TRADES])
        a = await Ws.open(live_server, "trader-1")
        b = await Ws.open(live_server, "trader-2")
        results = await asyncio.gather(_random_flow(a, random.Random(1), 150, "a"),
                                       _random_flow(b, random.Random(2), 150, "b"))
        fills = sum(len(r["result"]["fills"]) for rs in results for r in rs if "result" in r
                    and "fills" in r["result"])
        assert fills > 10
        final = await watcher.result("market.book", symbol=SYMBOL)
        book, trades = Rebuilt(), []
        while book.seq != final["seq"]:
            note = await watcher.note()
            if note["channel"] == BOOK:
                book.apply(note["data"])
            else:
                trades.extend(note["data"])
        bids, asks = book.levels()
        assert (bids, asks) == (final["bids"], final["asks"])
        assert final["checksum"] == book.checksum()
        assert len(bids) + len(asks) > 0
        while len(trades) < len((await watcher.result("market.trades", symbol=SYMBOL,
                                                      limit=1000))):
            trades.extend((await watcher.note(TRADES))["data"])
        assert [t["trade_id"] for t in trades] == list(range(1, len(trades) + 1))
        recent = await watcher.result("market.trades", symbol=SYMBOL, limit=5)
        assert recent == trades[::-1][:5]
        for ws in (a, b, watcher):
            await ws.close()
    run(scenario(), timeout=60)


def test_resubscribing_one_book_sends_a_fresh_snapshot_only_for_it(live_server):
    """A client repairing a gap subscribes again to that symbol and gets a snapshot at the current seq."""
    async def scenario():
        other = "H200-2027-03"
        ws = await Ws.open(live_server, "trader-1")
        await ws.result("subscribe", channels=[BOOK, f"book.{other}"])
        assert (await ws.note(BOOK))["data"]["seq"] == 0
        await ws.note(f"book.{other}")
        await ws.result("order.place", symbol=SYMBOL, side="buy", qty=2, price="2.05")
        delta = (await ws.note(BOOK))["data"]
        assert (delta["type"], delta["seq"], delta["prev_seq"]) == ("delta", 1, 0)
        assert await ws.result("subscribe", channels=[BOOK]) == {"channels": [BOOK]}
        snap = (await ws.note(BOOK))["data"]
        assert (snap["type"], snap["seq"], snap["bids"]) == ("snapshot", 1, [["2.050", 2, 1]])
        assert not [n for n in ws.notes if n["params"]["channel"] == f"book.{other}"]
        await ws.close()
    run(scenario())


def test_ticker_reports_the_top_of_book_and_last_trade(live_server):
    """The ticker shows best bid/ask with sizes, the last price and volume; it is throttled."""
    async def scenario():
        ws = await Ws.open(live_server, "trader-1")
        other = await Ws.open(live_server, "trader-2")
        await ws.result("subscribe", channels=[TICKER])
        first = (await ws.note(TICKER))["data"]
        assert first["best_bid"] is None and first["volume"] == 0
        assert (first["mark_price"], first["open_interest"]) == ("2.100", 0)   # the reference
        await ws.result("order.place", symbol=SYMBOL, side="buy", qty=5, price="2.090")
        await ws.result("order.place", symbol=SYMBOL, side="sell", qty=7, price="2.110")
        await other.result("order.place", symbol=SYMBOL, side="buy", qty=3, price="2.110")
        while True:
            data = (await ws.note(TICKER))["data"]
            if data["volume"] == 3:
                break
        assert data == {"best_bid": "2.090", "best_bid_qty": 5, "best_ask": "2.110",
                        "best_ask_qty": 4, "last_price": "2.110", "volume": 3,
                        "session_volume": 3, "open_interest": 3, "mark_price": "2.100", "index_price": None}
        await ws.close()
        await other.close()
    run(scenario())


def test_subscription_limits_and_unknown_channels(make_server):
    """Unknown channels and symbols are refused, and subscribing past the limit changes nothing."""
    live = make_server("[limits]\nmax_subscriptions = 3\n")

    async def scenario():
        ws = await Ws.open(live, "trader-1")
        for channel, reason in (("book.NOPE-2027-01", "unknown_instrument"),
                                ("candles.H100-2027-03", "unknown_channel"),
                                ("book.", "unknown_channel"), ("index.Z9", "unknown_gpu_class")):
            error = await ws.error("subscribe", channels=[channel])
            assert (error["data"]["reason"], error["data"]["field"]) == (reason, "channels")
        assert await ws.result("subscribe", channels=[BOOK, TRADES])
        error = await ws.error("subscribe", channels=[TICKER, "orders"])
        assert (error["code"], error["data"]["reason"]) == (407, "too_many_subscriptions")
        assert await ws.result("unsubscribe", channels=[TRADES, "fills"]) == {"channels": [TRADES]}
        assert await ws.result("subscribe", channels=[TICKER, "orders"])
        await ws.close()
    run(scenario())


def test_a_subscriber_that_never_reads_does_not_delay_others(make_server):
    """A stalled book subscriber is conflated then dropped; other clients' acks keep coming."""
    live = make_server("[limits]\nqueue_soft = 20\nqueue_hard = 60\nsocket_send_buffer = 4096\n"
                       "[limits.roles.trader]\norders = [100000.0, 100000]\n"
                       "account_orders = [100000.0, 100000]\n")

    async def scenario():
        stalled = await stalled_client(live, [BOOK, TRADES])
        trader = await Ws.open(live, "trader-1")
        session = None
        taker = await Ws.open(live, "trader-2")
        for _ in range(3000):      # every pair trades: trades cannot be conflated away
            await trader.result("order.place", symbol=SYMBOL, side="sell", qty=1, price="2.100")
            await taker.result("order.place", symbol=SYMBOL, side="buy", qty=1, price="2.100")
            session = session or anonymous_session(live)
            if session.closed:
                break
        assert session.conflated == {BOOK}        # the book stream went first
        assert session.closing is not None and session.closing[0] == 4000
        assert "slow consumer" in session.closing[1]
        assert (await trader.result("session.test"))["server_time"]
        await trader.close()
        await taker.close()
        stalled.transport.abort()
    run(scenario(), timeout=60)


def test_a_lagging_book_subscriber_is_conflated_into_a_fresh_snapshot(make_server):
    """Behind past queue_soft, deltas are skipped; once it reads again a snapshot at the current seq follows."""
    live = make_server("[limits]\nqueue_soft = 8\nqueue_hard = 100000\nsocket_send_buffer = 4096\n"
                       "[limits.roles.trader]\norders = [100000.0, 100000]\n"
                       "account_orders = [100000.0, 100000]\n")

    async def scenario():
        slow = await stalled_client(live, [BOOK])
        trader = await Ws.open(live, "trader-1")
        session = None
        for i in range(4000):
            await trader.result("order.place", symbol=SYMBOL, side="buy", qty=1,
                                price=f"{2.0 + (i % 90) / 1000:.3f}")
            session = session or anonymous_session(live)
            if session.conflated:
                break
        assert session.conflated == {BOOK}
        final = await trader.result("market.book", symbol=SYMBOL)
        slow.transport.resume_reading()
        book = Rebuilt()
        snapshots = 0
        while book.seq != final["seq"]:
            message = json.loads(await asyncio.wait_for(slow.recv(), TIMEOUT))
            if message.get("method") != "subscription":
                continue
            data = message["params"]["data"]
            if data["type"] == "snapshot":
                snapshots += 1
            elif book.seq is not None and data["prev_seq"] != book.seq:
                pytest.fail("a delta after the skipped backlog")
            book.apply(data)
        assert snapshots == 2          # the first one, and the one that replaced the backlog
        assert book.levels() == (final["bids"], final["asks"])
        await slow.close()
        await trader.close()
    run(scenario(), timeout=60)


def test_admin_halts_and_resumes_an_instrument(live_server):
    """admin.halt stops new orders with instrument_not_trading and says why in halt_reason
    (null again once it trades); admin.resume opens it again."""
    async def scenario():
        admin = await Ws.open(live_server, "admin")
        trader = await Ws.open(live_server, "trader-1")
        halted = await admin.result("admin.halt", symbol=SYMBOL, reason="index feed stale")
        assert (halted["status"], halted["symbol"], halted["halt_reason"]) == \
            ("halted", SYMBOL, "index feed stale")
        listed = {i["symbol"]: i for i in await trader.result("market.instruments")}
        assert listed[SYMBOL]["halt_reason"] == "index feed stale"
        assert {i["halt_reason"] for s, i in listed.items() if s != SYMBOL} == {None}
        error = await trader.error("order.place", symbol=SYMBOL, side="buy", qty=1,
                                   price="2.000")
        assert (error["code"], error["data"]["reason"]) == (300, "instrument_not_trading")
        assert (await admin.result("admin.resume", symbol=SYMBOL))["status"] == "open"
        assert (await trader.result("order.place", symbol=SYMBOL, side="buy", qty=1,
                                    price="2.000"))["status"] == "open"
        instruments = {i["symbol"]: i for i in await trader.result("market.instruments")}
        assert instruments[SYMBOL]["status"] == "open"
        assert instruments[SYMBOL]["halt_reason"] is None
        assert instruments[SYMBOL]["tick_size"] == "0.001"
        assert (instruments[SYMBOL]["band_low"], instruments[SYMBOL]["band_high"]) == \
            ("1.890", "2.310")
        assert (await admin.error("admin.halt", symbol="H100-1999-01"))["data"]["reason"] == \
            "unknown_instrument"
        for ws in (admin, trader):
            await ws.close()
    run(scenario())


def test_heartbeat_probes_and_disconnects_a_silent_client(live_server):
    """With a 1 s interval the server sends test_request; a client that stays silent is closed."""
    async def scenario():
        ws = await Ws.open(live_server, "trader-1")
        assert await ws.result("session.heartbeat", interval=1) == {"interval": 1}
        probe = await ws.note()
        assert probe == {"type": "test_request"}
        await ws.result("session.test")
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await ws.recv()
        assert closed.value.rcvd.code == 4001
        assert "heartbeat" in closed.value.rcvd.reason
    run(scenario())


def test_cancel_on_disconnect_cancels_the_sessions_orders(live_server):
    """Dropping the socket cancels the orders that session placed, not the account's others."""
    async def scenario():
        keep = await Ws.open(live_server, "trader-1")
        kept = await keep.result("order.place", symbol=SYMBOL, side="buy", qty=1, price="2.000")
        ws = await Ws.open(live_server, "trader-1")
        await ws.result("session.cancel_on_disconnect", enabled=True)
        await keep.result("subscribe", channels=["orders"])
        placed = [await ws.result("order.place", symbol=SYMBOL, side="sell", qty=2,
                                  price=f"2.2{i}0") for i in range(3)]
        ws.ws.transport.abort()            # no close handshake: the connection just dies
        cancelled = set()
        while len(cancelled) < 3:
            data = (await keep.note("orders"))["data"]
            if data["status"] == "cancelled":
                assert data["cancel_reason"] == "disconnect"
                cancelled.add(data["order_id"])
        assert cancelled == {p["order_id"] for p in placed}
        assert [o["order_id"] for o in await keep.result("order.list")] == [kept["order_id"]]
        await keep.close()
    run(scenario())


def test_cancel_on_disconnect_list_forgets_closed_orders(live_server):
    """The session's list of placed orders is pruned of closed ones; live ones are still cancelled."""
    async def scenario():
        ws = await Ws.open(live_server, "trader-1")
        await ws.result("session.cancel_on_disconnect", enabled=True)
        session = next(c.state for c in live_server.server.connections
                       if c.state.account is not None)
        live_server.call(setattr, session, "placed_limit", 4)
        ids = [(await ws.result("order.place", symbol=SYMBOL, side="buy", qty=1,
                                price=f"2.0{i}0"))["order_id"] for i in range(3)]
        for order_id in ids[:2]:
            await ws.result("order.cancel", order_id=order_id)
        last = (await ws.result("order.place", symbol=SYMBOL, side="buy", qty=1,
                                price="2.050"))["order_id"]
        assert live_server.call(lambda: set(session.placed)) == {ids[2], last}
        watcher = await Ws.open(live_server, "trader-1")
        await ws.close()
        while await watcher.result("order.list"):
            await asyncio.sleep(0.01)
        for order_id in (ids[2], last):
            got = await watcher.result("order.get", order_id=order_id)
            assert got["cancel_reason"] == "disconnect"
        await watcher.close()
    run(scenario())


def test_the_instruments_channel_says_each_status_change(tmp_path):
    """PROTOCOL 1.1: channel instruments (anyone) sends {type: "status", instrument} when an
    instrument's status changes: here a halt and a resume by operations."""
    venue = InProcess(tmp_path / "data")
    watcher, admin = venue.session(), venue.session("admin")
    assert venue.result(watcher, "subscribe", channels=["instruments"]) == \
        {"channels": ["instruments"]}
    venue.seal()
    venue.result(admin, "admin.halt", symbol=SYMBOL)
    venue.result(admin, "admin.resume", symbol=SYMBOL)
    notes = [json.loads(f)["params"] for f in venue.seal().frames(watcher)]
    assert [(n["channel"], n["data"]["type"], n["data"]["instrument"]["symbol"],
             n["data"]["instrument"]["status"], n["data"]["instrument"]["halt_reason"])
            for n in notes] == [
        ("instruments", "status", SYMBOL, "halted", "halted by operations"),
        ("instruments", "status", SYMBOL, "open", None)]


def test_the_orders_channel_sends_each_fill_once(tmp_path):
    """A resting sell lifted one lot at a time: each orders notification re-sent every fill
    of the order so far, so its cost grew with the square of the fills (issue 21, 2). Now a
    notification carries the fills of its own command; the order keeps its totals."""
    venue = InProcess(tmp_path / "data")
    maker, taker = venue.session("trader-1"), venue.session("trader-2")
    assert venue.result(maker, "subscribe", channels=["orders"])
    resting = venue.result(maker, "order.place", symbol=SYMBOL, side="sell", qty=10,
                           price="2.000")
    venue.seal()
    for k in range(4):
        venue.result(taker, "order.place", symbol=SYMBOL, side="buy", qty=1, price="2.000",
                     tif="ioc")
        [note] = [json.loads(f)["params"]["data"] for f in venue.seal().frames(maker)]
        assert note["order_id"] == resting["order_id"]
        assert (note["filled_qty"], note["remaining_qty"]) == (k + 1, 9 - k)
        assert [f["qty"] for f in note["fills"]] == [1]
    # order.get still has every fill.
    assert len(venue.result(maker, "order.get", order_id=resting["order_id"])["fills"]) == 4


def test_a_subscriber_catching_up_while_orders_flow_gets_no_gap(make_server):
    """Conflated, then read again while the book keeps moving: the deltas of turns sealed
    before its snapshot was asked for, and released after it (they wait for the disk), are
    skipped too. (They were sent, each with a prev_seq the client had never seen, just
    before the snapshot: a gap.)"""
    live = make_server("[limits]\nqueue_soft = 8\nqueue_hard = 100000\nsocket_send_buffer = 4096\n"
                       "[limits.roles.trader]\norders = [100000.0, 100000]\n"
                       "account_orders = [100000.0, 100000]\n")

    async def scenario():
        slow = await stalled_client(live, [BOOK], max_queue=1)
        trader = await Ws.open(live, "trader-1")
        stop = asyncio.Event()

        async def trade():
            i = 0
            while not stop.is_set():
                for k in range(8):                           # several turns in flight
                    await trader.send({"jsonrpc": "2.0", "id": i + k, "method": "order.place",
                                       "params": {"symbol": SYMBOL, "side": "buy", "qty": 1,
                                                  "price": f"{2.0 + (i + k) % 90 / 1000:.3f}"}})
                for _ in range(8):
                    assert "result" in await trader.recv()
                i += 8
                if i % 400 == 0:                             # (under the open-order limit)
                    await trader.call("order.cancel_all", symbol=SYMBOL)
        trading = asyncio.create_task(trade())
        book, seen = Rebuilt(), {"gaps": 0, "snapshots": 0}

        async def read():
            loop = asyncio.get_running_loop()
            while True:                                      # in bursts
                burst = loop.time() + 0.02
                while loop.time() < burst:
                    message = json.loads(await slow.recv())
                    if message.get("method") != "subscription":
                        continue
                    data = message["params"]["data"]
                    if data["type"] == "snapshot":
                        seen["snapshots"] += 1
                    elif book.seq is not None and data["prev_seq"] != book.seq:
                        seen["gaps"] += 1
                    book.apply(data)
                await asyncio.sleep(0.3)
        # Waited for, not timed: on a slow machine 4 s of trading did not always conflate it.
        session = None
        async with asyncio.timeout(30):
            while session is None or not session.conflated:
                await asyncio.sleep(0.01)
                session = session or anonymous_session(live)
        slow.transport.resume_reading()
        reading = asyncio.create_task(read())
        async with asyncio.timeout(30):
            while seen["snapshots"] < 2:                     # caught up again, while trading
                await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)                             # and deltas go on after it
        stop.set()
        await trading
        reading.cancel()
        assert seen["gaps"] == 0
        slow.transport.abort()          # a close would wait 10 s behind the unread backlog
        await trader.close()
    run(scenario(), timeout=60)
