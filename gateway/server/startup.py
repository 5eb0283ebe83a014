"""What a server starts from: its data directory held, the state recovered, the journal
open after it, the request core built on them, and a new exchange funded."""
from __future__ import annotations

import datetime
import logging
import os
from pathlib import Path
from typing import NamedTuple

from gateway.config import Config
from gateway.core.auth import Accounts, demo_accounts
from gateway.core.requests import Core
from gateway.storage.journal import Journal
from gateway.storage.recovery import (
    Recovered, build, check_listing, funding, listing_date, lock_data_dir, open_journal,
    recover, state_digest,
)

log = logging.getLogger("gpux.gateway")


def accounts_of(config: Config, data_dir: Path) -> tuple[list, Accounts]:
    """The configured accounts (the demo's, kept in ``data_dir``, when there are none)."""
    account_list = list(config.account) or demo_accounts(data_dir)
    return account_list, Accounts(account_list, config.limits.login_window_s * 1000)


class Held(NamedTuple):
    """A state a cluster's matcher brought up itself (gateway.cluster.matcher's Follower): its data
    directory held, the state, the journal open after it, and whether the exchange is new.
    Its journal is not committed here: every record goes through the replicated stream.
    ``follows``: a cluster gateway's, which only ever replays the stream (nothing is run
    on it at the start)."""
    lock: int
    recovered: Recovered
    journal: Journal
    new_exchange: bool
    follows: bool = False


class Started:
    """An exchange ready to serve: accounts, the recovered state, its journal and core.

    Args:
        config: Products, accounts, limits and durability.
        data_dir: Held (``lock``) until ``os.close(lock)``.
        as_of: The listing date of a new data directory (see Server).
        clock: Nanoseconds since the epoch.
        held: A cluster matcher's own (None: recover ``data_dir`` here).

    Raises:
        DataDirBusy, ConfigError, JournalError: as Server; nothing is left held.
    """

    def __init__(self, config: Config, data_dir: Path, as_of: datetime.date | None,
                 clock, held: Held | None = None) -> None:
        if held is not None:
            self.account_list, self.accounts = accounts_of(config, data_dir)
            self.lock, self.recovered, self.journal = held.lock, held.recovered, held.journal
            self._ready(config, held.new_exchange, replicated=True, follows=held.follows)
            return
        self.lock = lock_data_dir(data_dir)
        self.journal = None
        try:
            self._open(config, data_dir, as_of, clock)
        except BaseException:
            if self.journal is not None:
                self.journal.close(commit=False)
            os.close(self.lock)
            raise

    def _open(self, config: Config, data_dir: Path, as_of, clock) -> None:
        self.account_list, self.accounts = accounts_of(config, data_dir)
        as_of = listing_date(data_dir, as_of or config.server.as_of)
        accounts = list(self.accounts.by_id.values())
        self.recovered: Recovered = recover(data_dir,
                                            lambda: build(config, as_of, accounts, clock))
        check_listing(self.recovered.venue, config, as_of)
        self.recovered.venue.clock = clock
        self.journal = open_journal(data_dir, config, self.recovered.seq + 1)
        self._ready(config, self.journal.next_seq == 1, replicated=False)

    def _ready(self, config: Config, new_exchange: bool, replicated: bool,
               follows: bool = False) -> None:
        """The request core on the state; a new exchange funded; the sessions a stop cut off
        ended. A replicated journal's records wait for the first seal (the stream's)."""
        venue, feed = self.venue, self.feed = self.recovered.venue, self.recovered.feed
        accounts = list(self.accounts.by_id.values())
        self.core = Core(venue, feed, self.accounts, config.limits, self.journal,
                         digest=lambda: state_digest(venue, feed))
        self.core.snapshot_seq = self.recovered.snapshot_seq
        self.cut_off = 0
        if follows:
            return
        if new_exchange:                        # the configured funding
            for deposit in funding(accounts, venue.now(), config.clearing.insurance_fund):
                self.core.submit(deposit)
        self.cut_off = self.core.end_cut_off_sessions()
        if self.cut_off:
            log.warning("ended %d cancel-on-disconnect sessions a stop cut off: their orders "
                        "are cancelled", self.cut_off)
        if not replicated:
            self.journal.commit()
        self.core.seal()
