"""Who leads: a lease in a JetStream key-value bucket whose entries expire.

The leader holds the key ``leader`` and renews it (a compare-and-set on the
revision it holds) well inside the bucket's time to live; a standby tries to
create the key, which succeeds only once it is gone: the leader stopped
renewing for a whole TTL. The lease decides who *tries* to lead; the stream's
fencing decides whose appends count, so two matchers that both believe they
hold the lease still cannot both write (gateway.cluster.stream).
"""
from __future__ import annotations

import asyncio
import logging

import nats
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from gateway.cluster.stream import led

log = logging.getLogger("gpux.cluster")

BUCKET = "gpux_lease"
KEY = "leader"
TTL_S = 3.0                     # a leader silent this long has lost the lead


class LeaseLost(Exception):
    """The lease is held by another matcher, or expired before it was renewed."""


class Lease:
    """The leader's lease, as one matcher sees it.

    Args:
        js: A JetStream context.
        holder: This matcher's name, stored in the key (who leads, for people).
        ttl: Seconds an unrenewed lease lasts.
    """

    def __init__(self, js, holder: str, ttl: float = TTL_S, replicas: int = 3) -> None:
        self.js, self.holder, self.ttl, self.replicas = js, holder, ttl, replicas
        self.kv = None
        self.revision: int | None = None        # of our entry, while we hold the lease
        self.epoch: int | None = None           # the revision it was won at: names this lead

    async def open(self) -> "Lease":
        """The bucket, created if missing, once it has a leader to answer."""
        self.kv = await self.js.create_key_value(bucket=BUCKET, ttl=self.ttl, history=1,
                                                 replicas=self.replicas)
        await led(self.js, f"KV_{BUCKET}")
        return self

    async def leader(self) -> str | None:
        """The holder of the lease now, or None."""
        entry = await self._entry()
        return None if entry is None else entry.value.decode()

    async def acquire(self) -> bool:
        """Take the lease if nobody holds it; True if we now do."""
        try:
            self.revision = await self.kv.create(KEY, self.holder.encode())
        except KeyWrongLastSequenceError:
            return False
        self.epoch = self.revision
        log.info("%s holds the lease (epoch %d)", self.holder, self.revision)
        return True

    async def renew(self) -> None:
        """Renew the lease we hold. A renewal whose answer was lost left the entry at a
        newer revision than ours: still ours, so it is adopted. A lease that lapsed while
        the cluster could not be reached, and that nobody took since, is taken again (the
        stream's fencing keeps that safe: had another matcher led meanwhile, our next
        append is refused).

        Raises:
            LeaseLost: another matcher holds it.
        """
        value = self.holder.encode()
        try:
            self.revision = await self.kv.update(KEY, value, last=self.revision)
            return
        except KeyNotFoundError:
            pass
        except KeyWrongLastSequenceError:
            entry = await self._entry()
            if entry is not None:
                if entry.value != value:
                    self.revision = None
                    raise LeaseLost(f"{self.holder} lost the lease to "
                                    f"{entry.value.decode()}") from None
                self.revision = await self.kv.update(KEY, value, last=entry.revision)
                return
        try:
            self.revision = await self.kv.create(KEY, value)
        except KeyWrongLastSequenceError:
            self.revision = None
            raise LeaseLost(f"{self.holder} lost the lease to {await self.leader()}") from None
        log.warning("%s took its lapsed lease again", self.holder)

    async def _entry(self):
        try:
            entry = await self.kv.get(KEY)
        except KeyNotFoundError:
            return None
        return entry if entry.value else None

    async def hold(self, lost) -> None:
        """Renew every third of the TTL until cancelled; call ``lost`` (once) if another
        matcher takes the lease. A renewal that cannot reach the cluster is retried: while
        the cluster elects new leaders (a node lost) nobody else can take it either."""
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                await self.renew()
            except LeaseLost as exc:
                lost(exc)
                return
            except (nats.errors.Error, asyncio.TimeoutError) as exc:
                log.warning("renewing the lease failed (%s); retrying", exc)

    async def release(self) -> None:
        """Give the lease up (a clean stop): a standby may take over at once."""
        if self.revision is not None:
            try:
                await self.kv.delete(KEY, last=self.revision)
            except (nats.errors.Error, asyncio.TimeoutError):
                pass
            self.revision = None
