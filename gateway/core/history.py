"""What a lender audits: each contract's daily settlements, and OHLCV candles from its trades.

Kept from the events, like the rest of the feed (so a replay rebuilds them and a snapshot
holds them), and kept after a contract is delisted: its settlements are the record of
what it paid. Candles of a minute are kept for two days and of an hour for 90, a day's
for as long as the contract's settlements; a bucket with no trade has no candle. A
contract's trades age its own candles out, and each daily settlement everyone's, so those
of a contract that trades no more (delisted, or quiet) go too.
"""
from __future__ import annotations

import datetime
from collections import deque

from clearing.messages import InstrumentSettled, Settled
from engine.contracts import utc_day
from engine.messages import Trade

MINUTE_MS = 60_000
INTERVALS = {"1m": MINUTE_MS, "1h": 60 * MINUTE_MS, "1d": 1440 * MINUTE_MS}
KEPT_MS = {"1m": 2 * 1440 * MINUTE_MS, "1h": 90 * 1440 * MINUTE_MS, "1d": None}


class History:
    """Settlements and candles of every contract ever listed."""

    def __init__(self) -> None:
        # symbol -> [(day, price ticks, tier)], oldest first; day -> {symbol: price}
        self.settlements: dict[str, list[tuple[datetime.date, int, str]]] = {}
        self.by_day: dict[datetime.date, dict[str, int]] = {}
        # interval -> symbol -> [[start ms, open, high, low, close, volume]], oldest first
        self.candles: dict[str, dict[str, deque[list]]] = {i: {} for i in INTERVALS}

    def apply(self, ev) -> None:
        kind = type(ev)
        if kind is Trade:
            self._trade(ev.symbol, ev.price, ev.qty, ev.ts_ns // 1_000_000)
        elif kind is Settled:
            day = utc_day(ev.ts_ns)
            for symbol, price in ev.prices.items():
                self._settled(symbol, day, price, ev.tiers.get(symbol, "mark"))
            self._age_out(ev.ts_ns // 1_000_000)
        elif kind is InstrumentSettled:
            self._settled(ev.symbol, utc_day(ev.ts_ns), ev.price, "final")

    def _settled(self, symbol: str, day: datetime.date, price: int, tier: str) -> None:
        days = self.settlements.setdefault(symbol, [])
        if days and days[-1][0] == day:       # settled again the same day: the later counts
            days[-1] = (day, price, tier)
        else:
            days.append((day, price, tier))
        self.by_day.setdefault(day, {})[symbol] = price

    def _trade(self, symbol: str, price: int, qty: int, time_ms: int) -> None:
        for interval, width in INTERVALS.items():
            start = time_ms - time_ms % width
            series = self.candles[interval].get(symbol)
            if series is None:
                series = self.candles[interval][symbol] = deque()
            last = series[-1] if series else None
            if last is not None and last[0] == start:
                last[2] = max(last[2], price)
                last[3] = min(last[3], price)
                last[4] = price
                last[5] += qty
            else:
                series.append([start, price, price, price, price, qty])
                kept = KEPT_MS[interval]
                if kept is not None:
                    _drop_before(series, start - kept)

    def _age_out(self, now_ms: int) -> None:
        """Drop the candles older than their interval keeps, and the series left empty."""
        for interval, kept in KEPT_MS.items():
            if kept is None:
                continue
            by_symbol = self.candles[interval]
            for symbol, series in list(by_symbol.items()):
                _drop_before(series, now_ms - kept)
                if not series:
                    del by_symbol[symbol]

    def knows(self, symbol: str) -> bool:
        return symbol in self.settlements or symbol in self.candles["1d"]

    def settled(self, symbol: str, first: datetime.date | None,
                last: datetime.date | None) -> list[tuple[datetime.date, int, str]]:
        return [s for s in self.settlements.get(symbol, ())
                if (first is None or s[0] >= first) and (last is None or s[0] <= last)]

    def window(self, symbol: str, interval: str, first_ms: int | None, last_ms: int | None,
               limit: int) -> list[list]:
        """The newest ``limit`` candles starting in [first_ms, last_ms], oldest first."""
        series = self.candles[interval].get(symbol, ())
        chosen = [c for c in series if (first_ms is None or c[0] >= first_ms)
                  and (last_ms is None or c[0] <= last_ms)]
        return chosen[-limit:]


def _drop_before(series: deque, oldest_ms: int) -> None:
    while series and series[0][0] < oldest_ms:
        series.popleft()
