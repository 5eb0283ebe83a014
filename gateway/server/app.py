"""The websocket server: sessions in, engine commands through, replies and market data out.

One event loop (uvloop) and one writer of the engine: each frame is decoded,
checked and run to completion synchronously, so no lock is needed and the
order of commands is the order frames were read. What a turn of the loop
produces (replies, private updates, market data) is collected and released
together by ``seal``: market data is built once per turn per symbol and
encoded once per message, and each connection's writer sends its share in
one write.

``seal`` first commits the journal (the group commit: one write and one
fdatasync for the turn's commands), so nothing a command caused reaches
anyone before the command is on disk. The ticker, the only output not made
by a seal, commits first too. On start the state is recovered from the data
directory (gateway.storage.recovery); snapshots are written by a forked child.
"""
from __future__ import annotations

import asyncio
import datetime
import logging
import math
import os
import signal
import socket
import time
from pathlib import Path

import msgspec
import websockets
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request as HttpRequest

from clearing.house import utc_date
from clearing.messages import (
    ClearingEvent, CollateralMoved, FixIndex, IndexFixed, IndexValue, Liquidation, MarginCall,
    MarkStep, MarksUpdated, Settle,
)
from engine.contracts import date_to_ns
from engine.messages import (
    BookLevelChanged, CancelOrder, CancelReason, InstrumentStatus, OrderAccepted,
    OrderCancelled, OrderExpired, OrderReduced, OrderReplaced, OrderTriggered, RejectReason,
    SetInstrumentStatus, Side, Timer, Trade,
)
from gateway.core import codec, methods, schema
from gateway.core.auth import Accounts, demo_accounts
from gateway.config import Config
from gateway.core.errors import RpcError
from gateway.storage.journal import Failed, JournalError
from gateway.core.limits import TokenBucket
from gateway.core.auth import HOUSE_ACCOUNTS
from gateway.core.methods import METHODS
from gateway.demo.participants import Demo, levels_of
from gateway.storage.recovery import (
    build, check_listing, funding, listing_date, lock_data_dir, open_journal, recover,
    snapshot_dir, state_digest,
)
from gateway.storage.snapshots import Background, prune_snapshots, write_snapshot
from gateway.server.session import (
    CLOSE_HEARTBEAT_TIMEOUT, CLOSE_POLICY, CLOSE_TOO_BIG, ORDER, PLACED_PRUNE, REQUEST,
    BatchingConnection, Session,
)
from gateway.web.pages import StaticPages

log = logging.getLogger("gpux.gateway")

WS_PATH = "/ws"
TICKER_INTERVAL_S = 0.1
TIMER_INTERVAL_S = 1.0
NS_PER_DAY = 86_400 * 10**9
PUBLIC_CHANNELS = ("book", "trades", "ticker")
CLASS_CHANNELS = ("index", "curve")
PRIVATE_CHANNELS = ("orders", "fills", "positions", "margin")
ORDER_EVENTS = (OrderAccepted, OrderCancelled, OrderReplaced, OrderExpired, OrderTriggered,
                OrderReduced)
HEARTBEAT = msgspec.json.encode({"jsonrpc": "2.0", "method": "heartbeat",
                                 "params": {"type": "test_request"}})


class Server:
    """The exchange behind a websocket endpoint.

    Args:
        config: Products, accounts, limits and durability (gateway.config).
        data_dir: The demo accounts, the journal and the snapshots.
        as_of: The listing date of a new data directory; default the config's, else
            today (UTC). A directory keeps the date it was first started with.
        clock: Nanoseconds since the epoch; tests pass their own.

    Raises:
        DataDirBusy: another server is running on ``data_dir``.
        ConfigError: ``as_of`` differs from the data directory's listing date.
        JournalError: the journal is damaged other than at its very end.
    """

    def __init__(self, config: Config, data_dir: Path, *, as_of: datetime.date | None = None,
                 clock=time.time_ns) -> None:
        self.config = config
        self.limits = config.limits
        self.data_dir = data_dir
        self.lock = lock_data_dir(data_dir)
        try:
            self._recover(as_of, clock)
        except BaseException:
            if getattr(self, "journal", None) is not None:
                self.journal.close(commit=False)
            os.close(self.lock)
            raise
        self._snapshot_seq = self.recovered.snapshot_seq
        self._snapshot_at = 0.0                 # loop time of the last snapshot started
        self._background = Background()
        self.sessions: set[Session] = set()
        self.subscribers: dict[str, set[Session]] = {}
        self.private: dict[tuple[int, str], set[Session]] = {}
        self.account_buckets: dict[int, TokenBucket] = {}
        self._encode = msgspec.json.Encoder().encode
        self._out: list[tuple[Session, bytes]] = []
        self._events: list = []
        self._resync: set[Session] = set()
        self._to_close: list[tuple[Session, int, str]] = []
        self._flushes: list[Session] = []
        self._snapshots: dict[str, tuple[int, bytes]] = {}
        self._class_of = {i.symbol: i.gpu_class for i in self.instruments}
        self._curve_dirty: set[str] = set()
        self._seal_scheduled = False
        self._next_conn = 1
        self._ws_server = None
        self._tasks: list[asyncio.Task] = []
        self.pages = StaticPages()
        self.port: int | None = None

    def _recover(self, as_of: datetime.date | None, clock) -> None:
        """The state from the data directory (or a new exchange), with its journal open."""
        config, data_dir = self.config, self.data_dir
        self.account_list = list(config.account) or demo_accounts(data_dir)
        self.accounts = Accounts(self.account_list, config.limits.login_window_s * 1000)
        as_of = listing_date(data_dir, as_of or config.server.as_of)
        accounts = list(self.accounts.by_id.values())
        self.recovered = recover(data_dir, lambda: build(config, as_of, accounts, clock))
        self.venue, self.feed = self.recovered.venue, self.recovered.feed
        check_listing(self.venue, config, as_of)
        self.venue.clock = clock
        self.house = self.venue.house
        self.instruments = [m.instrument for m in self.venue.exchange.markets.values()]
        self.journal = open_journal(data_dir, config, self.recovered.seq + 1)
        self.venue.record = self.journal.append
        if self.journal.next_seq == 1:          # a new exchange: the configured funding
            for deposit in funding(accounts, self.venue.now(),
                                   config.clearing.insurance_fund):
                self.venue.process(deposit)
            self.journal.commit()

    # -- Lifecycle ------------------------------------------------------------------

    async def start(self, host: str | None = None, port: int | None = None) -> None:
        """Listen (port 0 picks a free port; ``self.port`` says which) and start the timers."""
        host = host if host is not None else self.config.server.host
        port = port if port is not None else self.config.server.port
        self.loop = asyncio.get_running_loop()
        self._ws_server = await websockets.serve(
            self._connection, host, port, create_connection=BatchingConnection,
            process_request=self._route, compression=None,
            max_size=self.limits.max_frame_bytes * 4, max_queue=4, close_timeout=2,
            ping_interval=20, ping_timeout=20)
        self.port = self._ws_server.sockets[0].getsockname()[1]
        self._snapshot_at = self.loop.time()
        self._tasks = [self.loop.create_task(self._tick_tickers()),
                       self.loop.create_task(self._tick_timers())]

    def local_url(self, host: str | None = None) -> str:
        """The websocket URL a client on this machine reaches the server at."""
        host = host if host is not None else self.config.server.host
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"ws://{host}:{self.port}{WS_PATH}"

    async def stop(self) -> None:
        """Stop listening, close every connection (code 1001), stop the timers, and leave a
        snapshot of the final state beside the journal."""
        for task in self._tasks:
            task.cancel()
        if self._ws_server is not None:
            self._ws_server.close(close_connections=True)
            await self._ws_server.wait_closed()
        self.close()

    def close(self) -> None:
        """Commit, write a snapshot in this process (a clean shutdown's) and close the journal."""
        if self.journal.closed:
            return
        self.seal()             # what is pending reaches the journal and the feed
        self._background.wait()
        try:
            if self.journal.committed_seq > self._snapshot_seq:
                seq = self.journal.committed_seq
                write_snapshot(snapshot_dir(self.data_dir), seq, (self.venue, self.feed),
                               state_digest(self.venue, self.feed))
                self._snapshot_done(seq)
        except Exception:
            log.exception("the shutdown snapshot failed; the journal holds everything")
        finally:
            self.journal.close()
            os.close(self.lock)

    # -- Durability -----------------------------------------------------------------

    def _commit(self) -> None:
        """The group commit: what ran since the last one is on disk when this returns.

        A journal that cannot be written leaves no safe way on: the process stops
        at once, so nothing that is not on disk is ever acknowledged.
        """
        try:
            self.journal.commit()
        except JournalError as exc:
            log.critical("the journal cannot be written, stopping: %s", exc)
            logging.shutdown()
            os._exit(70)

    def state(self) -> dict:
        """The last committed seq and the state digest (admin.state; equal to a replay's)."""
        self.seal()
        return {"seq": self.journal.committed_seq,
                "state_hash": state_digest(self.venue, self.feed).hex(),
                "snapshot_seq": self._snapshot_seq}

    def _maybe_snapshot(self) -> None:
        """Start a background snapshot when the interval or the command count says so."""
        done = self._background.poll()
        if done is not None:
            if done:
                self._snapshot_done(self._background.seq)
            else:
                log.error("the snapshot after seq %d failed; the journal is kept",
                          self._background.seq)
        if self._background.pid is not None:
            return
        params = self.config.journal
        new = self.journal.next_seq - 1 - self._snapshot_seq
        if new <= 0 or (new < params.snapshot_every
                        and self.loop.time() - self._snapshot_at < params.snapshot_interval_s):
            return
        # The child's state must be exactly the journal's up to seq, the feed included:
        # the seal commits and applies this turn's events to the feed.
        self.seal()
        self._snapshot_at = self.loop.time()
        self._background.start(snapshot_dir(self.data_dir), self.journal.committed_seq,
                               (self.venue, self.feed),
                               lambda state: state_digest(*state))

    def _snapshot_done(self, seq: int) -> None:
        self._snapshot_seq = max(self._snapshot_seq, seq)
        oldest = prune_snapshots(snapshot_dir(self.data_dir), self.config.journal.keep_snapshots)
        if self.config.journal.prune and oldest is not None:
            self.journal.prune(oldest)

    def _route(self, connection: ServerConnection, request: HttpRequest):
        """A websocket handshake on /ws goes on; a plain GET gets the market page's files."""
        upgrade = any(v.strip().lower() == "websocket"
                      for v in request.headers.get_all("Upgrade"))   # the header may repeat
        if request.path.split("?", 1)[0] == WS_PATH:
            return None         # without an upgrade, websockets answers 426 itself
        if upgrade:
            return connection.respond(404, f"gpux: the websocket endpoint is {WS_PATH}\n")
        return self.pages.respond(connection, request)

    async def _connection(self, ws: ServerConnection) -> None:
        if self.limits.socket_send_buffer:
            sock = ws.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.limits.socket_send_buffer)
        session = Session(ws, self._next_conn, self.limits, self.loop.time(),
                          self._wants_flush, self._wants_snapshot)
        self._next_conn += 1
        self.sessions.add(session)
        writer = self.loop.create_task(session.writer())
        try:
            async for frame in ws:
                self.on_frame(session, frame)
                if session.closing is not None:
                    break
        except websockets.ConnectionClosed:
            pass
        finally:
            try:
                self._disconnected(session)
            finally:
                if not writer.done():
                    session.close(1000, "")
                    await asyncio.wait([writer], timeout=3)
                    writer.cancel()

    def _disconnected(self, session: Session) -> None:
        self.sessions.discard(session)
        for channel in list(session.channels):
            self._drop_subscription(session, channel)
        if session.heartbeat_task is not None:
            session.heartbeat_task.cancel()
        account_id = session.account_id
        if session.cancel_on_disconnect and account_id is not None:
            for order_id in sorted(session.placed):
                order = self.venue.exchange.order(order_id)
                if order is not None and order.closed_ns is None:
                    self.submit(CancelOrder(ts_ns=self.venue.now(), account_id=account_id,
                                            order_id=order_id, reason=CancelReason.DISCONNECT))

    # -- Frames in ------------------------------------------------------------------

    def on_frame(self, session: Session, frame: str | bytes) -> None:
        """Handle one request frame completely; its response is released by the next seal."""
        session.last_rx = self.loop.time()
        size = len(frame) if isinstance(frame, bytes) or frame.isascii() else len(frame.encode())
        if size > self.limits.max_frame_bytes:
            self._error(session, None, RpcError(
                RejectReason.FRAME_TOO_LARGE, f"the frame is {size} bytes; the limit is "
                f"{self.limits.max_frame_bytes}"))
            self._close_after_seal(session, CLOSE_TOO_BIG, "frame too large")
            return
        request_id = method_name = None
        out = self._out
        mark = len(out)            # the response goes before the updates the request caused
        try:
            try:
                request = self._decode(frame)
            except RpcError:
                self._rate_limit(session, REQUEST)      # an unreadable frame costs a token too
                raise
            request_id, method_name = request.id, request.method
            method = METHODS.get(request.method)
            self._rate_limit(session, method.category if method else REQUEST)
            if method is None:
                raise RpcError("method_not_found", f"no method {request.method[:64]!r}",
                               field="method")
            if method.roles is not None:
                if session.account is None:
                    raise RpcError(RejectReason.UNAUTHENTICATED, f"{request.method} needs auth.login first")
                if session.role not in method.roles:
                    raise RpcError(RejectReason.FORBIDDEN, f"role {session.role} may not call "
                                   f"{request.method}")
            params = codec.decode_params(request.params, method.params)
            result = method.handler(self, session, params)
        except RpcError as exc:
            if request_id is None:     # an invalid request may still have a readable id
                request_id = getattr(exc, "request_id", None)
            response = {"jsonrpc": "2.0", "id": request_id, "error": exc.to_wire()}
        except Exception:
            # Not the frame: a login's would put its key and signature in the log.
            log.exception("%s (id %r) failed", method_name, request_id)
            response = {"jsonrpc": "2.0", "id": request_id,
                        "error": RpcError("internal_error", "internal error").to_wire()}
        else:
            response = {"jsonrpc": "2.0", "id": request_id, "result": result}
        if self._out is not out:   # the handler sealed: what preceded it has gone out
            out, mark = self._out, 0
        out.insert(mark, (session, self._encode(response)))
        self._schedule_seal()

    def _decode(self, frame: str | bytes) -> schema.Request:
        try:
            return msgspec.json.decode(frame, type=schema.Request)
        except msgspec.ValidationError as exc:
            text = frame.lstrip()[:1]
            if text in ("[", b"["):
                raise RpcError("batch_not_supported", "batch requests are not supported: "
                               "send one request per frame") from None
            error = RpcError("invalid_request", f"not a JSON-RPC 2.0 request: {exc}")
            try:
                error.request_id = msgspec.json.decode(frame, type=schema.RequestId).id
            except msgspec.DecodeError:
                pass
            raise error from None
        except msgspec.DecodeError as exc:
            raise RpcError("parse_error", f"the frame is not valid JSON: {exc}") from None

    def _rate_limit(self, session: Session, category: str) -> None:
        now = self.loop.time()
        wait = session.buckets[category].take(now)
        if wait == 0.0 and category == ORDER and session.account is not None:
            bucket = self.account_buckets.get(session.account_id)
            if bucket is None:
                spec = session.role_limits.account_orders
                bucket = self.account_buckets[session.account_id] = TokenBucket(spec, now)
            wait = bucket.take(now)
            if wait:
                session.buckets[category].give_back()
        if wait == 0.0:
            session.strikes = 0
            return
        session.strikes += 1
        if session.strikes >= self.limits.flood_strikes:
            self._close_after_seal(session, CLOSE_POLICY,
                                   "flooding: rate limit exceeded repeatedly")
        retry_ms = math.ceil(wait * 1000)
        raise RpcError(RejectReason.RATE_LIMITED, f"too many {category}; retry after {retry_ms} ms",
                       retry_after_ms=retry_ms)

    # -- Frames out -----------------------------------------------------------------

    def _send(self, session: Session, message: dict) -> None:
        self._out.append((session, self._encode(message)))
        self._schedule_seal()

    def _error(self, session: Session, request_id, exc: RpcError) -> None:
        if request_id is None:
            request_id = getattr(exc, "request_id", None)
        self._send(session, {"jsonrpc": "2.0", "id": request_id, "error": exc.to_wire()})

    def _notification(self, channel: str, data) -> bytes:
        return self._encode({"jsonrpc": "2.0", "method": "subscription",
                             "params": {"channel": channel, "data": data}})

    def _schedule_seal(self) -> None:
        if not self._seal_scheduled:
            self._seal_scheduled = True
            self.loop.call_soon(self.seal)

    def seal(self) -> None:
        """Release what this turn produced: replies and private updates, then market data;
        then write each connection's share to its socket. The journal is committed first."""
        self._seal_scheduled = True      # what is queued during the seal goes out with it
        self._commit()
        out, self._out = self._out, []
        for session, frame in out:
            session.push(frame)
        if self._events:
            events, self._events = self._events, []
            feed = self.feed
            for batch in events:
                feed.apply(batch)
                self._note_clearing(batch)
            for channel, data in feed.seal(self.subscribers):
                subscribers = self.subscribers[channel]
                if subscribers:
                    frame = self._notification(channel, data)
                    if channel.startswith("book."):
                        for s in subscribers:
                            s.push_latest(channel, frame)
                    else:
                        for s in subscribers:
                            s.push(frame)
        if self._resync:
            resync, self._resync = self._resync, set()
            for session in resync:
                for channel in sorted(session.conflated):
                    session.conflated.discard(channel)
                    session.push(self._current(channel))
        flushes, self._flushes = self._flushes, []
        for session in flushes:
            session.flush()
        if self._to_close:
            to_close, self._to_close = self._to_close, []
            for session, code, reason in to_close:
                session.close(code, reason)
        self._seal_scheduled = False
        if self._out or self._flushes or self._resync:
            self._schedule_seal()

    def _note_clearing(self, events: list) -> None:
        """Publish index changes and what operations watch now; mark the curves that changed
        for the next tick."""
        classes = self._class_of
        admins = self.subscribers.get("admin")
        for ev in events:
            kind = type(ev)
            if admins and isinstance(ev, ClearingEvent):
                data = codec.admin_view(ev, self.account_name)
                if data is not None:
                    frame = self._notification("admin", data)
                    for s in admins:
                        s.push(frame)
            if kind is IndexValue or kind is IndexFixed:
                gpu_class = ev.gpu_class if kind is IndexValue else ev.fixing.gpu_class
                self._publish_current(f"index.{gpu_class}")
            elif kind is MarksUpdated:
                self._curve_dirty.update(classes[s] for s in ev.marks)
            elif kind is Trade or kind is BookLevelChanged:
                self._curve_dirty.add(classes[ev.symbol])

    def account_name(self, account_id: int) -> str:
        """The name of an account, or of one of the house's own (the insurance fund)."""
        account = self.accounts.by_id.get(account_id)
        if account is not None:
            return account.account
        return next((a.account for a in HOUSE_ACCOUNTS.values() if a.account_id == account_id),
                    str(account_id))

    def _wants_flush(self, session: Session) -> None:
        self._flushes.append(session)
        self._schedule_seal()

    def _close_after_seal(self, session: Session, code: int, reason: str) -> None:
        """Close a connection once what is queued for it now (its last answer) is sent."""
        self._to_close.append((session, code, reason))
        self._schedule_seal()

    def _wants_snapshot(self, session: Session) -> None:
        self._resync.add(session)
        self._schedule_seal()

    def _current(self, channel: str) -> bytes:
        """The current state of a conflatable channel: a book snapshot or the ticker.

        Book snapshots are encoded once per seq, however many clients ask.
        """
        kind, _, symbol = channel.partition(".")
        if kind == "index":
            return self._notification(channel, codec.index_view(self.house.index[symbol],
                                                                self.venue.last_ts))
        if kind == "curve":
            return self._notification(channel, methods.curve_of(self, symbol))
        feed = self.feed.symbols[symbol]
        if kind == "ticker":
            return self._notification(channel, self._ticker(symbol))
        cached = self._snapshots.get(symbol)
        if cached is None or cached[0] != feed.book.seq:
            cached = self._snapshots[symbol] = (feed.book.seq,
                                                self._notification(channel, feed.book.snapshot()))
        return cached[1]

    # -- Commands -------------------------------------------------------------------

    def submit(self, cmd) -> list:
        """Run a command through the engine; its market data and private updates go out at seal.

        An exception from the engine is a bug: the instrument is halted so it
        cannot trade on a state that may be wrong, and the request gets
        internal_error.
        """
        journaled_at = self.journal.next_seq
        try:
            events = self.venue.process(cmd)
        except Exception:
            log.exception("engine failed on %r", cmd)
            if self.journal.next_seq > journaled_at:     # a replay must see it raise too
                self.journal.append(Failed(seq=journaled_at))
            symbol = self._symbol_of(cmd)
            if symbol is None:
                raise RpcError("internal_error", "internal error") from None
            try:
                events = self.venue.process(SetInstrumentStatus(
                    ts_ns=self.venue.now(), symbol=symbol, status=InstrumentStatus.HALTED))
            except Exception:
                log.exception("halting %s failed too", symbol)
                raise RpcError("internal_error", "internal error") from None
            self._events.append(events)
            self._schedule_seal()
            raise RpcError("internal_error",
                           f"internal error; {symbol} is halted") from None
        self._events.append(events)
        if self.private:
            self._publish_private(events)
        self._schedule_seal()
        return events

    def _symbol_of(self, cmd) -> str | None:
        """The instrument a failed command was about, to halt it."""
        symbol = getattr(cmd, "symbol", None)
        if symbol is None and getattr(cmd, "order_id", None) is not None:
            order = self.venue.exchange.order(cmd.order_id)
            symbol = order.symbol if order is not None else None
        if symbol is None and getattr(cmd, "client_order_id", None) is not None:
            order = self.venue.exchange.order_by_client_id(cmd.account_id, cmd.client_order_id)
            symbol = order.symbol if order is not None else None
        return symbol if symbol in self.venue.exchange.markets else None

    def _publish_private(self, events: list) -> None:
        """Queue the orders and fills updates of the accounts these events touched."""
        touched: dict[int, None] = {}
        fills: dict[int, list] = {}
        accounts: set[int] = set()         # whose positions or margin may have changed
        exchange = self.venue.exchange
        for ev in events:
            kind = type(ev)
            if kind is Trade:
                touched[ev.maker_order_id] = touched[ev.taker_order_id] = None
                maker_fee, taker_fee = self.house.ledger.fees_of(ev)
                for account_id, order_id, side, liquidity, fee in (
                        (ev.maker_account_id, ev.maker_order_id, -ev.aggressor, "maker",
                         maker_fee),
                        (ev.taker_account_id, ev.taker_order_id, ev.aggressor, "taker",
                         taker_fee)):
                    if (account_id, "fills") in self.private:
                        fills.setdefault(account_id, []).append({
                            "trade_id": ev.trade_id, "order_id": order_id, "symbol": ev.symbol,
                            "side": codec.SIDE_NAMES[Side(side)],
                            "price": codec.format_price(ev.price), "qty": ev.qty,
                            "fee": codec.format_money(fee), "liquidity": liquidity,
                            "time": codec.ns_to_ms(ev.ts_ns)})
            elif kind in ORDER_EVENTS:
                touched[ev.order_id] = None
            elif kind is CollateralMoved or kind is MarginCall or kind is Liquidation:
                accounts.add(ev.account_id)
            if kind is Trade:
                accounts.add(ev.maker_account_id)
                accounts.add(ev.taker_account_id)
        for order_id in touched:
            order = exchange.order(order_id)
            subscribers = self.private.get((order.account_id, "orders"))
            if subscribers:
                frame = self._notification("orders", self.venue.view(order))
                for s in subscribers:
                    self._out.append((s, frame))
        for account_id, account_fills in fills.items():
            frame = self._notification("fills", account_fills)
            for s in self.private[(account_id, "fills")]:
                self._out.append((s, frame))
        for account_id in sorted(accounts):
            for channel in ("positions", "margin"):
                subscribers = self.private.get((account_id, channel))
                if subscribers:
                    account = self.accounts.by_id[account_id]
                    frame = self._notification(channel, self._account_state(channel, account))
                    for s in subscribers:
                        self._out.append((s, frame))

    def _account_state(self, channel: str, account) -> object:
        """The data of a positions or margin message: as account.positions / account.summary."""
        if channel == "positions":
            return codec.positions_view(self.house, account.account_id)
        return codec.summary_view(self.house, account)

    def placed(self, session: Session, order_id: int) -> None:
        """Remember that the session placed this order (cancel-on-disconnect's list)."""
        placed = session.placed
        placed.add(order_id)
        if len(placed) >= session.placed_limit:     # forget closed orders now and then
            orders = self.venue.exchange.orders
            session.placed = {i for i in placed if i in orders and orders[i].closed_ns is None}
            session.placed_limit = max(PLACED_PRUNE, 2 * len(session.placed))

    def market(self, symbol: str):
        """Return the listed instrument's Market, or raise unknown_instrument."""
        market = self.venue.exchange.markets.get(symbol)
        if market is None:
            raise RpcError(RejectReason.UNKNOWN_INSTRUMENT, f"{symbol[:40]!r} is not listed", field="symbol")
        return market

    # -- Sessions -------------------------------------------------------------------

    def login(self, session: Session, p: schema.Login) -> dict:
        if session.account is not None:
            raise RpcError(RejectReason.ALREADY_LOGGED_IN, f"the session is logged in as "
                           f"{session.account.account}")
        account = self.accounts.login(p.api_key, p.timestamp, p.nonce, p.signature,
                                      time.time_ns() // codec.NS_PER_MS)
        session.logged_in(account, self.loop.time())
        return {"account": account.account, "role": account.role,
                "account_id": account.account_id}

    def set_heartbeat(self, session: Session, interval: int) -> None:
        if session.heartbeat_task is not None:
            session.heartbeat_task.cancel()
            session.heartbeat_task = None
        session.heartbeat_s = interval
        if interval:
            session.heartbeat_task = self.loop.create_task(self._heartbeat(session, interval))

    async def _heartbeat(self, session: Session, interval: int) -> None:
        while session.closing is None:
            await asyncio.sleep(interval)
            if self.loop.time() - session.last_rx > 2 * interval:
                self._close_after_seal(session, CLOSE_HEARTBEAT_TIMEOUT, "heartbeat timeout")
                return
            session.push(HEARTBEAT)

    def subscribe(self, session: Session, channels: list[str]) -> list[str]:
        """Subscribe to all the channels or to none; each book channel starts with a snapshot."""
        channels = list(dict.fromkeys(channels))
        keys = [self._channel_key(session, c) for c in channels]
        new = {c for c in channels if c not in session.channels}
        if len(session.channels) + len(new) > self.limits.max_subscriptions:
            raise RpcError(RejectReason.TOO_MANY_SUBSCRIPTIONS, f"at most {self.limits.max_subscriptions} "
                           f"subscriptions per connection", field="channels",
                           limit=self.limits.max_subscriptions)
        # The feed holds what has been published: a snapshot from it lines up with the
        # deltas the next seal sends, which go out after it.
        for channel, key in zip(channels, keys):
            session.channels.add(channel)
            if isinstance(key, tuple):
                self.private.setdefault(key, set()).add(session)
                if channel in ("positions", "margin"):      # the current state first
                    self._out.append((session, self._notification(
                        channel, self._account_state(channel, session.account))))
                continue
            self.subscribers.setdefault(channel, set()).add(session)
            if channel.startswith(("book.", "ticker.", "index.", "curve.")):
                session.conflated.discard(channel)
                self._out.append((session, self._current(channel)))
        self._schedule_seal()
        return channels

    def unsubscribe(self, session: Session, channels: list[str]) -> list[str]:
        """Unsubscribe; return the channels that were subscribed (a valid name that was not
        is no error)."""
        for channel in channels:
            self._channel_key(session, channel)
        removed = [c for c in dict.fromkeys(channels) if c in session.channels]
        for channel in removed:
            self._drop_subscription(session, channel)
        return removed

    def _channel_key(self, session: Session, channel: str) -> str | tuple[int, str]:
        """Check a channel name; return its key in subscribers (public) or private."""
        if channel in PRIVATE_CHANNELS:
            if session.account is None:
                raise RpcError(RejectReason.UNAUTHENTICATED, f"channel {channel} needs auth.login first",
                               field="channels")
            if session.role not in ("trader", "market_maker"):
                raise RpcError(RejectReason.FORBIDDEN, f"role {session.role} has no {channel}",
                               field="channels")
            return (session.account_id, channel)
        if channel == "admin":
            if session.role != "admin":
                raise RpcError(RejectReason.UNAUTHENTICATED if session.account is None else "forbidden",
                               "channel admin is for the admin role", field="channels")
            return channel
        kind, _, name = channel.partition(".")
        if kind in PUBLIC_CHANNELS and name:
            if name not in self.feed.symbols:
                raise RpcError(RejectReason.UNKNOWN_INSTRUMENT, f"{name[:40]!r} is not listed",
                               field="channels")
            return channel
        if kind in CLASS_CHANNELS and name:
            if name not in self.house.index:
                raise RpcError(RejectReason.UNKNOWN_GPU_CLASS, f"{name[:12]!r} is not a listed GPU class",
                               field="channels")
            return channel
        raise RpcError(RejectReason.UNKNOWN_CHANNEL, f"no channel {channel[:64]!r}; channels are "
                       "book.{symbol}, trades.{symbol}, ticker.{symbol}, index.{gpu_class}, "
                       "curve.{gpu_class}, orders, fills, positions, margin and admin",
                       field="channels")

    def _drop_subscription(self, session: Session, channel: str) -> None:
        session.channels.discard(channel)
        if channel in PRIVATE_CHANNELS:
            key = (session.account_id, channel)
            subscribers = self.private.get(key)
            if subscribers is not None:
                subscribers.discard(session)
                if not subscribers:
                    del self.private[key]
            return
        subscribers = self.subscribers.get(channel)
        if subscribers is not None:
            subscribers.discard(session)
            if not subscribers:
                del self.subscribers[channel]
        session.conflated.discard(channel)

    # -- Timers ---------------------------------------------------------------------

    async def _tick_tickers(self) -> None:
        """Publish the ticker of each symbol that changed, at most every 100 ms."""
        while True:
            await asyncio.sleep(TICKER_INTERVAL_S)
            try:
                self._publish_tickers()
            except Exception:
                log.exception("publishing tickers failed")

    def _publish_tickers(self) -> None:
        """Tickers and curves that changed, at most every 100 ms."""
        self._commit()          # they show marks and open interest: on disk first
        curves, self._curve_dirty = self._curve_dirty, set()
        for gpu_class in sorted(curves):
            self._publish_current(f"curve.{gpu_class}")
        dirty, self.feed.ticker_dirty = self.feed.ticker_dirty, set()
        for symbol in dirty:
            self._publish_current(f"ticker.{symbol}")

    def _publish_current(self, channel: str) -> None:
        """Send a conflatable channel's current state to its subscribers, if it has any."""
        subscribers = self.subscribers.get(channel)
        if subscribers:
            frame = self._current(channel)
            for s in subscribers:
                s.push_latest(channel, frame)

    def _ticker(self, symbol: str) -> dict:
        """The ticker: the feed's book and trades, and clearing's mark, index and open interest."""
        data = self.feed.symbols[symbol].ticker()
        house = self.house
        inst = self.venue.exchange.markets[symbol].instrument
        data["open_interest"] = house.ledger.open_interest(symbol)
        data["mark_price"] = codec.opt_price(house.marks[symbol].price)
        data["index_price"] = codec.opt_price(house.index[inst.gpu_class].peek(
            self.venue.last_ts)[0])
        return data

    async def _tick_timers(self) -> None:
        """The scheduler: time reaches the engine when nobody trades (GTD expiry, last trading
        time), clearing takes a mark step every interval, and the daily fixing and settlement
        run at their configured UTC times. Each is a command like any other."""
        schedule = self.config.schedule
        times = {FixIndex: schedule.time_of("fixing"), Settle: schedule.time_of("settlement")}
        due = {command: self._first_due(command, at) for command, at in times.items()}
        while True:
            await asyncio.sleep(min(TIMER_INTERVAL_S, schedule.mark_interval_s))
            try:
                self._maybe_snapshot()
            except Exception:
                log.exception("starting a snapshot failed")
            commands = [Timer, MarkStep]
            for command, at in due.items():
                if self.venue.last_ts >= at:
                    # Once, even after a stall of days: the next one is after now.
                    due[command] = self._next_daily(times[command])
                    commands.append(command)
            for command in commands:
                try:
                    self.submit(command(ts_ns=self.venue.now()))
                except Exception:
                    log.exception("the scheduled %s failed", command.__name__)

    def _first_due(self, command, at: datetime.time) -> int:
        """When a daily command is first due: now, if today's time has passed and the state
        (recovered after a stop) shows it has not run today; else its next time."""
        now = self.venue.now()
        today = utc_date(now)
        if command is FixIndex:
            done = all(i.fixings and i.fixings[-1].date == today for i in self.house.index.values())
        else:
            done = self.house.settled_on == today
        return now if now >= _at(today, at) and not done else self._next_daily(at)

    def _next_daily(self, at: datetime.time) -> int:
        """The next time of day ``at`` (UTC) after now, ns."""
        now = self.venue.now()
        moment = _at(utc_date(now), at)
        return moment if moment > now else moment + NS_PER_DAY


def _at(day: datetime.date, at: datetime.time) -> int:
    """``at`` (UTC) on ``day``, ns since the epoch."""
    return date_to_ns(day) + (at.hour * 3600 + at.minute * 60 + at.second) * 10**9


async def serve(config: Config, data_dir: Path, *, host: str | None = None,
                port: int | None = None, demo_seed: int | None = None, ready=None) -> None:
    """Run the server until SIGINT or SIGTERM, then close every connection cleanly.

    Args:
        demo_seed: Also run the demo's simulated participants (gateway.demo.participants),
            seeded with it, as clients of this server on the same event loop.
        ready: Called with the server and the Demo (or None) once both are going.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):     # before anyone can know we are up
        loop.add_signal_handler(sig, stop.set)
    server = Server(config, data_dir)
    try:
        await server.start(host, port)
    except BaseException:
        server.close()
        raise
    demo = None
    try:
        if demo_seed is not None:
            demo = Demo(server.local_url(host), {a.account: (a.api_key, a.api_secret)
                                                 for a in server.account_list},
                        levels_of(server.instruments), seed=demo_seed)
            await demo.start()
        if ready is not None:
            ready(server, demo)
        await stop.wait()
    finally:
        if demo is not None:
            await demo.stop()       # its sessions end first: their quotes are cancelled
        await server.stop()
