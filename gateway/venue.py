"""The engine as the gateway drives it: one writer, a clock, and each order's fills.

All commands go through ``Venue.process``: it stamps the time (never
backwards, so the engine accepts it) and keeps what the wire shows about an
order that the engine does not hold, its fills and why it ended. This is
the seam where the journal (write ahead, group commit) goes.
"""
from __future__ import annotations

import time

from engine.exchange import Exchange
from engine.messages import OrderCancelled, OrderExpired, Trade
from gateway.codec import CANCEL_REASON_NAMES, fill_view, order_view

PRUNE_EVERY = 100_000     # commands between sweeps of histories the engine has forgotten


class OrderHistory:
    """What an order's wire view needs beyond the engine's Order."""
    __slots__ = ("fills", "cancel_reason")

    def __init__(self) -> None:
        self.fills: list[dict] = []
        self.cancel_reason: str | None = None


class Venue:
    """The Exchange, the clock that stamps its commands, and order histories.

    Args:
        exchange: The engine (with clearing's risk gate, once wired in).
        clock: Nanoseconds since the epoch; tests pass their own.
    """

    def __init__(self, exchange: Exchange, clock=time.time_ns) -> None:
        self.exchange = exchange
        self.clock = clock
        self.last_ts = 0
        self.history: dict[int, OrderHistory] = {}
        self._until_prune = PRUNE_EVERY

    def now(self) -> int:
        """Return the timestamp for the next command: the clock, but never backwards."""
        ts = self.clock()
        if ts < self.last_ts:
            ts = self.last_ts
        self.last_ts = ts
        return ts

    def process(self, cmd) -> list:
        """Run one command through the engine; return its events."""
        events = self.exchange.process(cmd)
        for ev in events:
            kind = type(ev)
            if kind is Trade:
                self._of(ev.maker_order_id).fills.append(
                    fill_view(ev.trade_id, ev.price, ev.qty, True))
                self._of(ev.taker_order_id).fills.append(
                    fill_view(ev.trade_id, ev.price, ev.qty, False))
            elif kind is OrderCancelled:
                self._of(ev.order_id).cancel_reason = CANCEL_REASON_NAMES[ev.reason]
            elif kind is OrderExpired:
                self._of(ev.order_id).cancel_reason = "expired"
        self._until_prune -= 1
        if self._until_prune <= 0:
            self._prune()
        return events

    def _of(self, order_id: int) -> OrderHistory:
        h = self.history.get(order_id)
        if h is None:
            h = self.history[order_id] = OrderHistory()
        return h

    def view(self, order) -> dict:
        """Return the wire view of an engine Order, with all its fills."""
        h = self.history.get(order.order_id)
        if h is None:
            return order_view(order, [])
        return order_view(order, list(h.fills), h.cancel_reason)

    def find(self, account_id: int, order_id: int | None, client_order_id: str | None):
        """Return the account's order named either way (open or closed), or None."""
        if order_id is not None:
            order = self.exchange.order(order_id)
            if order is None or order.account_id != account_id:
                return None
            if client_order_id is not None and order.client_order_id != client_order_id:
                return None
            return order
        if client_order_id is not None:
            return self.exchange.order_by_client_id(account_id, client_order_id)
        return None

    def _prune(self) -> None:
        """Drop histories of orders the engine no longer retains."""
        self._until_prune = PRUNE_EVERY
        orders = self.exchange.orders
        for order_id in [i for i in self.history if i not in orders]:
            del self.history[order_id]
