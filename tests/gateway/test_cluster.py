"""The journal replicated on a JetStream cluster, and a hot standby that takes over.

Real processes on 127.0.0.1: three nats-server nodes (gateway.cluster.natsd),
`gpux matcher` processes with their own data directories, websocket traders
(bench.crash's) that check every order they were told of after each change of
leader, and replays of the new leader's journal (the stream's content).
"""
from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from bench.crash import (
    ADMIN, SERVE_ARGS, SYMBOL, Client, Tally, Trader, check_replay, check_trader,
    crash_config,
)
from bench.failover import PROBE, gateway, matcher, run_failovers
from bench.harness import ServerProcess
from engine.messages import PlaceOrder, Side, Timer
from gateway.cluster.lease import Lease, LeaseLost
from gateway.cluster.matcher import FENCED_EXIT
from gateway.cluster.stream import (
    STREAM, Fenced, Stream, StreamDamaged, batches_of,
)
from gateway.config import load_config
from gateway.core.auth import Accounts
from gateway.storage.journal import Journal, Reader, encode_batch, encode_record, segments
from gateway.storage.recovery import journal_dir, snapshot_dir
from gateway.storage.snapshots import snapshot_files
from cluster_support import gpux_cli, own_cluster, started
from live import TIMEOUT

NAMES = ["crash-001", "crash-002"]
CONFIG = crash_config(NAMES + [PROBE], "fsync")
TAKEOVER_S = 30.0


def start(*args, **kw):
    """bench.failover's matcher, stopped after the test whatever happens in it."""
    return started(matcher(*args, **kw))


def batch(first: int, n: int = 1) -> bytes:
    records = b"".join(encode_record(Timer(ts_ns=first + i)) for i in range(n))
    return encode_batch(first, n, records) + records


# -- The stream and the lease -------------------------------------------------------


def test_an_append_that_does_not_follow_the_end_is_fenced(fresh):
    async def run():
        stream = await Stream.connect(fresh.urls)
        assert await stream.append(batch(1), 0, "1:1-1") == 1
        assert await stream.append(batch(2, 3), 1, "1:2-4") == 2
        with pytest.raises(Fenced):             # a deposed leader's, one message behind
            await stream.append(batch(2), 1, "0:2-2")
        # The same message sent again (its acknowledgement lost): the duplicate, not a fence.
        assert await stream.append(batch(2, 3), 1, "1:2-4") == 2
        assert await stream.last() == 2
        assert [(f, n) for f, n, _ in batches_of(await stream.message(2))] == [(2, 3)]
        assert [await stream.locate(s) for s in (1, 2, 3, 4, 5)] == [1, 2, 2, 2, 0]
        await stream.close()
    asyncio.run(run())


def test_a_message_that_is_not_whole_batches_is_refused():
    good = batch(5, 2) + batch(7)
    assert [(f, n) for f, n, _ in batches_of(good)] == [(5, 2), (7, 1)]
    for bad, why in ((good[:-1], "cut short"), (good[:30] + b"x" + good[31:], "checksum"),
                     (batch(5) + batch(7), "from seq 7 where 6"), (b"", "empty")):
        with pytest.raises(StreamDamaged, match=why):
            batches_of(bad)
    with pytest.raises(StreamDamaged, match="from seq 5 where 4"):
        batches_of(good, expected=4)


def test_the_lease_is_held_by_one_until_it_lapses(fresh):
    async def run():
        stream = await Stream.connect(fresh.urls)
        a = await Lease(stream.js, "a", ttl=1.0).open()
        b = await Lease(stream.js, "b", ttl=1.0).open()
        assert await a.acquire() and not await b.acquire()
        await a.renew()
        assert await b.leader() == "a"
        await asyncio.sleep(1.6)                 # a stops renewing: the key expires
        assert await b.acquire() and b.epoch > a.epoch
        with pytest.raises(LeaseLost, match="lost the lease"):
            await a.renew()
        await stream.close()
    asyncio.run(run())


# -- Matchers -----------------------------------------------------------------------


def test_a_killed_leader_is_replaced_and_nothing_acknowledged_is_lost(fresh, tmp_path):
    """Three SIGKILLs of the leader mid-trading (bench.failover's checks after each)."""
    result = asyncio.run(run_failovers(3, seed=5, n_traders=2, workdir=tmp_path,
                                       log=lambda line: None, window=(0.3, 1.0),
                                       nats=fresh))
    tally = result.checks
    assert tally.problems == [] and tally.lost == 0 and tally.cycles == 3
    assert tally.acked > 200 and tally.orders_checked > tally.acked // 2
    assert tally.states_compared >= 3 and tally.fills_checked > 0
    assert len(result.first_ack_s) == 3 and all(s < TAKEOVER_S for s in result.first_ack_s)


def test_a_paused_leader_is_fenced_off_and_answers_nobody(fresh, tmp_path):
    a = start(tmp_path / "a", "a", CONFIG, fresh, standby=False)
    b = start(tmp_path / "b", "b", CONFIG, fresh, standby=True)
    place = dict(symbol=SYMBOL, side="buy", qty=2, price="2.000", client_order_id="paused-1")

    async def run():
        trader = Trader(NAMES[0], random.Random(1))
        await trader.connect(a.url)
        stop = asyncio.Event()
        task = asyncio.create_task(trader.trade(stop))
        await asyncio.sleep(0.5)
        stop.set()
        await task
        os.kill(a.pid, signal.SIGSTOP)
        paused = asyncio.create_task(trader.client.call("order.place", **place))
        new_url = await asyncio.to_thread(b.wait_listening, TAKEOVER_S)
        os.kill(a.pid, signal.SIGCONT)
        assert await asyncio.to_thread(a.proc.wait, TIMEOUT * 4) == FENCED_EXIT
        with pytest.raises(ConnectionError):
            await paused                        # never answered: it is not in the stream
        assert "no longer leads" in a.output()
        client = await Client.open(new_url, NAMES[0])
        missing = await client.call("order.get", client_order_id="paused-1")
        assert missing["error"]["data"]["reason"] == "unknown_order"
        first = await client.result("order.place", **place)
        again = await client.result("order.place", **place)
        assert again["duplicate"] and again["order_id"] == first["order_id"]
        await client.close()
        await trader.client.close()
        await trader.connect(new_url)
        await check_trader(trader, result, every=True)
        await trader.client.close()

    result = Tally()
    try:
        asyncio.run(run())
    finally:
        a.stop()
        b.stop()
    assert result.orders_checked > 0


def test_a_leader_stopped_cleanly_hands_over_and_rejoins_as_it_was(fresh, tmp_path):
    """SIGTERM mid-trading: the leader answers what it can, puts its last batches on the
    stream and gives the lease up; the standby leads; the stopped matcher, started again,
    follows on from its own journal (nothing to move aside)."""
    a = start(tmp_path / "a", "a", CONFIG, fresh, standby=False)
    b = start(tmp_path / "b", "b", CONFIG, fresh, standby=True)
    tally = Tally()

    async def run():
        traders = [Trader(n, random.Random(i)) for i, n in enumerate(NAMES)]
        for t in traders:
            await t.connect(a.url)
        stop = asyncio.Event()
        tasks = [asyncio.create_task(t.trade(stop)) for t in traders]
        await asyncio.sleep(0.7)
        a.proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(a.proc.wait, TIMEOUT * 4) == 0
        await asyncio.gather(*tasks)
        new_url = await asyncio.to_thread(b.wait_listening, TAKEOVER_S)
        for t in traders:
            await t.client.close()
            await t.connect(new_url)
            await check_trader(t, tally, every=True)
            await t.client.close()
        return new_url

    again = None
    try:
        asyncio.run(run())
        again = start(tmp_path / "a", "a", CONFIG, fresh, standby=True)
        asyncio.run(asyncio.sleep(2.0))
        assert again.proc.poll() is None and "moved to" not in again.output()
        assert not list(tmp_path.glob("a/matcher.diverged-*"))
    finally:
        for process in (a, b, again):
            if process is not None:
                process.stop()
    assert tally.lost == 0 and tally.orders_checked > 0


def test_quotes_guarded_by_cancel_on_disconnect_do_not_outlive_the_leader(fresh, tmp_path):
    a = start(tmp_path / "a", "a", CONFIG, fresh, standby=False)
    b = start(tmp_path / "b", "b", CONFIG, fresh, standby=True)

    async def run():
        maker = await Client.open(a.url, NAMES[0])
        await maker.result("session.cancel_on_disconnect", enabled=True)
        quotes = [await maker.result("order.place", symbol=SYMBOL, side=side, qty=5,
                                     price=price, client_order_id=f"q-{side}")
                  for side, price in (("buy", "2.050"), ("sell", "2.150"))]
        a.kill()
        new_url = await asyncio.to_thread(b.wait_listening, TAKEOVER_S)
        await maker.close()
        after = await Client.open(new_url, NAMES[0])
        for quote in quotes:
            got = await after.result("order.get", order_id=quote["order_id"])
            assert (got["status"], got["cancel_reason"]) == ("cancelled", "disconnect"), got
        await after.close()

    try:
        asyncio.run(run())
    finally:
        b.stop()


async def _trade_for(traders, seconds: float) -> None:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(t.trade(stop)) for t in traders]
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*tasks)


async def _state(url: str) -> tuple[int, str]:
    admin = await Client.open(url, ADMIN)
    state = await admin.result("admin.state")
    await admin.close()
    return state["seq"], state["state_hash"]


async def _back_on(trader: Trader, url: str, tally: Tally, tries: int = 5) -> None:
    """Log the trader in again and check its orders, as a client would: while the stream's
    leader moves, a gateway that lost a message from the matcher closes its connections
    again, the one just opened too (its in-flight request is then still to check)."""
    for _ in range(tries):
        in_flight = trader.in_flight
        try:
            await trader.connect(url)
            await check_trader(trader, tally, every=True)
            return
        except ConnectionError:
            trader.in_flight = in_flight
            await asyncio.sleep(0.5)
    raise AssertionError(f"{trader.name} could not log in again in {tries} tries")


@pytest.mark.parametrize("through", ["the leader", "a gateway"])
def test_trading_goes_on_when_the_stream_leader_is_killed(tmp_path, through):
    config = load_config(CONFIG)
    accounts = list(Accounts(list(config.account), 0).by_id.values())
    tally = Tally()
    with own_cluster(tmp_path / "nats") as nats:
        a = start(tmp_path / "a", "a", CONFIG, nats, standby=False)
        url = a.url if through == "the leader" else \
            started(gateway(tmp_path / "g", "g", CONFIG, nats)).url

        async def run():
            traders = [Trader(n, random.Random(i)) for i, n in enumerate(NAMES)]
            for t in traders:
                await t.connect(url)
            await _trade_for(traders, 0.5)
            stream = await Stream.connect(nats.urls)
            info = await stream.js.stream_info(STREAM)
            await stream.close()
            node = next(n for n in nats.nodes if n.name == info.cluster.leader)
            node.kill()
            acked = sum(t.acked for t in traders)
            for _ in range(3):          # (a message NATS lost closes a gateway's sessions)
                await _trade_for(traders, 1.0)
                for t in traders:
                    if t.client.ws.close_code is not None:
                        await _back_on(t, url, tally)
            assert sum(t.acked for t in traders) > acked       # it went on
            node.start()
            for t in traders:
                await check_trader(t, tally, every=True)
                await t.client.close()
            seq, digest = await _state(url)
            check_replay(a.dir / "matcher", config, accounts, seq, digest, tally)

        try:
            asyncio.run(run())
        finally:
            a.stop()
    assert tally.lost == 0 and tally.orders_checked > 0


def test_the_whole_cluster_restarts_from_its_data(tmp_path):
    config = load_config(CONFIG)
    accounts = list(Accounts(list(config.account), 0).by_id.values())
    tally = Tally()
    nats = own_cluster(tmp_path / "nats")
    a = start(tmp_path / "a", "a", CONFIG, nats, standby=False)
    b = start(tmp_path / "b", "b", CONFIG, nats, standby=True)
    traders = [Trader(n, random.Random(i)) for i, n in enumerate(NAMES)]

    async def trade():
        for t in traders:
            await t.connect(a.url)
        await _trade_for(traders, 3.5)          # past the config's snapshot interval, 3 s
        for t in traders:
            await t.client.close()
        return await _state(a.url)

    try:
        before = asyncio.run(trade())
        assert a.stop() == 0 and b.stop() == 0
        # The standby took snapshots as it followed, as the leader does.
        assert snapshot_files(snapshot_dir(tmp_path / "b" / "matcher"))
        nats.stop()
        nats.start()
        a = start(tmp_path / "a", "a", CONFIG, nats, standby=False)
        b = start(tmp_path / "b", "b", CONFIG, nats, standby=True)
        assert "moved to" not in a.output() + b.output()

        async def check():
            for t in traders:
                await t.connect(a.url)
                await check_trader(t, tally, every=True)
                await t.client.close()
            seq, digest = await _state(a.url)
            check_replay(a.dir / "matcher", config, accounts, seq, digest, tally,
                         before_kill=before)

        asyncio.run(check())
    finally:
        a.stop()
        b.stop()
        nats.stop()
    assert tally.lost == 0 and tally.states_compared == 2


# -- Refusals at the start ----------------------------------------------------------


def _matcher_cli(tmp_path, *args: str, config: str | None = CONFIG):
    return gpux_cli("matcher", tmp_path, config or "", *args)


def test_a_matcher_without_accounts_in_its_config_is_refused(tmp_path):
    done = _matcher_cli(tmp_path, "--nats", "nats://127.0.0.1:1", config=None)
    assert done.returncode == 2 and "need the accounts in their config" in done.stderr
    assert not (tmp_path / "m").exists()


def test_a_matcher_that_cannot_reach_the_cluster_says_so(tmp_path):
    done = _matcher_cli(tmp_path, "--nats", "nats://127.0.0.1:1", "--wait-nats", "0.5")
    assert done.returncode == 2, done.stderr
    assert "did not answer within 0.5 s" in done.stderr and "Traceback" not in done.stderr


def test_a_second_leader_is_refused_while_one_leads(fresh, tmp_path):
    a = start(tmp_path / "a", "a", CONFIG, fresh, standby=False)
    try:
        done = _matcher_cli(tmp_path, "--nats", ",".join(fresh.urls), "--name", "b")
        assert done.returncode == 2
        assert "a leads; start this matcher with --standby" in done.stderr
    finally:
        assert a.stop() == 0


# -- What the review found (each a failing test first) -------------------------------


def test_a_failover_does_not_fund_the_exchange_again(fresh, tmp_path):
    """Funding is for a new exchange: one whose every account was emptied is not new."""
    a = start(tmp_path / "a", "a", CONFIG, fresh, standby=False)
    b = start(tmp_path / "b", "b", CONFIG, fresh, standby=True)
    accounts = NAMES + [PROBE, "insurance_fund"]

    async def balances(admin) -> list[str]:
        return [(await admin.result("admin.deposit", account=name,
                                    amount="0.000001"))["collateral"] for name in accounts]

    async def run():
        admin = await Client.open(a.url, ADMIN)
        for name, held in zip(accounts, await balances(admin)):
            await admin.result("admin.withdraw", account=name, amount=held)
        await admin.close()
        a.kill()
        admin = await Client.open(await asyncio.to_thread(b.wait_listening, TAKEOVER_S), ADMIN)
        assert await balances(admin) == ["0.000001"] * len(accounts)
        await admin.close()

    try:
        asyncio.run(run())
    finally:
        b.stop()


def test_a_stream_that_lost_its_data_is_filled_again_from_the_leaders_journal(tmp_path):
    """NATS's stores wiped (or lost to power): the leader's fsync'd journal is the record."""
    tally = Tally()
    nats = own_cluster(tmp_path / "nats")
    a = start(tmp_path / "a", "a", CONFIG, nats, standby=False)
    trader = Trader(NAMES[0], random.Random(3))
    b = None

    async def trade(url):
        await trader.connect(url)
        await _trade_for([trader], 1.0)
        await trader.client.close()

    async def check(url):
        await trader.connect(url)
        await check_trader(trader, tally, every=True)
        await trader.client.close()

    try:
        asyncio.run(trade(a.url))
        assert a.stop() == 0
        nats.stop()
        for node in nats.nodes:
            shutil.rmtree(node.dir / "store")
        nats.start()
        a = start(tmp_path / "a", "a", CONFIG, nats, standby=False)
        assert "moved to" not in a.output()
        asyncio.run(check(a.url))
        b = start(tmp_path / "b", "b", CONFIG, nats, standby=True)   # from the stream alone
        a.kill()
        asyncio.run(check(b.wait_listening(TAKEOVER_S)))
    finally:
        for process in (a, b):
            if process is not None:
                process.stop()
        nats.stop()
    assert tally.lost == 0 and tally.orders_checked > 0


def _unreplicated_tail(tmp_path, nats, orders: list[tuple[str, int]]) -> int:
    """Matcher "a" leads a new exchange and stops; then ``orders`` (client_order_id, qty)
    are written to its journal in one batch, as a leader killed before the stream took
    them leaves them. Return the stream's last seq (where the tail starts after)."""
    assert start(tmp_path / "a", "a", CONFIG, nats, standby=False).stop() == 0
    data = tmp_path / "a" / "matcher"
    reader = Reader(journal_dir(data))
    for _ in reader:
        pass
    journal = Journal(journal_dir(data), reader.last_seq + 1, fsync=False)
    for cid, qty in orders:
        journal.append(PlaceOrder(ts_ns=time.time_ns(), account_id=1, symbol=SYMBOL,
                                  side=Side.BUY, qty=qty, price=2000, client_order_id=cid))
    journal.close()
    return reader.last_seq


def test_batches_a_killed_leader_wrote_but_never_replicated_go_back_on_the_stream(fresh,
                                                                                 tmp_path):
    """Written to its own journal, not yet on the stream (never acknowledged): started again
    before anyone else led, the matcher puts them on the stream rather than dropping them,
    as one server keeps what it wrote before a crash."""
    _unreplicated_tail(tmp_path, fresh, [("tail-1", 3)])
    a = start(tmp_path / "a", "a", CONFIG, fresh, standby=False)
    b = start(tmp_path / "b", "b", CONFIG, fresh, standby=True)
    try:
        assert "moved to" not in a.output()
        a.kill()

        async def check():
            client = await Client.open(await asyncio.to_thread(b.wait_listening, TAKEOVER_S),
                                       NAMES[0])
            got = await client.result("order.get", client_order_id="tail-1")
            assert (got["status"], got["qty"]) == ("open", 3)
            await client.close()

        asyncio.run(check())
    finally:
        b.stop()


def test_a_standby_whose_config_differs_from_the_leaders_is_refused(fresh, tmp_path):
    """A different position limit would replay the same commands to another state."""
    a = start(tmp_path / "a", "a", CONFIG, fresh, standby=False)
    other = CONFIG.replace("position_limit = 10000000", "position_limit = 3")
    assert other != CONFIG
    b = start(tmp_path / "b", "b", other, fresh, standby=True)
    try:
        for _ in range(2):          # and again: the refused Lead was not kept to follow on from
            assert b.proc.wait(TIMEOUT * 4) == 2
            assert "another config" in b.output() and "Traceback" not in b.output()
            b.stop()
            b = start(tmp_path / "b", "b", other, fresh, standby=True)
    finally:
        a.stop()
        b.stop()


def test_a_standby_whose_port_is_taken_says_so_before_it_could_lead(fresh, tmp_path):
    a = start(tmp_path / "a", "a", CONFIG, fresh, standby=False)
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        b = ServerProcess("matcher", config_text=CONFIG, workdir=tmp_path / "b",
                          args=SERVE_ARGS + ["--nats", ",".join(fresh.urls), "--name", "b",
                                             "--standby", "--port", str(port)],
                          startup_timeout=None)
        try:
            assert b.proc.wait(TIMEOUT * 4) != 0
            assert "cannot listen" in b.output() and "Traceback" not in b.output()
        finally:
            a.stop()
            b.stop()


def test_a_stream_that_is_not_a_journal_is_refused_with_a_message(fresh, tmp_path):
    async def garbage():
        stream = await Stream.connect(fresh.urls)
        await stream.js.publish("gpux.journal", b"not a journal batch")
        await stream.close()
    asyncio.run(garbage())
    done = _matcher_cli(tmp_path, "--nats", ",".join(fresh.urls), "--name", "a")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "stream" in done.stderr


def test_a_lapsed_renewal_of_our_own_lease_keeps_it(fresh):
    async def run():
        stream = await Stream.connect(fresh.urls)
        lease = await Lease(stream.js, "a").open()
        assert await lease.acquire()
        await lease.kv.update("leader", b"a", last=lease.revision)    # an answer lost
        await lease.renew()
        assert lease.revision == (await lease.kv.get("leader")).revision
        await lease.renew()                     # the adopted revision is the entry's
        assert await lease.leader() == "a"
        await stream.close()
    asyncio.run(run())


def test_a_matcher_waiting_for_the_cluster_stops_on_sigterm(tmp_path):
    path = tmp_path / "gpux.toml"
    path.write_text(CONFIG)
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.client.cli", "matcher", "--data-dir",
         str(tmp_path / "m"), "--config", str(path), "--port", "0", "--nats",
         "nats://127.0.0.1:1", "--wait-nats", "600"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=TIMEOUT * 2)
    finally:
        process.kill()
    assert process.returncode == 0 and "stopped" in out, err


def test_a_stream_kept_otherwise_than_asked_is_refused_at_once(fresh, tmp_path):
    async def create():
        stream = await Stream.connect(fresh.urls, replicas=3)
        await stream.close()
    asyncio.run(create())
    done = _matcher_cli(tmp_path, "--nats", ",".join(fresh.urls), "--replicas", "1",
                        "--wait-nats", "600")
    assert done.returncode == 2 and "cannot be used as asked" in done.stderr, done.stderr


def test_a_standby_whose_journal_is_damaged_rebuilds_from_the_stream(fresh, tmp_path):
    """A byte changed inside a standby's journal (whole batches after it): the stream holds
    everything, so the directory is set aside and the state rebuilt from it."""
    a = start(tmp_path / "a", "a", CONFIG, fresh, standby=False)
    b = start(tmp_path / "b", "b", CONFIG, fresh, standby=True)
    trader, tally = Trader(NAMES[0], random.Random(4)), Tally()

    async def trade():
        await trader.connect(a.url)
        await _trade_for([trader], 1.0)
        await trader.client.close()

    try:
        asyncio.run(trade())
        assert b.stop() == 0
        (_, path), *_ = segments(journal_dir(tmp_path / "b" / "matcher"))
        data = bytearray(path.read_bytes())
        data[len(data) // 3] ^= 0xFF
        path.write_bytes(bytes(data))
        b = start(tmp_path / "b", "b", CONFIG, fresh, standby=True)
        a.kill()

        async def check():
            await trader.connect(await asyncio.to_thread(b.wait_listening, TAKEOVER_S))
            await check_trader(trader, tally, every=True)
            await trader.client.close()

        asyncio.run(check())
        assert "damaged" in b.output() and "moved to" in b.output()
    finally:
        a.stop()
        b.stop()
    assert tally.lost == 0 and tally.orders_checked > 0


def test_a_tail_that_another_leader_wrote_over_in_smaller_batches_is_set_aside(fresh,
                                                                               tmp_path):
    """A leader's 20 unreplicated records (one batch); another matcher then led and wrote
    a few batches over those seqs: the first matcher, restarted, sets its directory aside
    and follows (it was refused: its batch did not start where the stream's last one
    does)."""
    stream_end = _unreplicated_tail(tmp_path, fresh, [(f"t-{n}", 1) for n in range(20)])
    b = start(tmp_path / "b", "b", CONFIG, fresh, standby=False)    # Lead: one batch

    async def deposit():                                               # a second batch
        admin = await Client.open(b.url, ADMIN)
        await admin.result("admin.deposit", account=NAMES[0], amount="1")
        await admin.close()

    try:
        asyncio.run(deposit())
        assert b.stop() == 0
        assert [r.seq for r in Reader(journal_dir(tmp_path / "b" / "matcher"))][-1] \
            < stream_end + 20                          # b's last batch inside a's tail
        a = start(tmp_path / "a", "a", CONFIG, fresh, standby=False)
        assert "moved to" in a.output() and a.proc.poll() is None
    finally:
        a.stop()
        b.stop()
