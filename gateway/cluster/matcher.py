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
import hashlib
import logging
import os
import signal
import socket
import time
from collections import deque
from pathlib import Path

import msgspec
import nats
from nats.js.errors import NotFoundError

from gateway.cluster.lease import Lease
from gateway.cluster.proxy import Proxies
from gateway.cluster.replicator import Replicator
from gateway.cluster.stream import (
    Fenced, Stream, StreamDamaged, batches_of, patiently, take_message,
)
from gateway.config import Config
from gateway.core.venue import Lead
from gateway.server.durability import Durability
from gateway.server.startup import Held, accounts_of
from gateway.server.websocket import Server
from gateway.storage.journal import (
    JournalError, batch_records, encode_batch, encode_record, journal_batches, last_batch,
)
from gateway.storage.recovery import (
    LISTING_FILE, Recovered, Replay, build, check_listing, journal_dir, listing_date,
    lock_data_dir, open_journal, recover,
)

log = logging.getLogger("gpux.cluster")

FENCED_EXIT = 75            # the process's exit status when another matcher took the lead
NOT_OURS = ("its journal holds batches where the stream holds others (a matcher that lost "
            "the lead wrote them: never acknowledged)")


class MatcherError(Exception):
    """The matcher cannot start or go on as asked (another one leads, the stream is not this
    directory's exchange, the leader runs with another config)."""


class Diverged(Exception):
    """The stream holds other batches where this journal has its own: another matcher led
    after this one wrote them, so they were never acknowledged and are dropped."""


def config_digest(config: Config) -> str:
    """What must be equal for two matchers to replay the same commands to the same state:
    the products, clearing's parameters and the accounts (not the limits or the schedule,
    which decide what is journaled, not what it does)."""
    return hashlib.sha256(msgspec.msgpack.encode(
        [config.products, config.clearing, config.account])).hexdigest()


class Follower:
    """A matcher's own state, kept equal to the replicated stream's.

    The journal may end past the stream (``tail``): batches a leader wrote and could not
    put on the stream before it stopped (never acknowledged), or the whole history of a
    stream whose servers lost it. They stay in the state, and the matcher puts them on the
    stream when it leads; if another matcher leads first, the stream's batches differ and
    they are dropped (the directory moved aside, the state rebuilt from the stream).

    Args:
        config: Products, accounts, limits and durability (the same for every matcher).
        data_dir: This matcher's own directory.
        clock: Nanoseconds since the epoch.
    """

    def __init__(self, config: Config, data_dir: Path, clock=time.time_ns) -> None:
        self.config, self.data_dir, self.clock = config, data_dir, clock
        self.digest = config_digest(config)
        self.lock: int | None = None
        self.journal = None
        self.durability: Durability | None = None
        self.recovered: Recovered | None = None
        self.replay: Replay | None = None
        self.stream_seq = 0              # the last message applied
        self.tail: deque[tuple[int, int, bytes]] = deque()    # ours, past the stream's end
        self.as_of: datetime.date | None = None
        self.leads = 0                   # Lead records applied since the start
        self.epoch = 0                   # the last one's

    # -- Start ------------------------------------------------------------------

    async def start(self, stream: Stream, as_of: datetime.date | None) -> None:
        """Recover the data directory and find where the stream continues it."""
        first = await self._listed(stream)
        try:
            self._open(first or as_of)
        except JournalError as exc:
            if first is None:                   # the stream holds nothing to rebuild from
                raise
            self._rebuild(f"its journal is damaged ({exc})")
            return
        start = await self._continues(stream)
        if start is None:
            self._rebuild(NOT_OURS)
        else:
            self.stream_seq = start - 1

    async def _listed(self, stream: Stream) -> datetime.date | None:
        """The listing date the stream's exchange started with (its first Lead), or None
        when the stream is empty."""
        if await stream.last() == 0:
            return None
        try:
            payload = await stream.message(1)
        except NotFoundError:
            raise MatcherError("the stream has no first message (purged?): it is not a "
                               "whole journal") from None
        _, _, batch = batches_of(payload)[0]
        try:
            _, cmd = next(batch_records(batch))
        except JournalError as exc:
            raise StreamDamaged(f"the stream's first message: {exc}") from None
        if type(cmd) is not Lead:
            raise MatcherError("the stream does not start with a matcher's Lead record")
        return datetime.date.fromisoformat(cmd.as_of)

    def _check(self, lead: Lead) -> None:
        if lead.config != self.digest:
            raise MatcherError(f"{lead.holder} leads with another config (products, clearing "
                               f"or accounts differ): this matcher would replay its commands "
                               f"to another state")

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
        """The stream sequence to follow from (``tail`` set to this journal's batches past
        the stream's end), or None when the stream holds other batches than this journal.

        Raises:
            MatcherError: the journal goes past the stream but not from where it ends (pruned
                behind a snapshot): neither can be checked against the other.
        """
        seq = self.journal.committed_seq
        self.tail.clear()
        if seq == 0:
            return 1
        last = await stream.last()
        if last == 0:                            # a stream that lost everything: ours it is
            return self._keep_tail(0, 1)
        end = batches_of(await stream.message(last))[-1]
        stream_seq = end[0] + end[1] - 1
        if seq > stream_seq:                     # ours goes on past the stream's end
            return self._keep_tail(stream_seq, last + 1, end)
        at = await stream.locate(seq)
        ours = last_batch(journal_dir(self.data_dir))
        if at == 0 or ours is None:              # nothing of ours to compare: rebuild
            return None
        for first, count, data in batches_of(await stream.message(at)):
            if first + count - 1 == seq:
                return at if (first, count, data) == ours else None
        return None

    def _keep_tail(self, stream_seq: int, start: int, end=None) -> int | None:
        """This journal's batches past ``stream_seq`` are the tail, if the journal holds the
        stream's last batch ``end`` as it is (None: the stream is empty)."""
        batches = journal_batches(journal_dir(self.data_dir),
                                  stream_seq if end is None else end[0] - 1)
        if end is not None:
            ours = next(batches, None)
            if ours is not None and ours[0] < end[0]:
                return None                     # ours holds other batch bounds: not ours
            if ours is None or ours[0] > end[0]:
                raise MatcherError(f"{self.data_dir} holds the exchange to seq "
                                   f"{self.journal.committed_seq} but its journal no longer "
                                   f"holds the stream's last batch (seq {end[0]}): one cannot "
                                   f"be checked against the other")
            if ours != end:
                return None
        self.tail.extend(batches)
        expected = stream_seq + 1
        if not self.tail or self.tail[0][0] != expected:
            raise MatcherError(f"the stream ends at seq {stream_seq} and {self.data_dir} "
                               f"holds the exchange to seq {self.journal.committed_seq}, but "
                               f"its journal does not go back to seq {expected} (pruned "
                               f"behind a snapshot): the stream cannot be filled from it")
        log.warning("%s holds %d batches the stream does not (to seq %d); they go on the "
                    "stream when this matcher leads", self.data_dir, len(self.tail),
                    self.journal.committed_seq)
        return start

    def _rebuild(self, why: str) -> None:
        """Move the data directory aside (kept, not deleted) and start again from the
        stream's first message."""
        self.close()
        aside = self.data_dir.with_name(f"{self.data_dir.name}.diverged-{time.time_ns()}")
        self.data_dir.rename(aside)
        self.data_dir.mkdir()
        (self.data_dir / LISTING_FILE).write_bytes((aside / LISTING_FILE).read_bytes())
        log.warning("%s: %s: moved to %s; rebuilding from the stream", self.data_dir, why,
                    aside)
        self._open(self.as_of)
        self.tail.clear()
        self.stream_seq = 0

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
        and replayed into the state; those it holds must be its own tail's.

        Raises:
            Diverged: the stream holds another batch where the tail has one.
            MatcherError: a Lead of a matcher with another config.
        """
        journal = self.journal
        new = []
        for first, count, data in batches_of(payload):
            if first > journal.committed_seq:
                new.append((first, count, data))
            elif (self.tail and first >= self.tail[0][0] and self.tail.popleft()
                  != (first, count, data)) or first + count - 1 > journal.committed_seq:
                raise Diverged(f"the stream's batch from seq {first} is not this journal's")
        if new:
            if new[0][0] != journal.next_seq:
                raise StreamDamaged(f"message {stream_seq} starts at seq {new[0][0]}; the "
                                    f"journal is at {journal.next_seq}")
            records = [record for _, _, data in new for record in batch_records(data)]
            for _, cmd in records:              # before anything is kept to follow on from
                if type(cmd) is Lead:
                    self._check(cmd)
                    self.leads += 1
                    self.epoch = cmd.epoch
            journal.extend(b"".join(b[2] for b in new), new[-1][0] + new[-1][1] - 1)
            for seq, cmd in records:
                self.replay.apply(cmd, seq)
        self.stream_seq = stream_seq

    def _applied(self, stream_seq: int, payload: bytes) -> bool:
        """``apply``, rebuilding from the stream if it diverged (False: start again)."""
        try:
            self.apply(stream_seq, payload)
            return True
        except Diverged as exc:
            self._rebuild(f"{exc}; {NOT_OURS}")
            return False

    async def follow(self, stream: Stream, applied=None) -> None:
        """Apply each message as the stream gets it (a snapshot now and then, as the
        config's [journal] says), until cancelled; ``applied()`` after each."""
        while True:
            try:
                async for seq, payload in stream.follow(self.stream_seq + 1):
                    if seq > self.stream_seq:
                        if not self._applied(seq, payload):
                            break
                        self.durability.maybe_snapshot()
                        if applied is not None:
                            applied()
            except (nats.errors.Error, asyncio.TimeoutError) as exc:
                log.warning("following the stream failed (%r); again from message %d", exc,
                            self.stream_seq + 1)
                await asyncio.sleep(0.25)

    async def catch_up(self, stream: Stream) -> None:
        """Apply every message up to the stream's end now."""
        last = await stream.last()
        while self.stream_seq < last:
            seq = self.stream_seq + 1
            if not self._applied(seq, await stream.message(seq)):
                last = await stream.last()

    # -- Taking the lead --------------------------------------------------------

    async def lead(self, stream: Stream, lease: Lease) -> Held:
        """Put the tail on the stream, then fence off whoever led: a Lead record right after
        the stream's end (reading on and trying again while another matcher still
        appends); return the state to serve from."""
        attempt = 0
        while True:
            attempt += 1
            await self.catch_up(stream)
            try:
                await self._put_tail(stream, lease, attempt)
                ts = max(self.clock(), self.recovered.venue.last_ts)
                first = self.journal.next_seq
                record = encode_record(Lead(holder=lease.holder, epoch=lease.epoch,
                                            as_of=self.as_of.isoformat(), config=self.digest,
                                            ts_ns=ts))
                batch = encode_batch(first, 1, record) + record
                seq = await stream.append(batch, self.stream_seq,
                                          f"{lease.epoch}:{first}-{first}:{attempt}")
            except (Fenced, nats.errors.Error, asyncio.TimeoutError) as exc:
                log.warning("appending after stream message %d failed (%r); reading on and "
                            "trying again", self.stream_seq, exc)
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
        new_exchange = await self._only_leads(stream)
        lock, self.lock = self.lock, None            # the server's now
        return Held(lock, recovered, self.journal, new_exchange)

    async def _put_tail(self, stream: Stream, lease: Lease, attempt: int) -> None:
        """This journal's batches past the stream's end, appended as they are."""
        while self.tail:
            parts = take_message(self.tail, lambda batch: batch[2])
            first, last = parts[0][0], parts[-1][0] + parts[-1][1] - 1
            try:
                self.stream_seq = await stream.append(
                    b"".join(p[2] for p in parts), self.stream_seq,
                    f"{lease.epoch}:{first}-{last}:{attempt}")
            except BaseException:
                self.tail.extendleft(reversed(parts))
                raise
        self.tail.clear()

    async def _only_leads(self, stream: Stream) -> bool:
        """Whether the stream holds nothing but Lead records: a new exchange, to be funded
        (the first leader's funding may not have reached the stream before it stopped)."""
        for seq in range(1, self.stream_seq + 1):
            for _, _, batch in batches_of(await stream.message(seq)):
                if any(type(cmd) is not Lead for _, cmd in batch_records(batch)):
                    return False
        return True


def _can_listen(host: str, port: int) -> None:
    """Refuse to start (so never to fence the stream and then fail) on a port another
    process holds. (It could still be taken between now and the lead.)

    Raises:
        OSError: the address cannot be bound.
    """
    if port:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))


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
    stop = stop_on_signals()
    _can_listen(host or config.server.host, config.server.port if port is None else port)
    # Until it leads, a stop ends whatever the start waits for (the cluster, the lease).
    started = await unless_stopped(_take_lead(config, data_dir, urls, standby, name,
                                              replicas, as_of, clock, wait_s), stop)
    if started is None:
        return
    stream, lease, holding, follower, held = started
    await _lead(config, data_dir, stream, lease, holding, follower, held, host, port, clock,
                ready, stop)


def stop_on_signals() -> asyncio.Event:
    """An event SIGINT or SIGTERM sets."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def unless_stopped(work, stop: asyncio.Event):
    """Run ``work`` (a coroutine) to its end and return its result, unless ``stop`` is set
    first: then it is cancelled and None returned."""
    loop = asyncio.get_running_loop()
    task = loop.create_task(work)
    stopping = loop.create_task(stop.wait())
    await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return None
    return task.result()


async def _take_lead(config, data_dir, urls, standby, name, replicas, as_of, clock, wait_s):
    """Connect, follow the stream and take the lead once the lease is ours (at once, unless
    a standby); return (stream, lease, the task renewing it, follower, the state to
    serve). The lease is renewed from the moment it is won: reading to the stream's end
    and putting a tail on it may take longer than its TTL."""
    stream = await Stream.connect(urls, replicas, timeout=wait_s)
    follower = Follower(config, data_dir, clock)
    following = holding = None
    try:
        lease = await patiently(Lease(stream.js, name, replicas=replicas).open, wait_s)
        await follower.start(stream, as_of)
        won = False
        if not standby:
            won = await patiently(lease.acquire, wait_s)
            if not won:
                raise MatcherError(f"{await lease.leader()} leads; start this matcher with "
                                   f"--standby to follow it")
        following = asyncio.get_running_loop().create_task(follower.follow(stream))
        while not won:
            if following.done():
                following.result()           # a stream it cannot follow: say why
            try:
                won = await lease.acquire()
            except (nats.errors.Error, asyncio.TimeoutError) as exc:
                log.info("the lease could not be asked for (%r)", exc)
            if not won:
                await asyncio.sleep(lease.ttl / 6)
        holding = asyncio.get_running_loop().create_task(
            lease.hold(lambda exc: _step_down(lease.holder, exc)))
        await _cancelled(following)
        return stream, lease, holding, follower, await follower.lead(stream, lease)
    except BaseException:
        for task in (following, holding):
            await _cancelled(task)
        follower.close()
        await stream.close()
        raise


async def _cancelled(task) -> None:
    """Cancel a task and wait for it to end (whatever it raised)."""
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _step_down(holder: str, exc: BaseException) -> None:
    """Another matcher leads (or this one cannot go on replicating): stop at once, so that
    nothing waiting for the stream is ever answered."""
    log.critical("%s no longer leads (%r): stopping without answering anyone", holder, exc)
    logging.shutdown()
    os._exit(FENCED_EXIT)


async def _lead(config, data_dir, stream, lease, holding, follower, held, host, port, clock,
                ready, stop) -> None:
    replicator = None

    def replicate(durability) -> Replicator:
        nonlocal replicator
        replicator = Replicator(stream, follower.stream_seq, lease.epoch,
                                durability.replicated,
                                lambda exc: _step_down(lease.holder, exc))
        return replicator

    server = proxies = None
    try:
        server = Server(config, data_dir, clock=clock, held=held)
        try:
            await server.start(host, port, replicate=replicate)
        except BaseException:
            server.close()
            server = None
            raise
        proxies = Proxies(server, stream.nc, lease.epoch)      # the gateways' connections
        await proxies.start()
        if ready is not None:
            ready(server)
        await stop.wait()
    finally:
        if proxies is not None:
            await proxies.stop()
        if server is not None:
            await server.stop()
        if replicator is not None:
            try:
                await asyncio.wait_for(replicator.idle(), 10)
            except asyncio.TimeoutError:
                log.error("the last batches did not reach the stream; they go on it when "
                          "this matcher next leads, unless another leads first")
            replicator.stop()
        await _cancelled(holding)
        await lease.release()
        await stream.close()
