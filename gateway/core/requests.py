"""The request core: frames in, commands through the venue, an outbox of replies and
updates out. No sockets, no event loop, no clock of its own.

``handle(session, frame, now)`` decodes a frame, charges its rate limit, checks
the role, runs the method (gateway.core.methods) and queues the reply in the
outbox ahead of the updates the request caused; it returns the reply, the
commands the request ran and the effects the adapter must carry out. Every
command goes through ``submit``: the journal, the venue, then the projection,
whose private updates are queued at once. ``seal`` ends a turn: the feed
publishes what the turn changed and the outbox is handed over, to be released
by the adapter once the journal holds the turn's commands.
"""
from __future__ import annotations

import logging
import math
import time
from typing import NamedTuple

import msgspec

from engine.messages import (
    CancelOrder, CancelReason, InstrumentStatus, RejectReason, SetInstrumentStatus,
)
from gateway.core import codec, schema
from gateway.core.auth import HOUSE_ACCOUNTS
from gateway.core.effects import CLOSE_POLICY, CLOSE_TOO_BIG
from gateway.core.errors import RpcError, RpcReason
from gateway.core.jsonkeys import duplicate_key
from gateway.core.limits import ORDER, REQUEST, TokenBucket
from gateway.core.methods import METHODS
from gateway.core.outbox import Outbox
from gateway.core.promises import GuardOrders, LoginSeen, SessionClosed, Unguard
from gateway.core.projection import Outcome, Projection
from gateway.core.session import SessionState
from gateway.core.venue import Failed
from gateway.core.subscriptions import Subscriptions

log = logging.getLogger("gpux.gateway")

_encode = msgspec.json.Encoder().encode
# What an account's connections draw on together, beside their own buckets.
ACCOUNT_BUCKETS = {ORDER: "account_orders", REQUEST: "account_requests"}


class Oversized(NamedTuple):
    """A frame past the limit, by its size alone (a cluster's gateway does not send on what
    the leader would refuse unread)."""
    size: int


class Handled(msgspec.Struct):
    """What one request did: its encoded reply (also queued in the outbox), the commands
    it ran, in order, and what the adapter must do besides sending."""
    reply: bytes
    commands: list
    effects: list


class Core:
    """The exchange's request core (see the module doc).

    Args:
        venue: The engine and clearing, with its clock.
        feed: The market data as published.
        accounts: The configured accounts (gateway.core.auth.Accounts).
        limits: The server's limits.
        journal: ``append(cmd) -> seq`` and ``next_seq``; the adapter makes it durable.
        digest: ``() -> bytes``, the state digest admin.state reports.
        wall_clock: Nanoseconds since the epoch, for login timestamps.
    """

    def __init__(self, venue, feed, accounts, limits, journal, digest=lambda: b"",
                 wall_clock=time.time_ns) -> None:
        self.wall_clock = wall_clock
        self.venue = venue
        self.house = venue.house
        self.feed = feed
        self.accounts = accounts
        self.limits = limits
        self.journal = journal
        self.digest = digest
        self.snapshot_seq = 0                  # the adapter's newest snapshot
        self.projection = Projection(venue, feed)
        self.subscriptions = Subscriptions(venue, feed, accounts, limits.max_subscriptions)
        self.account_buckets: dict[tuple[int, str], TokenBucket] = {}
        self.out = Outbox()
        self._commands: list | None = None     # the current request's, while it runs
        self._effects: list = []
        venue.record = journal.append

    # -- Sessions ---------------------------------------------------------------

    def open(self, conn_id: int, now: float, transport=None) -> SessionState:
        return SessionState(conn_id, self.limits, now, transport)

    def disconnected(self, session: SessionState) -> None:
        """The connection is gone: its subscriptions end and, if it asked, the orders it
        answers for are cancelled (reason ``disconnect``)."""
        self.subscriptions.drop_all(session)
        if session.guard:
            self._close_guard(session.guard)
            session.guard = 0

    def _close_guard(self, guard_id: int) -> None:
        """End a guarded session: if cancel-on-disconnect is on, each open order it answers
        for is cancelled by a command of its own (one that raises halts its instrument, and
        the others go on), then the guard is dropped."""
        venue = self.venue
        account_id, orders = venue.promises.to_cancel(guard_id, venue.exchange)
        for order_id in orders:
            try:
                self.submit(CancelOrder(ts_ns=venue.now(), account_id=account_id,
                                        order_id=order_id, reason=CancelReason.DISCONNECT))
            except RpcError as exc:      # logged, its instrument halted (_failed)
                log.error("cancel-on-disconnect of order %d failed: %s", order_id, exc)
        self.submit(SessionClosed(ts_ns=venue.now(), session=guard_id))

    def guard(self, session: SessionState, enabled: bool) -> None:
        """Cancel-on-disconnect on or off (session.cancel_on_disconnect). On, the guard
        holds every order the session placed, before too; off, it holds them idle."""
        if enabled == session.cancel_on_disconnect:
            return
        session.cancel_on_disconnect = enabled
        if enabled:
            if session.owed or session.guard:
                self._pay_guard(session)
        elif session.guard:
            self.submit(Unguard(ts_ns=self.venue.now(), session=session.guard))

    def _pay_guard(self, session: SessionState) -> None:
        """Journal, in one command, the orders the session placed that its guard does not
        hold yet (and that it is on again); the first names the guard by its own seq.
        Closed ones among them cost a few bytes each; the guard forgets them in time."""
        owed, session.owed = session.owed, []
        if not session.guard:
            session.guard = self.journal.next_seq
        self.submit(GuardOrders(ts_ns=self.venue.now(), session=session.guard,
                                account_id=session.account_id, orders=tuple(sorted(owed))))

    def end_cut_off_sessions(self) -> int:
        """At a start: end the guarded sessions a crash cut off (their orders are cancelled
        as their disconnect would have); return how many."""
        guards = sorted(self.venue.promises.guards)
        for guard in guards:
            self._close_guard(guard)
        return len(guards)

    # -- Requests ---------------------------------------------------------------

    def handle(self, session: SessionState, frame: str | bytes, now: float) -> Handled:
        """Handle one request frame completely; its reply goes in the outbox. A session
        whose close is queued (flooding, a frame too large) is not read any more: frames
        pipelined behind the one that closed it get nothing."""
        if session.closing:
            return Handled(b"", [], [])
        session.last_rx = now
        out = self.out
        self._commands, self._effects = [], []
        oversized = type(frame) is Oversized
        size = frame.size if oversized else len(frame) \
            if isinstance(frame, bytes) or frame.isascii() \
            else len(frame.encode("utf-8", "surrogatepass"))
        if size > self.limits.max_frame_bytes or oversized:
            reply = self._reply(session, None, None, RpcError(
                RejectReason.FRAME_TOO_LARGE, f"the frame is {size} bytes; the limit is "
                f"{self.limits.max_frame_bytes}"))
            out.reply(session, reply)
            out.close(session, CLOSE_TOO_BIG, "frame too large")
            return self._handled(reply)
        request_id = method_name = None
        mark = len(out)            # the reply goes before the updates the request caused
        try:
            try:
                request = _decode(frame)
            except RpcError:
                self._rate_limit(session, REQUEST, now)   # an unreadable frame costs one too
                raise
            request_id, method_name = request.id, request.method
            method = METHODS.get(method_name)
            self._rate_limit(session, method.category if method else REQUEST, now)
            if method is None:
                raise RpcError(RpcReason.METHOD_NOT_FOUND, f"no method {method_name[:64]!r}",
                               field="method")
            if method.roles is not None:
                if session.account is None:
                    raise RpcError(RejectReason.UNAUTHENTICATED,
                                   f"{method_name} needs auth.login first")
                if session.role not in method.roles:
                    raise RpcError(RejectReason.FORBIDDEN, f"role {session.role} may not "
                                   f"call {method_name}")
            params = codec.decode_params(request.params, method.params)
            result = method.handler(self, session, params)
        except RpcError as exc:
            reply = self._reply(session, request_id, None, exc)
        except Exception:
            # Not the frame: a login's would put its key and signature in the log.
            log.exception("%s (id %r) failed", method_name, request_id)
            reply = self._reply(session, request_id, None,
                                RpcError(RpcReason.INTERNAL_ERROR, "internal error"))
        else:
            reply = self._reply(session, request_id, result, None)
        if session.owed and session.cancel_on_disconnect:
            self._pay_guard(session)
        out.insert(mark, session, reply)
        return self._handled(reply)

    def _reply(self, session, request_id, result, error: RpcError | None) -> bytes:
        if error is None:
            return _encode({"jsonrpc": "2.0", "id": request_id, "result": result})
        if request_id is None:     # an invalid request may still have a readable id
            request_id = getattr(error, "request_id", None)
        return _encode({"jsonrpc": "2.0", "id": request_id, "error": error.to_wire()})

    def _handled(self, reply: bytes) -> Handled:
        handled = Handled(reply, self._commands, self._effects)
        self._commands, self._effects = None, []
        return handled

    def charge(self, session: SessionState, n: int, category: str = REQUEST) -> None:
        """Charge a request ``n`` more tokens of its category (an answer as big as many, a
        subscription to many channels), or raise rate_limited having charged none."""
        self._rate_limit(session, category, session.last_rx, n)

    def _rate_limit(self, session: SessionState, category: str, now: float, n: int = 1) -> None:
        """Charge ``n`` tokens of the category (orders and requests: the account's bucket
        too), or raise rate_limited having charged none; too many refusals in a row close
        the connection."""
        wait = session.buckets[category].take(now, n)
        if wait == 0.0 and category in ACCOUNT_BUCKETS and session.account is not None:
            bucket = self._account_bucket(session.account_id, session.role_limits,
                                          ACCOUNT_BUCKETS[category], now)
            wait = bucket.take(now, n)
            if wait:
                session.buckets[category].give_back(n)
        if wait == 0.0:
            session.strikes = 0
            return
        if wait == math.inf:          # more than the bucket ever holds: no wait will do
            raise RpcError(RejectReason.RATE_LIMITED, f"{n} {category} in one request are more "
                           "than the rate limit ever allows at once; send fewer")
        session.strikes += 1
        if session.strikes >= self.limits.flood_strikes:
            self.out.close(session, CLOSE_POLICY, "flooding: rate limit exceeded repeatedly")
        retry_ms = math.ceil(wait * 1000)
        raise RpcError(RejectReason.RATE_LIMITED, f"too many {category}; retry after "
                       f"{retry_ms} ms", retry_after_ms=retry_ms)

    def _account_bucket(self, account_id: int, role_limits, name: str,
                        now: float) -> TokenBucket:
        """The account's bucket ``name`` of its role's limits, shared by its connections."""
        key = (account_id, name)
        bucket = self.account_buckets.get(key)
        if bucket is None:
            bucket = self.account_buckets[key] = TokenBucket(getattr(role_limits, name), now)
        return bucket

    def charge_orders(self, session: SessionState, n: int, field: str) -> None:
        """Charge ``n`` more order tokens for a request that holds several orders (its own
        token is charged already).

        Raises:
            RpcError: rate_limited; invalid_params when the role's bursts could never hold
                that many at once.
        """
        spec = session.role_limits
        most = min(spec.orders.burst, spec.account_orders.burst)
        if n + 1 > most:
            raise RpcError(RejectReason.INVALID_PARAMS, f"{n + 1} orders in one request; role "
                           f"{session.role} may send at most {most} at once", field=field)
        if n > 0:
            self._rate_limit(session, ORDER, session.last_rx, n)

    # -- What methods use ---------------------------------------------------------

    def effect(self, effect) -> None:
        self._effects.append(effect)

    def login(self, session: SessionState, p: schema.Login) -> dict:
        if session.account is not None:
            raise RpcError(RejectReason.ALREADY_LOGGED_IN, f"the session is logged in as "
                           f"{session.account.account}")
        accounts, now_ms = self.accounts, self.wall_clock() // codec.NS_PER_MS
        account = accounts.login(p.api_key, p.timestamp, p.nonce, p.signature, now_ms,
                                 self.venue.promises.nonce_used)
        # After the signature check: no one without the secret can spend an account's logins.
        wait = self._account_bucket(account.account_id, self.limits.for_role(account.role),
                                    "account_logins", session.last_rx).take(session.last_rx)
        if wait:
            retry_ms = math.ceil(wait * 1000)
            raise RpcError(RejectReason.RATE_LIMITED, f"too many logins of this account; "
                           f"retry after {retry_ms} ms", retry_after_ms=retry_ms)
        self.submit(LoginSeen(ts_ns=self.venue.now(), account_id=account.account_id,
                              nonce=str(p.nonce), at_ms=now_ms,
                              until_ms=p.timestamp + accounts.window_ms))
        session.logged_in(account, session.last_rx)
        return {"account": account.account, "role": account.role,
                "account_id": account.account_id}

    def market(self, symbol: str):
        """Return the listed instrument's Market, or raise unknown_instrument."""
        market = self.venue.exchange.markets.get(symbol)
        if market is None:
            raise RpcError(RejectReason.UNKNOWN_INSTRUMENT, f"{symbol[:40]!r} is not listed",
                           field="symbol")
        return market

    def remember(self, session: SessionState, order_id: int) -> None:
        """The session placed this order (cancel-on-disconnect's list)."""
        session.remember(order_id, self.venue.exchange.orders)

    def account_name(self, account_id: int) -> str:
        """The name of an account, or of one of the house's own (the insurance fund)."""
        account = self.accounts.by_id.get(account_id)
        if account is not None:
            return account.account
        return next((a.account for a in HOUSE_ACCOUNTS.values() if a.account_id == account_id),
                    str(account_id))

    def state(self) -> dict:
        """The last journaled seq and the digest of the state after it (admin.state)."""
        self._publish_market(self.out)        # the feed holds every command's events
        return {"seq": self.journal.next_seq - 1, "state_hash": self.digest().hex(),
                "snapshot_seq": self.snapshot_seq}

    # -- Commands -----------------------------------------------------------------

    def submit(self, cmd) -> Outcome:
        """Run a command; its private updates are queued now, its market data at seal.

        An exception from the engine is a bug: the instrument is halted so it
        cannot trade on a state that may be wrong, and the request gets
        internal_error.
        """
        if self._commands is not None:
            self._commands.append(cmd)
        journaled_at = self.journal.next_seq
        try:
            events = self.venue.process(cmd)
        except Exception:
            self._failed(cmd, journaled_at)
        projection = self.projection
        projection.listening, projection.admin = self.subscriptions.listening()
        outcome = projection.apply(events)
        if projection.listening:
            self.subscriptions.publish_private(outcome, self.out)
        if outcome.admin:
            self.subscriptions.publish_admin(outcome.admin, self.account_name, self.out)
        return outcome

    def _failed(self, cmd, journaled_at: int):
        log.exception("engine failed on %r", cmd)
        self._mark_failed(journaled_at)
        symbol = self._symbol_of(cmd)
        if symbol is None:
            raise RpcError(RpcReason.INTERNAL_ERROR, "internal error") from None
        halted_at = self.journal.next_seq
        try:
            events = self.venue.process(SetInstrumentStatus(
                ts_ns=self.venue.now(), symbol=symbol, status=InstrumentStatus.HALTED,
                reason=f"internal error on {type(cmd).__name__}; operations are looking"))
        except Exception:
            log.exception("halting %s failed too", symbol)
            self._mark_failed(halted_at)
            raise RpcError(RpcReason.INTERNAL_ERROR, "internal error") from None
        self.projection.apply(events)
        raise RpcError(RpcReason.INTERNAL_ERROR, f"internal error; {symbol} is halted") from None

    def _mark_failed(self, seq: int) -> None:
        """The command journaled at ``seq`` raised: a replay must see it raise too."""
        if self.journal.next_seq > seq:
            self.journal.append(Failed(seq=seq))

    def _symbol_of(self, cmd) -> str | None:
        """The instrument a failed command was about, to halt it."""
        exchange = self.venue.exchange
        symbol = getattr(cmd, "symbol", None)
        if symbol is None and getattr(cmd, "order_id", None) is not None:
            order = exchange.order(cmd.order_id)
            symbol = order.symbol if order is not None else None
        if symbol is None and getattr(cmd, "client_order_id", None) is not None:
            order = exchange.order_by_client_id(cmd.account_id, cmd.client_order_id)
            symbol = order.symbol if order is not None else None
        return symbol if symbol in exchange.markets else None

    # -- Turns --------------------------------------------------------------------

    def resync(self, session: SessionState, channels) -> None:
        """A connection whose streams were conflated has caught up: their current state."""
        subscriptions = self.subscriptions
        for channel in sorted(channels):
            if channel in session.channels:
                self.out.current(session, channel, subscriptions.current(channel))

    def tick(self) -> None:
        """Tickers and curves that changed since the last tick (at most every 100 ms), as the
        feed has published them."""
        projection, subscriptions, out = self.projection, self.subscriptions, self.out
        curves, projection.curve_dirty = projection.curve_dirty, set()
        for gpu_class in sorted(curves):
            subscriptions.publish_current(f"curve.{gpu_class}", out)
        dirty, self.feed.ticker_dirty = self.feed.ticker_dirty, set()
        for symbol in dirty:
            subscriptions.publish_current(f"ticker.{symbol}", out)

    def _publish_market(self, out: Outbox) -> None:
        """The feed takes the events so far and their book and trade messages go in the
        outbox at once: a snapshot built after this lines up with the deltas before it."""
        self.projection.flush()
        self.subscriptions.publish_feed(out)

    def seal(self) -> Outbox:
        """End the turn: publish what it changed and hand over its outbox."""
        projection, subscriptions = self.projection, self.subscriptions
        out = self.out
        self._publish_market(out)
        if projection.index_dirty:
            classes, projection.index_dirty = projection.index_dirty, set()
            for gpu_class in sorted(classes):
                subscriptions.publish_current(f"index.{gpu_class}", out)
        if projection.status_changed:
            changes, projection.status_changed = projection.status_changed, []
            subscriptions.publish_status(changes, out)
        self.out = Outbox()
        return out


def _decode(frame: str | bytes) -> schema.Request:
    try:
        if type(frame) is not str and not frame.isascii():
            frame.decode()               # picows hands text frames over unchecked
        request = msgspec.json.decode(frame, type=schema.Request)
        repeated = duplicate_key(frame)         # the decoder takes the last of a key
        if repeated is not None:
            key, id_repeats = repeated
            error = RpcError(RpcReason.INVALID_REQUEST, f"the key {key[:64]!r} appears twice "
                             "in one object")
            error.request_id = None if id_repeats else request.id
            raise error
        return request
    except msgspec.ValidationError as exc:
        text = frame.lstrip()[:1]
        if text in ("[", b"["):
            raise RpcError(RpcReason.BATCH_NOT_SUPPORTED, "batch requests are not supported: "
                           "send one request per frame") from None
        error = RpcError(RpcReason.INVALID_REQUEST, f"not a JSON-RPC 2.0 request: {exc}")
        error.request_id = _readable_id(frame)
        raise error from None
    except msgspec.DecodeError as exc:
        raise RpcError(RpcReason.PARSE_ERROR, f"the frame is not valid JSON: {exc}") from None
    except UnicodeError:        # bytes not UTF-8, or a lone surrogate (in-process only)
        error = RpcError(RpcReason.PARSE_ERROR, "the frame is not valid UTF-8")
        error.request_id = _readable_id(frame)
        raise error from None
    except RecursionError:        # nested past the decoder's depth: the id is out of reach too
        raise RpcError(RpcReason.INVALID_REQUEST, "the request is nested too deeply") from None


def _readable_id(frame: str | bytes):
    """The id of a request that could not be taken, if it can be read at all and is the
    only one (a repeated id could be either)."""
    try:
        request_id = msgspec.json.decode(frame, type=schema.RequestId).id
        repeated = duplicate_key(frame)
    except (msgspec.DecodeError, UnicodeError, RecursionError):
        return None
    return None if repeated is not None and repeated[1] else request_id
