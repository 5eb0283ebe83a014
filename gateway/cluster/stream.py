"""The journal replicated on a JetStream stream (DESIGN §7).

Each message of the stream holds one or more whole journal batches, exactly as
the leader's journal cut them (gateway.storage.journal: header, first seq,
count, checksums, records), in order and without gaps: the stream *is* the
journal, and replaying it gives the leader's state. A follower writes the same
bytes into its own journal.

Only the leader appends, and every append names the stream sequence it
expects to follow (``Nats-Expected-Last-Sequence``): a matcher that lost the
lead (a pause, a partition) and wakes up believing it still leads is refused
(``Fenced``), since the new leader's first append moved the stream on. Each
message also carries an id made of the lead's epoch and its journal seqs
(``Nats-Msg-Id``), so an append retried after a lost acknowledgement is
answered as the duplicate it is (JetStream checks ids before sequences) rather
than refused.
"""
from __future__ import annotations

import asyncio
import logging
from typing import AsyncIterator

import nats
from nats.js import api
from nats.js.errors import APIError, BadRequestError, NotFoundError

from gateway.storage.journal import BATCH, BATCH_SIZE, batch_problem

log = logging.getLogger("gpux.cluster")

STREAM = "GPUX_JOURNAL"
SUBJECT = "gpux.journal"
WRONG_LAST_SEQUENCE = 10071             # JetStream's error code for a refused expectation
CONFLICTS = (10058,)                    # the stream exists with another configuration
# Batches joined into one message, at most (a single bigger batch goes alone): half of
# nats-server's default max_payload, 1 MiB (gateway.cluster.natsd sets 8 MiB).
MESSAGE_BYTES = 1 << 19
CONNECT_TIMEOUT_S = 30.0


class Fenced(Exception):
    """Another matcher appended to the stream: this one no longer leads."""


class Unavailable(Exception):
    """The JetStream cluster cannot be reached (or has no quorum)."""


class StreamDamaged(Exception):
    """A message of the stream is not whole journal batches following the one before."""


def take_message(queue, data_of) -> list:
    """Items off the left of ``queue`` whose bytes (``data_of(item)``) go in one message:
    at least one, and no more than MESSAGE_BYTES in all unless the first alone is."""
    parts, size = [], 0
    while queue and (not parts or size + len(data_of(queue[0])) <= MESSAGE_BYTES):
        parts.append(queue.popleft())
        size += len(data_of(parts[-1]))
    return parts


async def _nats_error(exc: Exception) -> None:
    """The client's errors in one line each (its default logs a traceback per retry)."""
    log.warning("NATS: %r", exc)


async def _retry_or_give_up(nc, urls, timeout: float, deadline: float, exc) -> None:
    if asyncio.get_running_loop().time() > deadline:
        if nc is not None:
            await nc.close()
        raise Unavailable(f"the JetStream cluster at {', '.join(urls)} did not answer within "
                          f"{timeout:g} s: {exc!r}") from None
    log.info("waiting for the JetStream cluster: %r", exc)
    await asyncio.sleep(0.25)


async def led(js, name: str) -> None:
    """Until the stream ``name`` has a leader: one just created (or recreated) is there
    before its replicas have elected one, and answers nothing meanwhile.

    Raises:
        nats.errors.TimeoutError: not within 5 s (the callers retry).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5.0
    while True:
        info = await js.stream_info(name)
        if info.cluster is None or info.cluster.leader:
            return
        if loop.time() > deadline:
            raise nats.errors.TimeoutError
        await asyncio.sleep(0.05)


async def patiently(call, timeout: float = CONNECT_TIMEOUT_S):
    """``await call()``, again while the cluster cannot answer (a node restarting, leaders
    being elected), for up to ``timeout`` seconds.

    Raises:
        Unavailable: it could not answer for that long.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            return await call()
        except NotFoundError:
            raise
        except (nats.errors.Error, asyncio.TimeoutError) as exc:
            if loop.time() > deadline:
                raise Unavailable(f"the JetStream cluster did not answer within {timeout:g} "
                                  f"s: {exc!r}") from None
            log.info("the JetStream cluster did not answer (%r); again", exc)
            await asyncio.sleep(0.25)


def batches_of(payload: bytes, expected: int | None = None) -> list[tuple[int, int, bytes]]:
    """(first seq, records, bytes) of each journal batch in a message, checked.

    Args:
        expected: The seq the first batch must start at (None: any).

    Raises:
        StreamDamaged: a batch is damaged, or does not follow the one before.
    """
    view, offset, out = memoryview(payload), 0, []
    while offset < len(view):
        if expected is None:
            expected = BATCH.unpack_from(view, offset)[1] if len(view) - offset >= BATCH.size \
                else 0
        problem = batch_problem(view, offset, expected)
        if problem is not None:
            raise StreamDamaged(f"{problem} at byte {offset} of a stream message")
        length, first, count, _ = BATCH.unpack_from(view, offset)
        end = offset + BATCH_SIZE + length
        out.append((first, count, bytes(view[offset:end])))
        expected, offset = first + count, end
    if not out:
        raise StreamDamaged("an empty stream message")
    return out


class Stream:
    """The replicated journal on a JetStream cluster.

    Args:
        nc: A connected NATS client.
        name: The stream's name.
    """

    def __init__(self, nc, name: str = STREAM) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.name = name

    @classmethod
    async def connect(cls, urls: list[str], replicas: int = 3, name: str = STREAM,
                      timeout: float = CONNECT_TIMEOUT_S) -> "Stream":
        """Connect and make sure the stream exists (file storage, ``replicas`` copies),
        waiting while the servers start and a new cluster elects its leaders.

        Raises:
            Unavailable: not done within ``timeout`` seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        nc = None
        while True:
            try:
                if nc is None:          # (it retries the servers for good: bounded here)
                    nc = await asyncio.wait_for(nats.connect(
                        servers=urls, connect_timeout=2, max_reconnect_attempts=-1,
                        reconnect_time_wait=0.2, name="gpux", error_cb=_nats_error),
                        max(deadline - loop.time(), 0.1))
                stream = cls(nc, name)
                await stream.js.add_stream(api.StreamConfig(
                    name=name, subjects=[SUBJECT], num_replicas=replicas,
                    storage=api.StorageType.FILE, max_msg_size=-1,
                    duplicate_window=120.0, allow_direct=True))
                await led(stream.js, name)
                return stream
            except BadRequestError as exc:
                if exc.err_code not in CONFLICTS:       # (no peers yet at a cluster's start)
                    await _retry_or_give_up(nc, urls, timeout, deadline, exc)
                    continue
                await nc.close()                        # waiting won't help
                raise Unavailable(f"the stream {name} cannot be used as asked: "
                                  f"{exc.description}") from None
            except (nats.errors.Error, asyncio.TimeoutError, OSError) as exc:
                await _retry_or_give_up(nc, urls, timeout, deadline, exc)
            except asyncio.CancelledError:          # a stop while waiting
                if nc is not None:
                    await nc.close()
                raise

    async def close(self) -> None:
        await self.nc.close()

    async def last(self) -> int:
        """The stream sequence of the last message (0: empty)."""
        return (await patiently(lambda: self.js.stream_info(self.name))).state.last_seq

    async def message(self, seq: int) -> bytes:
        """The payload of the message at stream sequence ``seq``."""
        return (await patiently(lambda: self.js.get_msg(self.name, seq))).data

    async def append(self, payload: bytes, expected: int, msg_id: str,
                     timeout: float = 5.0) -> int:
        """Append a message after stream sequence ``expected``; return its sequence.

        Raises:
            Fenced: the stream's last message is not ``expected``: another matcher appended.
        """
        try:
            ack = await self.js.publish(SUBJECT, payload, timeout=timeout, stream=self.name,
                                        headers={"Nats-Expected-Last-Sequence": str(expected),
                                                 "Nats-Msg-Id": msg_id})
        except APIError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:
                raise Fenced(f"the stream moved past {expected}: {exc.description}") from None
            raise
        return ack.seq

    async def locate(self, journal_seq: int) -> int:
        """The stream sequence of the message holding journal seq ``journal_seq``, or 0
        when no message does (a binary search: a message's batches say their seqs)."""
        low, high = 1, await self.last()
        while low <= high:
            mid = (low + high) // 2
            try:
                payload = await self.message(mid)
            except NotFoundError:
                return 0
            batches = batches_of(payload)
            first = batches[0][0]
            last = batches[-1][0] + batches[-1][1] - 1
            if journal_seq < first:
                high = mid - 1
            elif journal_seq > last:
                low = mid + 1
            else:
                return mid
        return 0

    async def follow(self, start: int) -> AsyncIterator[tuple[int, bytes]]:
        """(stream sequence, payload) of each message from ``start`` on, as they come."""
        sub = await self.js.subscribe(
            SUBJECT, stream=self.name, ordered_consumer=True,
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            config=api.ConsumerConfig(opt_start_seq=start))
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=1.0)
                except nats.errors.TimeoutError:
                    continue
                yield msg.metadata.sequence.stream, msg.data
        finally:
            try:
                await sub.unsubscribe()
            except nats.errors.Error:
                pass
