"""The server's archive: closed orders, strips and old fills in one SQLite file in the data
directory (``archive.sqlite``), so memory holds only the last few minutes of them.

What goes in is what a replay of the journal would put in again, and a record never
changes (gateway.core.archive), so the file needs no care at a crash: a write lost with
the process is written again by the replay, one that got ahead of the journal holds
orders the engine has in memory anyway. What does need care is a snapshot: it no longer
holds what was archived before it, so the archive is made durable first (``sync``).

Writes wait in memory and go in batches of FLUSH_AT; reads look at those first. The
writing connection stays inside a transaction between its commits: a read that begins and
ends its own takes and drops SQLite's file locks (fcntl) each time, which made the lookup
of each new client_order_id cost more than the rest of its order's replay. Orders
are deleted seven days after they closed, counted from the oldest snapshot a restart
could start from (``prune``); fills are kept (account.fills pages back through all).
"""
from __future__ import annotations

import heapq
import logging
import sqlite3
from pathlib import Path

import msgspec

from gateway.core.archive import ClosedOrder, MemoryArchive, fill_key
from engine.messages import StripExecuted
from gateway.storage.journal import sync_directory, sync_path

log = logging.getLogger("gpux.gateway")

FILE = "archive.sqlite"
FLUSH_AT = 4096             # records waiting in memory before they are written


class ArchiveError(Exception):
    """The archive could not write what waits (a full disk): it stays waiting, and a
    later write may succeed."""


class ArchiveSyncError(ArchiveError):
    """The archive's fsync failed: what the kernel held may be lost, and a later fsync
    can succeed without it, so nothing may rely on the archive until a restart."""


SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    order_id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL, client_order_id TEXT,
    closed_ns INTEGER NOT NULL, record BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS orders_by_client ON orders (account_id, client_order_id)
    WHERE client_order_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS orders_by_close ON orders (closed_ns);
CREATE TABLE IF NOT EXISTS fills (
    account_id INTEGER NOT NULL, trade_id INTEGER NOT NULL, maker INTEGER NOT NULL,
    symbol INTEGER NOT NULL, row BLOB NOT NULL, PRIMARY KEY (account_id, trade_id, maker))
    WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS fills_by_symbol ON fills (account_id, symbol, trade_id);
CREATE TABLE IF NOT EXISTS strips (
    account_id INTEGER NOT NULL, client_order_id TEXT NOT NULL, strip_id INTEGER NOT NULL,
    ts_ns INTEGER NOT NULL, record BLOB NOT NULL, PRIMARY KEY (account_id, client_order_id))
    WITHOUT ROWID;
"""
STRIP = msgspec.msgpack.Decoder(StripExecuted)


def archive_path(data_dir: Path) -> Path:
    return data_dir / FILE


ORDER = msgspec.msgpack.Decoder(ClosedOrder)


class Detached:
    """What a snapshot holds in place of the archive it was written with: the restored
    venue is given the archive again (Venue.attach_archive) before it serves."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __getattr__(self, name: str):
        raise RuntimeError(f"the archive {self.path} is not attached to this state")


class SqliteArchive:
    """The archive on disk.

    Args:
        path: The SQLite file (created if missing, unless ``readonly``).
        readonly: Read what is there and keep what is put in memory (``gpux journal
            verify`` replays without changing anything); a missing file reads as empty.
    """

    def __init__(self, path: Path, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._waiting = MemoryArchive()     # put, not written yet
        self._count = 0                     # records in it
        self._flush_at = FLUSH_AT           # written when _count reaches it
        self._db = None
        if readonly:
            if self.path.exists():
                self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                                           isolation_level=None, check_same_thread=False)
        else:
            # Opened where the state is recovered, used by the event loop after: one
            # thread at a time.
            self._db = sqlite3.connect(self.path, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")    # durable at sync()
            self._db.executescript(SCHEMA)
            sync_directory(self.path.parent)   # the file and its WAL (sync fsyncs it) exist
            self._db.execute("BEGIN")       # reads share it until the next commit

    def __reduce__(self):
        return (Detached, (str(self.path),))

    def close(self) -> None:
        if self._db is not None:
            try:
                self.flush()
            except ArchiveError as exc:      # the journal holds them: a replay writes them
                log.error("%s; %d records not archived", exc, self._count)
            if self._db.in_transaction:
                self._db.execute("COMMIT")
            self._db.close()
            self._db = None

    # -- Writes ----------------------------------------------------------------------

    def put(self, closed: ClosedOrder) -> None:
        self._waiting.put(closed)
        self._added(1)

    def put_fills(self, account_id: int, rows: list[tuple]) -> None:
        self._waiting.put_fills(account_id, rows)
        self._added(len(rows))

    def put_strip(self, done: StripExecuted) -> None:
        self._waiting.put_strip(done)
        self._added(1)

    def _added(self, count: int) -> None:
        self._count += count
        if self._count >= self._flush_at:
            try:
                self.flush()
            except ArchiveError as exc:
                # In the order path: a full disk must not fail the command (a replay, whose
                # write succeeds, would not fail it). The records wait and are answered;
                # sync() says the archive is not durable; the next batch tries again.
                self._flush_at = self._count + FLUSH_AT
                log.error("%s; %d records wait in memory", exc, self._count)

    def flush(self) -> None:
        """Write what waits in memory (a readonly archive keeps it there).

        Raises:
            ArchiveError: The write failed; what waits stays waiting.
        """
        if self.readonly or not self._count:
            return
        encode, waiting = msgspec.msgpack.encode, self._waiting
        orders = [(c.order_id, c.account_id, c.client_order_id, c.closed_ns, encode(c))
                  for c in waiting.orders.values()]
        fills = [(account_id, row[0], row[7], row[2], encode(row))
                 for account_id, row in waiting.fill_rows()]
        strips = [(d.account_id, d.client_order_id, d.strip_id, d.ts_ns, encode(d))
                  for d in waiting.strips.values()]
        db = self._db
        try:
            # A record never changes: one already there (a replay writes again what the
            # run before it wrote) is left as it is, which costs a key lookup, not a rewrite.
            db.executemany("INSERT OR IGNORE INTO orders VALUES (?, ?, ?, ?, ?)", orders)
            db.executemany("INSERT OR IGNORE INTO fills VALUES (?, ?, ?, ?, ?)", fills)
            # The newest strip of a client_order_id is the one kept.
            db.executemany("INSERT INTO strips VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE "
                           "SET strip_id = excluded.strip_id, ts_ns = excluded.ts_ns, "
                           "record = excluded.record WHERE excluded.strip_id > strip_id",
                           strips)
        except BaseException as exc:
            db.execute("ROLLBACK")
            db.execute("BEGIN")
            if isinstance(exc, (OSError, sqlite3.Error)):
                raise ArchiveError(f"{self.path} cannot be written: {exc}") from exc
            raise
        self._commit()
        self._waiting = MemoryArchive()
        self._count = 0
        self._flush_at = FLUSH_AT

    def _commit(self) -> None:
        """Commit what the transaction wrote, and begin the next (see the module's note)."""
        self._db.execute("COMMIT")
        self._db.execute("BEGIN")

    def sync(self) -> None:
        """Make everything put so far durable (before a snapshot that relies on it).

        What is committed is in the database file or in the WAL, and the WAL is fsynced
        here. A checkpoint alone is not enough: one held back by a reader beside the archive
        (`gpux journal verify` inside a read) copies nothing and syncs nothing, and a FULL
        one would first stall the loop for the busy timeout. So the checkpoint is PASSIVE
        (it keeps the database file whole when it can) and the WAL's fsync is the promise."""
        if self.readonly:
            return
        self.flush()
        try:
            self._db.execute("COMMIT")          # a checkpoint runs outside a transaction
            try:
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                sync_path(self.path.with_name(self.path.name + "-wal"))
            finally:
                self._db.execute("BEGIN")
        except (OSError, sqlite3.Error) as exc:
            raise ArchiveSyncError(f"{self.path} cannot be synced: {exc}") from exc

    def prune(self, before_ns: int, limit: int = 2**62) -> int:
        """Delete orders closed, and strips placed, before ``before_ns``: at most ``limit``
        of each; return how many were deleted (0: none is left)."""
        if self.readonly:
            return 0
        self.flush()
        deleted = sum(self._db.execute(
            f"DELETE FROM {table} WHERE ({key}) IN (SELECT {key} FROM {table} WHERE {column} "
            "< ? LIMIT ?)", (before_ns, limit)).rowcount
            for table, key, column in (("orders", "order_id", "closed_ns"),
                                       ("strips", "account_id, client_order_id", "ts_ns")))
        self._commit()
        return deleted

    # -- Reads -----------------------------------------------------------------------

    def closed_order(self, account_id: int | None, order_id: int | None,
                     client_order_id: str | None, below: int | None = None
                     ) -> ClosedOrder | None:
        """The account's order (any account's, if None) named by id, or else the newest by
        client_order_id with an id below ``below`` (if given), or None."""
        found = self._waiting.closed_order(account_id, order_id, client_order_id, below)
        if self._db is None:
            return found
        columns = "SELECT order_id, record FROM orders"
        if order_id is not None:
            if found is not None:
                return found
            row = self._db.execute(f"{columns} WHERE order_id = ?", (order_id,)).fetchone()
        else:
            # The newest below ``below``: one waiting is newer than any written, unless the
            # file holds more than this state has seen (written by a later run).
            row = self._db.execute(
                f"{columns} WHERE account_id = ? AND client_order_id = ? AND order_id < ? "
                "ORDER BY order_id DESC LIMIT 1",
                (account_id, client_order_id, 2**63 - 1 if below is None else below)
            ).fetchone()
            if row is not None and found is not None and found.order_id > row[0]:
                return found
        stored = None if row is None else ORDER.decode(row[1])
        if stored is None or (account_id is not None and stored.account_id != account_id):
            return found
        return stored

    def strip(self, account_id: int, client_order_id: str) -> StripExecuted | None:
        found = self._waiting.strip(account_id, client_order_id)
        if self._db is None:
            return found
        row = self._db.execute("SELECT strip_id, record FROM strips WHERE account_id = ? AND "
                               "client_order_id = ?", (account_id, client_order_id)).fetchone()
        if row is None or (found is not None and found.strip_id > row[0]):
            return found
        return STRIP.decode(row[1])         # the newest, as in memory

    def fills(self, account_id: int, symbol: int | None, before: int | None,
              limit: int) -> list[tuple]:
        """The account's archived fills newest first: of ``symbol`` (its index) if given,
        with a trade_id below ``before`` if given, at most ``limit``."""
        waiting = self._waiting.fills(account_id, symbol, before, limit)     # newest first
        stored = []
        if self._db is not None:
            query = "SELECT row FROM fills WHERE account_id = ?"
            args: list = [account_id]
            if symbol is not None:
                query += " AND symbol = ?"
                args.append(symbol)
            if before is not None:
                query += " AND trade_id < ?"
                args.append(before)
            query += " ORDER BY trade_id DESC, maker ASC LIMIT ?"       # fill_key, newest first
            args.append(limit)
            stored = [tuple(msgspec.msgpack.decode(r)) for (r,) in self._db.execute(query, args)]
        out, last = [], None
        for row in heapq.merge(waiting, stored, key=fill_key, reverse=True):
            if row != last:
                out.append(row)
                last = row
            if len(out) == limit:
                break
        return out
