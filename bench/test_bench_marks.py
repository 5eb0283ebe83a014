"""One mark step of the clearing house against the size of the index window.

The embedded default's 92 contracts (4 classes x 12 months, 8 quarters, 3 years), each
class's index fed with ``window`` observations from 3 providers, spread over the 12 hours
before the step (so none ages out while the benchmark runs), and every book
two-sided. A mark step reads each class's index, moves 92 marks and looks at
every account's margin: the index must not walk its window to be read (issue
15, defect 13), so the cost should not grow with the window. The same file run
against an older commit gives the baseline (README "Clearing").
"""
from __future__ import annotations

import datetime
import random

import pytest

from clearing.house import ClearingHouse, ClearingParams
from clearing.index import Observation
from clearing.messages import MarkStep
from engine.contracts import date_to_ns, list_instruments, load_products

AS_OF = datetime.date(2026, 11, 25)
PROVIDERS = (81, 82, 83)
NS_PER_S = 10**9


def house_with_window(window: int) -> tuple[ClearingHouse, int]:
    instruments = list_instruments(load_products(), AS_OF)
    house = ClearingHouse(instruments, ClearingParams(), fee_account=90, insurance_account=91,
                          providers=PROVIDERS)
    now = date_to_ns(AS_OF) + 13 * 3600 * NS_PER_S
    start = now - 12 * 3600 * NS_PER_S
    rng = random.Random(15)
    classes = sorted({i.gpu_class for i in instruments})
    reference = {i.gpu_class: i.reference_price for i in instruments}
    for k in range(window):
        observed = start + k * (12 * 3600 * NS_PER_S) // window
        for gpu_class in classes:         # straight into the index: a read per one is slow
            house.index[gpu_class].submit(Observation(
                PROVIDERS[k % 3], reference[gpu_class] + rng.randint(-40, 40),
                rng.randint(1, 500), observed), observed)
    for gpu_class in classes:
        assert house.index[gpu_class].value(now)[1] == "builtin"
    return house, now


class Book:
    """50 lots bid at 1.990 and offered at 2.010."""

    def depth(self, side: int, n: int) -> list:
        return [(1990 if side > 0 else 2010, 50, 1)]


BOOK = Book()


def market(symbol: str) -> tuple:
    """Every book two-sided around 2.000, no trade yet."""
    return 1990, 2010, None, BOOK


@pytest.mark.parametrize("window", [1_000, 10_000, 100_000])
@pytest.mark.benchmark(group="clearing-mark-step")
def test_mark_step(benchmark, window):
    """One MarkStep over 92 contracts with ``window`` observations per class in the index."""
    house, now = house_with_window(window)
    clock = iter(range(now, now + 10**7 * NS_PER_S, NS_PER_S // 100))

    def step():
        events, engine = house.process(MarkStep(ts_ns=next(clock)), market)
        return events

    events = benchmark(step)
    assert not [e for e in events if type(e).__name__ == "ClearingRejected"]
    benchmark.extra_info["window"] = window
