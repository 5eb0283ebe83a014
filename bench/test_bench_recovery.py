"""A small run of bench.recovery, untimed: the generated journal recovers, from the
journal alone and from its snapshot, to one state, and a real server starts on it.
The figures come from ``python -m bench.recovery`` (``make recovery``)."""
from __future__ import annotations

import shutil

from bench.harness import account_names, gpux_config
from bench.recovery import LISTED, generate, measure_start
from gateway.core.auth import Accounts
from gateway.config import load_config
from gateway.storage.recovery import build, recover, snapshot_dir, state_digest


def test_a_generated_journal_recovers_the_same_both_ways(tmp_path):
    config_text = gpux_config(account_names("acct", 5))
    config = load_config(config_text)
    accounts = list(Accounts(list(config.account), 0).by_id.values())
    seq, _ = generate(tmp_path, 3000, 500, config)
    data_dir = tmp_path / "data"
    from_snapshot = recover(data_dir, lambda: build(config, LISTED, accounts))
    assert (from_snapshot.seq, from_snapshot.replayed) == (seq, seq - from_snapshot.snapshot_seq)
    assert from_snapshot.snapshot_seq > 0
    shutil.rmtree(snapshot_dir(data_dir))
    alone = recover(data_dir, lambda: build(config, LISTED, accounts))
    assert (alone.seq, alone.replayed, alone.snapshot_seq) == (seq, seq, 0)
    assert state_digest(alone.venue, alone.feed) == \
        state_digest(from_snapshot.venue, from_snapshot.feed)
    trades = sum(len(f) for f in alone.venue.fills.values())
    assert trades > 100 and alone.failed == 0
    assert measure_start(tmp_path, config_text) > 0
