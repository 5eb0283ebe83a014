"""Durability in one process: what a crash keeps, what recovery rebuilds, what it refuses.

A "crash" here halts the server's event loop mid-stride (no shutdown
snapshot, the journal as it is); tests/test_crash.py SIGKILLs real processes.
"""
from __future__ import annotations

import asyncio
import errno
import json
import logging
import shutil
import subprocess
import sys
import time

import pytest

from gateway.core.effects import HEARTBEAT
from gateway.server import connection as connection_module
from gateway.server import durability as durability_module
from gateway.server import websocket as websocket_module
from gateway.storage import archive as archive_module
from gateway.storage import journal as journal_module
from gateway.config import load_config
from gateway.storage.journal import JournalError, Reader, batches, segments
from gateway.storage.journal import sync_path as real_sync_path
from gateway.storage.recovery import (
    DataDirBusy, build, journal_dir, recover, snapshot_dir, state_digest,
)
from gateway.server.websocket import Server
from gateway.storage.snapshots import snapshot_files
from live import AS_OF, SYMBOL, FullDisk, LiveServer, Ws, run


def state(live: LiveServer) -> dict:
    return live.call(live.server.core.state)


def trade_a_little(live: LiveServer, tag: str = "") -> dict:
    """A resting sell partly taken, a buy placed and cancelled, a replace; returns the orders."""
    async def scenario():
        seller = await Ws.open(live, "trader-1")
        buyer = await Ws.open(live, "trader-2")
        sold = await seller.result("order.place", symbol=SYMBOL, side="sell", qty=10,
                                   price="2.150", client_order_id=f"s{tag}")
        await buyer.result("order.place", symbol=SYMBOL, side="buy", qty=4, price="2.2",
                           tif="ioc", client_order_id=f"t{tag}")
        resting = await buyer.result("order.place", symbol=SYMBOL, side="buy", qty=3,
                                     price="2.000", client_order_id=f"b{tag}")
        await buyer.result("order.replace", order_id=resting["order_id"], price="2.010")
        gone = await seller.result("order.place", symbol=SYMBOL, side="sell", qty=1,
                                   price="2.300", client_order_id=f"c{tag}")
        await seller.result("order.cancel", order_id=gone["order_id"])
        orders = {o: await w.result("order.get", client_order_id=o + tag)
                  for o, w in (("s", seller), ("t", buyer), ("b", buyer), ("c", seller))}
        await seller.close()
        await buyer.close()
        return {"orders": orders, "sold": sold}
    return run(scenario())


def observe(live: LiveServer, tag: str = "") -> dict:
    """What clients can see: the orders by client_order_id, the book, the trades."""
    async def scenario():
        seller = await Ws.open(live, "trader-1")
        buyer = await Ws.open(live, "trader-2")
        orders = {o: await w.result("order.get", client_order_id=o + tag)
                  for o, w in (("s", seller), ("t", buyer), ("b", buyer), ("c", seller))}
        book = await seller.result("market.book", symbol=SYMBOL)
        trades = await seller.result("market.trades", symbol=SYMBOL)
        positions = await seller.result("account.positions")
        await seller.close()
        await buyer.close()
        return {"orders": orders, "book": book, "trades": trades, "positions": positions}
    return run(scenario())


def test_a_crash_keeps_every_acknowledged_command(make_server):
    """After a crash the orders, fills, book, trades and positions are as acknowledged."""
    live = make_server()
    trade_a_little(live)
    seen = observe(live)              # (its logins are journaled too)
    before = state(live)
    live.crash()
    again = live.restart()
    recovered = again.server.recovered
    assert (recovered.snapshot_seq, recovered.replayed, recovered.seq) == \
        (0, before["seq"], before["seq"])
    assert state(again)["state_hash"] == before["state_hash"]
    assert observe(again) == seen
    assert seen["orders"]["s"]["filled_qty"] == 4 and seen["book"]["bids"][0][:2] == ["2.010", 3]
    again.stop()


def test_a_resend_after_a_crash_returns_the_order_open_or_closed(make_server):
    """Idempotency survives: the same client_order_id and parameters give the existing order."""
    live = make_server()
    placed = trade_a_little(live)["orders"]
    live.crash()
    again = live.restart()

    async def scenario():
        seller = await Ws.open(again, "trader-1")
        open_again = await seller.result("order.place", symbol=SYMBOL, side="sell", qty=10,
                                         price="2.150", client_order_id="s")
        closed_again = await seller.result("order.place", symbol=SYMBOL, side="sell", qty=1,
                                           price="2.300", client_order_id="c")
        fresh = await seller.result("order.place", symbol=SYMBOL, side="sell", qty=1,
                                    price="2.250", client_order_id="new")
        count = len(await seller.result("order.list"))
        await seller.close()
        return open_again, closed_again, fresh, count
    open_again, closed_again, fresh, count = run(scenario())
    assert open_again.pop("duplicate") is True and open_again == placed["s"]
    assert closed_again.pop("duplicate") is True and closed_again["status"] == "cancelled"
    assert closed_again["order_id"] == placed["c"]["order_id"]
    assert fresh["order_id"] > max(o["order_id"] for o in placed.values())
    assert count == 2          # "s" (6 left) and "new": nothing was placed twice
    again.stop()


def test_a_clean_stop_leaves_a_snapshot_and_the_restart_replays_only_what_followed(make_server):
    live = make_server()
    trade_a_little(live)
    before = state(live)
    live.stop()
    assert [seq for seq, _ in snapshot_files(snapshot_dir(live.data_dir))] == [before["seq"]]
    second = live.restart()
    assert (second.server.recovered.snapshot_seq, second.server.recovered.replayed) == \
        (before["seq"], 0)
    assert state(second)["state_hash"] == before["state_hash"]
    trade_a_little(second, tag="-2")
    seen = observe(second, tag="-2")
    after = state(second)
    second.crash()
    third = second.restart()
    recovered = third.server.recovered
    assert recovered.snapshot_seq == before["seq"]
    assert recovered.replayed == after["seq"] - before["seq"] > 0
    assert state(third)["state_hash"] == after["state_hash"]
    assert observe(third, tag="-2") == seen
    third.stop()
    # The same state from the journal alone, every snapshot removed:
    shutil.rmtree(snapshot_dir(third.data_dir))
    config = load_config(None)
    alone = recover(third.data_dir, lambda: build(
        config, AS_OF, third.server.accounts.by_id.values()))
    assert alone.snapshot_seq == 0
    assert state_digest(alone.venue, alone.feed) == \
        state_digest(third.server.venue, third.server.feed)


def test_a_torn_last_record_is_dropped_at_every_byte_offset(make_server, tmp_path):
    """Cut anywhere inside the last record (a crash mid-write), recovery drops exactly it.

    The last record is a cancel, alone in its commit (one request, one turn), and a
    commit is written and acknowledged whole, so the torn unit is that batch.
    """
    live = make_server()
    trade_a_little(live)
    live.crash()
    records = list(Reader(journal_dir(live.data_dir)))
    last = records[-1]
    offset, first, count = batches(last.path)[-1]
    assert (first, count, type(last.cmd).__name__) == (last.seq, 1, "CancelOrder")
    size = last.path.stat().st_size
    config = load_config(None)
    accounts = list(live.server.accounts.by_id.values())

    def recover_copy(cut: int | None, flip: int | None = None):
        copy = tmp_path / "copy"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(live.data_dir, copy)
        segment = journal_dir(copy) / last.path.name
        data = bytearray(segment.read_bytes())
        if flip is not None:
            data[flip] ^= 0x01
        segment.write_bytes(bytes(data[:cut]))
        return recover(copy, lambda: build(config, AS_OF, accounts)), segment

    expected, _ = recover_copy(offset)          # the journal without its last record
    assert expected.seq == last.seq - 1 and expected.dropped_bytes == 0
    want = state_digest(expected.venue, expected.feed)
    for cut in range(offset + 1, size):
        got, segment = recover_copy(cut)
        assert (got.seq, got.dropped_bytes) == (last.seq - 1, cut - offset), cut
        assert state_digest(got.venue, got.feed) == want, cut
        assert segment.stat().st_size == offset        # cut back to the whole batches
    for flip in (offset + 5, last.offset + 3, size - 1):   # its batch header, record, payload
        got, _ = recover_copy(None, flip)
        assert got.seq == last.seq - 1 and state_digest(got.venue, got.feed) == want
    whole, _ = recover_copy(None)
    assert whole.seq == last.seq and whole.dropped_bytes == 0


def test_a_hole_in_the_last_commit_is_torn_not_corruption(make_server, tmp_path):
    """Power lost mid-commit can leave a batch's early pages unwritten (zeros) and its
    later ones written: no whole batch follows, so it is torn and dropped."""
    live = make_server()
    trade_a_little(live)
    live.crash()
    last = list(Reader(journal_dir(live.data_dir)))[-1]
    offset, _, _ = batches(last.path)[-1]
    data = bytearray(last.path.read_bytes())
    data[offset + 2:offset + 30] = bytes(28)
    last.path.write_bytes(bytes(data))
    again = live.restart()
    assert again.server.recovered.seq == last.seq - 1
    assert again.server.recovered.dropped_bytes == len(data) - offset
    again.stop()


@pytest.mark.parametrize("where", ["payload", "header"])
def test_damage_inside_the_journal_stops_the_start_naming_file_and_offset(make_server, where):
    live = make_server()
    trade_a_little(live)
    live.crash()
    records = list(Reader(journal_dir(live.data_dir)))
    victim = records[len(records) // 2]
    offset = max(o for o, first, _ in batches(victim.path) if first <= victim.seq)
    data = bytearray(victim.path.read_bytes())
    data[victim.offset + 14 if where == "payload" else offset + 3] ^= 0x40
    victim.path.write_bytes(bytes(data))
    with pytest.raises(JournalError) as info:
        Server(load_config(None), live.data_dir, as_of=AS_OF)
    assert (info.value.path, info.value.offset) == (victim.path, offset)
    assert f"{victim.path} at offset {offset}" in str(info.value)
    assert "inside the journal" in str(info.value)


def test_a_damaged_snapshot_is_passed_over_for_the_journal(make_server, caplog):
    live = make_server()
    trade_a_little(live)
    before = state(live)
    live.stop()
    (seq, path), = snapshot_files(snapshot_dir(live.data_dir))
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="gpux.recovery"):
        again = live.restart()
    assert "does not match its checksum" in caplog.text
    assert (again.server.recovered.snapshot_seq, again.server.recovered.replayed) == (0, seq)
    assert state(again)["state_hash"] == before["state_hash"]
    again.stop()


def test_another_listing_date_is_refused_for_a_data_directory(make_server):
    import datetime
    from engine.contracts import ConfigError
    live = make_server()
    live.stop()
    with pytest.raises(ConfigError, match="listed on 2026-11-25"):
        Server(load_config(None), live.data_dir, as_of=AS_OF + datetime.timedelta(days=1))


def test_nothing_reaches_a_client_before_its_command_is_committed(make_server, monkeypatch):
    """Every frame a connection queues comes from a turn whose commands the writer thread
    had on disk (past its fdatasync), though the loop went on meanwhile: with a slow disk,
    turns pile up behind the sync and still go out in order, each after its own."""
    queued, early, outside = [], [], []
    sealed_at: dict[int, int] = {}
    releasing = [False]
    real_sync = journal_module.os.fdatasync
    real_seal = durability_module.Durability.seal
    real_release = websocket_module.Server._release
    real_enqueue = connection_module.Connection._enqueue

    def slow_sync(fd):
        time.sleep(0.005)
        real_sync(fd)

    def seal(self, outbox):
        sealed_at[id(outbox)] = self.journal.next_seq - 1      # what the turn journaled
        real_seal(self, outbox)

    def release(self, outbox):
        if self.journal.committed_seq < sealed_at.get(id(outbox), 0):
            early.append(outbox)
        releasing[0] = True
        try:
            real_release(self, outbox)
        finally:
            releasing[0] = False

    def enqueue(self, frame):
        queued.append(frame)
        if not releasing[0] and frame != HEARTBEAT:
            outside.append(frame)
        real_enqueue(self, frame)

    monkeypatch.setattr(journal_module.os, "fdatasync", slow_sync)
    monkeypatch.setattr(durability_module.Durability, "seal", seal)
    monkeypatch.setattr(websocket_module.Server, "_release", release)
    monkeypatch.setattr(connection_module.Connection, "_enqueue", enqueue)
    live = make_server()

    async def scenario():
        watcher = await Ws.open(live, "trader-1")
        await watcher.result("subscribe", channels=[f"book.{SYMBOL}", f"trades.{SYMBOL}",
                                                    f"ticker.{SYMBOL}", "orders", "fills",
                                                    "positions", "margin"])
        async def read():                   # keep reading, so the close handshake is quick
            while True:
                await watcher.ws.recv()
        reader = asyncio.create_task(read())
        await asyncio.to_thread(trade_a_little, live)
        await asyncio.sleep(0.3)            # tickers too
        reader.cancel()
        await watcher.close()
    run(scenario())
    assert len(queued) > 25 and early == [] and outside == []


def test_the_funding_deposits_are_made_once(make_server):
    live = make_server()
    first = state(live)
    collateral = live.call(lambda: live.server.house.ledger.accounts[1].collateral)
    live.crash()
    again = live.restart()
    assert first["seq"] > 0 and state(again)["seq"] == first["seq"]
    assert again.call(lambda: again.server.house.ledger.accounts[1].collateral) == collateral > 0
    again.stop()


ROLLING_ROUNDS = 12        # of trade_a_little: the journal rolls past 4 KiB files


def test_background_snapshots_roll_and_prune_the_journal(make_server):
    """A forked child writes snapshots as commands pass the count; the journal files they
    cover are deleted; a crash then recovers from the newest snapshot and its tail."""
    live = make_server("[journal]\nsnapshot_every = 20\nsegment_bytes = 4096\n"
                       "keep_snapshots = 1\n")
    for round_ in range(ROLLING_ROUNDS):
        trade_a_little(live, tag=f"-{round_}")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        snapshots = snapshot_files(snapshot_dir(live.data_dir))
        if snapshots and live.call(lambda: live.server.durability._background.pid) is None:
            break
        time.sleep(0.1)
    live.call(live.server.durability.maybe_snapshot)          # reaps the child and prunes
    (covered, _), = snapshot_files(snapshot_dir(live.data_dir))
    files = segments(journal_dir(live.data_dir))
    assert 1 < files[0][0] <= covered + 1, (files, covered)     # the covered files are gone
    assert not [p for p in snapshot_dir(live.data_dir).iterdir() if p.name.endswith(".tmp")]
    trade_a_little(live, tag="-last")
    before = state(live)
    live.crash()
    again = live.restart()
    recovered = again.server.recovered
    assert recovered.snapshot_seq == covered and recovered.replayed == before["seq"] - covered
    assert state(again)["state_hash"] == before["state_hash"]
    again.stop()


def test_a_second_server_on_the_same_data_directory_is_refused(make_server):
    import os
    live = make_server()
    with pytest.raises(DataDirBusy, match=f"in use by another gpux server \\(pid {os.getpid()}\\)"):
        Server(load_config(None), live.data_dir, as_of=AS_OF)


def gpux(*args):
    return subprocess.run([sys.executable, "-m", "gateway.client.cli", *args], capture_output=True,
                          text=True, timeout=120)


def test_journal_verify_and_dump_as_an_operator_runs_them(make_server, tmp_path):
    live = make_server()
    trade_a_little(live)
    final = state(live)
    live.stop()
    run = gpux("journal", "verify", "--data-dir", str(live.data_dir))
    assert run.returncode == 0, run.stderr
    assert f"seq 1..{final['seq']}" in run.stdout
    assert "snapshots checked: 1, all equal" in run.stdout
    assert "torn last batch: none" in run.stdout
    assert f"state hash: {final['state_hash']}" in run.stdout
    dump = gpux("journal", "dump", "--data-dir", str(live.data_dir), "--from", "2", "--to", "5")
    lines = [json.loads(line) for line in dump.stdout.splitlines()]
    assert dump.returncode == 0 and [r["seq"] for r in lines] == [2, 3, 4, 5]
    assert lines[0]["type"] == "deposit"
    everything = gpux("journal", "dump", "--data-dir", str(live.data_dir)).stdout.splitlines()
    placed = [json.loads(line) for line in everything if '"place_order"' in line]
    assert placed[0]["client_order_id"] == "s" and placed[0]["price"] == 2150
    # A damaged record inside the journal: verify fails and says where.
    record = list(Reader(journal_dir(live.data_dir)))[3]
    offset = max(o for o, first, _ in batches(record.path) if first <= record.seq)
    data = bytearray(record.path.read_bytes())
    data[record.offset + 15] ^= 0x10
    record.path.write_bytes(bytes(data))
    bad = gpux("journal", "verify", "--data-dir", str(live.data_dir))
    assert bad.returncode == 1
    assert f"{record.path} at offset {offset}: a batch whose checksum" in bad.stderr
    nothing = gpux("journal", "verify", "--data-dir", str(tmp_path / "nowhere"))
    assert nothing.returncode == 2 and "not a gpux data directory" in nothing.stderr


def test_a_snapshot_taken_mid_turn_holds_the_market_data_of_its_commands(make_server):
    """A snapshot started between a command and the seal of its turn still has the book
    level the command made (the seal runs first), so the recovered feed matches."""
    from engine.messages import PlaceOrder, Side
    live = make_server("[journal]\nsnapshot_every = 1\n")
    server = live.server

    def place_then_snapshot():
        server.core.submit(PlaceOrder(ts_ns=server.venue.now(), account_id=1, symbol=SYMBOL,
                                      side=Side.SELL, qty=10, price=2150))
        server.durability.maybe_snapshot()
        return server.durability._background.seq
    seq = live.call(place_then_snapshot)
    assert live.call(server.durability._background.wait) is True
    before = state(live)
    live.crash()
    again = live.restart()
    assert again.server.recovered.snapshot_seq == seq
    assert state(again)["state_hash"] == before["state_hash"]
    book = again.call(lambda: again.server.feed.symbols[SYMBOL].book.snapshot())
    assert book["asks"] == [["2.150", 10, 1]] and book["seq"] == 1
    again.stop()


def test_a_journal_whose_start_no_snapshot_reaches_is_refused(make_server):
    """Pruned behind a snapshot that then cannot be read: never a silent fresh start."""
    live = make_server("[journal]\nsnapshot_every = 20\nsegment_bytes = 4096\n"
                       "keep_snapshots = 1\n")
    for round_ in range(ROLLING_ROUNDS):
        trade_a_little(live, tag=f"-{round_}")
    live.stop()
    assert segments(journal_dir(live.data_dir))[0][0] > 1
    for _, path in snapshot_files(snapshot_dir(live.data_dir)):
        path.write_bytes(b"damaged")
    with pytest.raises(JournalError, match="no snapshot could be read"):
        Server(load_config(None), live.data_dir, as_of=AS_OF)


def test_a_command_that_raised_must_raise_again_in_a_replay(make_server, monkeypatch):
    """The server journals a marker after a command that raised; a replay where it does
    not raise (or raises where it had not) stops with an error instead of going on."""
    from clearing.house import ClearingHouse
    check = ClearingHouse.check

    def exploding(self, account_id, symbol, side, price, qty, *rest):
        if qty == 77:
            raise RuntimeError("a bug in the risk check")
        return check(self, account_id, symbol, side, price, qty, *rest)
    monkeypatch.setattr(ClearingHouse, "check", exploding)
    live = make_server()

    async def scenario():
        ws = await Ws.open(live, "trader-1")
        error = await ws.error("order.place", symbol=SYMBOL, side="buy", qty=77, price="2.0")
        await ws.close()
        return error
    assert run(scenario())["data"]["reason"] == "internal_error"
    before = state(live)
    live.crash()
    again = live.restart()                 # the same code: it raises again, as marked
    assert again.server.recovered.failed == 1
    assert state(again)["state_hash"] == before["state_hash"]
    again.crash()
    monkeypatch.undo()                     # "fixed": now the replay differs
    with pytest.raises(JournalError, match="raised when it ran, but not in the replay"):
        Server(load_config(None), live.data_dir, as_of=AS_OF)


def test_a_roll_that_fails_is_a_journal_failure_and_keeps_the_open_file(tmp_path, monkeypatch):
    """No new file (fds exhausted, disk full): the commit raises JournalError, which stops
    the server; the file in use stays open and whole."""
    from engine.messages import Timer
    journal = journal_module.Journal(tmp_path, 1, segment_bytes=4096)
    opened = journal_module.os.open

    def no_new_files(path, flags, *args):
        if flags & journal_module.os.O_CREAT:
            raise OSError(24, "Too many open files")
        return opened(path, flags, *args)
    monkeypatch.setattr(journal_module.os, "open", no_new_files)
    for ts in range(1, 1000):
        journal.append(Timer(ts_ns=ts))
    with pytest.raises(JournalError, match="Too many open files"):
        journal.commit()
    monkeypatch.undo()
    assert not journal.closed and [r.seq for r in Reader(tmp_path)] == list(range(1, 1000))


def test_an_archive_that_cannot_be_synced_stops_the_snapshots_until_a_restart(
        make_server, monkeypatch, caplog):
    """A failed fsync of the archive: no snapshot relies on it, then or later (after a failed
    fsync the kernel may have dropped what it held, and a later fsync succeeds without it),
    the journal is kept whole, and the server goes on serving. A restart replays the journal
    (rewriting the archive) and takes snapshots again."""
    live = make_server("[journal]\nsnapshot_every = 20\n")
    failing = True

    def sync_path(path, flags=0):
        if failing:
            raise OSError(errno.EIO, "Input/output error", str(path))
        real_sync_path(path, flags)
    monkeypatch.setattr(archive_module, "sync_path", sync_path)
    with caplog.at_level(logging.CRITICAL, logger="gpux"):
        for round_ in range(3):
            trade_a_little(live, tag=f"-{round_}")
        live.call(live.server.durability.maybe_snapshot)
        failing = False
        trade_a_little(live, tag="-after")
        live.call(live.server.durability.maybe_snapshot)
        live.call(live.server.durability._background.wait)
    assert snapshot_files(snapshot_dir(live.data_dir)) == []
    assert segments(journal_dir(live.data_dir))[0][0] == 1         # nothing pruned
    assert "cannot be synced" in caplog.text
    before = state(live)
    live.stop()
    assert snapshot_files(snapshot_dir(live.data_dir)) == []      # not at the stop either
    again = live.restart()
    assert again.server.recovered.replayed == before["seq"]
    assert state(again)["state_hash"] == before["state_hash"]
    again.call(again.server.durability.maybe_snapshot)
    again.call(again.server.durability._background.wait)
    assert snapshot_files(snapshot_dir(again.data_dir)) != []
    again.stop()


def test_an_archive_that_cannot_be_written_only_skips_the_snapshot_due(make_server):
    """A full disk is not a failed fsync: nothing the kernel held was dropped. The snapshot
    due is skipped (the journal kept), and once the archive can be written the next one is
    taken."""
    live = make_server("[journal]\nsnapshot_every = 20\n")
    archive = live.server.venue.archive
    full = FullDisk(archive._db)
    live.call(setattr, archive, "_db", full)
    # Something waiting to be written (closed orders leave memory only after minutes): an
    # old fill of an account nobody trades.
    live.call(archive.put_fills, 999, [(1, 1, 0, 1, 2000, 1, 0, 1, 1)])
    for round_ in range(3):
        trade_a_little(live, tag=f"-{round_}")
    live.call(live.server.durability.maybe_snapshot)
    live.call(live.server.durability._background.wait)
    assert snapshot_files(snapshot_dir(live.data_dir)) == []
    assert live.server.durability.unsynced is None
    full.full = False
    live.call(lambda: setattr(live.server.durability, "_snapshot_at", -1e9))
    live.call(live.server.durability.maybe_snapshot)
    live.call(live.server.durability._background.wait)
    assert snapshot_files(snapshot_dir(live.data_dir)) != []
