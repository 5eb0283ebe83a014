"""Liquidation: which position an account below maintenance reduces next, and by how much.

The house first cancels the account's orders; if its positions alone still need
more maintenance margin than its equity, it reduces them one slice per mark
step, each slice at most the product's max order size:

- the slice goes to the contract whose reduction lowers the maintenance margin
  most (largest risk first: in a calendar spread, closing one leg alone can
  raise the requirement, so it is the effect that counts, not the size);
  ties go to the larger position value, then to the symbol. A reduction that
  would not lower the requirement is never made (say, buying back the short leg
  of a spread whose long leg is in delivery and cannot trade): then there is
  nothing to do but wait;
- its size is the fewest lots that bring maintenance within equity at the
  current marks, or the whole slice if even that does not.

Fills away from the mark change equity, so the next mark step looks again: a
liquidation goes on only until maintenance is restored.
"""
from __future__ import annotations

from clearing.margin import Leg, MarginParams, requirement


def next_slice(positions: dict[str, int], legs: dict[str, Leg],
               params_by_class: dict[str, MarginParams], equity: int,
               most: dict[str, int]) -> tuple[str, int] | None:
    """Return (symbol, lots to close) of the next slice, or None if nothing can be reduced.

    Args:
        positions: symbol -> signed lots, every position of the account.
        most: symbol -> the most lots one order may close, for the contracts that can
            trade now (the others wait for their final settlement).
    """
    def maintenance_after(symbol: str, lots: int) -> int:
        trial = dict(positions)
        trial[symbol] -= lots if trial[symbol] > 0 else -lots
        return requirement(legs, trial, (), params_by_class)[0]

    def full(symbol: str) -> int:
        return min(abs(positions[symbol]), most[symbol])

    now = requirement(legs, positions, (), params_by_class)[0]
    after = {s: maintenance_after(s, full(s)) for s, q in positions.items() if q and s in most}
    candidates = [s for s, required in after.items() if required < now]
    if not candidates:
        return None
    symbol = min(candidates, key=lambda s: (
        after[s], -abs(positions[s]) * legs[s].span, s))
    lots = full(symbol)
    if maintenance_after(symbol, lots) > equity:
        return symbol, lots
    low, high = 1, lots                # the fewest lots that are enough
    while low < high:
        middle = (low + high) // 2
        if maintenance_after(symbol, middle) <= equity:
            high = middle
        else:
            low = middle + 1
    return symbol, low
