"""Clearing's pre-trade check: its cost per order, incremental against from-scratch.

The account holds positions in all 23 listed H100 contracts (12 months, 8
quarters, 3 years; alternating long and short, so the spread charge applies) and
a resting bid and offer in each; the check is asked about a new limit order in a
month. The incremental
check (clearing.exposure, what the order path uses) is measured side by side
with recomputing the requirement from scratch (clearing.margin.requirement,
the reference), so the ratio shows what the incremental design buys. Figures:
README "Clearing"; run with ``make bench``.
"""
from __future__ import annotations

import datetime

import pytest

from clearing.ledger import Contract, FeeSchedule, Ledger
from clearing.margin import MarginParams, requirement
from clearing.risk import ClearingRisk
from engine.contracts import date_to_ns, list_instruments, load_products
from engine.messages import OrderAccepted, Side, TimeInForce, OrderType, Trade

AS_OF = datetime.date(2026, 11, 25)
ACCOUNT, OTHER = 1, 2
CHECKS = 10_000


def account_in_every_contract():
    instruments = [i for i in list_instruments(load_products(), AS_OF) if i.gpu_class == "H100"]
    assert len(instruments) == 23
    prices = {i.symbol: i.reference_price for i in instruments}
    ledger = Ledger({i.symbol: Contract(i.contract_hours, i.tick_micros) for i in instruments},
                    prices, FeeSchedule(), fee_account=99)
    risk = ClearingRisk(instruments, ledger, {"H100": MarginParams()}, prices)
    ledger.deposit(ACCOUNT, 10**15)
    ts = date_to_ns(AS_OF)
    events, order_id = [], 1
    for k, inst in enumerate(instruments):
        side = Side.BUY if k % 2 == 0 else Side.SELL
        maker, taker = (OTHER, ACCOUNT) if side is Side.BUY else (ACCOUNT, OTHER)
        events.append(Trade(k + 1, inst.symbol, prices[inst.symbol], 10 + k, side, 0, maker, 0,
                            0, taker, 0, ts))
        for book_side, offset in ((Side.BUY, -20), (Side.SELL, 20)):
            events.append(OrderAccepted(order_id, ACCOUNT, inst.symbol, book_side,
                                        OrderType.LIMIT, TimeInForce.GTC,
                                        prices[inst.symbol] + offset, None, 5, None, ts))
            order_id += 1
    risk.apply(events)
    return risk, instruments[6].symbol, prices[instruments[6].symbol]


@pytest.mark.benchmark(group="clearing-check")
def test_incremental_check(benchmark):
    """10,000 checks of a 3-lot bid against 23 positions and 46 open orders (incremental)."""
    risk, symbol, price = account_in_every_contract()

    def run():
        for _ in range(CHECKS):
            risk.check(ACCOUNT, symbol, Side.BUY, price, 3, False, None)
        return risk.check(ACCOUNT, symbol, Side.BUY, price, 3, False, None)

    assert benchmark(run) is None
    benchmark.extra_info["checks"] = CHECKS


@pytest.mark.benchmark(group="clearing-check")
def test_from_scratch_requirement(benchmark):
    """The same question answered by recomputing the requirement (the reference)."""
    risk, symbol, price = account_in_every_contract()
    positions = {s: p.qty for s, p in risk.ledger.account(ACCOUNT).positions.items()}
    orders = [(o.symbol, o.side, o.leaves, o.price)
              for o in risk.by_account[ACCOUNT].values()]
    expected = risk._exposure(ACCOUNT).initial_with(symbol, 1, 3, price)

    def run():
        for _ in range(CHECKS):
            requirement(risk.legs, positions, orders + [(symbol, 1, 3, price)],
                        risk.params_by_class)
        return requirement(risk.legs, positions, orders + [(symbol, 1, 3, price)],
                           risk.params_by_class)[1]

    assert benchmark(run) == expected


def _book(accounts: int):
    """A seeded book: ``accounts`` x every listed contract, each account in about half of
    them."""
    import numpy as np

    from clearing.margin import make_leg
    instruments = list_instruments(load_products(), AS_OF)
    params = {c: MarginParams() for c in {i.gpu_class for i in instruments}}
    legs = {i.symbol: make_leg(i.gpu_class, i.tick_micros, i.reference_price, i.delivery_start,
                               i.delivery_end, AS_OF, params[i.gpu_class]) for i in instruments}
    rng = np.random.default_rng(7)
    positions = rng.integers(-500, 501, size=(accounts, len(instruments)), dtype=np.int64)
    positions[rng.random(positions.shape) < 0.5] = 0
    return [i.symbol for i in instruments], legs, params, positions


@pytest.mark.benchmark(group="clearing-margin-run")
def test_full_margin_run_100k_accounts(benchmark):
    """100,000 accounts x every listed contract, vectorized (clearing.margin_run)."""
    from clearing.margin_run import MarginRun
    symbols, legs, params, positions = _book(100_000)
    run = MarginRun(symbols, legs, params)
    maintenance, initial = benchmark(run.run, positions)
    assert (initial >= maintenance).all() and maintenance.sum() > 0
    row = {s: int(q) for s, q in zip(symbols, positions[0]) if q}
    assert (int(maintenance[0]), int(initial[0])) == requirement(legs, row, [], params)


@pytest.mark.benchmark(group="clearing-margin-run")
def test_reference_margin_run_1k_accounts(benchmark):
    """The same, account by account with the reference (clearing.margin), 1,000 accounts:
    multiply by 100 to compare."""
    symbols, legs, params, positions = _book(1_000)
    books = [{s: int(q) for s, q in zip(symbols, row) if q} for row in positions.tolist()]

    def run():
        return [requirement(legs, book, [], params) for book in books]

    assert len(benchmark(run)) == 1_000
