"""Settlement prices: the daily settlement's tiers, the delivery period, the final price.

**Settlement prices** of a contract that trades, in tiers, each held inside the
book's impact bid and ask where the book is deep enough to have both (the
average prices of selling and of buying the impact quantity: thin quotes set
nothing): the volume-weighted average of the trades in the closing window,
rounded to the tick (exactly half a tick rounds toward the previous settlement
price), if at least the minimum volume traded (``vwap``); else the last
trade, clamped into the impact bid and ask, if the book has both
(``last_clamped``); else the mark (``mark``). A dozen wash lots between two
accounts, or a one-lot quote pair, cannot set a day's settlement.

Once a contract has stopped trading, its daily settlement price, and its
mark, is the average it will settle at so far
(``delivery_average``): the sum of the fixings taken in its delivery period,
plus the current index for each day still to fix, over the days of the period.

**Final settlement**, once delivery has ended: the arithmetic mean of the
class's daily fixings over every day of the delivery period, rounded half to
even to the tick (the delivery average with nothing left to fix); a day
without a fixing counts at the previous fixing (carried, and counted as such
in InstrumentSettled), never a shorter mean.
"""
from __future__ import annotations

import datetime
import math
from array import array
from fractions import Fraction

from clearing.index import ClassIndex
from engine.contracts import Instrument


class ClosingWindow:
    """The trades of one contract that a settlement could still average: (ts, price, qty)
    packed in one array of ints, oldest first. A tuple each took about 130 bytes, and at
    500 orders a second the 30-minute window holds 300,000 trades."""

    __slots__ = ("_rows", "_start")
    COMPACT = 3 * 4096          # ints dropped before the array is shifted down

    def __init__(self) -> None:
        self._rows = array("q")
        self._start = 0             # the first row still in the window

    def __len__(self) -> int:
        return (len(self._rows) - self._start) // 3

    def add(self, ts_ns: int, price: int, qty: int) -> None:
        self._rows.extend((ts_ns, price, qty))

    def drop_before(self, ts_ns: int) -> None:
        rows, start, end = self._rows, self._start, len(self._rows)
        while start < end and rows[start] < ts_ns:
            start += 3
        if start == end:
            self._rows, start = array("q"), 0
        elif start >= self.COMPACT and 8 * start >= end:
            # An eighth dead at most: waiting for half (an amortised halving) kept up to a
            # whole window of dead trades, 7 MiB at 500 orders a second. The shift copies
            # the window once per seventh of it: 3 ints a trade, about 1 ms per 7 MiB.
            del rows[:start]
            start = 0
        self._start = start

    def trades(self) -> list[tuple[int, int]]:
        """(price, qty) of each trade, oldest first."""
        rows = self._rows
        return [(rows[i + 1], rows[i + 2]) for i in range(self._start, len(rows), 3)]

    def __canonical__(self) -> bytes:
        """Its content for the state digest, however much of the array is dropped rows."""
        return self._rows[self._start:].tobytes()


def settlement_price(window_trades, last_price: int | None, impact_bid: int | None,
                     impact_ask: int | None, mark: int, previous: int, min_volume: int = 1,
                     impact_qty: int = 1) -> tuple[int, str]:
    """Return (price in ticks, tier) of a daily settlement.

    Args:
        window_trades: (price, qty) of the trades in the closing window.
        impact_bid, impact_ask: What selling and buying ``impact_qty`` lots against the
            book now come to (ticks x lots, clearing.marks.impact_cost), or None where the
            book is not that deep.
        previous: The previous settlement price, for a VWAP exactly between two ticks.
        min_volume: The fewest lots in the closing window for its VWAP to count.
    """
    low, high = None, None          # the book's impact prices, on the tick, inward
    if impact_bid is not None and impact_ask is not None:
        low, high = -(-impact_bid // impact_qty), impact_ask // impact_qty
    volume = sum(q for _, q in window_trades)
    if volume and volume >= min_volume:
        vwap = Fraction(sum(p * q for p, q in window_trades), volume)
        floor = math.floor(vwap)
        if vwap - floor == Fraction(1, 2):
            price = floor + 1 if previous > floor else floor
        else:
            price = round(vwap)
        if low is not None:
            price = min(max(price, low), high)
        return price, "vwap"
    if last_price is not None and low is not None:
        return min(max(last_price, low), high), "last_clamped"
    return mark, "mark"


def delivery_average(fixings: list[int], days: int, current: int) -> int:
    """The settlement price of a contract past trading, in ticks, half to even.

    Args:
        fixings: The values of the daily fixings taken in its delivery period so far.
        days: The days of the delivery period.
        current: What each day still to fix counts at (the index now).
    """
    return round(Fraction(sum(fixings) + current * (days - len(fixings)), days))


def delivery_price(index: ClassIndex, inst: Instrument, current: int | None,
                   fallback: int) -> int:
    """A contract past trading: what it settles at so far (``delivery_average`` of its
    period's fixings, the index ``current`` for the days still to fix)."""
    values, _ = period_fixings(index, inst, None, fallback)
    days = (inst.delivery_end - inst.delivery_start).days
    if current is None:
        current = values[-1] if values else fallback
    return delivery_average(values, days, current)


def period_fixings(index: ClassIndex, inst: Instrument, through: datetime.date | None,
                   fallback: int) -> tuple[list[int], int]:
    """Each day's fixing of the delivery period, from its first day through ``through``
    (None: through the last day fixed), and how many of them were carried.

    The index carries the previous fixing over a day it did not fix when it fixes a
    later one; a day after the last fixing, when the period is over, is carried here
    the same way; before any fixing at all, a day counts at ``fallback`` (the last
    settlement price), carried too.
    """
    stored = index.daily_fixings(inst.delivery_start, inst.delivery_end)
    if through is None:
        if not stored:
            return [], 0
        through = stored[-1].date
    before = index.daily_fixings(datetime.date.min, inst.delivery_start)
    previous = next((f.value for f in reversed(before) if f.value is not None), fallback)
    by_date = {f.date: f for f in stored}
    values, carried = [], 0
    day = inst.delivery_start
    while day <= through:
        fixing = by_date.get(day)
        if fixing is not None and fixing.value is not None:
            previous = fixing.value
            carried += fixing.carried
        else:
            carried += 1
        values.append(previous)
        day += datetime.timedelta(days=1)
    return values, carried
