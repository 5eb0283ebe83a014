"""`gpux gateway`: clients connect to gateways, which serve market data from their own
replica of the stream and hand accounts' requests to the leading matcher.

Real processes on 127.0.0.1: three nats-server nodes, `gpux matcher` and `gpux gateway`
processes, websocket clients.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from bench.crash import ADMIN, SYMBOL, Client, crash_config
from bench.harness import login_params
from bench.failover import PROBE, gateway, matcher, run_failovers
from cluster_support import gpux_cli, started
from gateway.cluster.wire import GATEWAY_TIMEOUT_S

NAMES = ["crash-001", "crash-002"]
CONFIG = crash_config(NAMES + [PROBE], "fsync")
WAIT_S = 20.0


def leader_and_gateways(base, nats, gateways: int = 1, standby: bool = False):
    lead = started(matcher(base / "a", "a", CONFIG, nats, standby=False))
    follower = started(matcher(base / "b", "b", CONFIG, nats, standby=True)) if standby \
        else None
    edges = [started(gateway(base / f"g{i}", f"g{i}", CONFIG, nats))
             for i in range(1, gateways + 1)]
    return lead, follower, edges


class Reader:
    """An anonymous websocket client: requests, and the notifications it is sent."""

    def __init__(self, ws) -> None:
        self.ws, self.ids, self.notes = ws, 0, asyncio.Queue()
        self.replies: dict[int, asyncio.Future] = {}
        self.heartbeats = 0
        self.task = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(cls, url: str) -> "Reader":
        return cls(await connect(url))

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                message = json.loads(frame)
                self.heartbeats += message.get("method") == "heartbeat"
                if "id" in message and message["id"] in self.replies:
                    self.replies.pop(message["id"]).set_result(message)
                else:
                    self.notes.put_nowait(message)
        except ConnectionClosed:
            pass

    async def call(self, method: str, **params) -> dict:
        self.ids += 1
        future = self.replies[self.ids] = asyncio.get_running_loop().create_future()
        await self.ws.send(json.dumps({"jsonrpc": "2.0", "id": self.ids, "method": method,
                                       "params": params}))
        return await asyncio.wait_for(future, WAIT_S)

    async def note(self, channel: str, match=lambda data: True) -> dict:
        """The next notification of ``channel`` whose data ``match``es."""
        while True:
            message = await asyncio.wait_for(self.notes.get(), WAIT_S)
            params = message.get("params", {})
            if params.get("channel") == channel and match(params["data"]):
                return params["data"]

    async def close(self) -> None:
        await self.ws.close()
        self.task.cancel()


async def eventually(check, timeout: float = WAIT_S):
    """``await check()`` until it returns something true; return it."""
    deadline = time.monotonic() + timeout
    while True:
        got = await check()
        if got or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.05)


def test_market_data_from_the_gateways_replica_and_accounts_at_the_leader(fresh, tmp_path):
    lead, _, (edge,) = leader_and_gateways(tmp_path, fresh)

    async def run():
        md = await Reader.open(edge.url)
        subscribed = await md.call("subscribe", channels=[f"book.{SYMBOL}", f"trades.{SYMBOL}"])
        assert subscribed["result"]["channels"] == [f"book.{SYMBOL}", f"trades.{SYMBOL}"]
        assert (await md.note(f"book.{SYMBOL}"))["type"] == "snapshot"
        buyer = await Client.open(edge.url, NAMES[0])
        seller = await Client.open(edge.url, NAMES[1])
        await buyer.result("subscribe", channels=["orders"])
        bid = await buyer.result("order.place", symbol=SYMBOL, side="buy", qty=3,
                                 price="2.100", client_order_id="b-1")
        assert bid["status"] == "open"
        # The gateway's replica publishes the leader's book, message for message.
        delta = await md.note(f"book.{SYMBOL}", lambda d: d["bids"])
        assert delta["bids"] == [["2.100", 3, 1]]
        sold = await seller.result("order.place", symbol=SYMBOL, side="sell", qty=2,
                                   price="2.100", client_order_id="s-1")
        assert sold["status"] == "filled"
        trades = await md.note(f"trades.{SYMBOL}")
        assert [(t["price"], t["qty"]) for t in trades] == [("2.100", 2)]
        # Private updates come from the leader through the gateway.
        direct = await Client.open(lead.url, NAMES[0])
        assert (await direct.result("order.get", order_id=bid["order_id"]))["filled_qty"] == 2
        # Read your writes: the session's reads are the leader's.
        mine = await buyer.result("order.get", client_order_id="b-1")
        assert mine["filled_qty"] == 2 and mine["remaining_qty"] == 1
        # The replica's book and the leader's are the same.
        at_leader = await direct.result("market.book", symbol=SYMBOL)
        assert await eventually(lambda: _book_equals(md, at_leader))
        admin = await Client.open(edge.url, ADMIN)
        admin_direct = await Client.open(lead.url, ADMIN)

        async def same_state():      # (a timer's command may come between the two)
            return await admin.result("admin.state") == \
                await admin_direct.result("admin.state")
        assert await eventually(same_state)
        for c in (buyer, seller, direct, admin, admin_direct):
            await c.close()
        await md.close()
    asyncio.run(run())


async def _book_equals(reader: Reader, expected: dict) -> bool:
    return (await reader.call("market.book", symbol=SYMBOL))["result"] == expected


def test_bad_input_through_a_gateway_gets_the_errors_the_leader_gives(fresh, tmp_path):
    lead, _, (edge,) = leader_and_gateways(tmp_path, fresh)

    async def run():
        anonymous = await Reader.open(edge.url)
        await anonymous.ws.send("{not json")            # answered by the gateway itself
        assert (await asyncio.wait_for(anonymous.notes.get(), WAIT_S))["error"]["code"] \
            == -32700
        refused = await anonymous.call("order.place", symbol=SYMBOL, side="buy", qty=1,
                                       price="2.1")
        assert refused["error"]["data"]["reason"] == "unauthenticated"
        bad_login = await anonymous.call("auth.login", api_key="nobody",
                                         timestamp=time.time_ns() // 1_000_000, nonce="n-1",
                                         signature="0" * 64)
        assert bad_login["error"]["data"]["reason"] == "invalid_signature"
        # The connection is the leader's now, and still not logged in.
        refused = await anonymous.call("order.place", symbol=SYMBOL, side="buy", qty=1,
                                       price="2.1")
        assert refused["error"]["data"]["reason"] == "unauthenticated"
        trader = await Client.open(edge.url, NAMES[0])
        before = await trader.result("account.summary")
        wrong = await trader.call("order.place", symbol=SYMBOL, side="buy", qty=-1,
                                  price="2.100")
        assert wrong["error"]["data"]["field"] == "qty"
        unknown = await trader.call("no.such_method")
        assert unknown["error"]["code"] == -32601
        assert await trader.result("account.summary") == before
        assert await trader.result("order.list") == []
        # A frame past the limit: the leader answers and closes; the gateway closes the socket.
        await trader.ws.send(json.dumps({"jsonrpc": "2.0", "id": 9, "method": "session.test",
                                         "params": {"pad": "x" * 70_000}}))
        await asyncio.wait_for(trader.ws.wait_closed(), WAIT_S)
        assert trader.ws.close_code == 1009
        await trader.close()
        await anonymous.close()
    asyncio.run(run())


def test_the_leaders_kill_through_two_gateways_loses_nothing(fresh, tmp_path):
    """bench.failover through gateways: the traders' connections are closed by their gateway
    when the leader changes; they log in again and every acknowledged order is there with
    its fills, the in-flight ones placed once, and the new leader's state is a replay of
    the stream's."""
    result = asyncio.run(run_failovers(2, 5, 2, tmp_path, log=lambda *_: None, nats=fresh,
                                       gateways=2))
    tally = result.checks
    assert tally.lost == 0 and not tally.problems
    assert tally.cycles == 2 and tally.states_compared == 4 and tally.acked > 0
    assert tally.orders_checked > 0 and len(result.first_ack_s) == 2


def test_market_data_goes_on_across_a_failover_and_sessions_are_closed(fresh, tmp_path):
    lead, standby, (edge,) = leader_and_gateways(tmp_path, fresh, standby=True)

    async def run():
        md = await Reader.open(edge.url)
        await md.call("subscribe", channels=[f"book.{SYMBOL}"])
        await md.note(f"book.{SYMBOL}")
        trader = await Client.open(edge.url, NAMES[0])
        await trader.result("order.place", symbol=SYMBOL, side="buy", qty=1, price="2.100")
        await md.note(f"book.{SYMBOL}", lambda d: d["bids"])
        lead.kill()
        await asyncio.to_thread(standby.wait_listening, 30.0)
        # The session the dead leader served is closed: its client logs in again.
        await asyncio.wait_for(trader.ws.wait_closed(), WAIT_S)
        assert trader.ws.close_code == 1012
        again = await Client.open(edge.url, NAMES[0])
        await again.result("order.place", symbol=SYMBOL, side="buy", qty=2, price="2.110")
        # The market-data connection was never the leader's: it goes on.
        delta = await md.note(f"book.{SYMBOL}", lambda d: ["2.110", 2, 1] in d["bids"])
        assert delta["type"] == "delta"
        assert md.ws.close_code is None
        await again.close()
        await md.close()
    asyncio.run(run())


def test_a_killed_gateway_loses_only_its_connections(fresh, tmp_path):
    """SIGKILL one gateway: the leader ends its sessions once it is silent (cancel-on-
    disconnect fires), and trading goes on through the other."""
    _, _, (first, second) = leader_and_gateways(tmp_path, fresh, gateways=2)

    async def run():
        maker = await Client.open(first.url, NAMES[0])
        await maker.result("session.cancel_on_disconnect", enabled=True)
        quote = await maker.result("order.place", symbol=SYMBOL, side="buy", qty=1,
                                   price="2.050")
        kept = await maker.result("order.place", symbol=SYMBOL, side="buy", qty=1,
                                  price="2.040")
        trader = await Client.open(second.url, NAMES[1])
        first.kill()
        killed = time.monotonic()
        placed = await trader.result("order.place", symbol=SYMBOL, side="sell", qty=1,
                                     price="2.200")
        assert placed["status"] == "open"
        back = await Client.open(second.url, NAMES[0])

        async def cancelled():
            view = await back.result("order.get", order_id=quote["order_id"])
            return view if view["status"] == "cancelled" else None
        view = await eventually(cancelled, 15.0)
        assert view and view["cancel_reason"] == "disconnect", view
        assert time.monotonic() - killed < 15.0
        # Both orders were the guarded session's: both cancelled, nothing else touched.
        assert (await back.result("order.get", order_id=kept["order_id"]))["status"] == \
            "cancelled"
        assert (await trader.result("order.get", order_id=placed["order_id"]))["status"] == \
            "open"
        for c in (trader, back):
            await c.close()
    asyncio.run(run())


def test_a_gateway_with_another_config_is_refused(fresh, tmp_path):
    started(matcher(tmp_path / "a", "a", CONFIG, fresh, standby=False))
    other = crash_config(NAMES + ["someone-else"], "fsync")
    with pytest.raises(RuntimeError, match="another config"):
        gateway(tmp_path / "g", "g", other, fresh)


def test_a_stopped_gateway_ends_its_sessions_at_once(fresh, tmp_path):
    """SIGTERM: the gateway closes its connections and tells the leader, which cancels a
    guarded session's orders then, not once the gateway has been silent for long."""
    lead, _, (edge,) = leader_and_gateways(tmp_path, fresh)

    async def run():
        maker = await Client.open(edge.url, NAMES[0])
        await maker.result("session.cancel_on_disconnect", enabled=True)
        quote = await maker.result("order.place", symbol=SYMBOL, side="buy", qty=1,
                                   price="2.050")
        await asyncio.to_thread(edge.stop)
        stopped = time.monotonic()
        assert edge.proc.returncode == 0
        direct = await Client.open(lead.url, NAMES[0])

        async def cancelled():
            view = await direct.result("order.get", order_id=quote["order_id"])
            return view["status"] == "cancelled" and view["cancel_reason"] == "disconnect"
        assert await eventually(cancelled, GATEWAY_TIMEOUT_S)
        assert time.monotonic() - stopped < GATEWAY_TIMEOUT_S
        await direct.close()
    asyncio.run(run())


def test_subscriptions_made_before_a_login_end_with_an_unsubscribe_after_it(fresh, tmp_path):
    _, _, (edge,) = leader_and_gateways(tmp_path, fresh)
    book = f"book.{SYMBOL}"

    async def run():
        reader = await Reader.open(edge.url)
        await reader.call("subscribe", channels=[book])        # the gateway's
        await reader.note(book)
        login = await reader.call("auth.login", **login_params(NAMES[0], "n-1"))
        assert login["result"]["account"] == NAMES[0]
        await reader.call("subscribe", channels=["orders"])    # the leader's
        trader = await Client.open(edge.url, NAMES[1])
        await trader.result("order.place", symbol=SYMBOL, side="buy", qty=1, price="2.100")
        await reader.note(book, lambda d: d["type"] == "delta")
        # Refused by the leader (a name that is no channel): nothing ends, here either.
        refused = await reader.call("unsubscribe", channels=[book, "nonsense"])
        assert refused["error"]["data"]["reason"] == "unknown_channel"
        await trader.result("order.place", symbol=SYMBOL, side="buy", qty=1, price="2.101")
        await reader.note(book, lambda d: d["type"] == "delta")
        gone = await reader.call("unsubscribe", channels=[f"trades.{SYMBOL}", book, "orders"])
        assert gone["result"]["channels"] == [book, "orders"]
        watcher = await Reader.open(edge.url)
        await watcher.call("subscribe", channels=[book])
        await watcher.note(book)
        await trader.result("order.place", symbol=SYMBOL, side="buy", qty=1, price="2.102")
        # The watcher gets the delta; the reader, in the same turn of the gateway, does not.
        await watcher.note(book, lambda d: ["2.102", 1, 1] in d["bids"])
        await asyncio.sleep(0.2)
        assert all(n.get("params", {}).get("channel") != book
                   for n in [reader.notes.get_nowait() for _ in range(reader.notes.qsize())])
        await trader.close()
        for r in (reader, watcher):
            await r.close()
    asyncio.run(run())


def test_a_gateway_restarts_from_its_own_directory_and_catches_up(fresh, tmp_path):
    lead, _, (edge,) = leader_and_gateways(tmp_path, fresh)

    async def trade(price: str) -> dict:
        trader = await Client.open(lead.url, NAMES[0])
        await trader.result("order.place", symbol=SYMBOL, side="buy", qty=1, price=price)
        book = await trader.result("market.book", symbol=SYMBOL)
        await trader.close()
        return book

    asyncio.run(trade("2.100"))
    edge.stop()
    book = asyncio.run(trade("2.101"))              # while the gateway is down
    again = started(gateway(tmp_path / "g1", "g1", CONFIG, fresh))
    assert "follows the stream at seq" in again.output()

    async def check():
        reader = await Reader.open(again.url)
        assert await eventually(lambda: _book_equals(reader, book))
        await reader.close()
    asyncio.run(check())
    assert "a new exchange" not in again.output() and "moved to" not in again.output()


def _gateway_cli(tmp_path, *args: str, config: str | None = CONFIG):
    return gpux_cli("gateway", tmp_path, config or "", *args)


def test_a_gateway_without_accounts_or_a_cluster_is_refused_with_a_message(tmp_path):
    done = _gateway_cli(tmp_path, "--nats", "nats://127.0.0.1:1", config=None)
    assert done.returncode == 2 and "need the accounts in their config" in done.stderr
    assert not (tmp_path / "g").exists()
    done = _gateway_cli(tmp_path, "--nats", "nats://127.0.0.1:1", "--wait-nats", "0.5")
    assert done.returncode == 2, done.stderr
    assert "did not answer within 0.5 s" in done.stderr and "Traceback" not in done.stderr


def test_a_gateway_whose_requests_nats_could_not_carry_is_refused(fresh, tmp_path):
    """max_frame_bytes past the NATS servers' max_payload (8 MiB here): refused at the
    start rather than closing each connection that sends a big request."""
    config = CONFIG.replace("[limits]", "[limits]\nmax_frame_bytes = 16777216") \
        if "[limits]" in CONFIG else CONFIG + "\n[limits]\nmax_frame_bytes = 16777216\n"
    done = _gateway_cli(tmp_path, "--nats", ",".join(fresh.urls), config=config)
    assert done.returncode == 2, done.stderr
    assert "raise max_payload to at least" in done.stderr and "Traceback" not in done.stderr


def test_a_gateway_waiting_for_its_first_leader_stops_on_sigterm(fresh, tmp_path):
    """No matcher has led yet: the gateway waits (the listing comes from the first Lead),
    and a stop ends the wait."""
    path = tmp_path / "gpux.toml"
    path.write_text(CONFIG)
    waiting = subprocess.Popen(
        [sys.executable, "-m", "gateway.client.cli", "gateway", "--data-dir",
         str(tmp_path / "g"), "--config", str(path), "--port", "0", "--nats",
         ",".join(fresh.urls)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(3.0)
        assert waiting.poll() is None
        waiting.send_signal(signal.SIGTERM)
        out, _ = waiting.communicate(timeout=15)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert waiting.returncode == 0 and "listening" not in out, out


@pytest.mark.parametrize("transport", ["websockets", "picows"])
def test_a_gateway_stops_while_the_leader_owes_a_connection_answers(fresh, tmp_path,
                                                                     transport):
    """A connection whose reading waits for a stalled leader (64 frames unanswered) must not
    hold the gateway's stop up."""
    lead = started(matcher(tmp_path / "a", "a", CONFIG, fresh, standby=False))
    edge = started(gateway(tmp_path / "g1", "g1", CONFIG + f'\n[server]\ntransport = '
                           f'"{transport}"\n', fresh))

    async def run():
        trader = await Client.open(edge.url, NAMES[0])
        os.kill(lead.pid, signal.SIGSTOP)
        try:
            for i in range(100):
                await trader.ws.send(json.dumps({"jsonrpc": "2.0", "id": 1000 + i,
                                                 "method": "session.test", "params": {}}))
            await asyncio.sleep(0.5)
            stopping = time.monotonic()
            edge.proc.send_signal(signal.SIGTERM)
            await asyncio.to_thread(edge.proc.wait, 30)
            assert time.monotonic() - stopping < 5.0
            assert edge.proc.returncode == 0
        finally:
            os.kill(lead.pid, signal.SIGCONT)
    asyncio.run(run())


def test_what_a_connection_asked_before_its_login_holds_after_it(fresh, tmp_path):
    """Heartbeats and cancel-on-disconnect asked of the gateway before the login are the
    leader's after it; a channel subscribed again after the login is sent once."""
    lead, _, (edge,) = leader_and_gateways(tmp_path, fresh)
    book = f"book.{SYMBOL}"

    async def run():
        reader = await Reader.open(edge.url)
        assert (await reader.call("session.cancel_on_disconnect", enabled=True))["result"] \
            == {"enabled": True}
        assert (await reader.call("session.heartbeat", interval=2))["result"] == {"interval": 2}
        await reader.call("subscribe", channels=[book])
        await reader.note(book)
        login = await reader.call("auth.login", **login_params(NAMES[0], "n-2"))
        assert login["result"]["account"] == NAMES[0]
        again = await reader.call("subscribe", channels=[book])       # the leader's now
        assert again["result"]["channels"] == [book]
        order = (await reader.call("order.place", symbol=SYMBOL, side="buy", qty=1,
                                   price="2.100"))["result"]
        deltas = []
        while len(deltas) < 2:                       # the leader's snapshot, then the delta
            deltas.append(await reader.note(book))
        await asyncio.sleep(0.5)
        extra = [n for n in [reader.notes.get_nowait() for _ in range(reader.notes.qsize())]
                 if n.get("params", {}).get("channel") == book]
        assert [d["type"] for d in deltas] == ["snapshot", "delta"] and extra == [], extra
        # The heartbeats go on (the leader's), and stop when asked.
        beats = reader.heartbeats
        await asyncio.sleep(2.5)                     # (silent for less than two intervals)
        assert reader.heartbeats >= beats + 1
        assert (await reader.call("session.heartbeat", interval=0))["result"] == {"interval": 0}
        beats = reader.heartbeats
        await asyncio.sleep(2.5)
        assert reader.heartbeats == beats
        await reader.close()                         # cancel-on-disconnect, as asked
        direct = await Client.open(lead.url, NAMES[0])

        async def cancelled():
            view = await direct.result("order.get", order_id=order["order_id"])
            return view["status"] == "cancelled" and view["cancel_reason"] == "disconnect"
        assert await eventually(cancelled)
        await direct.close()
    asyncio.run(run())
