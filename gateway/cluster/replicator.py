"""The leader's journal batches onto the replicated stream, in order, beside the local disk.

Durability hands each turn's batch here as it hands it to the writer thread;
the turn's outbox is released only once both say they hold it. One message is
in flight at a time, each with its expected predecessor, and whatever was cut
meanwhile goes in the next one (a group commit across the cluster, as the local
journal's is across turns). A refused append means another matcher leads:
this one must answer nobody again (``fenced``). A lost acknowledgement is
retried with the same id and expectation, which JetStream answers as a
duplicate if it had stored the message.
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Callable

import nats

from gateway.cluster.stream import Fenced, Stream, Unavailable, take_message
from gateway.storage.journal import BATCH

log = logging.getLogger("gpux.cluster")

RETRY_S = 0.2
GIVE_UP_S = 30.0            # then this matcher steps down (JetStream's elections take seconds)


class Replicator:
    """Appends batches to ``stream`` after stream sequence ``after``.

    Args:
        epoch: The lease's epoch, naming this lead in message ids.
        replicated: Called on the loop with the last journal seq the stream holds.
        fenced: Called on the loop (once) when an append is refused.
    """

    def __init__(self, stream: Stream, after: int, epoch: int,
                 replicated: Callable[[int], None], fenced: Callable[[Exception], None]) -> None:
        self.stream, self.last, self.epoch = stream, after, epoch
        self.replicated, self.fenced = replicated, fenced
        self._queue: deque[tuple[bytes, int]] = deque()
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task = asyncio.get_running_loop().create_task(self._run())
        self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task) -> None:
        """The appending task must not end but by ``stop``: a failure here would leave every
        turn waiting for the stream, unanswered, while the lease is still renewed."""
        if not task.cancelled() and task.exception() is not None:
            self.fenced(task.exception())

    def put(self, data: bytes, last_seq: int) -> None:
        """A batch the journal cut (its bytes, its last record's seq)."""
        self._queue.append((data, last_seq))
        self._idle.clear()
        self._ready.set()

    async def idle(self) -> None:
        """Until everything put so far is on the stream."""
        await self._idle.wait()

    def stop(self) -> None:
        self._task.cancel()

    async def _run(self) -> None:
        queue = self._queue
        while True:
            await self._ready.wait()
            self._ready.clear()
            while queue:
                parts = take_message(queue, lambda item: item[0])
                payload, last_seq = b"".join(p[0] for p in parts), parts[-1][1]
                first = BATCH.unpack_from(payload)[1]
                msg_id = f"{self.epoch}:{first}-{last_seq}"
                if not await self._append(payload, msg_id):
                    return
                self.replicated(last_seq)
            if not queue:
                self._idle.set()

    async def _append(self, payload: bytes, msg_id: str) -> bool:
        """Append until the stream holds it (True) or refuses it (False: fenced).

        Raises:
            Unavailable: it could not be appended for ``GIVE_UP_S``: a standby that can may
                take over.
        """
        loop = asyncio.get_running_loop()
        failing_since = None
        while True:
            try:
                self.last = await self.stream.append(payload, self.last, msg_id)
                return True
            except Fenced as exc:
                log.critical("the stream refused an append: %s", exc)
                self.fenced(exc)
                return False
            except (nats.errors.Error, asyncio.TimeoutError) as exc:
                now = loop.time()
                failing_since = failing_since or now
                if now - failing_since > GIVE_UP_S:
                    raise Unavailable(f"appending to the stream failed for {GIVE_UP_S:g} s: "
                                      f"{exc!r}") from None
                log.warning("appending to the stream failed (%r); retrying", exc)
                await asyncio.sleep(RETRY_S)
