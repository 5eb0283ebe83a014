"""Durability off the event loop: the journal's writes and syncs in a thread of their own,
and snapshots in a forked child.

At the end of each turn the loop cuts the turn's records into a batch and
hands it, with the turn's outbox, to ``seal``; the loop goes on with the next
turn at once. The writer thread writes every batch waiting for it in one write
and one fdatasync (a group commit across the turns that queued meanwhile), then
tells the loop which seq is on disk, and the loop releases the outboxes up to
it, in the order they were sealed. So nothing a command caused reaches anyone
before the command is on disk (ack after durable), and the disk's latency no
longer stops the loop from reading and matching the next requests.

The unsafe mode (no fsync) has no thread: the page cache takes a write at once,
so the loop writes each turn's batch itself. With fsync, the interpreter's
switch interval is lowered to 0.5 ms, so the writer, which needs the
interpreter for a moment after each sync, does not wait behind a busy loop for
the default 5 ms.

A journal that cannot be written leaves no safe way on: the process stops at
once, so nothing that is not on disk is ever acknowledged. An archive that cannot be
synced stops the snapshots instead, until a restart: the journal still holds all that the
archive lost, and is kept whole for the replay that writes it again. One that cannot be
written (a full disk) only skips the snapshot due: the next one tries again.
"""
from __future__ import annotations

import logging
import os
import queue
import sys
import threading
from collections import deque
from pathlib import Path

from engine.exchange import RETENTION_NS
from gateway.storage.archive import ArchiveError, ArchiveSyncError
from gateway.storage.journal import Journal, JournalError
from gateway.storage.recovery import snapshot_dir, state_digest
from gateway.storage.snapshots import Background, prune_snapshots, write_snapshot

log = logging.getLogger("gpux.gateway")

SWITCH_INTERVAL_S = 0.0005

PRUNE_BATCH = 5000          # archived orders deleted a second, at most (prune_archive)


def _stop(exc: JournalError) -> None:
    log.critical("the journal cannot be written, stopping: %s", exc)
    logging.shutdown()
    os._exit(70)


class Durability:
    """The journal's writer thread and the snapshots of one server.

    Args:
        journal: The open journal; the loop appends, the writer thread writes.
        loop: The event loop the releases run on.
        release: Called on the loop with each outbox once its records are on disk.
        data_dir: For snapshots.
        params: The config's [journal] (snapshot interval and count, pruning).
        state: ``(venue, feed)``, what a snapshot holds.
        snapshot_seq: The newest snapshot's seq at start.
        seal: Ends the current turn (the feed takes its events, the outbox comes here),
            so that a snapshot holds exactly what the journal does.

    In a cluster, ``replicator`` is then set: the stream every batch must reach too
    before its outbox is released (gateway.cluster.replicator).
    """

    def __init__(self, journal: Journal, loop, release, data_dir: Path, params, state,
                 snapshot_seq: int, seal) -> None:
        self.seal_turn = seal
        self.journal = journal
        self.loop = loop
        self.release = release
        self.data_dir = data_dir
        self.params = params
        self.state = state
        self.snapshot_seq = snapshot_seq
        self.durable_seq = journal.committed_seq
        self.replicator = None                      # the cluster's stream (see above)
        self.replicated_seq = journal.committed_seq
        self._waiting: deque[tuple[int, object]] = deque()   # (last seq, outbox), in order
        self._batches: queue.SimpleQueue = queue.SimpleQueue()   # to the writer, in order
        self._halted = False
        self._background = Background()
        self._snapshot_ts: dict[int, int] = {}     # seq of a snapshot -> its last command's ts
        self.archive_before: int | None = None      # archived orders closed before go
        self._snapshot_at = loop.time()
        self.unsynced: str | None = None      # why the archive could not be synced
        self._thread = None
        if journal.fsync:
            # The writer needs the interpreter for a moment after each sync; a busy loop
            # would otherwise keep it waiting up to the default 5 ms switch interval.
            sys.setswitchinterval(SWITCH_INTERVAL_S)
            self._thread = threading.Thread(target=self._writer, name="gpux-journal",
                                            daemon=True)
            self._thread.start()

    # -- The loop's side --------------------------------------------------------

    def seal(self, outbox) -> None:
        """The turn's records go to the writer (and the replicator, in a cluster); its
        outbox waits for them (or goes now, if the turn wrote nothing and nothing before
        it waits). Unsafe mode (no fsync) writes here: the page cache takes it at once,
        and no thread is needed."""
        batch = self.journal.cut()
        if batch is None:
            if self._waiting:
                self._waiting.append((self._waiting[-1][0], outbox))
            elif len(outbox):
                self.release(outbox)
            return
        if self.replicator is not None:
            self.replicator.put(*batch)
        self._waiting.append((batch[1], outbox))
        if self._thread is None:
            self._write(*batch)
            self._durable(batch[1])
        else:
            self._batches.put(batch)

    def _durable(self, seq: int) -> None:
        """On the loop: the writer has put everything up to ``seq`` on disk."""
        if seq < self.durable_seq:            # a drain got there first
            return
        self.durable_seq = seq
        self._release_held()

    def replicated(self, seq: int) -> None:
        """On the loop: the replicated stream holds everything up to ``seq``."""
        self.replicated_seq = seq
        self._release_held()

    def _release_held(self) -> None:
        """Release the outboxes whose records are on disk, and on the stream in a cluster."""
        held = self.durable_seq if self.replicator is None \
            else min(self.durable_seq, self.replicated_seq)
        waiting = self._waiting
        while waiting and waiting[0][0] <= held:
            self.release(waiting.popleft()[1])

    def drain(self) -> None:
        """Block until every batch cut so far is on disk, and release what waited for it
        (in a cluster, what the stream holds too)."""
        batch = self.journal.cut()
        if batch is not None and self.replicator is not None:
            self.replicator.put(*batch)
        if self._thread is None:
            if batch is not None:
                self._write(*batch)
        else:
            if batch is not None:
                self._batches.put(batch)
            reached = threading.Event()
            self._batches.put(reached)
            reached.wait()
        self._durable(self.journal.committed_seq)

    # -- The writer thread ------------------------------------------------------

    def _writer(self) -> None:
        """Take every batch waiting, write them in one write and one sync, say so; again."""
        batches = self._batches
        while True:
            items = [batches.get()]
            while not batches.empty():
                items.append(batches.get())
            data = [item for item in items if type(item) is tuple]
            if data and not self._halted:
                self._write(b"".join(d for d, _ in data), data[-1][1])
                try:
                    self.loop.call_soon_threadsafe(self._durable, data[-1][1])
                except RuntimeError:      # the loop is closed: a drain releases instead
                    pass
            for item in items:
                if type(item) is threading.Event:
                    item.set()
            if None in items:
                return

    def _write(self, data: bytes, last_seq: int) -> None:
        try:
            self.journal.write(data, last_seq)
        except JournalError as exc:
            _stop(exc)

    def halt(self) -> None:
        """Stop at once, dropping batches not yet written: what a crash does (tests)."""
        self._halted = True
        self._stop_writer()

    def _stop_writer(self) -> None:
        if self._thread is not None:
            self._batches.put(None)
            self._thread.join()
            self._thread = None

    # -- Snapshots --------------------------------------------------------------

    def maybe_snapshot(self) -> None:
        """Start a background snapshot when the interval or the command count says so."""
        done = self._background.poll()
        if done is not None:
            if done:
                self._snapshot_done(self._background.seq)
            else:
                log.error("the snapshot after seq %d failed; the journal is kept",
                          self._background.seq)
        if self._background.pid is not None or self.unsynced:
            return
        params = self.params
        new = self.journal.next_seq - 1 - self.snapshot_seq
        if new <= 0 or (new < params.snapshot_every
                        and self.loop.time() - self._snapshot_at < params.snapshot_interval_s):
            return
        # The child's state must be exactly the journal's up to seq, the feed included, and
        # on disk: a snapshot past the journal's end would not continue it after a crash.
        self.seal_turn()
        self.drain()
        self._snapshot_at = self.loop.time()
        try:
            self._archive_before(self.journal.committed_seq)
        except ArchiveError:
            return                         # (said: _archive_before)
        self._background.start(snapshot_dir(self.data_dir), self.journal.committed_seq,
                               self.state, lambda state: state_digest(*state))

    def _archive_before(self, seq: int) -> None:
        """A snapshot holds only the recent closed orders: the archive, which holds the
        older ones, must be on disk before the snapshot is."""
        venue = self.state[0]
        try:
            venue.archive.sync()
        except ArchiveSyncError as exc:
            # After a failed fsync the kernel may have dropped the pages it held, and a
            # later fsync succeeds without them: no snapshot may rely on the archive again.
            self.unsynced = str(exc)
            log.critical("%s; no snapshot until a restart, the journal is kept whole", exc)
            raise
        except ArchiveError as exc:          # nothing was lost: the next interval tries again
            log.error("%s; no snapshot this time, the journal is kept", exc)
            raise
        self._snapshot_ts[seq] = venue.command_ts

    def _snapshot_done(self, seq: int) -> None:
        self.snapshot_seq = max(self.snapshot_seq, seq)
        oldest = prune_snapshots(snapshot_dir(self.data_dir), self.params.keep_snapshots)
        if self.params.prune and oldest is not None:
            self.journal.prune(oldest)
        if oldest is not None and oldest in self._snapshot_ts:
            # A restart replays from the oldest snapshot at worst: what its resends may
            # still name is kept, older orders go (a few at a time: prune_archive).
            self.archive_before = self._snapshot_ts[oldest] - RETENTION_NS
            for old in [s for s in self._snapshot_ts if s < oldest]:
                del self._snapshot_ts[old]

    def prune_archive(self) -> None:
        """Delete some of the archived orders past their retention (called each second: a
        snapshot's worth of them at once would stop the loop for a second)."""
        if self.archive_before is not None and not self.state[0].archive.prune(
                self.archive_before, PRUNE_BATCH):
            self.archive_before = None

    def detach(self) -> None:
        """Let the journal go on without this (a standby that now leads: the server's own
        takes over): the snapshot being written finishes, the writer thread stops."""
        self._background.wait()
        self._stop_writer()

    def close(self) -> None:
        """Drain the journal, write a snapshot in this process (a clean shutdown's), stop the
        writer and close the journal."""
        if self.journal.closed:
            return
        self.drain()
        self._background.wait()
        self._stop_writer()
        try:
            if self.journal.committed_seq > self.snapshot_seq and not self.unsynced:
                seq = self.journal.committed_seq
                self._archive_before(seq)
                write_snapshot(snapshot_dir(self.data_dir), seq, self.state,
                               state_digest(*self.state))
                self._snapshot_done(seq)
        except Exception:
            log.exception("the shutdown snapshot failed; the journal holds everything")
        finally:
            self.journal.close()
