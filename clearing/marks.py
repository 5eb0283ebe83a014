"""Mark prices and daily settlement prices.

**Marks.** The mark of a contract is its class's index plus a smoothed basis:
at every mark step (the gateway's scheduler sends one a second) the basis
moves toward the book's mid minus the index by ``alpha`` of the difference,
an exponential average with a half-life of ``half_life_steps`` steps. So one
trade or one quote can move a mark by at most ``alpha`` of its distance
from the mark in one step. With a one-sided or empty book, or no index, the
mark falls back to the last settlement price. The basis is kept as an
integer in billionths of a tick and rounded half to even to the tick for the
mark: no floats, so replays give the same marks.

**Settlement prices**, in tiers: the volume-weighted average of the trades in
the closing window, rounded to the tick (exactly half a tick rounds toward
the previous settlement price); else the last trade, clamped into the best
bid and ask; else the mark.
"""
from __future__ import annotations

import math
from fractions import Fraction

import msgspec

NANO = 10**9


class MarkParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    half_life_steps: int = 300       # 5 minutes of one-second steps

    def __post_init__(self) -> None:
        if self.half_life_steps < 1:
            raise ValueError("half_life_steps must be at least 1")

    @property
    def alpha_nano(self) -> int:
        """The share of the gap closed per step, in billionths (computed once, then integer)."""
        return round((1 - 0.5 ** (1 / self.half_life_steps)) * NANO)


class Mark:
    """One contract's mark: its smoothed basis over the index."""
    __slots__ = ("basis_nano", "price")

    def __init__(self, settlement: int, index: int | None = None) -> None:
        # Start from where the market last settled: the basis of that settlement. Without
        # an index yet, the basis is set when the first one comes.
        self.basis_nano = None if index is None else (settlement - index) * NANO
        self.price = settlement

    def step(self, alpha_nano: int, index: int | None, bid: int | None, ask: int | None,
             settlement: int) -> int:
        """Take one mark step; return the new mark in ticks."""
        if index is not None and self.basis_nano is None:
            self.basis_nano = (settlement - index) * NANO
        if index is None or bid is None or ask is None:
            self.price = settlement
            return settlement
        sample = (bid + ask) * NANO // 2 - index * NANO      # mid - index, exact to 1/2 tick
        self.basis_nano += (sample - self.basis_nano) * alpha_nano // NANO
        self.price = max(1, index + round(Fraction(self.basis_nano, NANO)))
        return self.price


def settlement_price(window_trades, last_price: int | None, best_bid: int | None,
                     best_ask: int | None, mark: int, previous: int) -> tuple[int, str]:
    """Return (price in ticks, tier) of a daily settlement.

    Args:
        window_trades: (price, qty) of the trades in the closing window.
        previous: The previous settlement price, for a VWAP exactly between two ticks.
    """
    volume = sum(q for _, q in window_trades)
    if volume:
        vwap = Fraction(sum(p * q for p, q in window_trades), volume)
        low = math.floor(vwap)
        if vwap - low == Fraction(1, 2):
            return (low + 1 if previous > low else low), "vwap"
        return round(vwap), "vwap"
    if last_price is not None:
        price = last_price
        if best_bid is not None:
            price = max(price, best_bid)
        if best_ask is not None:
            price = min(price, best_ask)
        return price, "last_trade"
    return mark, "mark"
