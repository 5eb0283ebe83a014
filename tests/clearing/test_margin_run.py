"""clearing.margin_run: the vectorized full run equals the reference, account by account."""
from __future__ import annotations

import datetime

import numpy as np
from hypothesis import given, settings, strategies as st

from clearing.margin import MarginParams, make_leg, requirement
from clearing.margin_run import MarginRun
from engine.contracts import list_instruments, load_products

AS_OF = datetime.date(2026, 11, 25)
INSTRUMENTS = list_instruments(load_products(), AS_OF)
PARAMS = {c: MarginParams(spread_charge_bps=100 * (k + 1), initial_multiplier_pct=110 + k)
          for k, c in enumerate(sorted({i.gpu_class for i in INSTRUMENTS}))}
LEGS = {i.symbol: make_leg(i.gpu_class, i.tick_micros, i.reference_price, i.delivery_start,
                           i.delivery_end, AS_OF, PARAMS[i.gpu_class]) for i in INSTRUMENTS}
SYMBOLS = [i.symbol for i in INSTRUMENTS]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(-100_000, 100_000), min_size=len(SYMBOLS),
                         max_size=len(SYMBOLS))
                .map(lambda row: [q if abs(q) % 3 else 0 for q in row]), min_size=1,
                max_size=20))
def test_the_full_run_equals_the_reference_for_every_account(rows):
    """Random books of every listed contract, up to 100,000 lots each way: exactly the
    reference."""
    maintenance, initial = MarginRun(SYMBOLS, LEGS, PARAMS).run(np.array(rows))
    for row, m, i in zip(rows, maintenance, initial):
        positions = {s: q for s, q in zip(SYMBOLS, row) if q}
        assert (int(m), int(i)) == requirement(LEGS, positions, [], PARAMS)


def test_an_account_with_nothing_needs_nothing():
    maintenance, initial = MarginRun(SYMBOLS, LEGS, PARAMS).run(np.zeros((3, len(SYMBOLS))))
    assert maintenance.tolist() == [0, 0, 0] and initial.tolist() == [0, 0, 0]
