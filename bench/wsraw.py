"""A minimal websocket client for the load generators: an asyncio Protocol, no library.

The load generators must not be the bottleneck, and a full websocket client
library costs about as much per message as the server under test. This one
does the least a client can: the HTTP upgrade, text frames out (masked, as
RFC 6455 requires of a client, with the all-zero mask key so the payload
needs no XOR; the server cannot tell a zero key from any other), and
unmasked frames in, parsed from one buffer. Pings are answered; the
server's close frame is echoed. Everything else (what to send, what a reply
means) is the subclass's: ``on_message`` is called for each text frame and
``on_batch`` once after each read, which is where a client writes what the
read made it want to send, so one read leads to at most one write.
"""
from __future__ import annotations

import asyncio
import base64
import itertools
import os
import struct

import msgspec

MASK_ZERO = b"\x00\x00\x00\x00"
_HEAD_SHORT = struct.Struct("!BB")
_HEAD_16 = struct.Struct("!BBH")
_HEAD_64 = struct.Struct("!BBQ")
_LEN_16 = struct.Struct("!H")
_LEN_64 = struct.Struct("!Q")

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def client_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """Return one final, masked (zero key) client frame carrying ``payload``."""
    n = len(payload)
    b0 = 0x80 | opcode
    if n < 126:
        head = _HEAD_SHORT.pack(b0, 0x80 | n)
    elif n < 65536:
        head = _HEAD_16.pack(b0, 0xFE, n)
    else:
        head = _HEAD_64.pack(b0, 0xFF, n)
    return head + MASK_ZERO + payload


class WsProtocol(asyncio.Protocol):
    """One client websocket connection.

    Args:
        host, port, path: Where to upgrade (the Host header and request path).
    """

    def __init__(self, host: str, port: int, path: str = "/ws") -> None:
        self._host, self._port, self._path = host, port, path
        self.transport: asyncio.Transport | None = None
        self.upgraded: asyncio.Future = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future = asyncio.get_running_loop().create_future()
        self.close_code: int | None = None
        self._buf = bytearray()
        self._http = True
        self._frag: list[bytes] | None = None
        self.ids = itertools.count(1)
        self.calls: dict[int, asyncio.Future] = {}     # request id -> its response, for call()

    # -- asyncio.Protocol --------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            f"GET {self._path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n\r\n".encode())

    def connection_lost(self, exc) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(exc or ConnectionError("closed during the upgrade"))
        if not self.closed.done():
            self.closed.set_result(self.close_code)

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        if self._http:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[:buf.find(b"\r\n")])
            del buf[:end + 4]
            self._http = False
            if b" 101 " not in status + b" ":
                if not self.upgraded.done():
                    self.upgraded.set_exception(ConnectionError(f"upgrade refused: {status!r}"))
                self.transport.close()
                return
            if not self.upgraded.done():       # (done: the caller gave up waiting)
                self.upgraded.set_result(None)
        pos = 0
        size = len(buf)
        on_message = self.on_message
        while size - pos >= 2:
            b0 = buf[pos]
            n = buf[pos + 1] & 0x7F
            start = pos + 2
            if n == 126:
                if size - start < 2:
                    break
                n = _LEN_16.unpack_from(buf, start)[0]
                start += 2
            elif n == 127:
                if size - start < 8:
                    break
                n = _LEN_64.unpack_from(buf, start)[0]
                start += 8
            end = start + n
            if end > size:
                break
            payload = bytes(buf[start:end])
            pos = end
            opcode = b0 & 0x0F
            if opcode == OP_TEXT or opcode == OP_BINARY:
                if b0 & 0x80:
                    on_message(payload)
                else:
                    self._frag = [payload]
            elif opcode == OP_CONT and self._frag is not None:
                self._frag.append(payload)
                if b0 & 0x80:
                    message, self._frag = b"".join(self._frag), None
                    on_message(message)
            elif opcode == OP_PING:
                self.transport.write(client_frame(payload, OP_PONG))
            elif opcode == OP_CLOSE:
                self.close_code = _LEN_16.unpack_from(payload)[0] if len(payload) >= 2 else 1005
                if not self.transport.is_closing():
                    self.transport.write(client_frame(payload[:2], OP_CLOSE))
                    self.transport.close()
        if pos:
            del buf[:pos]
        self.on_batch()

    # -- For subclasses ------------------------------------------------------------

    def on_message(self, payload: bytes) -> None:
        """One text (or binary) message from the server."""

    def on_batch(self) -> None:
        """Called after each read has been parsed; write what it produced here."""

    def call(self, method: str, params: dict) -> asyncio.Future:
        """Send a request; the subclass resolves ``calls[id]`` when its answer comes."""
        request_id = next(self.ids)
        future = asyncio.get_running_loop().create_future()
        self.calls[request_id] = future
        self.send(msgspec.json.encode({"jsonrpc": "2.0", "id": request_id, "method": method,
                                       "params": params}))
        return future

    def send(self, payload: bytes) -> None:
        self.transport.write(client_frame(payload))

    def send_many(self, payloads: list[bytes]) -> None:
        if payloads:
            self.transport.write(b"".join([client_frame(p) for p in payloads]))

    def close(self, code: int = 1000) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(_LEN_16.pack(code), OP_CLOSE))


async def connect(factory, host: str, port: int, timeout: float = 10.0):
    """Open a TCP connection with ``factory()`` (a WsProtocol) and wait for the upgrade."""
    loop = asyncio.get_running_loop()
    _, proto = await asyncio.wait_for(loop.create_connection(factory, host, port), timeout)
    await asyncio.wait_for(proto.upgraded, timeout)
    return proto


async def close_all(protos, timeout: float = 3.0) -> None:
    """Send a close frame on each connection and wait (bounded) for the server to close."""
    for p in protos:
        p.close()
    waits = [p.closed for p in protos if not p.closed.done()]
    if waits:
        await asyncio.wait(waits, timeout=timeout)
    for p in protos:
        if p.transport is not None and not p.transport.is_closing():
            p.transport.close()
