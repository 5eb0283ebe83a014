"""The risk side of the order path: the interface engine defines and clearing implements.

The engine asks ``check`` before an order (or a replace) can reach the book
and hands every command's events to ``apply``, so clearing can keep
positions and margin without the engine importing it (DESIGN.md §2).

Positions live in clearing and orders in the engine, so reduce-only is
enforced by the engine with ``position``: it caps a reduce-only order to
what the position and the account's other reduce-only orders leave, stops a
match before a reduce-only maker to fit it to the position as it is then,
and after a command trims the reduce-only orders of accounts whose position
moved (engine.exchange). For ``position`` to be current in the middle of a
command, the engine hands over that command's events in parts: those not yet
applied, each time before it asks, and the rest at the end; never one twice.
"""
from __future__ import annotations

from typing import Protocol

from engine.messages import RejectReason, Side


class RiskGate(Protocol):
    def check(self, account_id: int, symbol: str, side: Side, price: int, qty: int,
              liquidation: bool, replaces: int | None) -> tuple[RejectReason, str] | None:
        """Return why the order may not go on, or None to let it through.

        Args:
            price: The worst price the order can trade at, in ticks (a market
                order's band-protected limit).
            qty: The order's leaves quantity in lots once placed or replaced (a
                reduce-only order's already cut to fit its position).
            liquidation: Clearing's own order closing a position; it must reach
                the book, so no limit or margin check applies.
            replaces: The order id a replace modifies; None for a new order.
        """

    def check_strip(self, account_id: int, side: Side,
                    legs: list[tuple[str, int, int]]) -> tuple[RejectReason, str] | None:
        """As ``check``, for a strip's legs at once: (symbol, lots, ticks x lots paid or got)
        each, all on ``side``; they fill together, so its margin is that of the whole
        strip filled."""

    def apply(self, events: list) -> None:
        """Take events of one command, in order (fills, cancels, ...); a command's
        events may come in several calls, each event once."""

    def position(self, account_id: int, symbol: str) -> int:
        """Return the account's position in lots (long > 0, short < 0), as the events
        applied so far have booked it."""


class PermissiveRisk:
    """Let every order through; for the engine on its own, until clearing is wired in.

    It does not know positions (every one is 0). An Exchange built without a
    gate does not enforce reduce-only; given this one, it would refuse every
    reduce-only order.
    """

    def check(self, account_id, symbol, side, price, qty, liquidation, replaces):
        return None

    def check_strip(self, account_id, side, legs):
        return None

    def apply(self, events):
        return None

    def position(self, account_id, symbol):
        return 0
