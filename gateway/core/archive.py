"""Closed orders, strips and fills older than what memory keeps: the archive's records and the
in-memory archive.

The engine keeps a closed order in memory for a few minutes (engine.exchange
RECENT_NS), an account's fills about as long (gateway.core.fills); older ones go to
an archive, which answers ``order.get``, resends by client_order_id (seven days) and
``account.fills`` pages beyond them. So memory stays flat at a steady order rate.

The archive is not part of the state: it holds what a replay of the journal would put
in it again, and a record never changes once written (a closed order is final). So it
may hold more than the state it serves (written by a later run, before a crash); the
engine only counts records of orders placed before now (``attach_archive``).

``MemoryArchive`` is the sans-I/O one (tests, the simulation, a replay from the journal's
start); the server's is on disk (gateway.storage.archive).
"""
from __future__ import annotations

import struct
from bisect import bisect_left, insort

import msgspec

from engine.messages import (
    CancelReason, OrderStatus, OrderType, PlaceOrder, SelfTradePrevention, Side,
    StripExecuted, TimeInForce,
)
from gateway.core.codec import OrderView, fill_view, order_view

FILL_WIDTH = 9      # trade_id, order_id, symbol index, side, price, qty, fee, maker, ts_ns
FILL = struct.Struct("<qqq?")       # an order's fill: trade_id, price (ticks), qty, maker
EXPIRED = -1                        # why an order ended: a GTD order reached its expire_at
END_NAMES = {r.value: r.name.lower() for r in CancelReason} | {EXPIRED: "expired"}


def order_view_of(order, fills: bytes | None, ended: int | None) -> OrderView:
    """The wire view of an order (an engine Order, or OrderFields) from its FILL-packed
    fills and why it ended."""
    return order_view(order, [] if not fills else [fill_view(*f) for f in FILL.iter_unpack(fills)],
                      None if ended is None else END_NAMES[ended])


def fill_key(row) -> tuple[int, int]:
    """Fills in the order they happened: by trade, and a trade's maker before its taker
    (as an account's history appends them)."""
    return row[0], -row[7]


class OrderFields(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """What an order's view is made of, with the engine Order's names (codec.order_view)."""
    order_id: int
    client_order_id: str | None
    symbol: str
    side: Side
    order_type: OrderType
    tif: TimeInForce
    price: int | None
    stop_price: int | None
    qty: int
    filled_qty: int
    leaves_qty: int
    status: OrderStatus
    expire_at_ns: int | None
    display_qty: int | None
    post_only: bool
    reduce_only: bool
    stp: SelfTradePrevention


class ClosedOrder(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One closed order as the archive keeps it: enough for the engine to refuse or answer
    a resend, and what its view is built from (when asked: archiving is on the order
    path, reading is rare)."""
    order_id: int
    account_id: int
    client_order_id: str | None
    closed_ns: int
    request: PlaceOrder | None      # what placed it, when it has a client_order_id
    fields: OrderFields
    fills: bytes                    # FILL-packed, in order
    ended: int | None               # CancelReason value, or EXPIRED

    @classmethod
    def of(cls, order, fills: bytes | None, ended: int | None) -> ClosedOrder:
        """An engine Order, with its fills and why it ended (the venue's histories)."""
        return cls(order.order_id, order.account_id, order.client_order_id, order.closed_ns,
                   order.request, OrderFields(
                       order.order_id, order.client_order_id, order.symbol, order.side,
                       order.order_type, order.tif, order.price, order.stop_price, order.qty,
                       order.filled_qty, order.leaves_qty, order.status, order.expire_at_ns,
                       order.display_qty, order.post_only, order.reduce_only, order.stp),
                   fills or b"", ended)

    @property
    def status(self) -> str:
        """The engine's status, lower case (filled, cancelled, expired), for its refusals."""
        return self.fields.status.name.lower()

    @property
    def view(self) -> OrderView:
        return order_view_of(self.fields, self.fills, self.ended)


class MemoryArchive:
    """The archive in memory: for tests, the simulation and a replay into scratch state."""

    def __init__(self) -> None:
        self.orders: dict[int, ClosedOrder] = {}
        # (account, client_order_id) -> its orders' ids, ascending: a client_order_id is
        # free again seven days after its order closed
        self.by_client: dict[tuple[int, str], list[int]] = {}
        self._fills: dict[int, list[tuple]] = {}          # account -> rows, trade_id order
        self.strips: dict[tuple[int, str], StripExecuted] = {}

    def put(self, closed: ClosedOrder) -> None:
        if closed.client_order_id is not None and closed.order_id not in self.orders:
            insort(self.by_client.setdefault((closed.account_id, closed.client_order_id), []),
                   closed.order_id)
        self.orders[closed.order_id] = closed

    def closed_order(self, account_id: int, order_id: int | None,
                     client_order_id: str | None, below: int | None = None
                     ) -> ClosedOrder | None:
        """The account's order (any account's, if None) named by id, or else the newest by
        client_order_id with an id below ``below`` (if given), or None."""
        if order_id is None:
            ids = self.by_client.get((account_id, client_order_id), ())
            cut = len(ids) if below is None else bisect_left(ids, below)
            order_id = ids[cut - 1] if cut else None
        found = self.orders.get(order_id)
        if found is None or (account_id is not None and found.account_id != account_id):
            return None
        return found

    def put_fills(self, account_id: int, rows: list[tuple]) -> None:
        """Older fills of an account (tuples of FILL_WIDTH ints), oldest first; a row already
        here (a replay writes again what a run before it wrote) is kept once."""
        mine = self._fills.setdefault(account_id, [])
        for row in rows:
            if not mine or fill_key(row) > fill_key(mine[-1]):
                mine.append(row)
            elif row not in mine[bisect_left(mine, row[0], key=_trade):
                                 bisect_left(mine, row[0] + 1, key=_trade)]:
                insort(mine, row, key=fill_key)

    def fills(self, account_id: int, symbol: int | None, before: int | None,
              limit: int) -> list[tuple]:
        """The account's archived fills newest first: of ``symbol`` (its index) if given,
        with a trade_id below ``before`` if given, at most ``limit``."""
        mine = self._fills.get(account_id, ())
        end = len(mine) if before is None else bisect_left(mine, before, key=_trade)
        out = []
        for i in range(end - 1, -1, -1):
            if len(out) == limit:
                break
            if symbol is None or mine[i][2] == symbol:
                out.append(mine[i])
        return out

    def fill_rows(self):
        """(account_id, row) of every fill here."""
        return ((account_id, row) for account_id, rows in self._fills.items() for row in rows)

    def put_strip(self, done: StripExecuted) -> None:
        """A strip with a client_order_id (the newest of that id is the one a resend gets)."""
        key = (done.account_id, done.client_order_id)
        if key not in self.strips or self.strips[key].strip_id < done.strip_id:
            self.strips[key] = done

    def strip(self, account_id: int, client_order_id: str) -> StripExecuted | None:
        return self.strips.get((account_id, client_order_id))

    def prune(self, before_ns: int, limit: int = 2**62) -> int:
        """Forget orders closed, and strips placed, before ``before_ns`` (fills are kept:
        account.fills pages back through all of them): at most ``limit`` of each; return
        how many went (0: none is left)."""
        strips = [k for k, done in self.strips.items() if done.ts_ns < before_ns][:limit]
        for key in strips:
            del self.strips[key]
        orders = [i for i, c in self.orders.items() if c.closed_ns < before_ns][:limit]
        for order_id in orders:
            closed = self.orders.pop(order_id)
            if closed.client_order_id is not None:
                key = (closed.account_id, closed.client_order_id)
                self.by_client[key].remove(order_id)
                if not self.by_client[key]:
                    del self.by_client[key]
        return len(strips) + len(orders)

    def sync(self) -> None:
        """Nothing to make durable."""


def _trade(row) -> int:
    return row[0]
