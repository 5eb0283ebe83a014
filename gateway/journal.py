"""The journal: every command that reached the engine and clearing, in order, on disk.

It is the exchange's record of truth: a snapshot is only a shortcut through it.
Commands are appended as they are processed and written by ``commit`` (one
write, one fdatasync: the group commit of one event-loop turn); nothing a
command caused may be sent to anyone before the commit that holds it.

Files: ``journal/<seq of the first record, 20 digits>.log``, rolled at a size.
A record is a 20-byte header and a payload::

    <u32 payload length> <u64 seq> <u32 crc32 of payload> <u32 crc32 of the 16 bytes before>

The payload is the command as tagged MessagePack (msgspec). The header has its
own checksum so a damaged length is told from a short file. A bad record in
the last file with no good header anywhere after it is the torn end of a
write (a crash mid-write; it was never acknowledged): it is dropped. Damage
with good records after it, or in any other file, is an error naming the
file and offset: replaying past it would silently lose what it held.
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

HEADER = struct.Struct("<IQI")              # length, seq, payload crc; then the header's crc
CRC = struct.Struct("<I")
HEADER_SIZE = HEADER.size + CRC.size        # 20
MAX_RECORD = 1 << 20                        # no command is near this; a bigger length is damage
SEGMENT_BYTES = 64 << 20
SUFFIX = ".log"



def _loose(kind):
    """A type without its value constraints (Annotated Meta), inside unions too."""
    if get_origin(kind) is Annotated:
        return _loose(get_args(kind)[0])
    if get_origin(kind) in (Union, UnionType):
        return Union[tuple(_loose(k) for k in get_args(kind))]
    return kind


def _unchecked(cls) -> type:
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
            fields.append((f.name, _loose(f.type), msgspec.field(default_factory=f.default_factory)))
        else:
            fields.append((f.name, _loose(f.type), f.default))
    config = cls.__struct_config__
    return msgspec.defstruct(cls.__name__, fields, tag=config.tag, tag_field=config.tag_field,
                             kw_only=True)


_COMMANDS = get_args(EngineCommand) + get_args(ClearingCommands)
_TWINS = {_unchecked(cls): cls for cls in _COMMANDS}
_encode = msgspec.msgpack.Encoder().encode
_decode_twin = msgspec.msgpack.Decoder(Union[tuple(_TWINS)]).decode
_asdict = msgspec.structs.asdict


def decode_command(payload):
    """A journal payload back into the command that was appended."""
    twin = _decode_twin(payload)
    return _TWINS[type(twin)](**_asdict(twin))


class JournalError(Exception):
    """The journal cannot be read or written as it must be; says which file and offset."""

    def __init__(self, path: Path, offset: int, problem: str) -> None:
        super().__init__(f"{path} at offset {offset}: {problem}")
        self.path, self.offset, self.problem = path, offset, problem


def encode_record(seq: int, cmd) -> bytes:
    payload = _encode(cmd)
    head = HEADER.pack(len(payload), seq, zlib.crc32(payload))
    return head + CRC.pack(zlib.crc32(head)) + payload


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
            still checked.
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
        offset = 0
        expected = first
        while offset < size:
            problem = self._check(view, offset, expected)
            if problem is not None:
                # Damage is the torn end of a write when no good record follows it.
                if last_file and not _good_header_after(view, offset + 1):
                    self.torn = Torn(path, offset, size - offset)
                    return
                where = "inside the journal" if last_file else "in a file that is not the last"
                raise JournalError(path, offset, f"{problem}, {where} (good records follow)"
                                   if last_file else f"{problem}, {where}")
            length, seq, _ = HEADER.unpack_from(data, offset)
            end = offset + HEADER_SIZE + length
            try:
                cmd = decode_command(view[offset + HEADER_SIZE:end])
            except msgspec.DecodeError as exc:
                raise JournalError(path, offset, f"seq {seq} is not a command: {exc}") from None
            if self.first_seq is None:
                self.first_seq = seq
            self.last_seq = seq
            if seq > self.after:
                yield Record(seq, cmd, path, offset)
            offset = end
            expected += 1

    @staticmethod
    def _check(view: memoryview, offset: int, expected: int) -> str | None:
        """What is wrong with the record at ``offset``, or None."""
        size = len(view)
        if size - offset < HEADER_SIZE:
            return "a header cut short"
        length, seq, crc = HEADER.unpack_from(view, offset)
        if zlib.crc32(view[offset:offset + HEADER.size]) != CRC.unpack_from(
                view, offset + HEADER.size)[0]:
            return "a damaged record header"
        if length == 0 or length > MAX_RECORD:
            return f"a record length of {length}"
        if seq != expected:
            return f"seq {seq} where {expected} was expected"
        end = offset + HEADER_SIZE + length
        if end > size:
            return f"a record cut short ({size - offset} of {end - offset} bytes)"
        if zlib.crc32(view[offset + HEADER_SIZE:end]) != crc:
            return "a record whose checksum does not match"
        return None


def _good_header_after(view: memoryview, start: int) -> bool:
    """Whether a record header with a good checksum starts anywhere from ``start`` on."""
    for i in range(start, len(view) - HEADER_SIZE + 1):
        if zlib.crc32(view[i:i + HEADER.size]) == CRC.unpack_from(view, i + HEADER.size)[0]:
            return True
    return False


class Journal:
    """Appends commands and makes them durable, a batch at a time.

    Args:
        directory: The journal directory (created if missing).
        next_seq: The seq of the next record (one past the last one recovered).
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
        self._fd = -1
        files = segments(directory)
        if files:
            path = files[-1][1]
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            self._size = os.fstat(self._fd).st_size
            self._path = path
        else:
            self._open_segment()

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def append(self, cmd) -> int:
        """Queue a command for the next commit; return its seq."""
        seq = self.next_seq
        self._pending += encode_record(seq, cmd)
        self.next_seq = seq + 1
        return seq

    def commit(self) -> None:
        """Write what is queued in one write and (unless unsafe) wait for the disk.

        Raises:
            JournalError: the write or the sync failed. The records' fate is then
                unknown, so the caller must stop: nothing after them may be acked.
        """
        if not self._pending:
            return
        data, self._pending = self._pending, bytearray()
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            if self.fsync:
                os.fdatasync(self._fd)
        except OSError as exc:
            raise JournalError(self._path, self._size, f"cannot write: {exc}") from exc
        self._size += len(data)
        self.committed_seq = self.next_seq - 1
        if self._size >= self.segment_bytes:
            self._open_segment()

    def _open_segment(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self._path = self.directory / segment_name(self.next_seq)
        self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
        self._size = 0
        sync_directory(self.directory)

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

    def close(self) -> None:
        if self._fd >= 0:
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
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
