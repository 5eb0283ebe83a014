"""A smoke run of the stall budget (bench.stall): every attack for a moment against a real
server on default limits, so the attacks stay correct between benchmark runs. No timing
is asserted; the figures come from ``python -m bench.stall``."""
from __future__ import annotations

from bench.stall import ATTACKS, run


def test_every_attack_runs_and_the_clean_client_is_always_answered():
    rows = {r["attack"]: r for r in run(seconds=1.0, only=[], fills=300, observations=60,
                                         open_orders=300, server_cpus=None, client_cpus=None)}
    assert list(rows) == ATTACKS
    for row in rows.values():
        assert row["n"] >= 5 and row["failed"] == 0, row     # session.test every 100 ms
    assert "1008x" in rows["flood"]["tally"]                   # flooders are closed
    assert "invalid_request" in rows["nested"]["tally"]
    assert "1009x" in rows["big_frames"]["tally"]              # past the frame limit
    assert "updates" in rows["orders"]["tally"]                # the maker hears each fill
    for attack in ("fills", "order_list", "index"):
        assert "answered" in rows[attack]["tally"] and rows[attack]["n"] > 0
