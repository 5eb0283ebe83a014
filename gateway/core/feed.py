"""Market data as published: book mirrors with seq and checksum, trades, tickers, and the
history of settlements and candles (gateway.core.history).

The feed follows the engine's events, never the engine's live state, so what
it serves (a snapshot, a checksum, market.book) is always exactly what the
book.{symbol} stream has said so far. Per event-loop turn it collects the
changes and ``seal`` turns them into one message per symbol and channel:
several changes of one level in a turn become one, and each message is
encoded once however many subscribers it goes to.
"""
from __future__ import annotations

from collections import deque
from itertools import islice

from sortedcontainers import SortedDict

from clearing.messages import IndexValue, InstrumentSettled, MarksUpdated, Settled
from engine.messages import BookLevelChanged, InstrumentDelisted, InstrumentListed, Side, Trade
from engine.prices import format_price
from gateway.core.codec import SIDE_NAMES, checksum, ns_to_ms
from gateway.core.history import History

TRADES_KEPT = 1000     # per symbol, for market.trades
CHECKSUM_DEPTH = 10
INDEX_POINT_MS = 60_000        # the index history keeps one point (the last value) a minute,
INDEX_POINTS_KEPT = 24 * 60    # for the last day


def _descending(price: int) -> int:
    return -price        # a named key, so a snapshot can pickle the mirror


class BookMirror:
    """One symbol's published book: wire levels ``[price, qty, orders]`` by tick price."""

    def __init__(self) -> None:
        self.seq = 0
        self.bids: SortedDict = SortedDict(_descending)   # best (highest) first
        self.asks: SortedDict = SortedDict()

    def apply(self, ev: BookLevelChanged) -> tuple[list, bool]:
        """Apply one level change; return the wire level (qty 0 when removed) and whether
        the level was there before."""
        side = self.bids if ev.side is Side.BUY else self.asks
        self.seq = ev.book_seq
        if ev.qty == 0:
            level = side.pop(ev.price, None)
            return ([format_price(ev.price), 0, 0], False) if level is None else \
                ([level[0], 0, 0], True)
        existed = ev.price in side
        level = [format_price(ev.price), ev.qty, ev.orders]
        side[ev.price] = level
        return level, existed

    def levels(self, bids: bool, depth: int | None = None) -> list:
        side = self.bids if bids else self.asks
        return list(side.values() if depth is None else islice(side.values(), depth))

    def checksum(self) -> int:
        return checksum(self.levels(True, CHECKSUM_DEPTH), self.levels(False, CHECKSUM_DEPTH))

    def snapshot(self, depth: int | None = None) -> dict:
        """The book.{symbol} snapshot message (and market.book's body)."""
        return {"type": "snapshot", "seq": self.seq, "bids": self.levels(True, depth),
                "asks": self.levels(False, depth), "checksum": self.checksum()}

    def top(self, bids: bool) -> list | None:
        side = self.bids if bids else self.asks
        return side.peekitem(0)[1] if side else None


class SymbolFeed:
    """Everything published about one symbol."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.book = BookMirror()
        self.trades: deque[dict] = deque(maxlen=TRADES_KEPT)
        self.last_price: str | None = None
        self.volume = 0
        self.session_volume = 0        # since the last daily settlement
        # This turn's changes, until seal(): price -> [level, existed when the turn began]
        self.prev_seq: int | None = None
        self.changed_bids: dict[int, list] = {}
        self.changed_asks: dict[int, list] = {}
        self.new_trades: list[dict] = []

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update({"session_volume": 0} | state)    # a snapshot from before it

    def ticker(self) -> dict:
        bid, ask = self.book.top(True), self.book.top(False)
        return {
            "best_bid": bid[0] if bid else None, "best_bid_qty": bid[1] if bid else None,
            "best_ask": ask[0] if ask else None, "best_ask_qty": ask[1] if ask else None,
            "last_price": self.last_price, "volume": self.volume,
            "session_volume": self.session_volume,
            # Clearing (positions, marks, the index) provides these; none exist yet.
            "open_interest": None, "mark_price": None, "index_price": None,
        }


class Feed:
    """The market data of all listed symbols.

    Args:
        symbols: The listed symbols, in listing order.
    """

    def __init__(self, symbols) -> None:
        self.symbols: dict[str, SymbolFeed] = {s: SymbolFeed(s) for s in symbols}
        self._touched: dict[str, SymbolFeed] = {}
        self.ticker_dirty: set[str] = set()
        # gpu_class -> [[time ms, value], ...]: the index as published, a point a minute.
        self.index_history: dict[str, deque[list]] = {}
        self.history = History()        # settlements and candles, kept past delisting

    def __setstate__(self, state: dict) -> None:
        # a snapshot from before them
        self.__dict__.update({"index_history": {}, "history": History()} | state)

    def apply(self, events: list) -> None:
        """Take one command's events; the messages come out of the next seal()."""
        for ev in events:
            kind = type(ev)
            if kind is BookLevelChanged:
                feed = self.symbols[ev.symbol]
                if feed.prev_seq is None:
                    feed.prev_seq = feed.book.seq
                    self._touched[ev.symbol] = feed
                level, existed = feed.book.apply(ev)
                changed = feed.changed_bids if ev.side is Side.BUY else feed.changed_asks
                entry = changed.get(ev.price)
                if entry is None:
                    changed[ev.price] = [level, existed]
                else:
                    entry[0] = level
                self.ticker_dirty.add(ev.symbol)
            elif kind is MarksUpdated:
                self.ticker_dirty.update(ev.marks)
            elif kind is Trade:
                feed = self.symbols[ev.symbol]
                trade = {"trade_id": ev.trade_id, "price": format_price(ev.price),
                         "qty": ev.qty, "aggressor": SIDE_NAMES[ev.aggressor],
                         "time": ns_to_ms(ev.ts_ns)}
                feed.trades.append(trade)
                feed.new_trades.append(trade)
                feed.last_price = trade["price"]
                feed.volume += ev.qty
                feed.session_volume += ev.qty
                self.history.apply(ev)
                if ev.symbol not in self._touched:
                    self._touched[ev.symbol] = feed
                self.ticker_dirty.add(ev.symbol)
            elif kind is IndexValue:
                if ev.value is not None:
                    self._index_point(ev.gpu_class, ns_to_ms(ev.ts_ns), format_price(ev.value))
            elif kind is InstrumentListed:
                self.symbols[ev.symbol] = SymbolFeed(ev.symbol)
            elif kind is InstrumentDelisted:
                del self.symbols[ev.symbol]
                self._touched.pop(ev.symbol, None)
                self.ticker_dirty.discard(ev.symbol)
            elif kind is Settled:           # a new trading session begins
                for feed in self.symbols.values():
                    feed.session_volume = 0
                self.ticker_dirty.update(self.symbols)
                self.history.apply(ev)
            elif kind is InstrumentSettled:
                self.history.apply(ev)

    def _index_point(self, gpu_class: str, time_ms: int, value: str) -> None:
        history = self.index_history.get(gpu_class)
        if history is None:
            history = self.index_history[gpu_class] = deque(maxlen=INDEX_POINTS_KEPT)
        if history and history[-1][0] // INDEX_POINT_MS == time_ms // INDEX_POINT_MS:
            history[-1] = [time_ms, value]
        else:
            history.append([time_ms, value])

    def seal(self, wanted) -> list[tuple[str, object]]:
        """Return this turn's (channel, data) messages and start the next turn.

        Args:
            wanted: The channels someone is subscribed to; no message is built for others.
        """
        out: list[tuple[str, object]] = []
        for symbol, feed in self._touched.items():
            channel = f"book.{symbol}"
            if feed.prev_seq is not None and channel in wanted:
                book = feed.book
                out.append((channel, {
                    "type": "delta", "seq": book.seq, "prev_seq": feed.prev_seq,
                    "bids": _delta(feed.changed_bids, reverse=True),
                    "asks": _delta(feed.changed_asks, reverse=False),
                    "checksum": book.checksum()}))
            if feed.prev_seq is not None:
                feed.prev_seq = None
                feed.changed_bids = {}
                feed.changed_asks = {}
            if feed.new_trades:
                channel = f"trades.{symbol}"
                if channel in wanted:
                    out.append((channel, feed.new_trades))
                feed.new_trades = []
        self._touched.clear()
        return out


def _delta(changed: dict[int, list], reverse: bool) -> list:
    """The changed levels of one side, best first; a level that came and went within
    the turn is left out (the subscriber never saw it)."""
    return [level for price, (level, existed) in sorted(changed.items(), reverse=reverse)
            if level[1] or existed]
