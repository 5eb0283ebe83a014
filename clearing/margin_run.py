"""The full margin run: every account's maintenance and initial margin at once, with numpy.

The same numbers as clearing.margin.requirement for positions (open orders
are the order path's business, clearing.exposure), for all accounts in one
pass: positions are a matrix of lots, accounts by contracts, and each class's
scan risk, spread and dearest leg are column operations. Used for the
end-of-day margin report and wherever every account must be margined at once.

All arithmetic is int64 and exact: the largest products are split so they
cannot overflow (ceil(a x b / c) = (a // c) x b + ceil((a % c) x b / c)).
"""
from __future__ import annotations

import numpy as np

from clearing.margin import BPS, Leg, MarginParams


def _ceil_mul_div(a: np.ndarray, b: int, c: int) -> np.ndarray:
    """ceil(a x b / c) for non-negative int64 ``a`` without overflowing a x b."""
    return (a // c) * b + -(-(a % c) * b // c)


class MarginRun:
    """Margin of many accounts over a fixed set of contracts.

    Args:
        symbols: The contracts, in the column order of the position matrices.
        legs: symbol -> Leg (scanning range, size, settlement-based price).
        params_by_class: gpu_class -> MarginParams.
    """

    def __init__(self, symbols: list[str], legs: dict[str, Leg],
                 params_by_class: dict[str, MarginParams]) -> None:
        self.symbols = list(symbols)
        self.classes = sorted({legs[s].gpu_class for s in symbols})
        self.params = params_by_class
        self.value = np.array([legs[s].span * legs[s].tick_micros for s in symbols],
                              dtype=np.int64)
        self.price = np.array([legs[s].price * legs[s].tick_micros for s in symbols],
                              dtype=np.int64)
        self.hours = np.array([legs[s].hours for s in symbols], dtype=np.int64)
        self.columns = {c: np.array([i for i, s in enumerate(symbols) if legs[s].gpu_class == c])
                        for c in self.classes}

    def run(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (maintenance, initial) per account, micro-USD, for an accounts x contracts
        matrix of signed lots."""
        positions = np.asarray(positions, dtype=np.int64)
        maintenance = np.zeros(len(positions), dtype=np.int64)
        initial = np.zeros(len(positions), dtype=np.int64)
        for gpu_class, cols in self.columns.items():
            p = self.params[gpu_class]
            lots = positions[:, cols]
            delta = np.abs(lots @ self.value[cols])
            scan = _ceil_mul_div(delta, p.max_scenario_bps, BPS)
            hours = self.hours[cols]
            longs = (np.where(lots > 0, lots, 0) * hours).sum(axis=1)
            shorts = (np.where(lots < 0, -lots, 0) * hours).sum(axis=1)
            spread = np.minimum(longs, shorts)
            dearest = np.where(lots != 0, self.price[cols], 0).max(axis=1)
            charge = _ceil_mul_div(spread * dearest, p.spread_charge_bps, BPS)
            required = scan + charge
            maintenance += required
            initial += -(-required * p.initial_multiplier_pct // 100)
        return maintenance, initial
