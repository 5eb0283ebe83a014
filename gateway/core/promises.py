"""What the exchange promised its sessions, kept in the venue's journaled state so that a
crash keeps it too: the orders a cancel-on-disconnect session answers for, and the login
nonces still inside their window.

The request core makes the promises as commands (``GuardOrders`` at the end of each
request that gave a guarded session orders to answer for, ``Unguard`` when it turns
cancel-on-disconnect off, ``SessionClosed`` when its connection ends, after a cancel of
each open order it answers for; ``LoginSeen`` for each login), journaled and run like any
other, so a replay rebuilds them. A restart ends the guarded sessions the crash cut off as
its first commands (gateway.server.startup): their orders are cancelled as their
disconnect would have cancelled them. Only guarded sessions cost records, one per
request that gives them orders, not one per order.
"""
from __future__ import annotations

import heapq
from typing import Union

import msgspec

from engine.messages import snake_case

GUARD_PRUNE = 4096          # forget a guard's closed orders once it holds this many


class SessionCommand(msgspec.Struct, tag_field="type", tag=snake_case, frozen=True,
                     forbid_unknown_fields=True, kw_only=True):
    """Base of the commands about sessions (run by the venue itself)."""
    ts_ns: int


class GuardOrders(SessionCommand):
    """A session has cancel-on-disconnect (again), and answers for these orders too."""
    session: int                # the seq of the session's first GuardOrders: unique for good
    account_id: int
    orders: tuple[int, ...]


class Unguard(SessionCommand):
    """The session turned cancel-on-disconnect off: its orders outlive it (unless it turns
    it on again)."""
    session: int


class SessionClosed(SessionCommand):
    """The session ended (its connection closed, or a crash cut it off): its guard is
    dropped. If cancel-on-disconnect was on, the request core has journaled a cancel
    (reason disconnect) of each open order the guard held just before."""
    session: int


class LoginSeen(SessionCommand):
    """An account logged in with ``nonce`` at ``at_ms``; the nonce may not come back before
    ``until_ms`` (the login's timestamp plus the window). Both are of the clock logins are
    checked against, which tests may set apart from the venue's."""
    account_id: int
    nonce: str
    at_ms: int
    until_ms: int


SessionCommands = Union[GuardOrders, Unguard, SessionClosed, LoginSeen]


class Guard:
    """A guarded session's account, the orders it answers for (closed ones pruned now and
    then) and whether cancel-on-disconnect is on."""

    __slots__ = ("account_id", "orders", "limit", "on")

    def __init__(self, account_id: int) -> None:
        self.account_id = account_id
        self.orders: set[int] = set()
        self.limit = GUARD_PRUNE
        self.on = True


class Promises:
    """The guarded sessions by id and the nonces seen within their window."""

    def __init__(self) -> None:
        self.guards: dict[int, Guard] = {}
        self.nonces: dict[tuple[int, str], int] = {}     # (account_id, nonce) -> until_ms
        self._expiry: list[tuple[int, int, str]] = []    # a heap of (until_ms, account, nonce)

    def nonce_used(self, account_id: int, nonce: str, now_ms: int) -> bool:
        """Whether the account logged in with ``nonce`` within the window of ``now_ms``."""
        until = self.nonces.get((account_id, nonce))
        return until is not None and until >= now_ms

    def to_cancel(self, session: int, exchange) -> tuple[int, list[int]]:
        """(account, open orders in order) the session's end cancels: none unless its
        guard exists and cancel-on-disconnect is on."""
        guard = self.guards.get(session)
        if guard is None or not guard.on:
            return 0, []
        return guard.account_id, [i for i in sorted(guard.orders) if _open(exchange, i)]

    def process(self, cmd: SessionCommand, exchange) -> list:
        """Run one session command (they cause no events: a closing session's cancels are
        commands of their own, journaled before its ``SessionClosed``)."""
        kind = type(cmd)
        if kind is GuardOrders:
            self._guard(cmd, exchange)
        elif kind is LoginSeen:
            self._seen(cmd)
        elif kind is Unguard:
            guard = self.guards.get(cmd.session)
            if guard is not None:
                guard.on = False
        else:
            self.guards.pop(cmd.session, None)
        return []

    def _guard(self, cmd: GuardOrders, exchange) -> None:
        guard = self.guards.get(cmd.session)
        if guard is None:
            guard = self.guards[cmd.session] = Guard(cmd.account_id)
        guard.on = True
        orders = guard.orders
        orders.update(cmd.orders)
        if len(orders) >= guard.limit:
            kept = {i for i in orders if _open(exchange, i)}
            guard.orders = kept
            guard.limit = max(GUARD_PRUNE, 2 * len(kept))

    def _seen(self, cmd: LoginSeen) -> None:
        now_ms = cmd.at_ms
        expiry, nonces = self._expiry, self.nonces
        while expiry and expiry[0][0] < now_ms:
            _, account_id, nonce = heapq.heappop(expiry)
            key = (account_id, nonce)
            if nonces.get(key, now_ms) < now_ms:
                del nonces[key]
        key = (cmd.account_id, cmd.nonce)
        nonces[key] = max(cmd.until_ms, nonces.get(key, 0))
        heapq.heappush(expiry, (cmd.until_ms, cmd.account_id, cmd.nonce))


def _open(exchange, order_id: int) -> bool:
    order = exchange.order(order_id)
    return order is not None and order.closed_ns is None
