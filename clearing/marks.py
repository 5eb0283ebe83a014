"""Mark prices.

The mark of a contract is its class's index plus a smoothed basis. The book's
price is its impact mid: the mean of the impact bid and ask, the average
prices of selling and of buying ``impact_qty`` lots against the book, so a
quote smaller than that moves nothing (where the book is thinner than that on
a side, it gives no price). At every mark step (the gateway's scheduler sends
one a second) the basis moves toward the impact mid minus the index by
``alpha`` of the difference, an exponential average with a half-life of
``half_life_steps`` steps: one step moves a mark by at most ``alpha`` of its
distance from the book. Each contract's basis starts from its own market: the
first mark step that sees its book deep on both sides (and an index) takes
that mid minus the index as the basis at once, so a sloped curve is marked
where each month trades, not where the class's reference price is. Each daily
settlement anchors it again: the mark becomes the settlement price and the
basis the settlement price minus the index. A book without both impact prices
gives no sample: the basis holds and the mark follows the index (pulling
one's quotes cannot send a mark back to the last settlement price and hide a
loss); with no basis yet, or no index, the mark is the last settlement price.
The basis is kept as an integer in billionths of a tick and rounded half to
even to the tick for the mark: no floats, so replays give the same marks.

Settlement prices are clearing.settlement's.
"""
from __future__ import annotations

from fractions import Fraction

import msgspec

NANO = 10**9
LONG_MONTH_HOURS = 744


class MarkParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    half_life_steps: int = 300       # 5 minutes of one-second steps
    impact_qty: int = 10             # lots a side must hold for the book to give a price
                                     # (of a month; see impact_lots for longer contracts)

    def __post_init__(self) -> None:
        if self.half_life_steps < 1 or self.impact_qty < 1:
            raise ValueError("half_life_steps and impact_qty must be at least 1")

    def impact_lots(self, hours: int) -> int:
        """The impact quantity of a contract of ``hours`` GPU-hours: ``impact_qty`` lots of
        a month or a week, and for a quarter or a year as many GPU-hours as that many lots
        of a 744-hour month (a year: 1 lot), so a book is as deep for a mark whatever its
        tenor."""
        return -(-self.impact_qty * LONG_MONTH_HOURS // max(hours, LONG_MONTH_HOURS))

    @property
    def alpha_nano(self) -> int:
        """The share of the gap closed per step, in billionths (computed once, then integer)."""
        return round((1 - 0.5 ** (1 / self.half_life_steps)) * NANO)


class Mark:
    """One contract's mark: its smoothed basis over the index."""
    __slots__ = ("basis_nano", "price")

    def __init__(self, settlement: int) -> None:
        self.basis_nano: int | None = None     # set by the contract's own first market
        self.price = settlement

    def step(self, alpha_nano: int, index: int | None, bid: int | None, ask: int | None,
             settlement: int, qty: int = 1) -> int:
        """Take one mark step; return the new mark in ticks.

        Args:
            bid, ask: What selling and buying ``qty`` lots against the book would come to
                (ticks x lots: clearing.marks.impact_cost), None where it is too thin.
        """
        if index is None:
            self.price = settlement
            return settlement
        if bid is not None and ask is not None:
            sample = (bid + ask) * NANO // (2 * qty) - index * NANO     # mid - index
            if self.basis_nano is None:
                self.basis_nano = sample
            else:
                self.basis_nano += (sample - self.basis_nano) * alpha_nano // NANO
        elif self.basis_nano is None:
            self.price = settlement
            return settlement
        self.price = max(1, index + round(Fraction(self.basis_nano, NANO)))
        return self.price

    def anchor(self, price: int, index: int | None) -> None:
        """A settlement at ``price``: the mark is that price, the basis what it implies."""
        self.price = price
        if index is not None:
            self.basis_nano = (price - index) * NANO


def impact_cost(levels, qty: int) -> int | None:
    """What trading ``qty`` lots against these levels comes to (ticks x lots), or None if
    they hold fewer.

    Args:
        levels: (price, qty, ...) of one side of a book, best first.
    """
    left, cost = qty, 0
    for level in levels:
        size = level[1]
        take = size if size < left else left
        cost += take * level[0]
        left -= take
        if not left:
            return cost
    return None

