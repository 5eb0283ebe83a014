"""The journal's record format: format 2 pinned, every command read back as it ran, and
journals of format 1 still read (appends then go to a file of format 2)."""
from __future__ import annotations

import json
import subprocess
import sys

import msgspec
import pytest

from clearing.messages import Deposit, MarkStep, SubmitObservation
from engine.messages import (
    CancelOrder, InstrumentStatus, OrderType, PlaceOrder, PlaceStrip, ReplaceOrder,
    SetInstrumentStatus, Side, Timer, TimeInForce,
)
from gateway.core.promises import GuardOrders, LoginSeen
from gateway.core.venue import Failed, Lead
from gateway.storage import journal as j
from gateway.storage.journal import (
    BATCH_SIZE, MAGIC, RECORD_V1, Journal, JournalError, Reader, batches, encode_batch,
    segments,
)

TS = 1_795_597_200_123_456_789

# Format 2, as written by every data directory since: changing any of this without a new
# format (and a reader of the old one) would misread the journals already written.
FORMAT_2 = {
    "failed": (0, ("seq",)),
    "place_order": (1, ("account_id", "symbol", "side", "qty", "order_type", "price",
                        "stop_price", "tif", "expire_at_ns", "post_only", "reduce_only",
                        "display_qty", "client_order_id", "stp", "liquidation", "ts_ns")),
    "replace_order": (2, ("account_id", "order_id", "client_order_id", "price", "qty",
                          "ts_ns")),
    "cancel_order": (3, ("account_id", "order_id", "client_order_id", "reason", "ts_ns")),
    "cancel_all": (4, ("account_id", "symbol", "reason", "ts_ns")),
    "timer": (5, ("ts_ns",)),
    "set_instrument_status": (6, ("symbol", "status", "reason", "ts_ns")),
    "set_reference_price": (7, ("symbol", "price", "ts_ns")),
    "place_strip": (8, ("account_id", "symbols", "side", "qty", "price", "tif",
                        "client_order_id", "stp", "ts_ns")),
    "submit_observation": (9, ("provider_id", "gpu_class", "price", "hours", "observed_ns",
                               "ts_ns")),
    "set_external_index": (10, ("provider_id", "gpu_class", "value", "observed_ns", "ts_ns")),
    "fix_index": (11, ("gpu_class", "ts_ns")),
    "deposit": (12, ("account_id", "amount", "ts_ns")),
    "withdraw": (13, ("account_id", "amount", "ts_ns")),
    "mark_step": (14, ("ts_ns",)),
    "settle": (15, ("ts_ns",)),
    "roll_listing": (16, ("ts_ns",)),
    "guard_orders": (17, ("session", "account_id", "orders", "ts_ns")),
    "unguard": (18, ("session", "ts_ns")),
    "session_closed": (19, ("session", "ts_ns")),
    "login_seen": (20, ("account_id", "nonce", "at_ms", "until_ms", "ts_ns")),
    "lead": (21, ("holder", "epoch", "as_of", "config", "ts_ns")),
}

COMMANDS = [
    PlaceOrder(ts_ns=TS, account_id=3, symbol="H100-2027-03", side=Side.BUY, qty=5,
               price=2150),
    PlaceOrder(ts_ns=TS, account_id=3, symbol="H100-2027-03", side=Side.SELL, qty=5,
               price=2150, client_order_id="mm-000123456", post_only=True),
    PlaceOrder(ts_ns=TS, account_id=3, symbol="H100-2027-Q2", side=Side.SELL, qty=1,
               order_type=OrderType.STOP_MARKET, stop_price=1900, tif=TimeInForce.GTD,
               expire_at_ns=TS + 10**12, reduce_only=True, display_qty=1),
    PlaceOrder(ts_ns=TS, account_id=3, symbol="H100-2027-03", side=Side.BUY, qty=0,
               price=0),                                   # out of range: refused when it ran
    ReplaceOrder(ts_ns=TS, account_id=3, order_id=12_345_678, price=2151),
    CancelOrder(ts_ns=TS, account_id=3, client_order_id="mm-000123456"),
    Timer(ts_ns=TS), MarkStep(ts_ns=TS),
    SetInstrumentStatus(ts_ns=TS, symbol="H100-2027-03", status=InstrumentStatus.HALTED,
                        reason="r" * 300),                 # a payload past 254 bytes
    PlaceStrip(ts_ns=TS, account_id=2, symbols=["H100-2027-03", "H100-2027-04"],
               side=Side.BUY, qty=2, price=2100),
    SubmitObservation(ts_ns=TS, provider_id=5, gpu_class="H100", price=2_100_000, hours=64,
                      observed_ns=TS - 10**9),
    Deposit(ts_ns=TS, account_id=1, amount=10**12),
    GuardOrders(ts_ns=TS, session=812, account_id=3, orders=(1, 2, 3)),
    LoginSeen(ts_ns=TS, account_id=3, nonce="n-1", at_ms=TS // 10**6,
              until_ms=TS // 10**6 + 30_000),
    Failed(seq=41),
    Lead(holder="matcher-b", epoch=7, as_of="2026-11-25", config="c7601428e9b39abd" * 4,
         ts_ns=TS),
]


def test_format_2_is_pinned():
    """Every command has its code and its fields in the order format 2 encodes them."""
    found = {cls.__struct_config__.tag: (code, cls.__struct_fields__)
             for cls, code in j._CODE.items()}
    assert found == FORMAT_2
    assert len(set(j.CODES.values())) == len(j.CODES) == len(FORMAT_2)


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: type(c).__name__)
def test_every_command_reads_back_as_it_ran(cmd):
    payload = j.encode_command(cmd)
    back = j.decode_command(payload)
    assert type(back) is type(cmd) and back == cmd


def test_an_order_costs_about_forty_bytes():
    """The record of a limit order, length byte included; a map with its field names took
    about 200."""
    sizes = [len(j.encode_record(cmd)) for cmd in COMMANDS[:2]]
    assert sizes == [43, 55]
    assert len(j.encode_record(Timer(ts_ns=TS))) == 12
    assert len(msgspec.msgpack.encode(COMMANDS[0])) > 190


def _two_batches(tmp_path) -> None:
    """COMMANDS journaled in two batches: the first five, then the rest."""
    journal = Journal(tmp_path, 1, fsync=False)
    for cmd in COMMANDS[:5]:
        journal.append(cmd)
    journal.commit()
    for cmd in COMMANDS[5:]:
        journal.append(cmd)
    journal.close()


def test_a_journal_reads_back_every_record_in_order(tmp_path):
    _two_batches(tmp_path)
    (_, path), = segments(tmp_path)
    assert path.read_bytes()[:len(MAGIC)] == MAGIC
    assert [(first, count) for _, first, count in batches(path)] == \
        [(1, 5), (6, len(COMMANDS) - 5)]
    assert [(r.seq, r.cmd) for r in Reader(tmp_path)] == list(enumerate(COMMANDS, 1))


def _write_format_1(path, first: int, cmds: list) -> None:
    """A journal file as format 1 wrote it: no magic, records with their seq, tagged maps."""
    records = b"".join(RECORD_V1.pack(len(p), seq) + p for seq, p in enumerate(
        (msgspec.msgpack.encode(c) for c in cmds), first))
    path.write_bytes(encode_batch(first, len(cmds), records) + records)


def test_a_journal_of_format_1_is_read_and_appends_go_to_a_file_of_format_2(tmp_path):
    old = [c for c in COMMANDS if type(c) is not Failed]
    _write_format_1(tmp_path / j.segment_name(1), 1, old)
    assert [(r.seq, r.cmd) for r in Reader(tmp_path)] == list(enumerate(old, 1))
    journal = Journal(tmp_path, len(old) + 1, fsync=False)
    journal.append(Timer(ts_ns=TS + 1))
    journal.close()
    files = segments(tmp_path)
    assert [first for first, _ in files] == [1, len(old) + 1]
    assert files[1][1].read_bytes()[:len(MAGIC)] == MAGIC
    records = list(Reader(tmp_path))
    assert [r.seq for r in records] == list(range(1, len(old) + 2))
    assert records[-1].cmd == Timer(ts_ns=TS + 1)


def test_a_file_whose_magic_was_cut_short_is_started_again(tmp_path):
    """A crash right after a file was created leaves part of its magic: nothing was ever
    acknowledged in it, so it reads as a torn end and the journal writes it again."""
    journal = Journal(tmp_path, 1, fsync=False)
    journal.append(Timer(ts_ns=TS))
    journal.close()
    (tmp_path / j.segment_name(2)).write_bytes(MAGIC[:3])
    reader = Reader(tmp_path)
    assert [r.seq for r in reader] == [1] and reader.torn.length == 3
    journal = Journal(tmp_path, 2, fsync=False)
    journal.append(Timer(ts_ns=TS + 1))
    journal.close()
    assert [r.seq for r in Reader(tmp_path)] == [1, 2]


def test_damage_inside_a_record_of_format_2_names_the_file_and_offset(tmp_path):
    """A batch whose checksums match but whose records do not fit it (a writer's bug, not
    a torn write) stops the read at that record."""
    journal = Journal(tmp_path, 1, fsync=False)
    journal.append(Timer(ts_ns=TS))
    journal.close()
    (_, path), = segments(tmp_path)
    records = bytes((200,)) + b"x" * 10               # says 200 bytes, holds 10
    path.write_bytes(MAGIC + encode_batch(1, 1, records) + records)
    with pytest.raises(JournalError, match="does not fit its batch") as caught:
        list(Reader(tmp_path))
    assert caught.value.offset == len(MAGIC) + BATCH_SIZE


def test_batches_a_snapshot_covers_are_checked_by_their_checksums(tmp_path):
    """Skipped whole (their records not walked), but a flipped byte in one is still found;
    the records after the snapshot's seq are read as ever."""
    _two_batches(tmp_path)
    reader = Reader(tmp_path, after=5)
    assert [(r.seq, r.cmd) for r in reader] == list(enumerate(COMMANDS, 1))[5:]
    assert (reader.first_seq, reader.last_seq) == (1, len(COMMANDS))
    (_, path), = segments(tmp_path)
    data = bytearray(path.read_bytes())
    data[len(MAGIC) + BATCH_SIZE + 3] ^= 0xFF          # inside the first, covered batch
    path.write_bytes(bytes(data))
    with pytest.raises(JournalError, match="inside the journal"):
        list(Reader(tmp_path, after=5))


def test_dump_prints_a_failed_marker_under_its_own_seq(tmp_path):
    """Found by a review: the marker's own field ``seq`` (the command that raised) replaced
    the record's seq in `gpux journal dump`; it is printed as ``failed_seq``."""
    data = tmp_path / "data"
    journal = Journal(data / "journal", 1, fsync=False)
    journal.append(Timer(ts_ns=TS))
    journal.append(Failed(seq=1))
    journal.close()
    dump = subprocess.run([sys.executable, "-m", "gateway.client.cli", "journal", "dump",
                           "--data-dir", str(data)], capture_output=True, text=True)
    assert dump.returncode == 0, dump.stderr
    assert [json.loads(line) for line in dump.stdout.splitlines()] == [
        {"seq": 1, "type": "timer", "ts_ns": TS}, {"seq": 2, "type": "failed", "failed_seq": 1}]
