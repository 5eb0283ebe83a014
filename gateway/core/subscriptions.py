"""Who listens to what, and the messages each channel sends (PROTOCOL.md "Subscriptions").

Public channels (book, trades, ticker of a symbol; index, curve of a class;
instruments; admin)
are keyed by name, private ones (orders, fills, positions, margin) by account and
name, so every connection of an account hears its updates. A conflatable
channel's current state (a book snapshot, a ticker, an index, a curve) is
built here, once per change however many ask.
"""
from __future__ import annotations

import msgspec

from engine.messages import RejectReason
from gateway.core import codec
from gateway.core.errors import RpcError
from gateway.core.outbox import Outbox

PUBLIC_CHANNELS = ("book", "trades", "ticker")
CLASS_CHANNELS = ("index", "curve")
PRIVATE_CHANNELS = ("orders", "fills", "positions", "margin")
ACCOUNT_CHANNELS = ("positions", "margin")
SNAPSHOT_CHANNELS = ("book.", "ticker.", "index.", "curve.")
TRADING_ROLES = ("trader", "market_maker")

_encode = msgspec.json.Encoder().encode


def notification(channel: str, data) -> bytes:
    return _encode({"jsonrpc": "2.0", "method": "subscription",
                    "params": {"channel": channel, "data": data}})


class Subscriptions:
    """The registry of subscribers and the current state of each channel.

    Args:
        venue: The engine and clearing (for tickers, the index, curves, accounts).
        feed: The market data as published.
        accounts: Configured accounts (their names, for the private account channels).
        max_subscriptions: Per connection.
    """

    def __init__(self, venue, feed, accounts, max_subscriptions: int) -> None:
        self.venue = venue
        self.feed = feed
        self.accounts = accounts
        self.max_subscriptions = max_subscriptions
        self.public: dict[str, set] = {}                 # channel -> sessions
        self.private: dict[tuple[int, str], set] = {}    # (account_id, channel) -> sessions
        self._snapshots: dict[str, tuple[int, bytes]] = {}

    # -- The registry -----------------------------------------------------------

    def subscribe(self, session, channels: list[str], out: Outbox) -> list[str]:
        """Subscribe to all the channels or to none; each conflatable channel and each
        account channel starts with its current state."""
        channels = list(dict.fromkeys(channels))
        keys = [self.key(session, c) for c in channels]
        new = {c for c in channels if c not in session.channels}
        if len(session.channels) + len(new) > self.max_subscriptions:
            raise RpcError(RejectReason.TOO_MANY_SUBSCRIPTIONS, f"at most "
                           f"{self.max_subscriptions} subscriptions per connection",
                           field="channels", limit=self.max_subscriptions)
        # The feed holds what has been published: a snapshot from it lines up with the
        # deltas the next seal sends, which go out after it.
        for channel, key in zip(channels, keys):
            session.channels.add(channel)
            if isinstance(key, tuple):
                self.private.setdefault(key, set()).add(session)
                if channel in ACCOUNT_CHANNELS:
                    out.send(session, notification(channel, self.account_state(
                        channel, session.account)))
                continue
            self.public.setdefault(channel, set()).add(session)
            if channel.startswith(SNAPSHOT_CHANNELS):
                out.current(session, channel, self.current(channel))
        return channels

    def unsubscribe(self, session, channels: list[str]) -> list[str]:
        """Unsubscribe; return the channels that were subscribed (a valid name that was not
        is no error)."""
        for channel in channels:
            self.key(session, channel)
        removed = [c for c in dict.fromkeys(channels) if c in session.channels]
        for channel in removed:
            self.drop(session, channel)
        return removed

    def drop(self, session, channel: str) -> None:
        session.channels.discard(channel)
        if channel in PRIVATE_CHANNELS:
            table, key = self.private, (session.account_id, channel)
        else:
            table, key = self.public, channel
        subscribers = table.get(key)
        if subscribers is not None:
            subscribers.discard(session)
            if not subscribers:
                del table[key]

    def drop_all(self, session) -> None:
        for channel in list(session.channels):
            self.drop(session, channel)

    def key(self, session, channel: str) -> str | tuple[int, str]:
        """Check a channel name; return its key in ``public`` or ``private``."""
        if channel in PRIVATE_CHANNELS:
            if session.account is None:
                raise RpcError(RejectReason.UNAUTHENTICATED, f"channel {channel} needs "
                               f"auth.login first", field="channels")
            if session.role not in TRADING_ROLES:
                raise RpcError(RejectReason.FORBIDDEN, f"role {session.role} has no {channel}",
                               field="channels")
            return (session.account_id, channel)
        if channel == "instruments":
            return channel
        if channel == "admin":
            if session.role != "admin":
                raise RpcError(RejectReason.UNAUTHENTICATED if session.account is None
                               else RejectReason.FORBIDDEN,
                               "channel admin is for the admin role", field="channels")
            return channel
        kind, _, name = channel.partition(".")
        if kind in PUBLIC_CHANNELS and name:
            if name not in self.feed.symbols:
                raise RpcError(RejectReason.UNKNOWN_INSTRUMENT, f"{name[:40]!r} is not listed",
                               field="channels")
            return channel
        if kind in CLASS_CHANNELS and name:
            if name not in self.venue.house.index:
                raise RpcError(RejectReason.UNKNOWN_GPU_CLASS, f"{name[:12]!r} is not a listed "
                               f"GPU class", field="channels")
            return channel
        raise RpcError(RejectReason.UNKNOWN_CHANNEL, f"no channel {channel[:64]!r}; channels "
                       "are book.{symbol}, trades.{symbol}, ticker.{symbol}, "
                       "index.{gpu_class}, curve.{gpu_class}, instruments, orders, fills, "
                       "positions, margin and admin", field="channels")

    def listening(self) -> tuple[bool, bool]:
        """(someone has a private channel, someone has the admin channel)."""
        return bool(self.private), bool(self.public.get("admin"))

    # -- What channels send -------------------------------------------------------

    def account_state(self, channel: str, account) -> object:
        """The data of a positions or margin message: as account.positions / account.summary."""
        house = self.venue.house
        if channel == "positions":
            return codec.positions_view(house, account.account_id)
        return codec.summary_view(house, account)

    def current(self, channel: str) -> bytes:
        """The current state of a conflatable channel, encoded. Book snapshots are encoded
        once per book seq, however many clients ask."""
        kind, _, name = channel.partition(".")
        venue, feed = self.venue, self.feed
        if kind == "index":
            return notification(channel, codec.index_view(venue.house.index[name],
                                                          venue.last_ts))
        if kind == "curve":
            return notification(channel, codec.curve_view(venue, feed, name))
        if kind == "ticker":
            return notification(channel, codec.ticker_view(venue, feed, name))
        book = feed.symbols[name].book
        cached = self._snapshots.get(name)
        if cached is None or cached[0] != book.seq:
            cached = self._snapshots[name] = (book.seq, notification(channel, book.snapshot()))
        return cached[1]

    def publish_current(self, channel: str, out: Outbox) -> None:
        """A conflatable channel's current state to its subscribers, if it has any."""
        subscribers = self.public.get(channel)
        if subscribers:
            frame = self.current(channel)
            for s in subscribers:
                out.latest(s, channel, frame)

    def publish_feed(self, out: Outbox) -> None:
        """The feed's messages of this turn (book deltas, trades) to their subscribers."""
        public = self.public
        for channel, data in self.feed.seal(public):
            subscribers = public[channel]
            if subscribers:
                frame = notification(channel, data)
                if channel.startswith("book."):
                    for s in subscribers:
                        out.latest(s, channel, frame)
                else:
                    for s in subscribers:
                        out.send(s, frame)

    def publish_private(self, outcome, out: Outbox) -> None:
        """A command's private updates: orders it touched, new fills with their fees, and
        the positions and margin of the accounts it may have moved."""
        private = self.private
        for order_id in outcome.touched:
            subscribers = private.get((self.venue.exchange.order(order_id).account_id,
                                       "orders"))
            if subscribers:
                view = outcome.view(order_id)      # with this command's fills only
                added = outcome.new_fills.get(order_id, 0)
                view = msgspec.structs.replace(view, fills=view.fills[len(view.fills) - added:]
                                               if added else [])
                frame = notification("orders", view)
                for s in subscribers:
                    out.send(s, frame)
        for account_id, fills in outcome.fills.items():
            subscribers = private.get((account_id, "fills"))
            if subscribers:
                frame = notification("fills", fills)
                for s in subscribers:
                    out.send(s, frame)
        for account_id in sorted(outcome.accounts):
            for channel in ACCOUNT_CHANNELS:
                subscribers = private.get((account_id, channel))
                if subscribers:
                    frame = notification(channel, self.account_state(
                        channel, self.accounts.by_id[account_id]))
                    for s in subscribers:
                        out.send(s, frame)

    def publish_status(self, changes, out: Outbox) -> None:
        """The instruments channel (PROTOCOL 1.1): each listing, status change and delisting,
        in order, with the instrument as market.instruments shows it and its status then."""
        subscribers = self.public.get("instruments")
        if not subscribers:
            return
        for kind, market, status, halt_reason in changes:
            instrument = codec.instrument_view(market)
            instrument["status"] = codec.STATUS_NAMES[status]
            instrument["halt_reason"] = halt_reason
            frame = notification("instruments", {"type": kind, "instrument": instrument})
            for s in subscribers:
                out.send(s, frame)

    def publish_admin(self, events: list, name_of, out: Outbox) -> None:
        """What operations watch (margin calls, liquidations, defaults...) to the admin channel."""
        admins = self.public.get("admin")
        if not admins:
            return
        for ev in events:
            data = codec.admin_view(ev, name_of)
            if data is not None:
                frame = notification("admin", data)
                for s in admins:
                    out.send(s, frame)
