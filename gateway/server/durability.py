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

A journal that cannot be written leaves no safe way on: the process stops at
once, so nothing that is not on disk is ever acknowledged.
"""
from __future__ import annotations

import logging
import os
import threading
from collections import deque
from pathlib import Path

from gateway.storage.journal import Journal, JournalError
from gateway.storage.recovery import snapshot_dir, state_digest
from gateway.storage.snapshots import Background, prune_snapshots, write_snapshot

log = logging.getLogger("gpux.gateway")


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
        self._waiting: deque[tuple[int, object]] = deque()   # (last seq, outbox), in order
        self._batches: list[tuple[bytes, int]] = []          # cut, not yet written
        self._cond = threading.Condition()
        self._writing = False
        self._closed = False
        self._background = Background()
        self._snapshot_at = loop.time()
        self._thread = threading.Thread(target=self._writer, name="gpux-journal", daemon=True)
        self._thread.start()

    # -- The loop's side --------------------------------------------------------

    def seal(self, outbox) -> None:
        """The turn's records go to the writer; its outbox waits for them (or goes now, if
        the turn wrote nothing and nothing before it waits)."""
        batch = self.journal.cut()
        if batch is not None:
            with self._cond:
                self._batches.append(batch)
                self._cond.notify()
            self._waiting.append((batch[1], outbox))
        elif self._waiting:
            self._waiting.append((self._waiting[-1][0], outbox))
        elif len(outbox):
            self.release(outbox)

    def _durable(self, seq: int) -> None:
        """On the loop: the writer has put everything up to ``seq`` on disk."""
        if seq < self.durable_seq:            # a drain got there first
            return
        self.durable_seq = seq
        waiting = self._waiting
        while waiting and waiting[0][0] <= seq:
            self.release(waiting.popleft()[1])

    def drain(self) -> None:
        """Block until every batch cut so far is on disk, and release what waited for it."""
        batch = self.journal.cut()
        with self._cond:
            if batch is not None:
                self._batches.append(batch)
                self._cond.notify()
            while self._batches or self._writing:
                self._cond.wait()
        self._durable(self.journal.committed_seq)

    # -- The writer thread ------------------------------------------------------

    def _writer(self) -> None:
        cond = self._cond
        while True:
            with cond:
                while not self._batches and not self._closed:
                    cond.wait()
                if not self._batches:
                    return
                batches, self._batches = self._batches, []
                self._writing = True
            try:
                self.journal.write(b"".join(data for data, _ in batches), batches[-1][1])
            except JournalError as exc:
                _stop(exc)
            with cond:
                self._writing = False
                cond.notify_all()
            try:
                self.loop.call_soon_threadsafe(self._durable, batches[-1][1])
            except RuntimeError:          # the loop is closed: a drain releases instead
                pass

    def halt(self) -> None:
        """Stop at once, dropping batches not yet written: what a crash does (tests)."""
        with self._cond:
            self._batches.clear()
            self._closed = True
            self._cond.notify_all()
        self._thread.join()

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
        if self._background.pid is not None:
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
        self._background.start(snapshot_dir(self.data_dir), self.journal.committed_seq,
                               self.state, lambda state: state_digest(*state))

    def _snapshot_done(self, seq: int) -> None:
        self.snapshot_seq = max(self.snapshot_seq, seq)
        oldest = prune_snapshots(snapshot_dir(self.data_dir), self.params.keep_snapshots)
        if self.params.prune and oldest is not None:
            self.journal.prune(oldest)

    def close(self) -> None:
        """Drain the journal, write a snapshot in this process (a clean shutdown's), stop the
        writer and close the journal."""
        if self.journal.closed:
            return
        self.drain()
        self._background.wait()
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()
        try:
            if self.journal.committed_seq > self.snapshot_seq:
                seq = self.journal.committed_seq
                write_snapshot(snapshot_dir(self.data_dir), seq, self.state,
                               state_digest(*self.state))
                self._snapshot_done(seq)
        except Exception:
            log.exception("the shutdown snapshot failed; the journal holds everything")
        finally:
            self.journal.close()
