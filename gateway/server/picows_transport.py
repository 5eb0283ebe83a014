"""The server on picows instead of websockets (``[server] transport = "picows"``).

The same Server, core and Connection (its queue, conflation and writer); only
the socket's two ends change. A plain GET gets the market page (picows sends a
non-101 answer of the listener factory as an HTTP response and closes), /ws
upgrades, and each upgraded connection's frames go to ``Server.received``.
picows hands a message over frame by frame: fragments are joined here, up to
the same limit websockets enforces. Outbound, every frame of a turn is built
here and handed to the socket in one ``writelines``, as BatchingConnection does.
"""
from __future__ import annotations

import asyncio
import struct
from http import HTTPStatus

from multidict import CIMultiDict

from picows import (
    WSCloseCode, WSListener, WSMsgType, WSUpgradeResponse, WSUpgradeResponseWithListener,
    ws_create_server,
)

from gateway.core.effects import CLOSE_BINARY, CLOSE_NOT_UTF8
from gateway.server.websocket import WS_PATH

_LEN16 = struct.Struct("!BBH")
_LEN64 = struct.Struct("!BBQ")
_CODE = struct.Struct("!H")
TEXT_FIN = 0x81
CLOSE_FIN = 0x88
CLOSE_TIMEOUT_S = 2.0          # as websockets' close_timeout


def frame_header(opcode: int, size: int) -> bytes:
    """A server frame's header (servers do not mask)."""
    if size < 126:
        return bytes((opcode, size))
    if size < 1 << 16:
        return _LEN16.pack(opcode, 126, size)
    return _LEN64.pack(opcode, 127, size)


class PicowsSocket:
    """One upgraded connection as Connection uses it: writable, write_frames,
    writable_again, close."""

    def __init__(self, transport) -> None:
        self.ws = transport
        self.transport = transport.underlying_transport
        self.writable = True
        self.open = True
        self._drained: asyncio.Future | None = None

    def write_frames(self, frames) -> bool:
        if not self.open:
            return False
        chunks = []
        for frame in frames:
            chunks.append(frame_header(TEXT_FIN, len(frame)))
            chunks.append(frame)
        self.transport.writelines(chunks)
        return True

    async def writable_again(self) -> None:
        if not self.writable and self.open:
            self._drained = asyncio.get_running_loop().create_future()
            await self._drained
        if not self.open:
            raise ConnectionError("the connection closed")

    def paused(self, paused: bool) -> None:
        self.writable = not paused
        if not paused and self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def gone(self) -> None:
        self.open = False
        self.paused(False)

    async def close(self, code: int, reason: str) -> None:
        """Send a close frame with the code (any, 4000s included) and end the connection:
        once what is queued is sent, or after CLOSE_TIMEOUT_S if the client does not read."""
        if self.open:
            self.send_close(_CODE.pack(code) + reason.encode()[:123])
            self.open = False

    def send_close(self, payload: bytes) -> None:
        self.transport.writelines([frame_header(CLOSE_FIN, len(payload)), payload])
        self.ws.disconnect()
        asyncio.get_running_loop().call_later(CLOSE_TIMEOUT_S, self.ws.disconnect, False)


class Listener(WSListener):
    """The picows side of one connection: its frames to the server, its end."""

    def __init__(self, server) -> None:
        self.server = server
        self.sock: PicowsSocket | None = None
        self.conn = None
        self.parts: list[bytes] | None = None
        self.size = 0
        self.limit = server.limits.max_frame_bytes * 4

    def on_ws_connected(self, transport) -> None:
        self.sock = PicowsSocket(transport)
        self.conn = self.server.opened(self.sock)
        self.conn.resume_reading = self.sock.transport.resume_reading

    def on_ws_frame(self, transport, frame) -> None:
        kind = frame.msg_type
        if kind is WSMsgType.BINARY:          # the protocol is text
            self.conn.close(*CLOSE_BINARY)
            self.parts = None
        elif kind is WSMsgType.TEXT:
            if frame.fin:
                self._message(frame.get_payload_as_bytes())
            else:
                self.parts, self.size = [frame.get_payload_as_bytes()], frame.payload_size
        elif kind is WSMsgType.CONTINUATION and self.parts is not None:
            self.parts.append(frame.get_payload_as_bytes())
            self.size += frame.payload_size
            if self.size > self.limit:
                self.conn.close(1009, "message too big")
                self.parts = None
            elif frame.fin:
                message, self.parts = b"".join(self.parts), None
                self._message(message)
        elif kind is WSMsgType.CLOSE:         # echo its code; none (NO_INFO) is echoed as none
            code = frame.get_close_code()
            self.sock.send_close(b"" if code is WSCloseCode.NO_INFO
                                 else _CODE.pack(code.value))

    def _message(self, payload: bytes) -> None:
        if len(payload) > self.limit:
            self.conn.close(1009, "message too big")
            return
        if not payload.isascii():          # picows does not check what websockets does
            try:
                payload.decode()
            except UnicodeDecodeError:
                self.conn.close(*CLOSE_NOT_UTF8)
                return
        if self.server.received(self.conn, payload):
            self.sock.transport.pause_reading()          # the inbox is full

    def on_ws_disconnected(self, transport) -> None:
        if self.sock is not None:
            self.sock.gone()
            self.server.ended(self.conn)
            self.conn.close(1000, "")          # the writer sees the socket gone and stops

    def pause_writing(self) -> None:
        if self.sock is not None:
            self.sock.paused(True)

    def resume_writing(self) -> None:
        if self.sock is not None:
            self.sock.paused(False)


def _http(status: int, headers: list, body: bytes) -> WSUpgradeResponse:
    """A plain HTTP response (picows adds Content-Length for a body, and closes)."""
    response = WSUpgradeResponse()
    response.version = b"HTTP/1.1"
    response.status = HTTPStatus(status)
    response.headers = CIMultiDict((k, v) for k, v in headers if k != "Content-Length")
    response.body = body or None
    return response


async def serve_picows(server, host: str, port: int):
    """Listen with picows; return the asyncio Server."""
    pages = server.pages

    def route(request):
        path = request.path.decode("latin-1")
        if path.split("?", 1)[0] == WS_PATH:
            if request.headers.get("upgrade", "").lower() != "websocket":
                return WSUpgradeResponseWithListener(WSUpgradeResponse.create_error_response(
                    426, b"gpux: /ws speaks websocket: send an Upgrade request\n",
                    [("Upgrade", "websocket")]), None)
            return Listener(server)
        if request.headers.get("upgrade", "").lower() == "websocket":
            return WSUpgradeResponseWithListener(WSUpgradeResponse.create_error_response(
                404, f"gpux: the websocket endpoint is {WS_PATH}\n".encode()), None)
        status, headers, body = pages.answer(path, request.headers.getall("if-none-match", []))
        return WSUpgradeResponseWithListener(_http(status, headers, body), None)

    return await ws_create_server(
        route, host, port, max_frame_size=server.limits.max_frame_bytes * 4,
        enable_auto_ping=True, auto_ping_idle_timeout=20, auto_ping_reply_timeout=20,
        use_aiofastnet=False)
