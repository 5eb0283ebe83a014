"""Closed orders and fills leave memory after a few minutes, and are answered as before.

The engine keeps a closed order in memory for RECENT_NS, the account's fills about as
long; then they are in the archive (gateway.core.archive). Whatever a client asks about
them (order.get, a resend by client_order_id, a cancel or a replace, account.fills) is
answered exactly as it was while they were in memory, for seven days.
"""
from __future__ import annotations

import os
import signal
import sqlite3
import time
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect

from engine.exchange import RECENT_NS, RETENTION_NS
from engine.messages import (
    CancelReason, OrderStatus, OrderType, PlaceOrder, SelfTradePrevention, Side, StripExecuted,
    TimeInForce, Timer,
)
from gateway.core import venue as venue_module
from gateway.core.archive import FILL, ClosedOrder, MemoryArchive, OrderFields, fill_key
from gateway.storage.recovery import build, verify
from inproc import InProcess
from gateway.core.auth import sign
from gateway.storage import archive as storage_archive
from gateway.storage.archive import SqliteArchive
from live import (
    AS_OF, SYMBOL, FullDisk, Keys, Process, Ws, market_clock, run, stop_and_verify, wait_for,
)

NS = 10**9


def _later(venue: InProcess, ns: int) -> None:
    """Move the clock on and let the engine see the time (a Timer)."""
    venue.tick(ns / NS)
    venue.core.submit(Timer(ts_ns=venue.ns))


def _trade(venue: InProcess):
    """A cancelled order and a filled one of maker-1 (both with client_order_ids), an
    open one, and what the clients see of them."""
    maker, taker = venue.session("maker-1"), venue.session("trader-1")
    buy = dict(symbol=SYMBOL, side="buy", qty=3, price="1.990")
    cancelled = venue.result(maker, "order.place", client_order_id="gone", **buy)
    venue.result(maker, "order.cancel", order_id=cancelled["order_id"])
    sell = dict(symbol=SYMBOL, side="sell", qty=2, price="2.010")
    filled = venue.result(maker, "order.place", client_order_id="done", **sell)
    venue.result(taker, "order.place", symbol=SYMBOL, side="buy", qty=2, price="2.010")
    rests = venue.result(maker, "order.place", client_order_id="rests", symbol=SYMBOL,
                         side="buy", qty=1, price="1.900")
    seen = {o["client_order_id"]: venue.result(maker, "order.get", order_id=o["order_id"])
            for o in (cancelled, filled, rests)}
    fills = venue.result(maker, "account.fills")
    return maker, taker, buy, sell, seen, fills


@pytest.fixture(params=["memory", "sqlite"])
def exchange(request, tmp_path, monkeypatch):
    """The core in-process, with the archive in memory or in SQLite (flushing every two
    records, so answers come from the file as much as from what waits)."""
    venue = InProcess(tmp_path / "data")
    if request.param == "sqlite":
        monkeypatch.setattr(storage_archive, "FLUSH_AT", 2)
        venue.venue.attach_archive(SqliteArchive(tmp_path / "archive.sqlite"))
    return venue


def _forgotten(venue: InProcess, order_id: int) -> bool:
    v = venue.venue
    return (v.exchange.order(order_id) is None and order_id not in v.fills
            and order_id not in v.ended)


def test_a_closed_order_leaves_memory_and_is_answered_as_before(exchange):
    venue = exchange
    maker, taker, buy, sell, seen, fills = _trade(venue)
    gone, done = seen["gone"]["order_id"], seen["done"]["order_id"]
    _later(venue, RECENT_NS - NS)
    assert not _forgotten(venue, gone)
    _later(venue, 2 * NS)
    assert _forgotten(venue, gone) and _forgotten(venue, done)
    assert venue.venue.exchange.order(seen["rests"]["order_id"]) is not None   # open: kept
    for cid, view in seen.items():
        assert venue.result(maker, "order.get", order_id=view["order_id"]) == view
        assert venue.result(maker, "order.get", client_order_id=cid) == view
    # A resend is answered with the order, and places nothing.
    before = venue.venue.exchange.open_order_count(venue.accounts.by_name["maker-1"].account_id)
    again = venue.result(maker, "order.place", client_order_id="gone", **buy)
    assert again == seen["gone"] | {"duplicate": True}
    again = venue.result(maker, "order.place", client_order_id="done", **sell)
    assert again == seen["done"] | {"duplicate": True}
    error = venue.error(maker, "order.place", client_order_id="done", **sell | {"qty": 5})
    assert error["data"]["reason"] == "duplicate_client_order_id", error
    after = venue.venue.exchange.open_order_count(venue.accounts.by_name["maker-1"].account_id)
    assert after == before
    # A cancel or a replace of it is refused as closed, as before, not as unknown.
    for ref in ({"order_id": gone}, {"client_order_id": "gone"}):
        assert venue.error(maker, "order.cancel", **ref)["data"]["reason"] == "order_closed"
        assert venue.error(maker, "order.replace", qty=9, **ref)["data"]["reason"] \
            == "order_closed"
    # Another account's order is unknown, archived or not.
    assert venue.error(taker, "order.get", order_id=gone)["data"]["reason"] == "unknown_order"
    assert venue.error(taker, "order.cancel", order_id=gone)["data"]["reason"] \
        == "unknown_order"
    venue.seal()
    assert venue.result(maker, "account.fills") == fills


def test_a_resend_that_itself_moves_the_order_out_of_memory_is_still_a_duplicate(exchange):
    """The resend is the first command after the five minutes: the engine lets the order
    go while running it, before the venue has handed it to the archive (the simulation,
    seed 1439, found a second order placed under the same client_order_id)."""
    venue = exchange
    maker, _, buy, _, seen, _ = _trade(venue)
    venue.tick(RECENT_NS / NS + 1)                # no Timer: the resend is the next command
    again = venue.result(maker, "order.place", client_order_id="gone", **buy)
    assert again == seen["gone"] | {"duplicate": True}
    assert _forgotten(venue, seen["gone"]["order_id"])
    venue.tick(RECENT_NS / NS + 1)
    for ref in ({"order_id": seen["done"]["order_id"]}, {"client_order_id": "done"}):
        assert venue.error(maker, "order.cancel", **ref)["data"]["reason"] == "order_closed"


def test_an_account_at_its_open_order_limit_still_gets_an_archived_orders_resend(tmp_path):
    """At max_open_orders a new order is refused, but a resend of one that left memory is
    answered with it (the archive is asked only then)."""
    venue = InProcess(tmp_path / "data", "[limits.roles.trader]\nmax_open_orders = 2\n")
    trader = venue.session("trader-1")
    buy = dict(symbol=SYMBOL, side="buy", qty=1, price="1.900")
    gone = venue.result(trader, "order.place", client_order_id="gone", **buy)
    venue.result(trader, "order.cancel", order_id=gone["order_id"])
    _later(venue, RECENT_NS + NS)
    assert _forgotten(venue, gone["order_id"])
    for n in range(2):
        venue.result(trader, "order.place", client_order_id=f"rests-{n}", **buy)
    assert venue.error(trader, "order.place", client_order_id="new", **buy)["data"][
        "reason"] == "too_many_orders"
    again = venue.result(trader, "order.place", client_order_id="gone", **buy)
    assert (again["order_id"], again["duplicate"]) == (gone["order_id"], True)


def test_an_archived_order_is_kept_seven_days_then_its_client_order_id_is_free(exchange):
    venue = exchange
    maker, _, buy, _, seen, _ = _trade(venue)
    _later(venue, RETENTION_NS - 60 * NS)
    assert venue.result(maker, "order.place", client_order_id="gone", **buy)["duplicate"]
    _later(venue, 61 * NS)
    assert venue.error(maker, "order.get", client_order_id="gone")["data"]["reason"] \
        == "unknown_order"
    new = venue.result(maker, "order.place", client_order_id="gone", **buy)
    assert new["order_id"] > seen["rests"]["order_id"] and "duplicate" not in new
    # Archived too, beside the first of that client_order_id: a resend is the new one's.
    venue.result(maker, "order.cancel", client_order_id="gone")
    _later(venue, RECENT_NS + NS)
    again = venue.result(maker, "order.place", client_order_id="gone", **buy)
    assert (again["order_id"], again["duplicate"]) == (new["order_id"], True)
    assert venue.result(maker, "order.get", client_order_id="gone")["order_id"] \
        == new["order_id"]


def test_fills_move_to_the_archive_and_pages_run_on_into_it(exchange):
    """account.fills pages the same whether the fills are in memory or archived, and the
    memory holds only the recent ones."""
    venue = exchange
    maker, taker = venue.session("maker-1"), venue.session("trader-1")
    for n in range(12):
        symbol = SYMBOL if n % 3 else "H100-2027-04"
        venue.result(maker, "order.place", symbol=symbol, side="sell", qty=1,
                     price="2.010")
        venue.result(taker, "order.place", symbol=symbol, side="buy", qty=1, price="2.010")
        if n == 5:
            _later(venue, RECENT_NS + NS)
    pages = _pages(venue, maker)
    assert len(pages[(None, None)]) == 12
    venue.venue._prune()
    held = venue.venue.account_fills._trade_ids[venue.accounts.by_name["maker-1"].account_id]
    assert len(held) == 6                     # the six older ones are in the archive
    assert _pages(venue, maker) == pages


LEGS = ["H100-2027-03", "H100-2027-04", "H100-2027-05"]


def test_a_strip_leaves_memory_and_a_resend_is_answered_as_before(exchange, monkeypatch):
    monkeypatch.setattr(venue_module, "PRUNE_EVERY", 3)
    venue = exchange
    venue.venue._until_prune = 3              # made before the monkeypatch
    maker, trader = venue.session("maker-1"), venue.session("trader-1")
    for symbol in LEGS:
        venue.result(maker, "order.place", symbol=symbol, side="sell", qty=9, price="2.100")
    params = dict(symbols=LEGS, side="buy", qty=2, price="2.100", client_order_id="s-1")
    strip = venue.result(trader, "order.place_strip", **params)
    _later(venue, RECENT_NS + NS)
    for _ in range(4):
        _later(venue, NS)
    assert not venue.venue.strips                 # in the archive now
    assert venue.result(trader, "order.place_strip", **params) == strip | {"duplicate": True}
    changed = venue.error(trader, "order.place_strip", **params | {"qty": 1})
    assert changed["data"]["reason"] == "duplicate_client_order_id"
    _later(venue, RETENTION_NS)
    again = venue.result(trader, "order.place_strip", **params)
    assert "duplicate" not in again and again["strip_id"] != strip["strip_id"]


def _pages(venue, session) -> dict:
    """Every page of every size, filtered and not."""
    out = {}
    every = venue.result(session, "account.fills", limit=100)
    ids = [f["trade_id"] for f in every] + [None]
    for symbol in (None, SYMBOL, "H100-2027-04", "H100-2027-05"):
        for before in ids:
            for limit in (1, 2, 5, 100):
                params = {"limit": limit} | ({"symbol": symbol} if symbol else {}) | (
                    {"before": before} if before else {})
                venue.now += 1.0          # only the request bucket's clock: it refills
                out[(symbol, before) if limit == 100 else (symbol, before, limit)] = \
                    venue.result(session, "account.fills", **params)
    out[(None, None)] = every
    return out


def test_the_journal_replays_to_the_same_state_and_archive(tmp_path, monkeypatch):
    monkeypatch.setattr(venue_module, "PRUNE_EVERY", 7)      # live and in the replay
    venue = InProcess(tmp_path / "data")
    maker, _, buy, _, seen, _ = _trade(venue)
    _later(venue, RECENT_NS + NS)
    venue.result(maker, "order.place", client_order_id="gone", **buy)
    for _ in range(10):
        _later(venue, NS)
    assert venue.venue.archive._fills             # the old fills were moved
    venue.seal()
    venue.journal.close()
    replayed = verify(tmp_path / "data", lambda: build(venue.config, AS_OF,
                                                      venue.accounts.by_id.values()))
    assert replayed.digest == venue.digest()
    archive = replayed.replay.venue.archive
    assert isinstance(archive, MemoryArchive)
    assert archive.orders == venue.venue.archive.orders
    closed = {seen["gone"]["order_id"], seen["done"]["order_id"]}
    assert closed < set(archive.orders) and seen["rests"]["order_id"] not in archive.orders


def test_old_fills_move_by_themselves_every_so_many_commands(tmp_path):
    """The venue counts commands, and every PRUNE_EVERY moves old fills to the archive."""
    venue = InProcess(tmp_path / "data")
    maker, taker = venue.session("maker-1"), venue.session("trader-1")
    venue.result(maker, "order.place", symbol=SYMBOL, side="sell", qty=1, price="2.010")
    venue.result(taker, "order.place", symbol=SYMBOL, side="buy", qty=1, price="2.010")
    account = venue.accounts.by_name["maker-1"].account_id
    venue.tick(RECENT_NS / NS + 1)
    assert account in venue.venue.account_fills._trade_ids
    venue.venue._until_prune = 1          # as after PRUNE_EVERY - 1 commands
    venue.core.submit(Timer(ts_ns=venue.ns))
    venue.core.projection.flush()
    assert account not in venue.venue.account_fills._trade_ids
    assert venue.venue.archive.fills(account, None, None, 10)


SKEWED = Path(__file__).with_name("skewed.py")


def test_sigkill_after_a_snapshot_leaves_archived_orders_answered(tmp_path):
    """A real server, its clock moved five minutes on: the closed orders go to the archive
    file, a snapshot is written without them, the process is killed with SIGKILL; the
    restart (from that snapshot) answers them as before, from the archive."""
    data, skew = tmp_path / "data", tmp_path / "skew"
    skew.write_text("0")
    config = tmp_path / "gpux.toml"
    config.write_text("[journal]\nsnapshot_every = 10\n")

    def start() -> Process:
        return Process(data, "--config", str(config), program=(str(SKEWED),),
                       env={"GPUX_TEST_SKEW_FILE": str(skew)})

    async def login(keys: Keys, name: str) -> Ws:
        ws = Ws(await connect(keys.url))
        a = keys.account(name)
        ts = int(time.time() * 1000 + float(skew.read_text()) * 1000)     # its clock's
        nonce = f"n-{time.monotonic_ns()}"
        reply = await ws.call("auth.login", api_key=a.api_key, timestamp=ts, nonce=nonce,
                              signature=sign(a.api_secret, ts, nonce))
        assert "result" in reply, reply
        return ws

    server = start()
    keys = Keys(server.url, data / "demo-accounts.json")

    async def before():
        maker, trader = await login(keys, "maker-1"), await login(keys, "trader-1")
        inst = next(i for i in await maker.result("market.instruments")
                    if i["gpu_class"] == "H100" and i["status"] == "open")
        symbol, price = inst["symbol"], inst["reference_price"]
        gone = await maker.result("order.place", symbol=symbol, side="buy", qty=3,
                                  price=price, client_order_id="old-1")
        await maker.result("order.cancel", order_id=gone["order_id"])
        done = await maker.result("order.place", symbol=symbol, side="sell", qty=2,
                                  price=price, client_order_id="old-2")
        await trader.result("order.place", symbol=symbol, side="buy", qty=2, price=price)
        views = [await maker.result("order.get", order_id=o["order_id"]) for o in (gone, done)]
        return symbol, price, views, await maker.result("account.fills")
    symbol, price, views, fills = run(before())
    snapshots = set((data / "snapshots").glob("*.snap"))
    skew.write_text(str(RECENT_NS / NS + 60))

    async def more():
        ws = await login(keys, "trader-1")
        for n in range(8):       # commands enough for a snapshot, after the orders went
            placed = await ws.result("order.place", symbol=symbol, side="buy", qty=1,
                                     price=price)
            await ws.result("order.cancel", order_id=placed["order_id"])
    run(more())
    deadline = time.monotonic() + 10
    while set((data / "snapshots").glob("*.snap")) <= snapshots:
        assert time.monotonic() < deadline, "".join(server.errors)
        time.sleep(0.05)
    time.sleep(0.2)
    server.stop(signal.SIGKILL)
    with sqlite3.connect(f"file:{data / 'archive.sqlite'}?mode=ro", uri=True) as db:
        archived = {i for (i,) in db.execute("SELECT order_id FROM orders")}
    assert {v["order_id"] for v in views} <= archived

    again = start()
    assert any("snapshot at seq" in line and "snapshot at seq 0," not in line
               for line in again.lines), again.lines
    keys = Keys(again.url, data / "demo-accounts.json")

    async def after():
        maker = await login(keys, "maker-1")
        for view in views:
            assert await maker.result("order.get", order_id=view["order_id"]) == view
            assert await maker.result("order.get",
                                      client_order_id=view["client_order_id"]) == view
        resent = await maker.result("order.place", symbol=symbol, side="buy", qty=3,
                                    price=price, client_order_id="old-1")
        assert resent == views[0] | {"duplicate": True}
        assert await maker.result("account.fills") == fills
    run(after())
    stop_and_verify(again, data)



def _closed(order_id: int, account_id: int, cid: str | None, closed_ns: int,
            fills: int) -> ClosedOrder:
    request = None if cid is None else PlaceOrder(
        ts_ns=closed_ns - 5, account_id=account_id, symbol=SYMBOL, side=Side.BUY, qty=3,
        order_type=OrderType.LIMIT, price=1990, client_order_id=cid)
    fields = OrderFields(order_id, cid, SYMBOL, Side.BUY, OrderType.LIMIT, TimeInForce.GTC,
                         1990, None, 3, fills, 0,
                         OrderStatus.FILLED if fills == 3 else OrderStatus.CANCELLED, None,
                         None, False, False, SelfTradePrevention.CANCEL_NEWEST)
    packed = b"".join(FILL.pack(order_id * 10 + n, 1990, 1, True) for n in range(fills))
    return ClosedOrder(order_id, account_id, cid, closed_ns, request, fields, packed,
                       None if fills == 3 else CancelReason.USER.value)


def test_what_the_archive_commits_is_seen_beside_it_and_reaches_the_file(tmp_path):
    """Its connection stays inside a transaction between commits (its reads take no locks
    of their own): a flush and a prune still commit, so a readonly archive beside it (`gpux
    journal verify` beside a running server) sees what was written and deleted, and the
    checkpoint of a sync is not held up by that transaction (the database file itself,
    read without its WAL, holds the records)."""
    path = tmp_path / "archive.sqlite"
    disk = SqliteArchive(path)
    disk.put(_closed(1, 1, "a", 10, 3))
    disk.put(_closed(2, 1, "b", 50, 3))
    disk.flush()
    assert disk.closed_order(1, 1, None) is not None          # a read inside it
    beside = SqliteArchive(path, readonly=True)
    assert beside.closed_order(1, 2, None) == disk.closed_order(1, 2, None) is not None
    assert disk.prune(20) == 1
    assert beside.closed_order(1, 1, None) is None
    disk.put(_closed(3, 2, "c", 60, 3))
    disk.sync()
    main_file = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    assert main_file.execute("SELECT order_id FROM orders ORDER BY order_id").fetchall() \
        == [(2,), (3,)]
    main_file.close()
    beside.close()
    disk.close()


def test_a_sync_with_a_reader_beside_it_still_makes_the_archive_durable(tmp_path, monkeypatch):
    """A reader beside the archive (`gpux journal verify`) inside a read of its own holds a
    checkpoint back: it copied nothing into the database file and synced nothing, and the
    snapshot that relies on the archive was written anyway. The records are made durable in
    the WAL then: it is fsynced after their commit."""
    path = tmp_path / "archive.sqlite"
    disk = SqliteArchive(path)
    disk.put(_closed(1, 1, "a", 10, 3))
    disk.sync()
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM orders").fetchone() == (1,)   # holds it
    fsynced = []
    real = os.fsync

    def spy(fd):
        fsynced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)
    monkeypatch.setattr(os, "fsync", spy)
    disk.put(_closed(2, 1, "b", 20, 3))
    disk.sync()
    main_file = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    in_file = main_file.execute("SELECT order_id FROM orders ORDER BY order_id").fetchall()
    main_file.close()
    assert in_file == [(1,), (2,)] or f"{path}-wal" in fsynced
    assert reader.execute("SELECT count(*) FROM orders").fetchone() == (1,)   # undisturbed
    reader.close()
    disk.close()


def test_an_archive_write_that_fails_keeps_the_records_and_the_order_path_going(
        tmp_path, monkeypatch):
    """A batch write that fails (a full disk) is the archive's problem, not the command's:
    it ran in the order path, so raising there marked the command as failed, halted its
    instrument, and a replay (whose write succeeds) refused the journal as diverged. The
    records wait in memory and are still answered, a sync says the archive is not durable
    (so no snapshot relies on it), and the next write after the disk has room takes them."""
    monkeypatch.setattr(storage_archive, "FLUSH_AT", 2)
    path = tmp_path / "archive.sqlite"
    disk = SqliteArchive(path)
    disk._db = full = FullDisk(disk._db)
    for order_id in (1, 2, 3):
        disk.put(_closed(order_id, 1, f"c{order_id}", 10 * order_id, 3))
    assert disk.closed_order(1, 2, None).order_id == 2
    assert disk.closed_order(1, None, "c3").order_id == 3
    with pytest.raises(storage_archive.ArchiveError, match="disk is full") as caught:
        disk.sync()
    assert not isinstance(caught.value, storage_archive.ArchiveSyncError)   # may try again
    full.full = False
    disk.sync()
    disk.close()
    again = sqlite3.connect(path)
    assert again.execute("SELECT order_id FROM orders ORDER BY order_id").fetchall() \
        == [(1,), (2,), (3,)]
    again.close()


ACCOUNT = st.integers(1, 3)
OPS = st.lists(st.one_of(
    st.tuples(st.just("order"), st.integers(1, 40)),
    st.tuples(st.just("strip"), st.integers(1, 40)),
    st.tuples(st.just("fills"), ACCOUNT, st.lists(
        st.tuples(st.integers(1, 60), st.integers(0, 1)), max_size=6)),
    st.tuples(st.just("flush")), st.tuples(st.just("prune"), st.integers(0, 100))),
    max_size=40)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_the_sqlite_archive_answers_as_the_one_in_memory(tmp_path, ops):
    """Whatever is put (again, as a replay does), written or waiting, pruned: the file
    answers every question as the in-memory archive does."""
    path = tmp_path / f"{uuid.uuid4().hex}.sqlite"
    memory, disk = MemoryArchive(), SqliteArchive(path)
    for op in ops:
        if op[0] == "order":
            # A record never changes: what it holds follows from its id. A client_order_id
            # is used by several orders (again after the first's retention).
            order_id = op[1]
            closed = _closed(order_id, order_id % 3 + 1, [None, "a", "b", "c"][order_id % 4],
                             order_id * 37 % 101, order_id % 4)
            memory.put(closed)
            disk.put(closed)
        elif op[0] == "strip":
            n = op[1]
            done = StripExecuted(n, n % 3 + 1, "abc"[n % 3], Side.BUY, 2, 2100,
                                 TimeInForce.FOK, 2, [(SYMBOL, n, 744, 4200)], n * 13 % 101)
            memory.put_strip(done)
            disk.put_strip(done)
        elif op[0] == "fills":
            _, account_id, trades = op
            # An account's fill is one (trade, maker or taker); put again, it is the same.
            rows = [(t, 7, t % 4, 1, 1990, 1, 2, maker, t * 10) for t, maker in trades]
            for archive in (memory, disk):
                archive.put_fills(account_id, sorted(set(rows), key=fill_key))
        elif op[0] == "flush":
            disk.flush()
        else:
            memory.prune(op[1])
            while disk.prune(op[1], 2):           # two at a time, as the server does
                pass
    for account_id in (None, 1, 2, 3):
        for order_id in range(1, 41):
            assert disk.closed_order(account_id, order_id, None) \
                == memory.closed_order(account_id, order_id, None)
        for cid in "abc":
            if account_id is not None:
                assert disk.strip(account_id, cid) == memory.strip(account_id, cid)
            for below in (None, 5, 20, 41):
                if account_id is not None:
                    assert disk.closed_order(account_id, None, cid, below) \
                        == memory.closed_order(account_id, None, cid, below)
    for account_id in (1, 2, 3):
        for symbol in (None, 0, 1, 2, 3):
            for before in (None, 1, 5, 30, 61):
                for limit in (1, 3, 100):
                    assert disk.fills(account_id, symbol, before, limit) \
                        == memory.fills(account_id, symbol, before, limit)
    disk.close()


def test_archived_orders_go_seven_days_before_the_oldest_snapshot(make_server):
    """A running server deletes from the archive file the orders closed seven days before
    the oldest snapshot it keeps (a restart could replay from it), a few at a time, and
    keeps the orders a restart may still be asked about."""
    skew, clock = [0], market_clock()
    live = make_server("[journal]\nsnapshot_every = 5\n", clock=lambda: clock() + skew[0])
    path = live.data_dir / "archive.sqlite"

    def archived() -> set:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return {cid for (cid,) in db.execute("SELECT client_order_id FROM orders WHERE "
                                                 "client_order_id IS NOT NULL")}

    async def trade(ws, cid: str | None) -> None:
        placed = await ws.result("order.place", symbol=SYMBOL, side="buy", qty=1,
                                 price="1.900", **({"client_order_id": cid} if cid else {}))
        await ws.result("order.cancel", order_id=placed["order_id"])

    async def snapshot(ws, cid: str) -> None:
        """Trade, then wait for the snapshot the commands bring (the archive synced)."""
        before = live.call(lambda: live.server.durability.snapshot_seq)
        await trade(ws, cid)
        for _ in range(2):                        # five commands or more
            await trade(ws, None)
        wait_for(live, lambda: live.server.durability.snapshot_seq > before)

    async def scenario():
        ws = await Ws.open(live, "trader-1")
        await trade(ws, "old")
        skew[0] += RECENT_NS + 60 * NS
        for n in range(2):                        # "old" leaves memory, then is on disk
            await snapshot(ws, f"more-{n}")
        assert "old" in archived()
        skew[0] += RETENTION_NS + RECENT_NS
        for n in range(2):                        # both kept snapshots are after the jump
            await snapshot(ws, f"late-{n}")
        skew[0] += RECENT_NS + 60 * NS
        await snapshot(ws, "last")                # the late ones leave memory
        wait_for(live, lambda: live.server.durability.archive_before is None)
        assert archived() == {"late-0", "late-1"}
        await ws.close()
    run(scenario())
