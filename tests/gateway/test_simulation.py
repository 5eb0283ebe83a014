"""The deterministic simulation (simulation.py) over a few hundred seeds: every seed's run
ends with 0 violations; `make simulate SEEDS=N` runs more."""
from __future__ import annotations

from collections import Counter

import pytest

from simulation import Simulation, Violation, run_seed

SEEDS = 300


def test_three_hundred_seeds_break_no_promise(tmp_path):
    totals: dict = {}
    methods: Counter = Counter()
    for seed in range(1, SEEDS + 1):
        for key, value in run_seed(seed, tmp_path).items():
            if key == "methods":
                methods += value
            else:
                totals[key] = totals.get(key, 0) + value
    # The runs did what they are for: answers, crashes, torn tails, thousands of commands,
    # snapshots and restarts from them, orders archived, every kind of request answered.
    assert totals["answers"] > 100 * SEEDS and totals["crashes"] > 5 * SEEDS
    assert totals["torn"] > SEEDS and totals["unanswered_on_disk"] > SEEDS
    assert totals["commands"] > 200 * SEEDS
    assert totals["snapshots"] > 2 * SEEDS and totals["archived"] > 50 * SEEDS
    for method in ("order.place", "order.cancel", "order.replace", "order.mass_quote",
                   "order.place_strip", "session.cancel_on_disconnect"):
        assert methods[f"{method} ok"] > SEEDS // 10, methods
    assert methods["MarginCall"] and methods["Liquidation"], methods    # trader-2 runs out


def test_a_seed_runs_the_same_steps_again(tmp_path):
    assert run_seed(42, tmp_path / "a") == run_seed(42, tmp_path / "b")


def test_a_broken_promise_names_its_seed(tmp_path, monkeypatch):
    """An answer the venue then loses (as a journal that acknowledged before writing
    would) is a violation that says which seed to run again."""
    seal = Simulation.seal

    def forgetful(self) -> None:
        self.v.journal.cut()                  # the turn's records never reach the disk
        seal(self)
    monkeypatch.setattr(Simulation, "seal", forgetful)
    with pytest.raises(Violation, match="seed 3: .*python tests/gateway/simulation.py "
                                        "--seed 3"):
        run_seed(3, tmp_path)
