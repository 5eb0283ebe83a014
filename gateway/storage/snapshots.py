"""Snapshots: the whole exchange state after a given journal seq, in one file.

A snapshot saves replaying the journal from the start; it is never the only
copy of anything (the journal it covers is kept until a newer snapshot covers
more). Written to a temporary file, synced, then renamed into place, so a
crash leaves the old set of snapshots or the new one, never half of one.

File ``snapshots/<seq, 20 digits>.snap``: a 64-byte header and a pickle::

    b"GPUXSNAP" <u32 format> <u64 seq> <u64 payload length> <u32 payload crc32>
    <32-byte sha256 state digest> <u32 crc32 of the 60 bytes before>

The state is the operator's own data, read back by the same code, so pickle
(which keeps the engine's and clearing's object graph as it is) is used
rather than a second description of every structure; a snapshot written by
an incompatible version is refused and the journal replayed instead.
"""
from __future__ import annotations

import logging
import os
import pickle
import struct
import zlib
from pathlib import Path

from gateway.storage.journal import numbered_files, sync_directory

log = logging.getLogger("gpux.snapshots")

MAGIC = b"GPUXSNAP"
FORMAT = 1
HEAD = struct.Struct("<8sIQQI32s")
CRC = struct.Struct("<I")
SUFFIX = ".snap"


class SnapshotError(Exception):
    """A snapshot file is damaged or was written by an incompatible version."""


def snapshot_files(directory: Path) -> list[tuple[int, Path]]:
    """The snapshots as (seq, path), oldest first."""
    return numbered_files(directory, SUFFIX)


def write_snapshot(directory: Path, seq: int, state: object, digest: bytes) -> Path:
    """Write ``state`` as the snapshot after ``seq``, atomically; return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    payload = pickle.dumps(state, protocol=5)
    head = HEAD.pack(MAGIC, FORMAT, seq, len(payload), zlib.crc32(payload), digest)
    path = directory / f"{seq:020d}{SUFFIX}"
    tmp = directory / f".{path.name}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(head + CRC.pack(zlib.crc32(head)))
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    sync_directory(directory)
    return path


def _header(path: Path, data: bytes) -> tuple:
    if len(data) < HEAD.size + CRC.size:
        raise SnapshotError(f"{path}: {len(data)} bytes is shorter than a header")
    magic, fmt, seq, length, crc, digest = HEAD.unpack_from(data)
    if magic != MAGIC or CRC.unpack_from(data, HEAD.size)[0] != zlib.crc32(data[:HEAD.size]):
        raise SnapshotError(f"{path}: not a snapshot header")
    if fmt != FORMAT:
        raise SnapshotError(f"{path}: format {fmt}; this version reads {FORMAT}")
    return seq, length, crc, digest


def snapshot_digest(path: Path) -> bytes:
    """The state digest a snapshot's header records (its state is not loaded)."""
    with open(path, "rb") as f:
        return _header(path, f.read(HEAD.size + CRC.size))[3]


def read_snapshot(path: Path) -> tuple[int, object, bytes]:
    """Return (seq, state, digest) of a snapshot file.

    Raises:
        SnapshotError: damaged, cut short, or from another format.
    """
    data = path.read_bytes()
    seq, length, crc, digest = _header(path, data)
    payload = memoryview(data)[HEAD.size + CRC.size:]
    if len(payload) != length or zlib.crc32(payload) != crc:
        raise SnapshotError(f"{path}: the state does not match its checksum")
    try:
        state = pickle.loads(payload)
    except Exception as exc:           # a class that changed shape since it was written
        raise SnapshotError(f"{path}: cannot be loaded by this version: {exc!r}") from None
    return seq, state, digest


def prune_snapshots(directory: Path, keep: int) -> int | None:
    """Keep the newest ``keep`` snapshots (and no temporary files); return the oldest kept
    seq, up to which the journal may be pruned, or None when there is none."""
    files = snapshot_files(directory)
    for _, path in files[:-keep]:
        path.unlink()
    for path in directory.glob(".*.tmp"):
        path.unlink()
    kept = files[-keep:]
    return kept[0][0] if kept else None


class Background:
    """Writes a snapshot in a forked child, so the exchange keeps trading meanwhile.

    The child sees the state as it was at the fork (copy-on-write), which is
    why a snapshot is started only when every processed command is committed.
    """

    def __init__(self) -> None:
        self.pid: int | None = None
        self.seq = 0

    def start(self, directory: Path, seq: int, state: object, digest_of) -> None:
        self.seq = seq
        pid = os.fork()
        if pid == 0:                  # the child: write, and leave without cleanup
            code = 1
            try:
                # Let go of the parent's sockets, journal and data-directory lock, so a
                # restart after the parent dies is not refused while this child writes.
                os.closerange(3, os.sysconf("SC_OPEN_MAX"))
                import gc
                gc.disable()          # a collection would copy every page it touches
                write_snapshot(directory, seq, state, digest_of(state))
                code = 0
            except BaseException:
                log.exception("the snapshot after seq %d failed", seq)
            finally:
                os._exit(code)
        self.pid = pid

    def poll(self) -> bool | None:
        """None while the child runs (or none was started); True or False once it ended."""
        if self.pid is None:
            return None
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        if pid == 0:
            return None
        self.pid = None
        return os.waitstatus_to_exitcode(status) == 0

    def wait(self) -> bool | None:
        if self.pid is None:
            return None
        _, status = os.waitpid(self.pid, 0)
        self.pid = None
        return os.waitstatus_to_exitcode(status) == 0
