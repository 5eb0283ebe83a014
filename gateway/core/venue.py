"""The engine and the clearing house as the gateway drives them: one writer, a clock,
and the order and fill histories the wire shows.

All commands go through ``Venue.process``: engine commands to the engine
(whose risk gate is the clearing house, so fills reach the ledger in the
order path), clearing commands to the house, which may ask for engine
commands in turn (liquidation orders, a new band reference, an instrument
settled); they run at once, at the same timestamp; session commands to the
venue's promises (gateway.core.promises: cancel-on-disconnect, login nonces).
The venue stamps the time (never backwards, so the engine accepts it) and
keeps what the wire shows
about an order that the engine does not hold, its fills and why it ended
(written by gateway.core.projection from each command's events). Each command
is handed to ``record`` (the journal) before it runs, so a replay of the journal
meets the same commands, including one that failed.

The order histories are as many as the orders the engine holds in memory (a few
minutes of closed ones; older ones, with their histories, go to the archive, see
gateway.core.archive), and they hold no object the garbage collector tracks: each
order's fills are packed into one ``bytes`` and the end reasons are ints. A million
tracked objects would make every full collection a pause of hundreds of
milliseconds on the order path.
"""
from __future__ import annotations

import time

import msgspec

from clearing.house import ClearingHouse
from clearing.messages import ClearingCommand, MarkStep, RollListing
from engine.exchange import RECENT_NS, RETENTION_NS, Exchange
from engine.messages import Timer
from gateway.core.archive import ClosedOrder, MemoryArchive, order_view_of
from gateway.core.fills import AccountFills
from gateway.core.promises import Promises, SessionCommand

PRUNE_EVERY = 100_000     # commands between moves of old fills and strips out of memory
# A quote slot's order has client_order_id "q:{level}:{seq}": ":" is outside what the wire
# lets clients choose, so only order.mass_quote makes one (gateway.core.methods).
QUOTE_PREFIX = "q:"


class Failed(msgspec.Struct, tag="failed", tag_field="type", frozen=True):
    """Journaled after a command that raised when it ran (the request core then halted its
    instrument): a replay must see that command raise too, and no other."""
    seq: int


class Lead(msgspec.Struct, tag="lead", tag_field="type", frozen=True, kw_only=True):
    """Journaled first by a matcher that takes the lead of a cluster (gateway.cluster): its
    append fences off the matcher before it. It changes no state; it says the market's
    listing date (a matcher that starts from nothing lists the same one) and a digest of
    the config a replay depends on (one with another config refuses to follow)."""
    holder: str
    epoch: int
    as_of: str
    config: str
    ts_ns: int


class Venue:
    """The Exchange, the clock that stamps its commands, and order histories.

    Args:
        exchange: The engine, with ``house`` as its risk gate.
        house: The clearing house.
        clock: Nanoseconds since the epoch; tests pass their own.
        archive: Where closed orders and fills older than memory keeps go (an empty
            MemoryArchive if None; the server's is on disk).
    """

    def __init__(self, exchange: Exchange, house: ClearingHouse, clock=time.time_ns,
                 archive=None) -> None:
        self.exchange = exchange
        self.house = house
        self.clock = clock
        self.record = None          # called with each command before it runs (the journal)
        self.last_ts = 0
        self.command_ts = 0         # the last command's (last_ts also moves with reads)
        self.archive = MemoryArchive() if archive is None else archive
        exchange.attach_archive(self.archive)
        self.fills: dict[int, bytes] = {}     # order_id -> its fills, FILL-packed, in order
        self.ended: dict[int, int] = {}       # order_id -> CancelReason value, or EXPIRED
        self.account_fills = AccountFills(list(exchange.markets))
        # (account_id, symbol, side, level) -> the order that last held that quote slot
        self.quotes: dict[tuple[int, str, int, int], int] = {}
        # (account_id, client_order_id) -> its StripExecuted, for resends
        self.strips: dict[tuple[int, str], object] = {}
        self.promises = Promises()            # cancel-on-disconnect guards, login nonces
        self.stirred = True                   # a command ran since the last mark step
        self._until_prune = PRUNE_EVERY

    def __getstate__(self) -> dict:
        """A snapshot holds the state, not the clock or the journal it was attached to."""
        state = self.__dict__.copy()
        state["clock"] = state["record"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        # A snapshot from before these existed.
        self.__dict__.update({"quotes": {}, "strips": {}, "promises": Promises(),
                              "stirred": True} | state)

    def attach_archive(self, archive) -> None:
        """Serve from ``archive`` (a restored snapshot's is the one it was written with, or
        a stand-in for one on disk)."""
        self.archive = archive
        self.exchange.attach_archive(archive)

    def quote(self, account_id: int, symbol: str, side: int, level: int):
        """The open order holding the account's quote slot, or None."""
        order_id = self.quotes.get((account_id, symbol, side, level))
        if order_id is None:
            return None
        order = self.exchange.order(order_id)
        return order if order is not None and order.closed_ns is None else None

    def strip(self, account_id: int, client_order_id: str):
        """The account's strip of that client_order_id (its StripExecuted), as long as
        orders are retained: by its time alone, not by when the table was last pruned."""
        done = self.strips.get((account_id, client_order_id))
        if done is None:
            done = self.archive.strip(account_id, client_order_id)
        if done is None or done.ts_ns < self.now() - RETENTION_NS:
            return None
        return done

    def now(self) -> int:
        """Return the timestamp for the next command: the clock, but never backwards."""
        ts = self.clock()
        if ts < self.last_ts:
            ts = self.last_ts
        self.last_ts = ts
        return ts

    def process(self, cmd) -> list:
        """Run one command; return its events (a clearing command's, then its engine commands')."""
        if self.record is not None:
            self.record(cmd)
        self.command_ts = cmd.ts_ns
        kind = type(cmd)
        if kind is Lead:
            return []
        if isinstance(cmd, ClearingCommand):
            if kind is RollListing:        # the engine first closes what is past trading
                events = self.exchange.process(Timer(ts_ns=cmd.ts_ns))
                done, engine = self.house.process(cmd, self.market)
                events.extend(done)
            else:
                events, engine = self.house.process(cmd, self.market)
            for engine_cmd in engine:
                events.extend(self.exchange.process(engine_cmd))
            self.stirred = kind is not MarkStep or bool(engine)
        elif isinstance(cmd, SessionCommand):
            events = self.promises.process(cmd, self.exchange)
        else:
            events = self.exchange.process(cmd)
            if kind is not Timer or events:
                self.stirred = True
        if self.exchange.forgotten:
            self._archive_forgotten()
        return events

    def _archive_forgotten(self) -> None:
        """The closed orders the engine let go of, with their histories, to the archive."""
        forgotten = self.exchange.forgotten
        fills, ended, put = self.fills, self.ended, self.archive.put
        for order in forgotten:
            order_id = order.order_id
            put(ClosedOrder.of(order, fills.pop(order_id, None), ended.pop(order_id, None)))
        forgotten.clear()

    def ticks_due(self, ts: int) -> tuple[bool, bool]:
        """Whether a Timer and a MarkStep at ``ts`` could change anything (the scheduler
        leaves out those that could not, so an idle market journals nearly nothing). A mark
        step is due after any command that could move a mark (``stirred``: all but mark
        steps and timers that did nothing), with a Timer that is due (it may change a book
        just before: an order expires), else when clearing says so."""
        timer = self.exchange.timer_due(ts)
        return timer, timer or self.stirred or self.house.mark_due(ts)

    def market(self, symbol: str) -> tuple:
        """(best bid, best ask, last trade: ticks or None, and its book) of an instrument: the
        house's view (clearing.house.MarketView)."""
        m = self.exchange.markets[symbol]
        return m.book.best_bid(), m.book.best_ask(), m.last_price, m.book

    def counted(self) -> None:
        """One more command's events are in the histories; forget old ones now and then."""
        self._until_prune -= 1
        if self._until_prune <= 0:
            self._prune()

    def view(self, order) -> dict:
        """Return the wire view of an engine Order (with all its fills) or an archived one."""
        if type(order) is ClosedOrder:
            return order.view
        return order_view_of(order, self.fills.get(order.order_id),
                             self.ended.get(order.order_id))

    def view_of(self, order_id: int):
        """The wire view of an order by id, in memory or archived (a resend's)."""
        order = self.exchange.order(order_id)
        return self.view(order if order is not None
                         else self.archive.closed_order(None, order_id, None))

    def find(self, account_id: int, order_id: int | None, client_order_id: str | None):
        """Return the account's order named either way (open or closed: an engine Order, or
        the archive's ClosedOrder), or None."""
        if order_id is not None:
            order = self.exchange.order(order_id)
            if order is not None and order.account_id != account_id:
                return None
        elif client_order_id is not None:
            order = self.exchange.order_by_client_id(account_id, client_order_id)
        else:
            return None
        if order is None:
            order = self.archive.closed_order(account_id, order_id, client_order_id)
            if order is None or order.closed_ns + RETENTION_NS <= self.now():
                return None
        if client_order_id is not None and order.client_order_id != client_order_id:
            return None
        return order

    def _prune(self) -> None:
        """Move fills and strips older than memory keeps to the archive."""
        self._until_prune = PRUNE_EVERY
        oldest = self.command_ts - RECENT_NS
        for key in [k for k, done in self.strips.items() if done.ts_ns < oldest]:
            self.archive.put_strip(self.strips.pop(key))
        self.account_fills.forget(oldest, self.archive)
