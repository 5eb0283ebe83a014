"""The journal: every command that reached the engine and clearing, in order, on disk.

It is the exchange's record of truth: a snapshot is only a shortcut through it.
Commands are appended as they are processed and written by ``commit`` (one
write, one fdatasync: the group commit of one event-loop turn); nothing a
command caused may be sent to anyone before the commit that holds it.

Files: ``journal/<seq of the first record, 20 digits>.log``, rolled at a size.
A record is a 20-byte header and a payload::

    <u32 payload length> <u64 seq> <u32 crc32 of payload> <u32 crc32 of the 16 bytes before>

The payload is the command as tagged MessagePack (msgspec). The header has its
own checksum so a damaged length is told from a short file: a record cut short
at the end of the last file (a crash mid-write; never acknowledged) is
dropped, while damage anywhere else is an error naming the file and offset.
"""
from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import Iterator

import msgspec

from clearing.messages import ClearingCommands
from engine.messages import EngineCommand

HEADER = struct.Struct("<IQI")              # length, seq, payload crc; then the header's crc
CRC = struct.Struct("<I")
HEADER_SIZE = HEADER.size + CRC.size        # 20
MAX_RECORD = 1 << 20                        # no command is near this; a bigger length is damage
SEGMENT_BYTES = 64 << 20
SUFFIX = ".log"

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(EngineCommand | ClearingCommands).decode


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


def segments(directory: Path) -> list[tuple[int, Path]]:
    """The journal's files as (first seq, path), in order."""
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        stem = path.name[:-len(SUFFIX)]
        if path.name.endswith(SUFFIX) and len(stem) == 20 and stem.isdigit():
            found.append((int(stem), path))
    return sorted(found)


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
            problem = None
            if size - offset < HEADER_SIZE:
                problem = "a header cut short"
                torn = True
            else:
                length, seq, crc = HEADER.unpack_from(data, offset)
                (head_crc,) = CRC.unpack_from(data, offset + HEADER.size)
                end = offset + HEADER_SIZE + length
                if zlib.crc32(view[offset:offset + HEADER.size]) != head_crc:
                    problem = "a damaged record header"
                    torn = not any(view[offset:])            # zeros to the end: never written
                elif length == 0 or length > MAX_RECORD:
                    problem = f"a record length of {length}"
                    torn = False
                elif seq != expected:
                    problem = f"seq {seq} where {expected} was expected"
                    torn = False
                elif end > size:
                    problem = f"a record cut short ({size - offset} of {end - offset} bytes)"
                    torn = True
                elif zlib.crc32(view[offset + HEADER_SIZE:end]) != crc:
                    problem = "a record whose checksum does not match"
                    torn = end == size                       # the very last record
            if problem is not None:
                if torn and last_file:
                    self.torn = Torn(path, offset, size - offset)
                    return
                raise JournalError(path, offset, problem + (
                    "" if torn else " inside the journal, not at its end"))
            try:
                cmd = _decode(view[offset + HEADER_SIZE:end])
            except msgspec.DecodeError as exc:
                raise JournalError(path, offset, f"seq {seq} is not a command: {exc}") from None
            if self.first_seq is None:
                self.first_seq = seq
            self.last_seq = seq
            if seq > self.after:
                yield Record(seq, cmd, path, offset)
            offset = end
            expected += 1


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
