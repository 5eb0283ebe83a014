"""Accounts, API keys and the auth.login check (PROTOCOL.md "Session").

A login proves the key's secret without sending it: the client signs
``"{timestamp}\\n{nonce}"`` with HMAC-SHA256. The timestamp must be within
the window of the server clock and a nonce may not come back within the
window, so a captured login cannot be replayed; the nonces seen are journaled
state (gateway.core.promises), so not across a restart either.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import NamedTuple

import msgspec

from engine.messages import RejectReason
from gateway.config import AccountConfig
from gateway.core.errors import RpcError

DEMO_FILE = "demo-accounts.json"

# The clearing house's own accounts, outside the range configured accounts may use.
FEE_ACCOUNT = 2**31 + 1
INSURANCE_ACCOUNT = 2**31 + 2


class HouseAccount(NamedTuple):
    """An account of the clearing house's own, named for operations (no login)."""
    account: str
    account_id: int


# admin.deposit / admin.withdraw of "insurance_fund" fund the default waterfall.
HOUSE_ACCOUNTS = {"insurance_fund": HouseAccount("insurance_fund", INSURANCE_ACCOUNT)}

# (name, role, collateral USD, trusted: may feed in an external index) of the embedded
# default's accounts.
DEMO_ACCOUNTS = (
    ("trader-1", "trader", "1000000", False),
    ("trader-2", "trader", "1000000", False),
    ("maker-1", "market_maker", "10000000", False),
    ("viewer-1", "viewer", "0", False),
    ("index-1", "index_provider", "0", False),
    ("index-2", "index_provider", "0", False),
    ("index-3", "index_provider", "0", True),
    ("admin", "admin", "0", False),
    # The demo's simulated participants (gpux serve --demo, gateway.demo.participants).
    ("maker-2", "market_maker", "10000000", False),
    ("operator-1", "trader", "50000000", False),
    ("lab-1", "trader", "50000000", False),
    ("taker-1", "trader", "2000000", False),
    ("taker-2", "trader", "2000000", False),
)


def sign(api_secret: str, timestamp: int, nonce: str | int) -> str:
    """Return the auth.login signature: lowercase hex HMAC-SHA256 of "{timestamp}\\n{nonce}"."""
    message = f"{timestamp}\n{nonce}".encode()
    return hmac.new(api_secret.encode(), message, hashlib.sha256).hexdigest()


def demo_accounts(data_dir: Path) -> list[AccountConfig]:
    """Return the demo accounts of ``data_dir``, creating the file with fresh keys once.

    A restart with the same data directory keeps the same accounts and keys.
    The file is written to a temporary name and renamed, readable by the owner only.
    """
    path = data_dir / DEMO_FILE
    if path.exists():
        return msgspec.json.decode(path.read_bytes(), type=list[AccountConfig])
    accounts = [
        AccountConfig(account=name, role=role, api_key="gpux_" + secrets.token_hex(12),
                      api_secret=secrets.token_hex(32), account_id=index, collateral=collateral,
                      trusted=trusted)
        for index, (name, role, collateral, trusted) in enumerate(DEMO_ACCOUNTS, start=1)
    ]
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump([msgspec.to_builtins(a) for a in accounts], f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return accounts


class Accounts:
    """The configured accounts by API key, name and id, and the login check.

    Args:
        accounts: Each with a unique name, key and id; ids are given in order where missing.
        window_ms: How far a login timestamp may be from the server clock.
    """

    def __init__(self, accounts: list[AccountConfig], window_ms: int = 30_000) -> None:
        self.window_ms = window_ms
        self.by_key: dict[str, AccountConfig] = {}
        self.by_name: dict[str, AccountConfig] = {}
        self.by_id: dict[int, AccountConfig] = {}
        used = {a.account_id for a in accounts if a.account_id is not None}
        next_id = 1
        for a in accounts:
            if a.account_id is None:
                while next_id in used:
                    next_id += 1
                a = msgspec.structs.replace(a, account_id=next_id)
                used.add(next_id)
            for index, key in ((self.by_key, a.api_key), (self.by_name, a.account),
                               (self.by_id, a.account_id)):
                if key in index:
                    raise ValueError(f"account {a.account}: {key!r} is used twice")
                index[key] = a

    def login(self, api_key: str, timestamp: int, nonce: str | int, signature: str, now_ms: int,
              nonce_used) -> AccountConfig:
        """Check a login and return its account. The caller records the nonce (a journaled
        command, gateway.core.promises.LoginSeen) until ``timestamp + window_ms``.

        Args:
            nonce_used: ``(account_id, nonce, now_ms) -> bool``, the nonces recorded.

        Raises:
            RpcError: invalid_signature (unknown key or wrong HMAC; the two are not
                told apart), stale_timestamp, nonce_reused.
        """
        account = self.by_key.get(api_key)
        expected = sign(account.api_secret, timestamp, nonce) if account else ""
        if account is None or not hmac.compare_digest(expected, signature.lower()):
            raise RpcError(RejectReason.INVALID_SIGNATURE,
                           "the api_key is unknown or the signature "
                           "does not match", field="signature")
        if abs(now_ms - timestamp) > self.window_ms:
            raise RpcError(RejectReason.STALE_TIMESTAMP, f"timestamp {timestamp} is more than "
                           f"{self.window_ms // 1000} s from the server time {now_ms}",
                           field="timestamp", server_time=now_ms)
        if nonce_used(account.account_id, str(nonce), now_ms):
            raise RpcError(RejectReason.NONCE_REUSED, "this nonce was already used with this key",
                           field="nonce")
        return account
