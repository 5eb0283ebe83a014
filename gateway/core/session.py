"""One connection's state as the core sees it: who it is, its rate limits, its
subscriptions, the orders it placed and what it asked for on disconnect.

No socket here: the server adapter keeps the connection (its outbound queue and
writer) in ``transport`` and the core never touches it. Time is passed in
(seconds of a monotonic clock), so every rule can be tested without waiting.
"""
from __future__ import annotations

from gateway.config import AccountConfig, Limits
from gateway.core.limits import ORDER, REQUEST, SUBSCRIBE, TokenBucket

PLACED_PRUNE = 4096


class SessionState:
    """The state of one connection.

    Args:
        conn_id: A number for logs.
        limits: The server's limits.
        now: Monotonic seconds.
        transport: The adapter's connection (opaque to the core).
    """

    def __init__(self, conn_id: int, limits: Limits, now: float, transport=None) -> None:
        self.conn_id = conn_id
        self.limits = limits
        self.transport = transport
        self.account: AccountConfig | None = None
        self.role = "anonymous"
        self.buckets = self._buckets(now)
        self.channels: set[str] = set()
        self.strikes = 0                       # rate-limited requests in a row
        self.closing = False                   # its close is queued: read no more of it
        self.cancel_on_disconnect = False
        self.guard = 0                         # its id in the venue's promises; 0: none yet
        self.owed: list[int] = []              # placed orders its guard does not hold yet
        self.placed: set[int] = set()          # order ids this session placed
        self.placed_limit = PLACED_PRUNE       # prune closed ones from `placed` past this
        self.heartbeat_s = 0                   # the interval the client asked for; 0: off
        self.last_rx = now

    @property
    def account_id(self) -> int | None:
        return None if self.account is None else self.account.account_id

    def _buckets(self, now: float) -> dict[str, TokenBucket]:
        # The role's limits are resolved once here, not on every order.
        spec = self.role_limits = self.limits.for_role(self.role)
        return {ORDER: TokenBucket(spec.orders, now), REQUEST: TokenBucket(spec.requests, now),
                SUBSCRIBE: TokenBucket(spec.subscriptions, now)}

    def logged_in(self, account: AccountConfig, now: float) -> None:
        self.account = account
        self.role = account.role
        self.buckets = self._buckets(now)

    def remember(self, order_id: int, orders) -> None:
        """Note an order this session answers for (cancel-on-disconnect's list) and owes its
        guard; now and then forget the closed ones (``orders``: the engine's retained
        orders by id)."""
        placed = self.placed
        if order_id in placed:
            return
        placed.add(order_id)
        self.owed.append(order_id)
        if len(placed) >= self.placed_limit:
            self.placed = {i for i in placed if i in orders and orders[i].closed_ns is None}
            self.owed = [i for i in self.owed if i in self.placed]
            self.placed_limit = max(PLACED_PRUNE, 2 * len(self.placed))
