"""Each account's fill history, for account.fills: newest first, paged by trade_id.

One array of ints per account (nine per fill), so a million fills are a few
objects for the garbage collector, not a million. Fills older than a few minutes
move to the archive now and then (``forget``), and a page goes on there past the
ones in memory (gateway.core.archive), so memory holds only the recent ones.
"""
from __future__ import annotations

from array import array
from bisect import bisect_left

from engine.messages import Trade
from gateway.core.archive import FILL_WIDTH
from gateway.core.codec import fill_row

WIDTH = FILL_WIDTH
TS = 8          # the column of a row's ts_ns


class AccountFills:
    """Fills by account, in trade_id order (the order they happened in)."""

    # Filled by reads, not commands: not part of the state (gateway.storage.recovery).
    CACHES = ("scanned",)

    def __init__(self, symbols: list[str]) -> None:
        self.symbols = list(symbols)
        self._index = {s: i for i, s in enumerate(self.symbols)}
        self._fills: dict[int, array] = {}
        self._trade_ids: dict[int, array] = {}
        # account -> symbol index -> the rows of its fills in that symbol, in order, so a
        # page of one symbol never walks the others' (it scanned every fill of the account)
        self._rows: dict[int, dict[int, array]] = {}
        self.scanned = 0            # rows the last page looked at (the work bound tests check)

    def __setstate__(self, state: dict) -> None:
        """A snapshot from before the index by symbol: build it from the fills."""
        self.__dict__.update({"scanned": 0} | state)
        if "_rows" not in state:
            self._rows = {}
            for account_id, fills in self._fills.items():
                rows = self._rows[account_id] = {}
                for row in range(len(fills) // WIDTH):
                    rows.setdefault(fills[row * WIDTH + 2], array("q")).append(row)

    def add(self, symbol: str) -> None:
        """A newly listed symbol (the index of a symbol never changes: fills keep it)."""
        if symbol not in self._index:
            self._index[symbol] = len(self.symbols)
            self.symbols.append(symbol)

    def record(self, trade: Trade, maker_fee: int, taker_fee: int) -> None:
        symbol = self._index[trade.symbol]
        for account_id, order_id, side, fee, maker in (
                (trade.maker_account_id, trade.maker_order_id, -trade.aggressor, maker_fee, 1),
                (trade.taker_account_id, trade.taker_order_id, int(trade.aggressor), taker_fee,
                 0)):
            fills = self._fills.get(account_id)
            if fills is None:
                fills = self._fills[account_id] = array("q")
                self._trade_ids[account_id] = array("q")
            rows = self._rows.setdefault(account_id, {}).get(symbol)
            if rows is None:
                rows = self._rows[account_id][symbol] = array("q")
            rows.append(len(fills) // WIDTH)
            fills.extend((trade.trade_id, order_id, symbol, side, trade.price, trade.qty, fee,
                          maker, trade.ts_ns))
            self._trade_ids[account_id].append(trade.trade_id)

    def page(self, account_id: int, symbol: str | None, limit: int,
             before: int | None, archive=None) -> list[dict]:
        """The account's fills newest first: at most ``limit``, of ``symbol`` if given, with a
        trade_id below ``before`` if given; past those in memory, the archive's."""
        fills = self._fills.get(account_id)
        self.scanned = 0
        index = None if symbol is None else self._index.get(symbol, -1)
        found = []
        if fills is not None:
            ids = self._trade_ids[account_id]
            end = len(ids) if before is None else bisect_left(ids, before)
            if index is None:
                rows = range(end - 1, max(end - limit, 0) - 1, -1)
            else:
                mine = self._rows[account_id].get(index, ())
                cut = bisect_left(mine, end)
                rows = [mine[i] for i in range(cut - 1, max(cut - limit, 0) - 1, -1)]
            found = [fills[i * WIDTH:(i + 1) * WIDTH] for i in rows]
            if ids and (before is None or ids[0] < before):
                before = ids[0]             # the archive holds only fills older than these
        if archive is not None and len(found) < limit:
            found.extend(archive.fills(account_id, index, before, limit - len(found)))
        self.scanned = len(found)
        return [fill_row(row[0], row[1], self.symbols[row[2]], row[3], row[4], row[5],
                         row[6], row[7], row[8]) for row in found]

    def forget(self, before_ns: int, archive) -> None:
        """Move each account's fills from before ``before_ns`` to the archive."""
        for account_id in list(self._fills):
            fills = self._fills[account_id]
            count = len(fills) // WIDTH
            old = 0
            while old < count and fills[old * WIDTH + TS] < before_ns:
                old += 1
            if not old:
                continue
            archive.put_fills(account_id, [tuple(fills[i * WIDTH:(i + 1) * WIDTH])
                                           for i in range(old)])
            if old == count:
                del self._fills[account_id], self._trade_ids[account_id]
                del self._rows[account_id]
                continue
            self._fills[account_id] = fills[old * WIDTH:]
            self._trade_ids[account_id] = self._trade_ids[account_id][old:]
            rows = self._rows[account_id]
            for index in list(rows):
                kept = array("q", (r - old for r in rows[index] if r >= old))
                if kept:
                    rows[index] = kept
                else:
                    del rows[index]
