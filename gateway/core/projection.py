"""What follows from a command's events, found in one pass over them.

A command's events change three things besides the engine and clearing, and
each is derived here and nowhere else:

- state kept with the venue (replayed from the journal like the engine): each
  order's fills and why it ended, each account's fill history, with the fee
  clearing booked for each fill, and which order holds each quote slot;
- the market data the next seal publishes (the feed takes the events that move
  books, trades, tickers and the index history), and the index, curve and
  instruments channels that changed;
- for the request that sent the command and for whoever listens: the outcome
  (a refusal, the order it placed or replaced), the order views of the orders
  it touched (built once, for the reply and the ``orders`` channel alike),
  each account's new fills with their fees, the accounts whose positions or
  margin may have moved, and what the ``admin`` channel says.

The listening part is skipped when nobody listens (a replay, a quiet server).
"""
from __future__ import annotations

from clearing.messages import (
    Cascaded, ClearingEvent, ClearingRejected, CollateralMoved, IndexFixed, IndexValue,
    InstrumentSettled, Liquidation, MarginCall, MarksUpdated, Settled,
)
from engine.messages import (
    BookLevelChanged, CancelReason, InstrumentDelisted, InstrumentListed,
    InstrumentStatusChanged, OrderAccepted, OrderCancelled, OrderDuplicate, OrderExpired,
    OrderReduced, OrderRejected, OrderReplaced, OrderTriggered, StripExecuted, Trade,
)
from gateway.core.codec import OrderView, fill_row
from gateway.core.archive import EXPIRED, FILL
from gateway.core.venue import QUOTE_PREFIX

ORDER_EVENTS = (OrderAccepted, OrderCancelled, OrderReplaced, OrderExpired, OrderTriggered,
                OrderReduced)
ORDER_OUTCOMES = (OrderAccepted, OrderDuplicate, OrderReplaced)
ACCOUNT_EVENTS = (CollateralMoved, MarginCall, Liquidation)


class Outcome:
    """One command's events and what the projection found in them.

    Attributes:
        events: All of them, in order.
        refused: The first OrderRejected or ClearingRejected, or None.
        order_event: The first OrderAccepted, OrderDuplicate or OrderReplaced, or None.
        user_cancels: account_id -> orders its owner cancelled (order.cancel_all's count).
        touched: Orders whose state changed, in the order they first changed.
        fills: account_id -> its new fills, as the ``fills`` channel sends them.
        new_fills: order_id -> how many fills this command added to it (the ``orders``
            channel sends only those: resending them all grew with the square of the fills).
        accounts: Accounts whose collateral, positions or margin may have changed.
        admin: The clearing events the ``admin`` channel reports.
    """

    __slots__ = ("events", "refused", "order_event", "user_cancels", "touched", "fills",
                 "new_fills", "accounts", "admin", "_venue", "_views")

    def __init__(self, events: list, venue) -> None:
        self.events = events
        self.refused = None
        self.order_event = None
        self.user_cancels: dict[int, int] = {}
        self.touched: dict[int, None] = {}
        self.fills: dict[int, list[dict]] = {}
        self.new_fills: dict[int, int] = {}
        self.accounts: set[int] = set()
        self.admin: list[ClearingEvent] = []
        self._venue = venue
        self._views: dict[int, OrderView] = {}

    def view(self, order_id: int) -> OrderView:
        """The order's wire view after this command, built once however often asked."""
        view = self._views.get(order_id)
        if view is None:
            view = self._views[order_id] = self._venue.view_of(order_id)
        return view

    def of_type(self, kind: type) -> list:
        """The events of one type (for the rare methods that want more than the outcome)."""
        return [ev for ev in self.events if type(ev) is kind]


class Projection:
    """Derives everything that follows from each command's events (see the module doc).

    Args:
        venue: Its order histories are kept here (state, replayed).
        feed: Takes the market events at the next seal (``flush``).
    """

    def __init__(self, venue, feed) -> None:
        self.venue = venue
        self.feed = feed
        self.listening = False        # someone has a private channel
        self.admin = False            # someone wants the admin channel
        self.market: list = []        # the feed's events of this turn, until flush()
        self.index_dirty: set[str] = set()
        self.curve_dirty: set[str] = set()
        # ("listed" | "status" | "delisted", market, status, halt_reason), in order
        self.status_changed: list[tuple] = []
        self._class_of = {s: m.instrument.gpu_class
                          for s, m in venue.exchange.markets.items()}
        # The engine's markets, kept here until their delisting is published (a delisted
        # one is gone from the engine by the time the seal describes it).
        self._markets = dict(venue.exchange.markets)
        self._fees_of = venue.house.ledger.fees_of

    def apply(self, events: list) -> Outcome:
        """Take one command's events: histories now, market data at flush, the rest returned."""
        venue = self.venue
        fills, ended, account_fills = venue.fills, venue.ended, venue.account_fills
        market, class_of = self.market, self._class_of
        listening, admin = self.listening, self.admin
        out = Outcome(events, venue)
        touched, accounts = out.touched, out.accounts
        for ev in events:
            kind = type(ev)
            if kind is BookLevelChanged:
                market.append(ev)
                self.curve_dirty.add(class_of[ev.symbol])
            elif kind is Trade:
                maker_fee, taker_fee = self._fees_of(ev)
                account_fills.record(ev, maker_fee, taker_fee)
                fills[ev.maker_order_id] = (fills.get(ev.maker_order_id, b"")
                                            + FILL.pack(ev.trade_id, ev.price, ev.qty, True))
                fills[ev.taker_order_id] = (fills.get(ev.taker_order_id, b"")
                                            + FILL.pack(ev.trade_id, ev.price, ev.qty, False))
                market.append(ev)
                self.curve_dirty.add(class_of[ev.symbol])
                if listening:
                    touched[ev.maker_order_id] = touched[ev.taker_order_id] = None
                    new_fills = out.new_fills
                    for order_id in (ev.maker_order_id, ev.taker_order_id):
                        new_fills[order_id] = new_fills.get(order_id, 0) + 1
                    out.fills.setdefault(ev.maker_account_id, []).append(fill_row(
                        ev.trade_id, ev.maker_order_id, ev.symbol, -ev.aggressor, ev.price,
                        ev.qty, maker_fee, True, ev.ts_ns))
                    out.fills.setdefault(ev.taker_account_id, []).append(fill_row(
                        ev.trade_id, ev.taker_order_id, ev.symbol, ev.aggressor, ev.price,
                        ev.qty, taker_fee, False, ev.ts_ns))
                    accounts.add(ev.maker_account_id)
                    accounts.add(ev.taker_account_id)
            elif kind in ORDER_EVENTS:
                if kind is OrderCancelled:
                    ended[ev.order_id] = ev.reason
                    if ev.reason is CancelReason.USER:
                        out.user_cancels[ev.account_id] = out.user_cancels.get(
                            ev.account_id, 0) + 1
                elif kind is OrderExpired:
                    ended[ev.order_id] = EXPIRED
                elif kind is OrderAccepted:
                    cid = ev.client_order_id
                    if cid is not None and cid.startswith(QUOTE_PREFIX):
                        venue.quotes[(ev.account_id, ev.symbol, int(ev.side),
                                      int(cid.split(":", 2)[1]))] = ev.order_id
                if out.order_event is None and kind in ORDER_OUTCOMES:
                    out.order_event = ev
                if listening:
                    touched[ev.order_id] = None
            elif kind is OrderDuplicate:
                if out.order_event is None:
                    out.order_event = ev
            elif kind is OrderRejected or kind is ClearingRejected:
                if out.refused is None:
                    out.refused = ev
            elif kind is MarksUpdated:
                market.append(ev)
                self.curve_dirty.update(class_of[s] for s in ev.marks)
            elif kind is IndexValue:
                market.append(ev)
                self.index_dirty.add(ev.gpu_class)
            elif kind is IndexFixed:
                self.index_dirty.add(ev.fixing.gpu_class)
            elif kind is Settled:
                market.append(ev)
            elif kind is InstrumentStatusChanged:
                self.status_changed.append(("status", self._markets[ev.symbol], ev.status,
                                            ev.halt_reason))
            elif kind is InstrumentListed:
                self._listed(ev)
            elif kind is InstrumentDelisted:
                gone = self._markets.pop(ev.symbol)
                self.status_changed.append(("delisted", gone, gone.status, None))
                self.curve_dirty.add(class_of.pop(ev.symbol))
                market.append(ev)
                self.flush()        # the feed's symbols follow the listing at once
            elif kind is StripExecuted:
                if ev.client_order_id is not None:
                    venue.strips[(ev.account_id, ev.client_order_id)] = ev
            elif kind is Cascaded:
                if listening:
                    accounts.update(ev.accounts)
            elif kind is InstrumentSettled:      # the last line of its settlement history
                market.append(ev)
            if listening and kind in ACCOUNT_EVENTS:
                accounts.add(ev.account_id)
            if admin and isinstance(ev, ClearingEvent):
                out.admin.append(ev)
        venue.counted()
        return out

    def _listed(self, ev: InstrumentListed) -> None:
        """A new contract: the histories, the feed and the channels take it from now on."""
        venue, symbol = self.venue, ev.symbol
        new = self._markets[symbol] = venue.exchange.markets[symbol]
        self._class_of[symbol] = new.instrument.gpu_class
        venue.account_fills.add(symbol)
        self.status_changed.append(("listed", new, new.status, new.halt_reason))
        self.curve_dirty.add(new.instrument.gpu_class)
        self.market.append(ev)
        self.flush()      # a request later in this turn may ask the feed about it at once

    def flush(self) -> None:
        """Hand this turn's market events to the feed (the seal publishes what they changed).
        Also at once when the listing changes, so the feed's symbols are always the
        exchange's."""
        if self.market:           # emptied in place: apply() holds the list while it runs
            self.feed.apply(self.market)
            self.market.clear()

