"""Building the exchange's state, and rebuilding it from a data directory.

``recover`` loads the newest usable snapshot and replays the journal after
it through the same ``Venue.process`` the server uses, so the state that
comes up is the one the exchange had after the last record on disk (every
acked command, maybe a few that were written but not yet acked). The
market-data feed is replayed too, so book seqs, checksums and recent trades
continue where subscribers left them.

``state_digest`` names a state: equal digests, equal exchanges. It covers the
engine (its own canonical hash), clearing and the order histories, walked in
a canonical order so a state loaded from a snapshot and one replayed from
the start compare equal.
"""
from __future__ import annotations

import datetime
import enum
import fcntl
import hashlib
import json
import logging
import os
import time
from array import array
from collections import Counter, deque
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable

import msgspec
from sortedcontainers import SortedDict, SortedList

from clearing.house import ClearingHouse
from clearing.messages import Deposit
from engine.contracts import ConfigError, list_instruments
from engine.exchange import Exchange
from engine.prices import parse_money
from gateway.config import AccountConfig, Config
from gateway.core.auth import FEE_ACCOUNT, INSURANCE_ACCOUNT
from gateway.core.feed import Feed
from gateway.core.projection import Projection
from gateway.storage.archive import Detached, SqliteArchive, archive_path
from gateway.storage.journal import Journal, JournalError, Reader, Torn, cut_torn, segments, \
    sync_directory
from gateway.storage.snapshots import SnapshotError, read_snapshot, snapshot_digest, snapshot_files
from gateway.core.venue import Failed, Venue

log = logging.getLogger("gpux.recovery")

LISTING_FILE = "exchange.json"
LOCK_FILE = "LOCK"
SEAL_EVERY = 1024          # replayed commands between feed seals (they only reset its turn)


def journal_dir(data_dir: Path) -> Path:
    return data_dir / "journal"


def snapshot_dir(data_dir: Path) -> Path:
    return data_dir / "snapshots"


class DataDirBusy(Exception):
    """Another process is running an exchange on the data directory."""


def lock_data_dir(data_dir: Path) -> int:
    """Hold the data directory for this process (until it exits or closes the fd).

    Two servers appending to one journal would interleave their records.

    Raises:
        DataDirBusy: another process holds it.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise DataDirBusy(f"{data_dir} is in use by another gpux server (pid {holder})") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def listing_date(data_dir: Path, requested: datetime.date | None) -> datetime.date:
    """The listing date of the market in ``data_dir``, fixed at its first start.

    The listing decides which contracts exist, so replaying a journal against
    another date's listing would be a different exchange.

    Raises:
        ConfigError: ``requested`` differs from the date the directory was started with.
    """
    path = data_dir / LISTING_FILE
    if path.exists():
        stored = datetime.date.fromisoformat(json.loads(path.read_text())["as_of"])
        if requested is not None and requested != stored:
            raise ConfigError(f"{data_dir} holds the market listed on {stored}; "
                              f"listing {requested} needs another data directory")
        return stored
    as_of = requested or datetime.datetime.now(datetime.UTC).date()
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        f.write(json.dumps({"as_of": as_of.isoformat()}) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    sync_directory(data_dir)
    return as_of


def build(config: Config, as_of: datetime.date, accounts: Iterable[AccountConfig],
          clock=time.time_ns) -> tuple[Venue, Feed]:
    """A new exchange: the listing of ``as_of``, clearing, and an empty feed."""
    accounts = list(accounts)
    instruments = list_instruments(config.products, as_of)
    providers = [a for a in accounts if a.role == "index_provider"]
    house = ClearingHouse(
        instruments, config.clearing, fee_account=FEE_ACCOUNT,
        insurance_account=INSURANCE_ACCOUNT,
        providers=[a.account_id for a in providers],
        trusted_providers=[a.account_id for a in providers if a.trusted],
        products=config.products)
    venue = Venue(Exchange(instruments, house), house, clock)
    return venue, Feed(i.symbol for i in instruments)


def funding(accounts: Iterable[AccountConfig], ts_ns: int,
            insurance_fund: int) -> list[Deposit]:
    """The configured collateral and the insurance fund's opening balance, deposited once: at
    the first start of a data directory."""
    out = [Deposit(ts_ns=ts_ns, account_id=INSURANCE_ACCOUNT, amount=insurance_fund)] \
        if insurance_fund else []
    for account in accounts:
        amount = parse_money(account.collateral, "collateral")
        if amount:
            out.append(Deposit(ts_ns=ts_ns, account_id=account.account_id, amount=amount))
    return out


class Diverged(Exception):
    """A replayed command raised where it had not when it ran, or the other way round."""


class Replay:
    """Runs journaled commands through a venue and its feed, as the server did."""

    def __init__(self, venue: Venue, feed: Feed) -> None:
        self.venue, self.feed = venue, feed
        self.projection = Projection(venue, feed)
        self.count = 0
        self.failed = 0             # commands that raised, as they had when they ran
        self.kinds: Counter = Counter()
        self._raised: int | None = None     # seq of a command that raised, until its marker
        self._sealing = True

    def live(self, projection: Projection) -> None:
        """From now on, what the commands change goes to a serving core's projection, and
        the feed keeps this turn's messages for the core's seal to publish (a cluster's
        gateway, whose state is the stream replayed)."""
        projection.flush()
        self.projection, self._sealing = projection, False

    def apply(self, cmd, seq: int | None = None) -> None:
        """Run one journaled command (or check a Failed marker).

        Raises:
            Diverged: a command raised without a marker after it, or a marker
                follows a command that did not raise.
        """
        if type(cmd) is Failed:
            if self._raised != cmd.seq:
                raise Diverged(f"seq {cmd.seq} raised when it ran, but not in the replay")
            self._raised = None
            return
        if self._raised is not None:
            raise Diverged(f"seq {self._raised} raised in the replay, but not when it ran")
        venue = self.venue
        if cmd.ts_ns > venue.last_ts:
            venue.last_ts = cmd.ts_ns
        self.count += 1
        self.kinds[type(cmd).__name__] += 1
        try:
            events = venue.process(cmd)
        except Exception:
            # As when it ran (the marker after it says so); the server halted after it.
            self.failed += 1
            self._raised = seq
            log.warning("replayed command seq %s raised, as it did when it ran: %r", seq, cmd)
            return
        self.projection.apply(events)
        if self._sealing:                # (live, the core's seal moves the feed: a snapshot
            self.projection.flush()      # built before it lines up with its deltas)
            if self.count % SEAL_EVERY == 0:
                self.feed.seal(())

    def done(self) -> None:
        if self._raised is not None:
            raise Diverged(f"seq {self._raised} raised in the replay, but not when it ran")
        self.feed.seal(())


def _replay(replay: Replay, reader: Reader, expected: int, until: int | None = None,
            each=None) -> int:
    """Feed ``reader``'s records to ``replay``, from seq ``expected``; return the next seq."""
    for record in reader:
        if until is not None and record.seq > until:
            break
        if record.seq != expected:
            raise JournalError(record.path, record.offset, f"seq {record.seq} follows state "
                               f"at seq {expected - 1}: the records between are missing")
        try:
            replay.apply(record.cmd, record.seq)
        except Diverged as exc:
            raise JournalError(record.path, record.offset, f"the replay differs from what "
                               f"happened: {exc}") from None
        if each is not None:
            each(record)
        expected += 1
    try:
        replay.done()
    except Diverged as exc:
        raise JournalError(reader.directory, 0, f"the replay differs from what happened: "
                           f"{exc}") from None
    return expected


class Recovered(msgspec.Struct):
    venue: Venue
    feed: Feed
    seq: int                    # the last record applied; the journal continues after it
    snapshot_seq: int           # 0: replayed from the start
    replayed: int
    failed: int
    dropped_bytes: int          # of a torn last batch, cut off the journal
    seconds: float


def recover(data_dir: Path, fresh: Callable[[], tuple[Venue, Feed]]) -> Recovered:
    """The state after the last record in ``data_dir``: newest usable snapshot, then the
    journal after it. A torn last batch is cut off the file; anything else wrong stops.

    Raises:
        JournalError: damage inside the journal, records missing between the state
            recovered and the journal, or a replay that differs from what happened.
    """
    started = time.perf_counter()
    start, venue, feed = 0, None, None
    snapshots = snapshot_files(snapshot_dir(data_dir))
    for seq, path in reversed(snapshots):
        try:
            start, (venue, feed), _ = read_snapshot(path)
            break
        except SnapshotError as exc:
            log.warning("%s; trying an older snapshot", exc)
    if venue is None:
        venue, feed = fresh()
    venue.attach_archive(SqliteArchive(archive_path(data_dir)))
    files = segments(journal_dir(data_dir))
    if files and files[0][0] > start + 1:
        raise JournalError(files[0][1], 0, f"the journal starts at seq {files[0][0]} but the "
                           f"state recovered ends at seq {start}" + (
                               " (no snapshot could be read)" if snapshots and not start
                               else "") + ": the records between are missing")
    replay = Replay(venue, feed)
    reader = Reader(journal_dir(data_dir), after=start)
    expected = _replay(replay, reader, start + 1)
    if reader.last_seq and reader.last_seq < start:
        raise JournalError(journal_dir(data_dir), 0, f"the journal ends at seq "
                           f"{reader.last_seq}, before the snapshot's {start}")
    dropped = 0
    if reader.torn is not None:
        torn = reader.torn
        log.warning("dropped a torn batch at %s offset %d (%d bytes): a crash cut its write "
                    "short, so it was never acknowledged", torn.path, torn.offset, torn.length)
        cut_torn(torn)
        dropped = torn.length
    return Recovered(venue, feed, expected - 1, start, replay.count, replay.failed, dropped,
                     time.perf_counter() - started)


class Verified(msgspec.Struct):
    files: int
    first_seq: int | None
    last_seq: int
    start: int                          # replayed from the snapshot at this seq (0: none)
    replay: Replay
    snapshots: dict[int, bool]          # seq -> its digest equals the replay's at that seq
    torn: Torn | None
    digest: bytes
    digests: dict[int, bytes]           # the state digest after each seq asked for


def verify(data_dir: Path, fresh: Callable[[], tuple[Venue, Feed]],
           until: int | None = None, at: Iterable[int] = ()) -> Verified:
    """Check every record and replay the journal into a scratch state, changing nothing.

    The replay starts from nothing when the journal starts at seq 1, else from
    the oldest snapshot it continues; each later snapshot's digest is compared
    with the replay's state at its seq. ``until`` stops after that seq (a running
    server's journal goes on growing); ``at`` asks for the digest after other seqs.

    Raises:
        JournalError: as ``recover``; also when no snapshot reaches the journal's start.
        SnapshotError: the snapshot needed to start from cannot be read.
    """
    files = segments(journal_dir(data_dir))
    first = files[0][0] if files else 1
    snapshots = dict(snapshot_files(snapshot_dir(data_dir)))
    start = 0
    if first == 1:
        venue, feed = fresh()
    else:
        usable = [seq for seq in snapshots if seq >= first - 1]
        if not usable:
            raise JournalError(files[0][1], 0, f"the journal starts at seq {first} and no "
                               "snapshot reaches it")
        try:
            start, (venue, feed), _ = read_snapshot(snapshots[min(usable)])
        except FileNotFoundError:           # a running server replaced it: look again
            return verify(data_dir, fresh, until, at)
        if type(venue.archive) is Detached:     # what was archived before the snapshot
            venue.attach_archive(SqliteArchive(archive_path(data_dir), readonly=True))
    replay = Replay(venue, feed)
    checked: dict[int, bool] = {}
    wanted, digests = set(at), {}

    def check_snapshot(record) -> None:
        if record.seq in wanted:
            digests[record.seq] = state_digest(venue, replay.feed)
        if record.seq in snapshots:
            try:
                recorded = snapshot_digest(snapshots[record.seq])
            except FileNotFoundError:          # a running server replaced it meanwhile
                return
            checked[record.seq] = recorded == state_digest(venue, replay.feed)

    reader = Reader(journal_dir(data_dir), after=start)
    _replay(replay, reader, start + 1, until, check_snapshot)
    return Verified(len(files), reader.first_seq, reader.last_seq, start, replay, checked,
                    reader.torn, state_digest(venue, feed), digests)


def check_listing(recovered: Venue, config: Config, as_of: datetime.date) -> None:
    """Refuse a config whose products are not the ones the recovered state was listed from:
    another set of classes, or a contract the config would list on the state's last listing
    day that the state does not hold. (The state may hold more: contracts in delivery, the
    periods a cascade listed.)

    Raises:
        ConfigError: naming a class or contract that is in one and not the other.
    """
    day = recovered.house.listed_on or as_of
    listed = {i.symbol for i in list_instruments(config.products, day)}
    held = set(recovered.exchange.markets)
    classes = {p.gpu_class for p in config.products}
    if classes != set(recovered.house.index):
        gpu_class = min(classes ^ set(recovered.house.index))
        where = "the config" if gpu_class in classes else "the data directory"
        raise ConfigError(f"the config's products do not match the market recovered from the "
                          f"data directory: class {gpu_class} is only in {where}")
    if not listed <= held:
        raise ConfigError(f"the config's products do not match the market recovered from the "
                          f"data directory: {min(listed - held)} is only in the config")


def open_journal(data_dir: Path, config: Config, next_seq: int) -> Journal:
    journal = config.journal
    return Journal(journal_dir(data_dir), next_seq,
                   fsync=journal.durability == "fsync",
                   segment_bytes=journal.segment_bytes)


# -- The state digest ---------------------------------------------------------------

def state_digest(venue: Venue, feed: Feed) -> bytes:
    """sha256 of the engine's, clearing's, the order histories' and the published market
    data's state (the feed after its last seal)."""
    h = hashlib.sha256(venue.exchange.state_hash().encode())
    h.update(msgspec.msgpack.encode(canonical_state(venue, feed)))
    return h.digest()


def canonical_state(venue: Venue, feed: Feed) -> list:
    """Everything but the engine (which hashes itself) as plain, canonically ordered lists."""
    parts = [venue.house, sorted(venue.fills.items()), sorted(venue.ended.items()),
             venue.account_fills, sorted(venue.quotes.items()), _published(feed)]
    promises = venue.promises
    if promises.guards or promises.nonces:
        # Only then: a state without any digests as it did before there were promises, so
        # a snapshot written by the version before them still verifies.
        parts.append(promises)
    return _canonical(parts, {})


def _published(feed: Feed) -> list:
    """What the feed has published: each symbol's book, seq, recent trades and totals, and
    each class's index history."""
    return [[[s, f.book.seq, list(f.book.bids.items()), list(f.book.asks.items()),
              list(f.trades), f.last_price, f.volume, f.session_volume]
             for s, f in feed.symbols.items()],
            sorted([c, list(h)] for c, h in feed.index_history.items()),
            sorted([s, days] for s, days in feed.history.settlements.items()),
            sorted([i, sorted([s, list(c)] for s, c in series.items())]
                   for i, series in feed.history.candles.items())]


def _canonical(obj, memo: dict):
    """``obj`` as plain lists in an order fixed by its content, not by its history."""
    kind = type(obj)
    if kind is int:
        return obj if -2**63 <= obj < 2**63 else ["int", str(obj)]
    if obj is None or kind in (str, bool, float, bytes):
        return obj
    if isinstance(obj, enum.Enum):
        return obj.value
    if kind is Fraction:
        return [_canonical(obj.numerator, memo), _canonical(obj.denominator, memo)]
    if isinstance(obj, (datetime.date, datetime.time)):
        return obj.isoformat()
    if kind is array:
        return obj.tobytes()
    if kind is tuple:
        return [_canonical(v, memo) for v in obj]
    if kind is frozenset:
        return _sorted(obj, memo)
    if isinstance(obj, msgspec.Struct) and obj.__struct_config__.frozen:
        return [kind.__name__] + [_canonical(getattr(obj, f), memo)
                                  for f in obj.__struct_fields__]
    own = getattr(kind, "__canonical__", None)       # its content, not how it is kept
    if own is not None:
        return own(obj)
    # A mutable object met again (shared, or a cycle) is named by its first visit. Values
    # are not: whether two equal ones are one object depends on history, not on state.
    # The memo holds each object, so no id is reused by another while it runs.
    seen = memo.get(id(obj))
    if seen is not None:
        return ["@", seen[0]]
    memo[id(obj)] = (len(memo), obj)
    if isinstance(obj, (dict, SortedDict)):
        return _items(obj.items(), memo)
    if isinstance(obj, set):
        return _sorted(obj, memo)
    if isinstance(obj, (list, deque, SortedList)):
        return [_canonical(v, memo) for v in obj]
    if isinstance(obj, msgspec.Struct):
        return [kind.__name__] + [_canonical(getattr(obj, f), memo)
                                  for f in obj.__struct_fields__]
    if hasattr(obj, "__dict__"):
        caches = getattr(kind, "CACHES", ())       # what reads fill in is not state
        return [kind.__name__, _items(((k, v) for k, v in vars(obj).items()
                                       if k not in caches), memo)]
    slots = [n for c in kind.__mro__ for n in getattr(c, "__slots__", ())]
    if slots:
        return [kind.__name__] + [_canonical(getattr(obj, n, None), memo) for n in slots]
    raise TypeError(f"no canonical form for {kind.__name__}")


def _items(items, memo: dict) -> list:
    pairs = [(_canonical(k, memo), _canonical(v, memo)) for k, v in items]
    return sorted(pairs, key=lambda kv: msgspec.msgpack.encode(kv[0]))


def _sorted(values, memo: dict) -> list:
    return sorted((_canonical(v, memo) for v in values), key=msgspec.msgpack.encode)
