"""An asyncio client for the gpux websocket protocol (PROTOCOL.md), with local order books.

One ``Client`` holds one session. Requests are matched to responses by id;
notifications go to streams and callbacks; each subscribed ``book.{symbol}``
is rebuilt in a ``LocalBook`` and checked against the server's checksum after
every message. When the server goes away the client reconnects with capped,
jittered exponential backoff, logs in again, restores its session settings
and subscriptions, then sends again the requests still waiting for an answer.
Resending order entry is safe: ``place`` always carries a client_order_id, so
the server answers a resend with the existing order (``"duplicate": true``)
instead of placing a second one.

    async with Client(url, api_key=key, api_secret=secret) as client:
        stream = client.stream("fills")          # register before subscribing
        await client.subscribe("book.H100-2027-03", "fills")
        order = await client.place("H100-2027-03", "buy", 5, "2.100")
        book = await client.wait_book("H100-2027-03")
        async for channel, data in stream:
            ...

This module speaks only the wire protocol; it imports nothing of the server.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import logging
import operator
import random
import secrets
import time
import zlib
from dataclasses import dataclass
from decimal import Decimal
from itertools import islice
from typing import Any, Callable, Iterable, Iterator

import msgspec
from sortedcontainers import SortedDict
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidURI, WebSocketException

log = logging.getLogger("gpux.client")

DEFAULT_URL = "ws://127.0.0.1:8765/ws"
MAX_FRAME_BYTES = 2**24          # a full book snapshot can be large
CHECKSUM_DEPTH = 10
SUBSCRIBE_BATCH = 256            # the most channels one subscribe request may name
PRIVATE_CHANNELS = frozenset({"orders", "fills", "positions", "margin"})

# Requests that may be sent again on a new session when the old one died before
# answering: reads, session settings, and order entry, which client_order_id
# (place) or the order's own state (replace, cancel) makes idempotent; a mass quote
# sets its slots to a state, which a second time leaves as it is.
# index.submit and admin.* are not: a second deposit is a second deposit.
RESENDABLE = frozenset({
    "order.place", "order.replace", "order.cancel", "order.cancel_all", "order.mass_quote",
    "order.cancel_quotes", "order.list",
    "order.get", "session.test", "session.heartbeat", "session.cancel_on_disconnect",
    "subscribe", "unsubscribe", "market.instruments", "market.book", "market.trades",
    "market.index", "market.curve", "account.summary", "account.positions", "account.fills",
})
ALREADY_CLOSED = frozenset({"order_closed"})
# A refused login is final (wrong key, clock far off) unless the server was only busy.
TRANSIENT_LOGIN_ERRORS = frozenset({"rate_limited", "internal_error"})


# -- Errors ---------------------------------------------------------------------------

class ClientError(Exception):
    """A request failed: the server's error response, or the client's own failure.

    Attributes:
        code: The JSON-RPC error code; None for a failure of the client itself.
        reason: ``data.reason`` (``price_out_of_band``, ``connection_lost``, ...).
        field: The offending parameter, if the server named one.
        data: The error's whole ``data`` object.
        method: The method of the failed request, if there was one.
    """

    def __init__(self, message: str, *, code: int | None = None, reason: str | None = None,
                 field: str | None = None, data: dict | None = None,
                 method: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = reason
        self.field = field
        self.data = data or {}
        self.method = method

    @classmethod
    def from_wire(cls, error: dict, method: str | None = None) -> ClientError:
        data = error.get("data") or {}
        return cls(error.get("message", ""), code=error.get("code"), reason=data.get("reason"),
                   field=data.get("field"), data=data, method=method)

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}" if self.reason else self.message


class ConnectError(ClientError):
    """The server could not be reached; ``__cause__`` is the underlying error.

    ``reason`` is ``unreachable`` (refused, no route, timed out), ``invalid_url`` or
    ``handshake`` (something answered, but not a gpux websocket endpoint).
    """


class LoginError(ClientError):
    """auth.login was refused (``invalid_signature``, ``stale_timestamp``, ...)."""


class ConnectionLost(ClientError):
    """The session ended before the request was answered, and it will not be resent.

    ``data`` holds the request's ``method`` and ``params`` (for ``place``, the
    generated client_order_id), so the caller can look the outcome up later.
    """


# -- Local order book -----------------------------------------------------------------

GAP, CHECKSUM_MISMATCH, BAD_SNAPSHOT = "gap", "checksum_mismatch", "bad_snapshot"


def book_checksum(bids, asks) -> int:
    """Return PROTOCOL.md's checksum of levels ``[price, qty, ...]`` given best first.

    The unsigned CRC32 of the top 10 bids then the top 10 asks as ``price:qty``
    joined by ``|``, with ``#`` between the sides; prices as the server wrote them.
    """
    text = ("|".join(f"{lvl[0]}:{lvl[1]}" for lvl in islice(bids, CHECKSUM_DEPTH)) + "#"
            + "|".join(f"{lvl[0]}:{lvl[1]}" for lvl in islice(asks, CHECKSUM_DEPTH)))
    return zlib.crc32(text.encode())


class LocalBook:
    """One symbol's book rebuilt from its ``book.{symbol}`` stream.

    Levels are ``[price, qty, orders]`` as on the wire (price the server's
    3-decimal string), keyed by the price's exact Decimal value. ``valid`` is
    True only while the book is known to equal the server's: from a snapshot
    whose checksum matched until a gap, a checksum mismatch or a lost connection.

    Args:
        symbol: The instrument, e.g. ``"H100-2027-03"``.
    """

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.seq: int | None = None
        self.valid = False
        self.resyncs = 0             # times the client asked for a fresh snapshot
        self._bids: SortedDict = SortedDict(operator.neg)     # best (highest) first
        self._asks: SortedDict = SortedDict()

    @property
    def bids(self) -> list[list]:
        """Bid levels, best (highest) first."""
        return list(self._bids.values())

    @property
    def asks(self) -> list[list]:
        """Ask levels, best (lowest) first."""
        return list(self._asks.values())

    def best_bid(self) -> list | None:
        return self._bids.peekitem(0)[1] if self._bids else None

    def best_ask(self) -> list | None:
        return self._asks.peekitem(0)[1] if self._asks else None

    def checksum(self) -> int:
        return book_checksum(self._bids.values(), self._asks.values())

    def apply(self, data: dict) -> str | None:
        """Apply one ``book.{symbol}`` message and verify the book against its checksum.

        Deltas are ignored while the book is not valid: a fresh snapshot is due.

        Returns:
            None when the book is consistent (or the message was ignored);
            ``GAP`` or ``CHECKSUM_MISMATCH`` when the stream broke and the caller
            must subscribe again for a snapshot; ``BAD_SNAPSHOT`` when a snapshot
            itself fails its checksum, which asking again cannot repair.
        """
        kind = data.get("type")
        if kind == "snapshot":
            self._bids.clear()
            self._asks.clear()
            self._update(self._bids, data["bids"])
            self._update(self._asks, data["asks"])
            self.seq = data["seq"]
            self.valid = self.checksum() == data.get("checksum")
            return None if self.valid else BAD_SNAPSHOT
        if kind != "delta" or not self.valid:
            return None
        if data["prev_seq"] != self.seq:
            self.valid = False
            return GAP
        self._update(self._bids, data["bids"])
        self._update(self._asks, data["asks"])
        self.seq = data["seq"]
        if self.checksum() != data.get("checksum"):
            self.valid = False
            return CHECKSUM_MISMATCH
        return None

    def invalidate(self) -> None:
        """Mark the book stale (the stream stopped); the next snapshot makes it valid again."""
        self.valid = False

    @staticmethod
    def _update(side: SortedDict, levels: list) -> None:
        for level in levels:
            key = Decimal(level[0])
            if level[1] == 0:
                side.pop(key, None)
            else:
                side[key] = level


# -- Client ---------------------------------------------------------------------------

def backoff(initial_s: float, cap_s: float, rng: Callable[[], float] = random.random,
            ) -> Iterator[float]:
    """Yield reconnect delays in seconds: doubling from initial_s up to cap_s, each
    jittered down by up to half so that many clients do not reconnect in step."""
    delay = initial_s
    while True:
        yield delay * (0.5 + rng() / 2)
        delay = min(delay * 2, cap_s)


@dataclass(eq=False)
class _Request:
    id: int
    method: str
    params: dict
    frame: str
    future: asyncio.Future
    resend: bool                 # may be sent again on a new session
    session: int = 0             # the session it was last sent on; 0: not sent yet
    attempts: int = 0            # times it was handed to a socket


class Stream:
    """Notifications as ``(channel, data)`` pairs in arrival order; see ``Client.stream``.

    Iterate with ``async for``. Iteration ends when the stream or the client is
    closed, and raises ConnectionLost (or LoginError) when the client gives up
    on the server. The queue is unbounded: a consumer that stops reading holds
    every message since.
    """

    def __init__(self, client: Client, channels: tuple[str, ...]) -> None:
        self._client = client
        self._channels = frozenset(channels) or None
        self._queue: asyncio.Queue = asyncio.Queue()
        self._error: BaseException | None = None

    def _offer(self, channel: str, data: Any) -> None:
        if self._channels is None or channel in self._channels:
            self._queue.put_nowait((channel, data))

    def _finish(self, error: BaseException | None) -> None:
        self._error = error
        self._queue.put_nowait(None)

    def close(self) -> None:
        """Stop receiving; messages already queued are still returned."""
        if self in self._client._streams:
            self._client._streams.remove(self)
            self._finish(None)

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> tuple[str, Any]:
        item = await self._queue.get()
        if item is None:
            self._queue.put_nowait(None)        # keep ending for later calls
            if self._error is not None:
                raise self._error
            raise StopAsyncIteration
        return item

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(self, *exc) -> None:
        self.close()


class Client:
    """A gpux session that survives reconnects.

    Args:
        url: The server's websocket endpoint, or a list of them (a cluster's matchers or
            gateways): a connection goes to the first that answers, trying from the one
            that last did, so a reconnect after a failover finds the new leader.
        api_key, api_secret: Log in with these; without them the session is
            anonymous (market data only).
        reconnect: Reconnect when the connection drops. False suits one-shot
            commands: requests in flight then fail with ConnectionLost.
        backoff_initial_s, backoff_max_s: The first reconnect delay and its cap.
        open_timeout_s: How long to wait for a connection and its handshake.
        close_timeout_s: How long ``close`` waits for the server's part of the closing
            handshake before it drops the connection: a server that stopped answering
            must not hold up a client that is leaving (Ctrl-C on a live command).
    """

    def __init__(self, url: str | list[str] = DEFAULT_URL, *, api_key: str | None = None,
                 api_secret: str | None = None, reconnect: bool = True,
                 backoff_initial_s: float = 0.25, backoff_max_s: float = 10.0,
                 open_timeout_s: float = 10.0, close_timeout_s: float = 1.0) -> None:
        if (api_key is None) != (api_secret is None):
            raise ValueError("give both api_key and api_secret, or neither")
        self.urls = [url] if isinstance(url, str) else list(url)
        if not self.urls:
            raise ValueError("give at least one url")
        self.url = self.urls[0]                # the one connected to, or tried last
        self.reconnect = reconnect
        self.account: dict | None = None       # auth.login's result
        self.sessions = 0                      # sessions opened so far
        self._api_key = api_key
        self._api_secret = api_secret
        self._backoff = (backoff_initial_s, backoff_max_s)
        self._open_timeout_s = open_timeout_s
        self._close_timeout_s = close_timeout_s
        self._encode = msgspec.json.Encoder().encode
        self._decode = msgspec.json.Decoder().decode
        self._ids = itertools.count(1)
        self._pending: dict[int, _Request] = {}
        self._ws: ClientConnection | None = None
        self._ready = False                    # logged in and restored: user requests go out
        self._reader: asyncio.Task | None = None
        self._supervisor: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._closed = False
        self._failure: ClientError | None = None     # why the client gave up, if it did
        # What a new session restores:
        self._channels: dict[str, None] = {}   # confirmed subscriptions, in order
        self._heartbeat_s = 0
        self._cancel_on_disconnect = False
        self._books: dict[str, LocalBook] = {}
        self._book_waiters: dict[str, list[asyncio.Future]] = {}
        self._streams: list[Stream] = []
        self._callbacks: dict[str, list[Callable[[str, Any], None]]] = {}

    # -- Lifecycle ----------------------------------------------------------------------

    async def connect(self) -> Client:
        """Connect and log in; later reconnects happen in the background.

        Raises:
            ConnectError: The server is unreachable (the first attempt is not retried).
            LoginError: The credentials were refused.
        """
        try:
            await self._open()
        except BaseException:
            await self.close()
            raise
        self._supervisor = asyncio.create_task(self._supervise())
        return self

    async def close(self) -> None:
        """Close the session; pending requests fail with ConnectionLost and streams end."""
        if self._closed:
            return
        self._closed = True
        if self._supervisor is not None:
            self._supervisor.cancel()
        if self._ws is not None:
            await self._ws.close()
        for task in (self._supervisor, self._reader, *self._tasks):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._give_up(None)

    async def __aenter__(self) -> Client:
        return await self.connect()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        """True while a session is open, logged in and restored."""
        return self._ready

    # -- Requests -----------------------------------------------------------------------

    async def call(self, method: str, **params: Any) -> Any:
        """Send a request and return its result.

        While the client is reconnecting the request waits for the new session
        (bound the wait with ``asyncio.timeout`` if it matters).

        Raises:
            ClientError: The server's error response (``code``, ``reason``, ``field``).
            ConnectionLost: The session ended first and the request is not resendable
                (or reconnecting is off, or the client is closed).
        """
        request = await self._submit(method, params)
        return await request.future

    async def _submit(self, method: str, params: dict) -> _Request:
        if self._failure is not None:
            raise ConnectionLost(f"{method}: {self._failure}", reason="connection_lost",
                                 method=method) from self._failure
        if self._closed or self.sessions == 0:
            raise ConnectionLost(f"{method}: the client is not connected", method=method,
                                 reason="not_connected")
        resend = self.reconnect and method in RESENDABLE and (
            method != "order.place" or "client_order_id" in params)
        request = self._register(method, params, resend)
        if self._ready:
            await self._send(request)
        return request

    def _register(self, method: str, params: dict, resend: bool) -> _Request:
        request_id = next(self._ids)
        frame = self._encode({"jsonrpc": "2.0", "id": request_id, "method": method,
                              "params": params}).decode()
        request = _Request(request_id, method, params, frame,
                           asyncio.get_running_loop().create_future(), resend)
        self._pending[request_id] = request
        return request

    async def _send(self, request: _Request) -> None:
        ws = self._ws
        request.session = self.sessions
        try:
            if ws is not None:
                await ws.send(request.frame)
                request.attempts += 1
                return
        except ConnectionClosed:
            pass
        if not request.resend:          # else the next session sends it again
            self._fail(request, self._lost(request))

    async def _internal(self, method: str, params: dict) -> Any:
        """Send a request that belongs to this session only (login, restore, heartbeat)."""
        if self._ws is None:
            raise ConnectionLost(f"{method}: not connected", reason="connection_lost",
                                 method=method)
        request = self._register(method, params, resend=False)
        await self._send(request)
        return await request.future

    def _fire(self, method: str, params: dict, done: Callable | None = None) -> None:
        """Send an internal request without waiting; ``done(task)`` sees its outcome."""
        task = asyncio.get_running_loop().create_task(self._internal(method, params))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(done or _log_failure)

    def _fail(self, request: _Request, error: BaseException) -> None:
        self._pending.pop(request.id, None)
        if not request.future.done():
            request.future.set_exception(error)

    def _lost(self, request: _Request) -> ConnectionLost:
        return ConnectionLost(f"{request.method}: the connection to {self.url} was lost "
                              "before the answer", reason="connection_lost",
                              method=request.method,
                              data={"method": request.method, "params": request.params})

    # -- Sessions -----------------------------------------------------------------------

    async def _dial(self) -> ClientConnection:
        """Connect to the current URL, else to each of the others in turn."""
        start = self.urls.index(self.url)
        for n in range(len(self.urls)):
            self.url = self.urls[(start + n) % len(self.urls)]
            try:
                return await self._dial_one()
            except ConnectError as exc:
                if exc.reason == "invalid_url" or n == len(self.urls) - 1:
                    raise

    async def _dial_one(self) -> ClientConnection:
        try:
            return await connect(self.url, max_size=MAX_FRAME_BYTES, compression=None,
                                 open_timeout=self._open_timeout_s,
                                 close_timeout=self._close_timeout_s)
        except InvalidURI as exc:
            raise ConnectError(f"{self.url} is not a websocket URL: {exc}",
                               reason="invalid_url") from exc
        except OSError as exc:          # refused, unreachable, timed out
            raise ConnectError(f"cannot connect to {self.url}: {exc.strerror or exc}",
                               reason="unreachable") from exc
        except WebSocketException as exc:
            raise ConnectError(f"cannot connect to {self.url}: {exc}",
                               reason="handshake") from exc

    async def _open(self) -> None:
        """Open a session: connect, log in, restore settings and subscriptions, resend."""
        ws = await self._dial()
        self.sessions += 1
        self._ws = ws
        self._reader = asyncio.create_task(self._read(ws, self.sessions))
        try:
            if self._api_key is not None:
                self.account = await self._login()
            await self._restore()
            await self._flush()
        except BaseException:
            await ws.close()
            await asyncio.gather(self._reader, return_exceptions=True)
            raise

    async def _login(self) -> dict:
        timestamp = int(time.time() * 1000)
        nonce = secrets.token_hex(16)         # fresh for every login: nonces may not repeat
        signature = hmac.new(self._api_secret.encode(), f"{timestamp}\n{nonce}".encode(),
                             hashlib.sha256).hexdigest()
        try:
            return await self._internal("auth.login", {
                "api_key": self._api_key, "timestamp": timestamp, "nonce": nonce,
                "signature": signature})
        except ConnectionLost:
            raise
        except ClientError as exc:
            raise LoginError(exc.message, code=exc.code, reason=exc.reason,
                             field=exc.field, data=exc.data, method="auth.login") from None

    async def _restore(self) -> None:
        if self._heartbeat_s:
            await self._internal("session.heartbeat", {"interval": self._heartbeat_s})
        if self._cancel_on_disconnect:
            await self._internal("session.cancel_on_disconnect", {"enabled": True})
        channels = list(self._channels)
        for start in range(0, len(channels), SUBSCRIBE_BATCH):
            batch = channels[start:start + SUBSCRIBE_BATCH]
            try:
                await self._internal("subscribe", {"channels": batch})
            except ClientError as exc:
                if exc.field != "channels":
                    raise               # not about a channel: the session is retried
                # Subscribing is all or nothing; keep what the server still accepts.
                for channel in batch:
                    try:
                        await self._internal("subscribe", {"channels": [channel]})
                    except ClientError as exc:
                        if exc.field != "channels":
                            raise
                        log.warning("dropping subscription %s after reconnect: %s",
                                    channel, exc)
                        self._forget_channel(channel)

    async def _flush(self) -> None:
        """Send the requests waiting for this session, oldest first, then open to new ones."""
        while True:
            todo = [r for r in self._pending.values()
                    if r.session != self.sessions and not r.future.done()]
            if not todo:
                break
            for request in todo:
                await self._send(request)
        for request_id in [i for i, r in self._pending.items() if r.future.done()]:
            del self._pending[request_id]     # abandoned by their callers
        self._ready = True                    # no await since the last check: nothing missed

    async def _supervise(self) -> None:
        """Wait for the session to end; reconnect (or give up) each time it does."""
        try:
            while True:
                await asyncio.gather(self._reader, return_exceptions=True)
                if not self.reconnect:
                    self._give_up(ConnectionLost(f"the connection to {self.url} was lost",
                                                 reason="connection_lost"))
                    return
                for delay in backoff(*self._backoff):
                    await asyncio.sleep(delay)
                    try:
                        await self._open()
                        log.info("reconnected to %s (session %d)", self.url, self.sessions)
                        break
                    except LoginError as exc:
                        if exc.reason in TRANSIENT_LOGIN_ERRORS:
                            continue
                        log.error("giving up: login refused: %s", exc)
                        self._give_up(exc)
                        return
                    except ClientError as exc:
                        log.info("reconnect to %s failed: %s", self.url, exc)
        except Exception as exc:
            log.exception("the client's supervisor failed")
            self._give_up(ConnectionLost(f"client failure: {exc!r}", reason="client_error"))

    def _give_up(self, error: ClientError | None) -> None:
        """Fail every pending request and waiter and end the streams (normally if None)."""
        if error is not None and self._failure is None:
            self._failure = error
        for request in list(self._pending.values()):
            self._fail(request, error if isinstance(error, LoginError) else self._lost(request))
        lost = error or ConnectionLost("the client is closed", reason="closed")
        for waiters in self._book_waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(lost)
        self._book_waiters.clear()
        for stream in self._streams:
            stream._finish(error)
        self._streams.clear()

    # -- Frames in ----------------------------------------------------------------------

    async def _read(self, ws: ClientConnection, session: int) -> None:
        try:
            async for frame in ws:
                try:
                    self._on_message(self._decode(frame))
                except Exception:
                    log.exception("cannot handle %r", frame[:200])
        except ConnectionClosed:
            pass
        finally:
            established = self._ws is ws and self._ready
            if self._ws is ws:
                self._ws = None
                self._ready = False
            for request in list(self._pending.values()):
                if request.session == session and not request.resend:
                    self._fail(request, self._lost(request))
            for book in self._books.values():
                book.invalidate()
            if established and not self._closed:
                log.warning("disconnected from %s (close code %s%s)", self.url, ws.close_code,
                            f": {ws.close_reason}" if ws.close_reason else "")

    def _on_message(self, message: dict) -> None:
        method = message.get("method")
        if method == "subscription":
            params = message["params"]
            self._on_notification(params["channel"], params["data"])
        elif method == "heartbeat":
            if (message.get("params") or {}).get("type") == "test_request":
                self._fire("session.test", {})
        elif "result" in message or "error" in message:
            request = self._pending.pop(message.get("id"), None)
            if request is None:
                log.warning("a response that answers no pending request: %r", message)
            elif request.future.done():
                pass
            elif "error" in message:
                request.future.set_exception(
                    ClientError.from_wire(message["error"], request.method))
            else:
                request.future.set_result(message["result"])

    def _on_notification(self, channel: str, data: Any) -> None:
        if channel.startswith("book."):
            book = self._books.get(channel[5:])
            if book is not None:
                self._on_book(book, data)
        for stream in self._streams:
            stream._offer(channel, data)
        for key in (channel, "*"):
            for callback in self._callbacks.get(key, ()):
                try:
                    callback(channel, data)
                except Exception:
                    log.exception("notification callback %r failed on %s", callback, channel)

    def _on_book(self, book: LocalBook, data: dict) -> None:
        problem = book.apply(data)
        if problem is None:
            if book.valid:
                for waiter in self._book_waiters.pop(book.symbol, ()):
                    if not waiter.done():
                        waiter.set_result(book)
        elif problem == BAD_SNAPSHOT:
            log.error("book.%s: the snapshot at seq %s fails its checksum", book.symbol,
                      book.seq)
        else:
            log.warning("book.%s: %s at seq %s; asking for a fresh snapshot", book.symbol,
                        problem, data.get("seq"))
            self._resync(book.symbol)

    def _resync(self, symbol: str) -> None:
        """Subscribe again to this symbol's book only; the server answers with a snapshot."""
        book = self._books.get(symbol)
        if book is None or book.valid or not self._ready:
            return      # unsubscribed, repaired, or the next session resubscribes anyway
        book.resyncs += 1

        def done(task: asyncio.Task) -> None:
            error = None if task.cancelled() else task.exception()
            if isinstance(error, ClientError) and error.reason == "rate_limited":
                delay_s = (error.data.get("retry_after_ms") or 1000) / 1000
                asyncio.get_running_loop().call_later(delay_s, self._resync, symbol)
            elif error is not None and not isinstance(error, ConnectionLost):
                log.error("book.%s: subscribing again failed: %s", symbol, error)

        self._fire("subscribe", {"channels": [f"book.{symbol}"]}, done)

    # -- Notifications ------------------------------------------------------------------

    async def subscribe(self, *channels: str) -> list[str]:
        """Subscribe (all or nothing); each ``book.{symbol}`` gets a LocalBook.

        Subscriptions are restored on every new session. Register a stream or
        callback first: a book's snapshot may arrive before this returns.

        Returns:
            The channels, as the server confirmed them.
        """
        created = [c[5:] for c in channels if c.startswith("book.") and c[5:] not in self._books]
        for symbol in created:
            self._books[symbol] = LocalBook(symbol)
        try:
            result = await self.call("subscribe", channels=list(channels))
        except BaseException:
            for symbol in created:
                self._books.pop(symbol, None)
            raise
        self._channels.update(dict.fromkeys(channels))
        return result["channels"]

    async def unsubscribe(self, *channels: str) -> list[str]:
        """Unsubscribe; returns the channels that were subscribed."""
        for channel in channels:
            self._forget_channel(channel)
        return (await self.call("unsubscribe", channels=list(channels)))["channels"]

    def _forget_channel(self, channel: str) -> None:
        self._channels.pop(channel, None)
        if channel.startswith("book."):
            self._books.pop(channel[5:], None)

    def stream(self, *channels: str) -> Stream:
        """Return a Stream of the notifications of ``channels`` (all channels if none).

        It receives from the moment it is created, so create it before subscribing.
        Book messages reach it after the LocalBook has applied them.
        """
        stream = Stream(self, channels)
        if self._failure is not None or self._closed:
            stream._finish(self._failure)
        else:
            self._streams.append(stream)
        return stream

    def on(self, channel: str, callback: Callable[[str, Any], None]) -> Callable[[], None]:
        """Call ``callback(channel, data)`` for each notification of ``channel`` (``"*"``: all).

        Callbacks run on the reading task, so they must not block; an exception
        is logged and does not stop the client.

        Returns:
            A function that removes the callback.
        """
        self._callbacks.setdefault(channel, []).append(callback)
        return lambda: self._callbacks[channel].remove(callback)

    def book(self, symbol: str) -> LocalBook:
        """Return the LocalBook of a subscribed ``book.{symbol}``; check its ``valid``."""
        try:
            return self._books[symbol]
        except KeyError:
            raise KeyError(f"no local book for {symbol}: subscribe to book.{symbol} "
                           "first") from None

    async def wait_book(self, symbol: str) -> LocalBook:
        """Return the symbol's LocalBook once it is valid (after its snapshot)."""
        book = self.book(symbol)
        if self._failure is not None:
            raise self._failure
        while not book.valid:
            waiter = asyncio.get_running_loop().create_future()
            self._book_waiters.setdefault(symbol, []).append(waiter)
            await waiter
        return book

    # -- Session settings ---------------------------------------------------------------

    async def set_heartbeat(self, interval_s: int) -> None:
        """Ask the server for test requests every ``interval_s`` (0: off); they are
        answered automatically, and the setting survives reconnects."""
        await self.call("session.heartbeat", interval=interval_s)
        self._heartbeat_s = interval_s

    async def set_cancel_on_disconnect(self, enabled: bool = True) -> None:
        """Have the server cancel this session's orders when it ends; survives reconnects."""
        await self.call("session.cancel_on_disconnect", enabled=enabled)
        self._cancel_on_disconnect = enabled

    # -- Orders -------------------------------------------------------------------------

    async def place(self, symbol: str, side: str, qty: int, price: str | Decimal | None = None,
                    *, order_type: str = "limit", tif: str | None = None,
                    client_order_id: str | None = None, stop_price: str | Decimal | None = None,
                    expire_at: int | None = None, post_only: bool | None = None,
                    reduce_only: bool | None = None, display_qty: int | None = None,
                    stp: str | None = None) -> dict:
        """Place an order and return it as the engine left it.

        A client_order_id is generated when none is given, so a resend after a
        reconnect returns the same order (``"duplicate": true``) rather than
        placing a second one.

        Args:
            price, stop_price: USD per GPU-hour as a string or Decimal, at most 3
                decimals; floats are refused, since they cannot say 2.1 exactly.
            expire_at: For ``tif="gtd"``, milliseconds since the epoch.
        """
        params = _params(symbol=symbol, side=side, qty=qty, type=order_type,
                         price=_price(price), stop_price=_price(stop_price), tif=tif,
                         expire_at=expire_at, post_only=post_only, reduce_only=reduce_only,
                         display_qty=display_qty, stp=stp,
                         client_order_id=client_order_id or new_client_order_id())
        return await self.call("order.place", **params)

    async def place_strip(self, symbols: list[str], side: str, qty: int,
                          price: str | Decimal, *, tif: str | None = None,
                          client_order_id: str | None = None) -> dict:
        """Buy or sell ``qty`` in each of a run of consecutive contracts, all or none, limited
        by the hours-weighted average price (PROTOCOL 1.1 order.place_strip); a
        client_order_id is generated when none is given, so a resend is answered with the
        same strip."""
        return await self.call("order.place_strip", **_params(
            symbols=list(symbols), side=side, qty=qty, price=_price(price), tif=tif,
            client_order_id=client_order_id or new_client_order_id()))

    async def strip_quote(self, symbols: list[str], side: str, qty: int) -> dict:
        """What a strip of ``qty`` a leg would fill at now (market.strip_quote)."""
        return await self.call("market.strip_quote", symbols=list(symbols), side=side, qty=qty)

    async def replace(self, order_id: int | None = None, *, client_order_id: str | None = None,
                      price: str | Decimal | None = None, qty: int | None = None) -> dict:
        """Change an order's price and/or total quantity; returns the order."""
        return await self.call("order.replace", **_params(
            order_id=order_id, client_order_id=client_order_id, price=_price(price), qty=qty))

    async def cancel(self, order_id: int | None = None, *,
                     client_order_id: str | None = None) -> dict:
        """Cancel an order; returns it.

        When the request had to be resent after a reconnect and the server says
        the order is already closed, the first attempt (or a fill) closed it:
        the order is returned as it stands instead of raising.
        """
        ref = _params(order_id=order_id, client_order_id=client_order_id)
        request = await self._submit("order.cancel", ref)
        try:
            return await request.future
        except ClientError as exc:
            if exc.reason in ALREADY_CLOSED and request.attempts > 1:
                return await self.get_order(**ref)
            raise

    async def cancel_all(self, symbol: str | None = None) -> int:
        """Cancel the account's open orders (of one symbol); returns how many were cancelled.

        After a resend the count is the second attempt's.
        """
        return (await self.call("order.cancel_all", **_params(symbol=symbol)))["cancelled"]

    async def mass_quote(self, quotes: Iterable[dict], *,
                         post_only: bool | None = None) -> list[dict]:
        """Set up to 100 quote slots in one request (market makers).

        Args:
            quotes: Each ``{"symbol", "side", "price", "qty", "level"?}``: the slot
                (symbol, side, level 0..9) and what it should show; ``qty`` 0 removes it.
                Prices as for ``place``.
            post_only: Default true on the server.

        Returns:
            One ``{symbol, side, level, order, error}`` per quote, in order: the order
            holding the slot (or None) and the slot's own refusal (or None).
        """
        slots = [dict(q, price=_price(q["price"])) for q in quotes]
        result = await self.call("order.mass_quote", **_params(quotes=slots, post_only=post_only))
        return result["quotes"]

    async def cancel_quotes(self, symbol: str | None = None) -> int:
        """Remove the account's quotes (of one symbol); returns how many were cancelled."""
        return (await self.call("order.cancel_quotes", **_params(symbol=symbol)))["cancelled"]

    async def orders(self, symbol: str | None = None, *, page: int = 1000) -> list[dict]:
        """Return the account's open orders, oldest first, asking page by page."""
        out: list[dict] = []
        while True:
            batch = await self.call("order.list", **_params(
                symbol=symbol, limit=page, after=out[-1]["order_id"] if out else None))
            out += batch
            if len(batch) < page:
                return out

    async def get_order(self, order_id: int | None = None, *,
                        client_order_id: str | None = None) -> dict:
        """Return one of the account's orders, open or closed."""
        return await self.call("order.get", **_params(order_id=order_id,
                                                      client_order_id=client_order_id))


def new_client_order_id() -> str:
    """Return a fresh client_order_id (29 characters of ``[A-Za-z0-9_-]``)."""
    return "gpux-" + secrets.token_hex(12)


def _price(value: str | Decimal | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Decimal):
        return format(value, "f")
    raise TypeError(f"a price is a str or Decimal, not {type(value).__name__}")


def _params(**params: Any) -> dict:
    """The given parameters without the unset (None) ones."""
    return {k: v for k, v in params.items() if v is not None}


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None and not isinstance(
            task.exception(), ConnectionLost):
        log.warning("background request failed: %s", task.exception())
