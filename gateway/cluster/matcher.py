"""`gpux matcher`: the exchange's one writer in a cluster, or its hot standby (DESIGN §7).

A matcher starts as a follower: it recovers its own data directory, checks that
its journal is a prefix of the replicated stream (a deposed leader's may end in
batches the stream refused: then the directory is moved aside and the state is
rebuilt from the stream), and applies each message of the stream to its state
and its journal as it comes. Once it holds the lease (gateway.cluster.lease) it
reads the stream to its end and appends a Lead record expecting that end: from
then on a matcher that led before is fenced off. Then it serves as the embedded
server does, except that a turn is released only once its batch is on the local
disk and on the stream (gateway.cluster.replicator); if the stream refuses an
append or the lease is lost, it stops at once, answering nobody.
"""
from __future__ import annotations

import asyncio
import datetime
import logging
import os
import signal
import time
from pathlib import Path

import nats

from gateway.cluster.lease import Lease
from gateway.cluster.replicator import Replicator
from gateway.cluster.stream import Stream, StreamDamaged, batch_crc, batches_of, patiently
from gateway.config import Config
from gateway.core.venue import Lead
from gateway.server.durability import Durability
from gateway.server.startup import Held, accounts_of
from gateway.server.websocket import Server
from gateway.storage.journal import (
    batch_records, encode_batch, encode_record, last_batch,
)
from gateway.storage.recovery import (
    LISTING_FILE, Recovered, Replay, build, check_listing, journal_dir, listing_date,
    lock_data_dir, open_journal, recover,
)

log = logging.getLogger("gpux.cluster")

FENCED_EXIT = 75            # the process's exit status when another matcher took the lead


class MatcherError(Exception):
    """The matcher cannot start as asked (another one leads, or the stream is not this
    data directory's exchange)."""


class Follower:
    """A matcher's own state, kept equal to the replicated stream's.

    Args:
        config: Products, accounts, limits and durability (the same for every matcher).
        data_dir: This matcher's own directory.
        clock: Nanoseconds since the epoch.
    """

    def __init__(self, config: Config, data_dir: Path, clock=time.time_ns) -> None:
        self.config, self.data_dir, self.clock = config, data_dir, clock
        self.lock: int | None = None
        self.journal = None
        self.durability: Durability | None = None
        self.recovered: Recovered | None = None
        self.replay: Replay | None = None
        self.stream_seq = 0              # the last message applied
        self.as_of: datetime.date | None = None

    # -- Start ------------------------------------------------------------------

    async def start(self, stream: Stream, as_of: datetime.date | None) -> None:
        """Recover the data directory and find where the stream continues it."""
        first = await self._listed(stream)
        self._open(first or as_of)
        start = await self._continues(stream)
        if start is None:
            aside = self._move_aside()
            log.warning("the journal in %s holds batches the stream does not (a matcher "
                        "that lost the lead): moved to %s; rebuilding from the stream",
                        self.data_dir, aside)
            self._open(first or as_of)
            start = 1
        self.stream_seq = start - 1

    async def _listed(self, stream: Stream) -> datetime.date | None:
        """The listing date the stream's exchange started with (its first Lead), or None."""
        if await stream.last() == 0:
            return None
        _, _, batch = batches_of(await stream.message(1))[0]
        _, cmd = next(batch_records(batch))
        if type(cmd) is not Lead:
            raise MatcherError("the stream does not start with a matcher's Lead record")
        return datetime.date.fromisoformat(cmd.as_of)

    def _open(self, as_of: datetime.date | None) -> None:
        config, data_dir = self.config, self.data_dir
        self.lock = lock_data_dir(data_dir)
        _, accounts = accounts_of(config, data_dir)
        accounts = list(accounts.by_id.values())
        self.as_of = as_of = listing_date(data_dir, as_of or config.server.as_of)
        self.recovered = recover(data_dir, lambda: build(config, as_of, accounts, self.clock))
        check_listing(self.recovered.venue, config, as_of)
        self.recovered.venue.clock = self.clock
        self.journal = open_journal(data_dir, config, self.recovered.seq + 1)
        venue, feed = self.recovered.venue, self.recovered.feed
        self.replay = Replay(venue, feed)
        # Snapshots as the leader takes them (a standby that restarts replays from its newest).
        self.durability = Durability(self.journal, asyncio.get_running_loop(), lambda _: None,
                                     data_dir, config.journal, (venue, feed),
                                     self.recovered.snapshot_seq, lambda: feed.seal(()))

    async def _continues(self, stream: Stream) -> int | None:
        """The stream sequence to follow from, or None when the journal is not a prefix of
        the stream: its last batch is not the stream's batch ending at the same seq."""
        seq = self.journal.committed_seq
        if seq == 0:
            return 1
        at = await stream.locate(seq)
        if at == 0:
            return None
        local = last_batch(journal_dir(self.data_dir))
        for first, count, data in batches_of(await stream.message(at)):
            if first + count - 1 == seq:
                same = local is None or local == (first, count, batch_crc(data))
                return at if same else None
        return None

    def _move_aside(self) -> Path:
        self.durability.detach()
        self.journal.close(commit=False)
        os.close(self.lock)
        aside = self.data_dir.with_name(f"{self.data_dir.name}.diverged-{time.time_ns()}")
        self.data_dir.rename(aside)
        self.data_dir.mkdir()
        for keep in (LISTING_FILE,):
            if (aside / keep).exists():
                (self.data_dir / keep).write_bytes((aside / keep).read_bytes())
        return aside

    def close(self) -> None:
        if self.durability is not None:
            self.durability.detach()
        if self.journal is not None and not self.journal.closed:
            self.journal.close(commit=False)
        if self.lock is not None:
            os.close(self.lock)
            self.lock = None

    # -- Following --------------------------------------------------------------

    def apply(self, stream_seq: int, payload: bytes) -> None:
        """One message of the stream: its batches this journal lacks, written as they are
        and replayed into the state."""
        journal = self.journal
        new = [b for b in batches_of(payload) if b[0] + b[1] - 1 > journal.committed_seq]
        if new:
            if new[0][0] != journal.next_seq:
                raise StreamDamaged(f"message {stream_seq} starts at seq {new[0][0]}; the "
                                    f"journal is at {journal.next_seq}")
            last = new[-1][0] + new[-1][1] - 1
            journal.extend(b"".join(b[2] for b in new), last)
            for _, _, data in new:
                for seq, cmd in batch_records(data):
                    self.replay.apply(cmd, seq)
        self.stream_seq = stream_seq

    async def follow(self, stream: Stream) -> None:
        """Apply each message as the stream gets it (a snapshot now and then, as the
        config's [journal] says), until cancelled."""
        while True:
            try:
                async for seq, payload in stream.follow(self.stream_seq + 1):
                    if seq > self.stream_seq:
                        self.apply(seq, payload)
                        self.durability.maybe_snapshot()
            except (nats.errors.Error, asyncio.TimeoutError) as exc:
                log.warning("following the stream failed (%r); again from message %d", exc,
                            self.stream_seq + 1)
                await asyncio.sleep(0.25)

    async def catch_up(self, stream: Stream) -> None:
        """Apply every message up to the stream's end now."""
        last = await stream.last()
        while self.stream_seq < last:
            seq = self.stream_seq + 1
            self.apply(seq, await stream.message(seq))

    # -- Taking the lead --------------------------------------------------------

    async def lead(self, stream: Stream, lease: Lease) -> Held:
        """Fence off whoever led: append a Lead record right after the stream's end (reading
        on and trying again while another matcher still appends); return the state to
        serve from."""
        venue = self.recovered.venue
        while True:
            await self.catch_up(stream)
            ts = max(self.clock(), venue.last_ts)
            first = self.journal.next_seq
            record = encode_record(Lead(holder=lease.holder, epoch=lease.epoch,
                                        as_of=self.as_of.isoformat(), ts_ns=ts))
            batch = encode_batch(first, 1, record) + record
            try:
                seq = await stream.append(batch, self.stream_seq, f"{lease.epoch}:{first}-{first}")
            except Exception as exc:         # Fenced, or the cluster busy: read on, again
                log.info("the Lead append after %d was not taken (%s); again",
                         self.stream_seq, exc)
                await asyncio.sleep(0.05)
                continue
            self.apply(seq, batch)
            break
        self.durability.detach()                # the server's own takes the journal on
        self.replay.done()
        log.info("%s leads from stream message %d (journal seq %d)", lease.holder, seq, first)
        r = self.recovered
        recovered = Recovered(r.venue, r.feed, self.journal.committed_seq, r.snapshot_seq,
                              r.replayed + self.replay.count, r.failed + self.replay.failed,
                              r.dropped_bytes, r.seconds)
        # Not funded yet: the first leader's funding may not have reached the stream.
        new_exchange = not any(a.collateral for a in venue.house.ledger.accounts.values())
        lock, self.lock = self.lock, None            # the server's now
        return Held(lock, recovered, self.journal, new_exchange)


async def run_matcher(config: Config, data_dir: Path, urls: list[str], *, standby: bool,
                      name: str, host: str | None = None, port: int | None = None,
                      replicas: int = 3, as_of: datetime.date | None = None,
                      clock=time.time_ns, ready=None, wait_s: float = 30.0) -> None:
    """Follow the stream, lead once the lease is ours, serve until SIGINT or SIGTERM.

    Args:
        standby: Wait for the lease; else take it now or refuse to start.
        name: This matcher's name in the lease (unique in the cluster).
        ready: Called with the server once it leads and listens.
        wait_s: How long to wait for the JetStream cluster at the start.

    Raises:
        MatcherError: not a standby, and another matcher leads.
        Unavailable: the JetStream cluster did not answer within ``wait_s``.
    """
    if not config.account:
        raise MatcherError("a cluster's matchers need the accounts in their config "
                           "(every matcher must know the same ones)")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stream = await Stream.connect(urls, replicas, timeout=wait_s)
    lease = await patiently(Lease(stream.js, name, replicas=replicas).open, wait_s)
    follower = Follower(config, data_dir, clock)
    try:
        await follower.start(stream, as_of)
        won = False
        if not standby:
            won = await patiently(lease.acquire, wait_s)
            if not won:
                raise MatcherError(f"{await lease.leader()} leads; start this matcher with "
                                   f"--standby to follow it")
        following = loop.create_task(follower.follow(stream))
        while not won and not stop.is_set():
            if following.done():
                following.result()           # a stream it cannot follow: say why
            try:
                won = await lease.acquire()
            except (nats.errors.Error, asyncio.TimeoutError) as exc:
                log.info("the lease could not be asked for (%r)", exc)
            if not won:
                try:
                    await asyncio.wait_for(stop.wait(), lease.ttl / 6)
                except asyncio.TimeoutError:
                    pass
        following.cancel()
        if stop.is_set():
            return
        held = await follower.lead(stream, lease)
    except BaseException:
        follower.close()
        await stream.close()
        raise
    await _lead(config, data_dir, stream, lease, follower, held, host, port, clock, ready, stop)


async def _lead(config, data_dir, stream, lease, follower, held, host, port, clock, ready,
                stop) -> None:
    def step_down(exc: Exception) -> None:
        log.critical("%s no longer leads (%s): stopping without answering anyone",
                     lease.holder, exc)
        logging.shutdown()
        os._exit(FENCED_EXIT)

    server = Server(config, data_dir, clock=clock, held=held)
    replicator = None

    def replicate(durability) -> Replicator:
        nonlocal replicator
        replicator = Replicator(stream, follower.stream_seq, lease.epoch,
                                durability.replicated, step_down)
        return replicator

    try:
        await server.start(host, port, replicate=replicate)
    except BaseException:
        server.close()
        raise
    holding = asyncio.get_running_loop().create_task(lease.hold(step_down))
    try:
        if ready is not None:
            ready(server)
        await stop.wait()
    finally:
        await server.stop()
        if replicator is not None:
            try:
                await asyncio.wait_for(replicator.idle(), 10)
            except asyncio.TimeoutError:
                log.error("the last batches did not reach the stream; this directory will be "
                          "rebuilt from it at the next start")
            replicator.stop()
        holding.cancel()
        await lease.release()
        await stream.close()
