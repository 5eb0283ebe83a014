"""The default waterfall: who pays a loss that an account's collateral cannot cover.

A deficit is realized when an account holds nothing any more and a settlement
has paid or charged everything its trades made (README "Default waterfall"):
its collateral is then all it will ever have, and it is negative. The loss is
paid, in this order (CME and LCH, simplified):

1. the account's own collateral, which is already spent: it went to zero and below;
2. the insurance fund, down to zero and never below;
3. the accounts that gained variation margin in that same settlement, pro rata
   to their gain (a haircut on that gain, never more than it);
4. what is still left stays on the account as an uncovered deficit, reported.

Every amount is an integer micro-dollar and moves between accounts, so the sum
of all collateral is unchanged: the waterfall is zero-sum like everything else.
"""
from __future__ import annotations

import msgspec


class Cover(msgspec.Struct, frozen=True, gc=False):
    """How one deficit is paid: from the fund, by haircuts (account -> amount), what is left."""
    deficit: int
    insurance: int
    haircuts: dict[int, int]
    uncovered: int


def cover(deficit: int, fund: int, gains: dict[int, int]) -> Cover:
    """Split ``deficit`` over the insurance fund (balance ``fund``) and the ``gains``.

    Args:
        deficit: The loss to cover, micro-USD, positive.
        fund: The insurance fund's balance; only what is above zero can pay.
        gains: account -> what it gained in the settlement and has not yet given up.

    Returns:
        The cover; haircuts are pro rata to the gains, rounded down, the micro-dollars
        left by rounding going to the largest remainders (ties: the lower account id),
        so they sum to exactly what the fund left over (or to all the gains, if less).
    """
    insurance = min(deficit, max(fund, 0))
    rest = deficit - insurance
    total = sum(gains.values())
    if rest == 0 or total == 0:
        return Cover(deficit, insurance, {}, rest)
    if rest >= total:
        return Cover(deficit, insurance, dict(gains), rest - total)
    shares = {a: divmod(rest * g, total) for a, g in gains.items()}
    haircuts = {a: q for a, (q, _) in shares.items()}
    short = rest - sum(haircuts.values())
    for account in sorted(shares, key=lambda a: (-shares[a][1], a))[:short]:
        haircuts[account] += 1
    return Cover(deficit, insurance, {a: h for a, h in haircuts.items() if h}, 0)
