"""The risk side of the order path: the interface engine defines and clearing implements.

The engine asks ``check`` before an order (or a replace) can reach the book
and hands every command's events to ``apply`` afterwards, so clearing can keep
positions and margin without the engine importing it (DESIGN.md §2).
"""
from __future__ import annotations

from typing import Protocol

from engine.messages import RejectReason, Side


class RiskGate(Protocol):
    def check(self, account_id: int, symbol: str, side: Side, price: int, qty: int,
              reduce_only: bool, replaces: int | None) -> tuple[RejectReason, str] | None:
        """Return why the order may not go on, or None to let it through.

        Args:
            price: The worst price the order can trade at, in ticks (a market
                order's band-protected limit).
            qty: The order's leaves quantity in lots once placed or replaced.
            replaces: The order id a replace modifies; None for a new order.
        """

    def apply(self, events: list) -> None:
        """Take the events one command caused, in order (fills, cancels, ...)."""


class PermissiveRisk:
    """Let every order through; for the engine on its own, until clearing is wired in.

    It does not know positions, so reduce_only is not enforced here either.
    """

    def check(self, account_id, symbol, side, price, qty, reduce_only, replaces):
        return None

    def apply(self, events):
        return None
