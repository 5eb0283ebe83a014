"""The journal: every command that reached the engine and clearing, in order, on disk.

It is the exchange's record of truth: a snapshot is only a shortcut through it.
Commands are appended as they are processed and written by ``commit`` (one
write, one fdatasync: the group commit of one event-loop turn); nothing a
command caused may be sent to anyone before the commit that holds it.

Files: ``journal/<seq of the first record, 20 digits>.log``, rolled at a size. A
file of format 2 starts with ``MAGIC``; then each commit writes one batch: a
24-byte header, then its records::

    batch:  <u32 length of the records> <u64 first seq> <u32 count> <u32 crc32 of the
            records> <u32 crc32 of the 20 bytes before>
    record: <u8 payload length, or 255 and a u32> <payload>

A record's seq is its batch's first seq plus its place in the batch. Its payload is
the command as a MessagePack array: the command's code (``CODES``), then its fields'
values in their declared order (about 40 bytes for an order; a map with the field
names took about 200). A file of format 1 (no magic, written before) has records
``<u32 payload length> <u64 seq> <payload>``, each a map tagged with the command's
name; it is read as it was written, and appends go to a new file of format 2.

A batch is acknowledged only once it is whole on disk, so a damaged batch in
the last file with no whole batch anywhere after it is the torn end of a
commit (a crash or power loss mid-write, the disk's pages landing in any
order): it was never acknowledged and is dropped. Damage with a whole batch
after it, or in any other file, is an error naming the file and offset:
replaying past it would silently lose what it held. A command that raised
when it ran is followed by a ``Failed`` marker, so a replay that differs from
what happened stops instead of going on.
"""
from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from types import UnionType
from typing import Annotated, Iterator, Union, get_args, get_origin

import msgspec

from clearing.messages import ClearingCommands
from engine.messages import EngineCommand
from gateway.core.promises import SessionCommands
from gateway.core.venue import Failed, Lead

BATCH = struct.Struct("<IQII")         # payload length, first seq, records, payload crc32
CRC = struct.Struct("<I")               # ... then the crc32 of those 20 bytes
BATCH_SIZE = BATCH.size + CRC.size      # 24
RECORD_V1 = struct.Struct("<IQ")        # format 1: payload length, seq
LONG = 255                              # a payload length byte saying a u32 follows
U32 = struct.Struct("<I")
MAGIC = b"GPUXJNL\x02"                  # the start of a file of format 2
MAX_BATCH = 1 << 30                     # a bigger length is damage
SEGMENT_BYTES = 64 << 20
SUFFIX = ".log"

# Format 2's command codes. A code is never renumbered or reused, and a command's fields
# are encoded in their declared order (``__struct_fields__``): changing a command's fields
# changes the format (tests/gateway/test_journal_format.py pins both).
CODES = {
    "failed": 0, "place_order": 1, "replace_order": 2, "cancel_order": 3, "cancel_all": 4,
    "timer": 5, "set_instrument_status": 6, "set_reference_price": 7, "place_strip": 8,
    "submit_observation": 9, "set_external_index": 10, "fix_index": 11, "deposit": 12,
    "withdraw": 13, "mark_step": 14, "settle": 15, "roll_listing": 16, "guard_orders": 17,
    "unguard": 18, "session_closed": 19, "login_seen": 20, "lead": 21,
}


def _loose(kind):
    """A type without its value constraints (Annotated Meta), inside unions too."""
    if get_origin(kind) is Annotated:
        return _loose(get_args(kind)[0])
    if get_origin(kind) in (Union, UnionType):
        return Union[tuple(_loose(k) for k in get_args(kind))]
    return kind


def _unchecked(cls, **config) -> type:
    """A twin of a command type that reads its fields back without checking their ranges.

    The journal must return exactly what ran. A command out of range (qty 0)
    can reach the engine, which refuses it with its own reason, and that
    refusal (with the time it moved the engine to) is part of the history.
    """
    fields = []
    for f in msgspec.structs.fields(cls):
        if f.required:
            fields.append((f.name, _loose(f.type)))
        elif f.default_factory is not msgspec.NODEFAULT:
            fields.append((f.name, _loose(f.type),
                           msgspec.field(default_factory=f.default_factory)))
        else:
            fields.append((f.name, _loose(f.type), f.default))
    twin = msgspec.defstruct(cls.__name__, fields, kw_only=True, **config)
    assert twin.__struct_fields__ == cls.__struct_fields__, cls     # the order is the format
    return twin


_COMMANDS = get_args(EngineCommand) + get_args(ClearingCommands) + get_args(SessionCommands) \
    + (Failed, Lead)
_CODE = {cls: CODES[cls.__struct_config__.tag] for cls in _COMMANDS}
_ARRAYS = {_unchecked(cls, tag=_CODE[cls], array_like=True): cls for cls in _COMMANDS}
_MAPS = {_unchecked(cls, tag=cls.__struct_config__.tag,
                    tag_field=cls.__struct_config__.tag_field): cls for cls in _COMMANDS}
_encode = msgspec.msgpack.Encoder().encode
_decode_array = msgspec.msgpack.Decoder(Union[tuple(_ARRAYS)]).decode
_decode_map = msgspec.msgpack.Decoder(Union[tuple(_MAPS)]).decode
_asdict = msgspec.structs.asdict
_astuple = msgspec.structs.astuple


def encode_command(cmd) -> bytes:
    """A command (or Failed marker) as format 2's payload: its code, then its fields."""
    return _encode((_CODE[type(cmd)], *_astuple(cmd)))


def decode_command(payload, twins=_ARRAYS, decode=_decode_array):
    """A journal payload back into the command (or Failed marker) that was appended."""
    twin = decode(payload)
    return twins[type(twin)](**_asdict(twin))


def decode_command_v1(payload):
    """A format 1 payload (a map tagged with the command's name) back into its command."""
    return decode_command(payload, _MAPS, _decode_map)


class JournalError(Exception):
    """The journal cannot be read or written as it must be; says which file and offset."""

    def __init__(self, path: Path, offset: int, problem: str) -> None:
        super().__init__(f"{path} at offset {offset}: {problem}")
        self.path, self.offset, self.problem = path, offset, problem


def encode_record(cmd) -> bytes:
    """One record of format 2 (its seq is its place in its batch)."""
    payload = encode_command(cmd)
    n = len(payload)
    return (bytes((n,)) if n < LONG else bytes((LONG,)) + U32.pack(n)) + payload


def encode_batch(first_seq: int, count: int, records: bytes | bytearray) -> bytes:
    head = BATCH.pack(len(records), first_seq, count, zlib.crc32(records))
    return head + CRC.pack(zlib.crc32(head))


def segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}{SUFFIX}"


def numbered_files(directory: Path, suffix: str) -> list[tuple[int, Path]]:
    """Files named ``<20-digit seq><suffix>`` in ``directory`` as (seq, path), in seq order."""
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        stem = path.name[:-len(suffix)]
        if path.name.endswith(suffix) and len(stem) == 20 and stem.isdigit():
            found.append((int(stem), path))
    return sorted(found)


def segments(directory: Path) -> list[tuple[int, Path]]:
    """The journal's files as (first seq, path), in order."""
    return numbered_files(directory, SUFFIX)


class Record(msgspec.Struct, frozen=True):
    seq: int
    cmd: object
    path: Path
    offset: int


class Torn(msgspec.Struct, frozen=True):
    """The damaged end of the last file: a record whose write a crash cut short."""
    path: Path
    offset: int
    length: int          # bytes from offset to the end of the file


class Reader:
    """Reads and checks every record, in order; ``torn`` says what was cut off the end.

    Args:
        directory: The journal directory.
        after: Skip records up to this seq (those a snapshot covers); they are
            still checked (a batch covered whole, by its checksum alone).
    """

    def __init__(self, directory: Path, after: int = 0) -> None:
        self.directory = directory
        self.after = after
        self.torn: Torn | None = None
        self.last_seq = 0          # of the last good record, 0 when there is none
        self.first_seq: int | None = None

    def __iter__(self) -> Iterator[Record]:
        files = segments(self.directory)
        for n, (first, path) in enumerate(files):
            if self.last_seq and first != self.last_seq + 1:
                raise JournalError(path, 0, f"starts at seq {first}; expected "
                                   f"{self.last_seq + 1} (a file is missing)")
            yield from self._read(path, first, last_file=n == len(files) - 1)

    def _read(self, path: Path, first: int, last_file: bool) -> Iterator[Record]:
        data = path.read_bytes()
        size = len(data)
        view = memoryview(data)
        offset = file_start(data)
        if offset is None:                  # the magic cut short: a file never written to
            if last_file:
                self.torn = Torn(path, 0, size)
                return
            raise JournalError(path, 0, "not a journal file (its first bytes)")
        records, decode = (_records_v2, decode_command) if offset \
            else (_records_v1, decode_command_v1)
        expected = first
        after = self.after
        while offset < size:
            problem = batch_problem(view, offset, expected)
            if problem is not None:
                # Damage is the torn end of a commit when no whole batch follows it.
                if last_file and not _whole_batch_after(view, offset + 1):
                    self.torn = Torn(path, offset, size - offset)
                    return
                where = "inside the journal" if last_file else "in a file that is not the last"
                raise JournalError(path, offset, f"{problem}, {where} (whole batches follow)"
                                   if last_file else f"{problem}, {where}")
            length, _, count, _ = BATCH.unpack_from(view, offset)
            end = offset + BATCH_SIZE + length
            if expected + count - 1 <= after and records is _records_v2:
                # A format 2 batch a snapshot covers whole: its checksum (checked above)
                # will do; walking its records took most of a start from a snapshot.
                if self.first_seq is None:
                    self.first_seq = expected
                self.last_seq = expected + count - 1
                expected += count
                offset = end
                continue
            for seq, at, payload in records(path, view, offset + BATCH_SIZE, end, expected,
                                            count):
                if seq > after:      # records a snapshot covers are checked, not decoded
                    try:
                        cmd = decode(payload)
                    except msgspec.DecodeError as exc:
                        raise JournalError(path, at, f"seq {seq} is not a command: {exc}") \
                            from None
                    yield Record(seq, cmd, path, at)
                if self.first_seq is None:
                    self.first_seq = seq
                self.last_seq = seq
            expected += count
            offset = end


def _records_v2(path: Path, view: memoryview, at: int, end: int, seq: int, count: int):
    """(seq, offset, payload) of each record of a format 2 batch."""
    for seq in range(seq, seq + count):
        if at >= end:
            raise JournalError(path, at, "a batch's records overrun it")
        length = view[at]
        start = at + 1
        if length == LONG:
            if end - start < U32.size:
                raise JournalError(path, at, "a batch's records overrun it")
            length = U32.unpack_from(view, start)[0]
            start += U32.size
        stop = start + length
        if stop > end:
            raise JournalError(path, at, f"record seq {seq} of {length} bytes does not fit "
                               "its batch")
        yield seq, at, view[start:stop]
        at = stop
    if at != end:
        raise JournalError(path, at, "a batch holds more than its records")


def _records_v1(path: Path, view: memoryview, at: int, end: int, seq: int, count: int):
    """(seq, offset, payload) of each record of a format 1 batch."""
    expected = seq
    for _ in range(count):
        if end - at < RECORD_V1.size:
            raise JournalError(path, at, "a batch's records overrun it")
        length, seq = RECORD_V1.unpack_from(view, at)
        stop = at + RECORD_V1.size + length
        if seq != expected or stop > end:
            raise JournalError(path, at, f"record seq {seq} (expected {expected}) of "
                               f"{length} bytes does not fit its batch")
        yield seq, at, view[at + RECORD_V1.size:stop]
        expected += 1
        at = stop
    if at != end:
        raise JournalError(path, at, "a batch holds more than its records")


def batch_records(batch: bytes) -> Iterator[tuple[int, object]]:
    """(seq, command) of each record of one batch of format 2, checked (gateway.cluster)."""
    view = memoryview(batch)
    length, first, count, _ = BATCH.unpack_from(view, 0)
    where = Path("<batch>")
    for seq, _, payload in _records_v2(where, view, BATCH_SIZE, BATCH_SIZE + length, first,
                                       count):
        try:
            yield seq, decode_command(payload)
        except msgspec.DecodeError as exc:
            raise JournalError(where, 0, f"seq {seq} is not a command: {exc}") from None


def journal_batches(directory: Path, after: int = 0) -> Iterator[tuple[int, int, bytes]]:
    """(first seq, records, bytes) of each batch of format 2 holding records past seq
    ``after``, in order, a file at a time (read after recovery has checked the journal and
    cut a torn end off; gateway.cluster compares them with the replicated stream's)."""
    files = segments(directory)
    for n, (first, path) in enumerate(files):
        if n + 1 < len(files) and files[n + 1][0] - 1 <= after:
            continue                        # every record of this file is at or before
        data = path.read_bytes()
        for offset, first_seq, count in batches(path, data):
            if first_seq + count - 1 > after:
                length = BATCH.unpack_from(data, offset)[0]
                yield first_seq, count, data[offset:offset + BATCH_SIZE + length]


def last_batch(directory: Path) -> tuple[int, int, bytes] | None:
    """(first seq, records, bytes) of the journal's last batch, or None."""
    for _, path in reversed(segments(directory)):
        data = path.read_bytes()
        found = batches(path, data)
        if found:
            offset, first, count = found[-1]
            length = BATCH.unpack_from(data, offset)[0]
            return first, count, data[offset:offset + BATCH_SIZE + length]
    return None


def file_start(data: bytes) -> int | None:
    """Where a journal file's first batch starts: after the magic of format 2, at 0 in
    format 1; None for a file that is a cut-short magic (created, never written to)."""
    if data[:len(MAGIC)] == MAGIC:
        return len(MAGIC)
    if data and MAGIC.startswith(data[:len(MAGIC)]) and len(data) < len(MAGIC):
        return None
    return 0


def batches(path: Path, data: bytes | None = None) -> list[tuple[int, int, int]]:
    """(offset, first seq, records) of each batch in a journal file (its ``data``, if read
    already), unchecked."""
    data = path.read_bytes() if data is None else data
    offset, out = file_start(data) or 0, []
    while offset < len(data):
        length, first, count, _ = BATCH.unpack_from(data, offset)
        out.append((offset, first, count))
        offset += BATCH_SIZE + length
    return out


def batch_problem(view: memoryview, offset: int, expected: int) -> str | None:
    """What is wrong with the batch at ``offset``, or None."""
    size = len(view)
    if size - offset < BATCH_SIZE:
        return "a batch header cut short"
    length, first, count, crc = BATCH.unpack_from(view, offset)
    if zlib.crc32(view[offset:offset + BATCH.size]) != CRC.unpack_from(
            view, offset + BATCH.size)[0]:
        return "a damaged batch header"
    if length > MAX_BATCH or count == 0:
        return f"a batch of {length} bytes and {count} records"
    if first != expected:
        return f"a batch from seq {first} where {expected} was expected"
    end = offset + BATCH_SIZE + length
    if end > size:
        return f"a batch cut short ({size - offset} of {end - offset} bytes)"
    if zlib.crc32(view[offset + BATCH_SIZE:end]) != crc:
        return "a batch whose checksum does not match"
    return None


def _whole_batch_after(view: memoryview, start: int) -> bool:
    """Whether a batch with a good header and good contents starts anywhere from ``start``."""
    size = len(view)
    for i in range(start, size - BATCH_SIZE + 1):
        if zlib.crc32(view[i:i + BATCH.size]) != CRC.unpack_from(view, i + BATCH.size)[0]:
            continue
        length, _, _, crc = BATCH.unpack_from(view, i)
        end = i + BATCH_SIZE + length
        if end <= size and zlib.crc32(view[i + BATCH_SIZE:end]) == crc:
            return True
    return False


class Journal:
    """Appends commands and makes them durable, a batch at a time.

    Args:
        directory: The journal directory (created if missing).
        next_seq: The seq of the next record (one past the last one recovered);
            the last file must end just before it (recovery has checked that).
        fsync: False is the unsafe mode: records reach the page cache only, so
            they survive the process being killed but not the machine failing.
        segment_bytes: Roll to a new file after a commit leaves this many bytes.
    """

    def __init__(self, directory: Path, next_seq: int, *, fsync: bool = True,
                 segment_bytes: int = SEGMENT_BYTES) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.fsync = fsync
        self.segment_bytes = segment_bytes
        self.next_seq = next_seq
        self.committed_seq = next_seq - 1
        self._pending = bytearray()
        self._count = 0
        self._fd = -1
        files = segments(directory)
        last = files[-1][1] if files else None
        if last is not None:
            with open(last, "rb") as f:
                head = f.read(len(MAGIC) + 1)
            if not head or head == MAGIC or file_start(head) is None:
                # A last file without a batch (rolled, then everything before it covered
                # by a snapshot that recovery started from; or its magic cut short) is
                # started again, named for the seq its first record will have.
                last.unlink()
                last = None
            elif head[:len(MAGIC)] != MAGIC:
                last = None             # format 1: appends go to a new file of format 2
        if last is not None:
            self._path = last
            self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND)
            self._size = os.fstat(self._fd).st_size
        else:
            self._open_segment()

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def append(self, cmd) -> int:
        """Queue a command (or a Failed marker) for the next commit; return its seq."""
        seq = self.next_seq
        self._pending += encode_record(cmd)
        self._count += 1
        self.next_seq = seq + 1
        return seq

    def commit(self) -> None:
        """Write what is queued as one batch, in one write, and (unless unsafe) wait for
        the disk.

        Raises:
            JournalError: the write, the sync or rolling to a new file failed. The
                records' fate is then unknown, so the caller must stop: nothing after
                them may be acked.
        """
        batch = self.cut()
        if batch is not None:
            self.write(*batch)

    def cut(self) -> tuple[bytes, int] | None:
        """Take what is queued as one encoded batch and the seq of its last record, for
        ``write`` (which may run in another thread); None when nothing is queued."""
        if not self._pending:
            return None
        records, self._pending = self._pending, bytearray()
        first = self.next_seq - self._count
        data = encode_batch(first, self._count, records) + records
        self._count = 0
        return data, self.next_seq - 1

    def write(self, data: bytes, last_seq: int) -> None:
        """Write encoded batches (one or more, in the order they were cut) ending at
        ``last_seq`` in one write and (unless unsafe) wait for the disk; roll to a new file
        past the size. Only one thread may write.

        Raises:
            JournalError: as ``commit``.
        """
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            if self.fsync:
                os.fdatasync(self._fd)
            self._size += len(data)
            self.committed_seq = last_seq
            if self._size >= self.segment_bytes:
                self._open_segment(last_seq + 1)
        except OSError as exc:
            raise JournalError(self._path, self._size, f"cannot write: {exc}") from exc

    def extend(self, data: bytes, last_seq: int) -> None:
        """Write whole batches another journal cut (the leader's, off the replicated
        stream) as they are, and go on after them.

        Raises:
            JournalError: as ``commit``; or records are queued here (two writers).
        """
        if self._pending:
            raise JournalError(self._path, self._size, "batches from elsewhere after records "
                               "appended here")
        self.write(data, last_seq)
        self.next_seq = last_seq + 1

    def _open_segment(self, first_seq: int | None = None) -> None:
        """Start the next file (its first record's seq is in its name; the current one
        stays open until the new one exists)."""
        path = self.directory / segment_name(self.next_seq if first_seq is None else first_seq)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, MAGIC)            # synced with the file's first batch
        except OSError:
            os.close(fd)
            raise
        sync_directory(self.directory)
        old, self._fd, self._path, self._size = self._fd, fd, path, len(MAGIC)
        if old >= 0:
            os.close(old)

    def prune(self, covered: int) -> list[Path]:
        """Delete files whose every record is at or below seq ``covered``; return them."""
        files = segments(self.directory)
        gone = []
        for (first, path), (next_first, _) in zip(files, files[1:]):
            if next_first - 1 <= covered and path != self._path:
                path.unlink()
                gone.append(path)
        if gone:
            sync_directory(self.directory)
        return gone

    def close(self, commit: bool = True) -> None:
        """Commit what is queued (unless ``commit`` is False: a start that failed) and close."""
        if self._fd >= 0:
            if commit:
                self.commit()
            os.close(self._fd)
            self._fd = -1


def cut_torn(torn: Torn) -> None:
    """Truncate the last file where its torn record starts, so appends follow good ones."""
    with open(torn.path, "r+b") as f:
        f.truncate(torn.offset)
        f.flush()
        os.fsync(f.fileno())


def sync_directory(directory: Path) -> None:
    """Make a file's creation, rename or removal in ``directory`` durable."""
    sync_path(directory, os.O_DIRECTORY)


def sync_path(path: Path, flags: int = 0) -> None:
    """fsync a file by its path (what another writer wrote to it, too)."""
    fd = os.open(path, os.O_RDONLY | flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
