"""The request core in-process: the same venue, journal and core a server runs, driven by
frames without a socket or an event loop, and with a clock the test moves.

What a request answers is read from its Handled (the reply, the commands it ran);
what it sent to others from the outbox of the turn.
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path

from engine.contracts import date_to_ns
from gateway.config import load_config
from gateway.core.auth import Accounts, demo_accounts, sign
from gateway.core.requests import Core
from gateway.storage.journal import Journal
from gateway.storage.recovery import build, funding, state_digest
from live import AS_OF

NS = 10**9


class InProcess:
    """One exchange's core on a data directory, at AS_OF 12:00 UTC and a test-driven clock."""

    def __init__(self, data_dir: Path, config_text: str | None = None) -> None:
        self.config = load_config(config_text)
        data_dir.mkdir(parents=True, exist_ok=True)
        self.accounts = Accounts(list(self.config.account) or demo_accounts(data_dir),
                                 self.config.limits.login_window_s * 1000)
        self.ns = date_to_ns(AS_OF) + 12 * 3600 * NS
        self.now = 1000.0                   # the monotonic seconds rate limits see
        self.venue, self.feed = build(self.config, AS_OF, self.accounts.by_id.values(),
                                      clock=lambda: self.ns)
        self.journal = Journal(data_dir / "journal", 1, fsync=False)
        self.core = Core(self.venue, self.feed, self.accounts, self.config.limits, self.journal,
                         digest=lambda: state_digest(self.venue, self.feed),
                         wall_clock=lambda: self.ns)
        for deposit in funding(self.accounts.by_id.values(), self.ns,
                               self.config.clearing.insurance_fund):
            self.core.submit(deposit)
        self.journal.commit()
        self.core.seal()
        self._conn = itertools.count(1)
        self._ids = itertools.count(1)

    def tick(self, seconds: float = 1.0) -> None:
        """Move both clocks on."""
        self.now += seconds
        self.ns += int(seconds * NS)

    def session(self, account: str | None = None):
        """A new session, logged in as ``account`` through auth.login if one is named."""
        session = self.core.open(next(self._conn), self.now)
        if account is not None:
            a = self.accounts.by_name[account]
            ts, nonce = self.ns // 10**6, f"n-{next(self._ids)}"
            reply = self.call(session, "auth.login", api_key=a.api_key, timestamp=ts,
                              nonce=nonce, signature=sign(a.api_secret, ts, nonce))
            assert "result" in reply, reply
        return session

    def send(self, session, raw: str | bytes):
        """Hand the core one frame; return (the decoded reply, the Handled)."""
        handled = self.core.handle(session, raw, self.now)
        return json.loads(handled.reply), handled

    def call(self, session, method: str, **params) -> dict:
        reply, _ = self.send(session, json.dumps({"jsonrpc": "2.0", "id": next(self._ids),
                                                  "method": method, "params": params}))
        return reply

    def result(self, session, method: str, **params):
        reply = self.call(session, method, **params)
        assert "result" in reply, reply
        return reply["result"]

    def error(self, session, method: str, **params) -> dict:
        reply = self.call(session, method, **params)
        assert "error" in reply, reply
        return reply["error"]

    def seal(self):
        """End the turn: the journal commits and the outbox comes back."""
        self.journal.commit()
        return self.core.seal()

    def digest(self) -> bytes:
        self.core.projection.flush()
        return state_digest(self.venue, self.feed)
