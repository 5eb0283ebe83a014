"""Clearing's commands and events (money in micro-USD, prices in ticks, times in ns).

Like the engine's, every command carries the ``ts_ns`` the gateway stamped
(or its scheduler, for the mark step, the fixing and the settlement), and
the clearing house turns it into events; they are journaled like the
engine's commands.
"""
from __future__ import annotations

import msgspec

from clearing.index import Fixing
from engine.messages import RejectReason, snake_case


class ClearingCommand(msgspec.Struct, tag_field="type", tag=snake_case, frozen=True,
                      forbid_unknown_fields=True, kw_only=True):
    ts_ns: int


class SubmitObservation(ClearingCommand):
    """An index provider's rental observation: ``hours`` GPU-hours at ``price``."""
    provider_id: int
    gpu_class: str
    price: int
    hours: int
    observed_ns: int


class SetExternalIndex(ClearingCommand):
    """A trusted provider feeds in an external index value for a class."""
    provider_id: int
    gpu_class: str
    value: int
    observed_ns: int


class FixIndex(ClearingCommand):
    """Take the daily fixing of one class, or of all (None)."""
    gpu_class: str | None = None


class Deposit(ClearingCommand):
    account_id: int
    amount: int


class Withdraw(ClearingCommand):
    account_id: int
    amount: int


class MarkStep(ClearingCommand):
    """The scheduler's tick: new marks, margin calls, liquidations, final settlements due."""


class Settle(ClearingCommand):
    """Run the daily settlement now."""


class RollListing(ClearingCommand):
    """The daily listing step (DESIGN.md section 3), from the command's time alone: cascade
    every quarter and year whose last trading time has come, delist what has settled, list
    what the products put in range."""


ClearingCommands = (SubmitObservation | SetExternalIndex | FixIndex | Deposit | Withdraw
                    | MarkStep | Settle | RollListing)


class ClearingEvent(msgspec.Struct, tag_field="type", tag=snake_case, frozen=True, gc=False):
    """Base of every clearing event."""


class ClearingRejected(ClearingEvent):
    reason: RejectReason
    detail: str
    field: str | None
    ts_ns: int


class IndexValue(ClearingEvent):
    gpu_class: str
    value: int | None
    source: str
    ts_ns: int


class IndexFixed(ClearingEvent):
    fixing: Fixing
    ts_ns: int


class CollateralMoved(ClearingEvent):
    """Cash in or out of an account: deposit, withdrawal, variation_margin,
    final_settlement, insurance (the fund paying a deficit), haircut (a gainer's
    variation margin paying one)."""
    account_id: int
    amount: int
    balance: int
    reason: str
    ts_ns: int


class MarksUpdated(ClearingEvent):
    """The marks a mark step changed."""
    marks: dict[str, int]
    ts_ns: int


class Settled(ClearingEvent):
    """A daily settlement: each symbol's price and the tier it came from."""
    prices: dict[str, int]
    tiers: dict[str, str]
    ts_ns: int


class MarginCall(ClearingEvent):
    """Equity fell below initial margin."""
    account_id: int
    equity: int
    initial: int
    maintenance: int
    ts_ns: int


class Liquidation(ClearingEvent):
    """One step of the liquidation of an account below maintenance margin.

    ``action``: "cancel_orders" (its orders are cancelled), "reduce" (an IOC order
    closing ``qty`` lots of ``symbol`` goes to the book), "pending" (no bid or offer
    to reduce ``symbol`` against: retried at every mark step, told once).
    """
    account_id: int
    equity: int
    maintenance: int
    action: str
    symbol: str | None
    qty: int
    ts_ns: int


class DefaultCovered(ClearingEvent):
    """A realized deficit and how the waterfall paid it (README "Default waterfall"):
    ``insurance`` from the fund, ``mutualised`` by haircuts on the settlement's gainers,
    ``uncovered`` left on the account."""
    account_id: int
    deficit: int
    insurance: int
    mutualised: int
    uncovered: int
    ts_ns: int


class InstrumentSettled(ClearingEvent):
    """Final settlement: the mean of the class's daily fixings over the delivery period."""
    symbol: str
    price: int
    fixings: int           # the days of the period: one fixing each
    carried: int           # of which carried forward from the day before (no fixing taken)
    ts_ns: int


class Cascaded(ClearingEvent):
    """A quarter or year became the same positions in each of ``into`` at ``price``, its last
    settlement price, which they carry for variation margin: no cash moved. ``accounts``
    held a position (or unsettled trades) in it."""
    symbol: str
    into: list[str]
    price: int
    accounts: list[int]
    ts_ns: int


class ListingRolled(ClearingEvent):
    """What a listing step listed (in delivery order) and delisted."""
    listed: list[str]
    delisted: list[str]
    ts_ns: int
