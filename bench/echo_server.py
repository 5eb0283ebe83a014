"""The baseline for the gateway benchmarks: a bare JSON-RPC echo server on gpux's stack.

    python -m bench.echo_server [--host 127.0.0.1] [--port 8766]

The same stack as gateway.server.websocket (websockets' asyncio server, uvloop,
compression off) with none of the exchange: each request frame is decoded
with msgspec, and answered at once with ``{"jsonrpc": "2.0", "id": <its id>,
"result": <its params plus "order_id": n>}`` encoded with msgspec, so it does
the JSON work of a server of its kind (one decode, one encode of a message
about the request's size) and a load generator can drive it exactly as it
drives gpux (the order_id lets it send the same cancels). Each reply is sent
with its own ``await ws.send``, as a plain websockets server does.

It prints ``listening on ws://HOST:PORT/ws`` once it listens, like ``gpux
serve``, and stops on SIGINT or SIGTERM.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import signal
import sys

import msgspec
import uvloop
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed


async def main(host: str, port: int) -> None:
    decode = msgspec.json.decode
    encode = msgspec.json.Encoder().encode
    order_ids = itertools.count(1)

    async def echo(ws) -> None:
        try:
            async for frame in ws:
                try:
                    request = decode(frame)
                    params = request.get("params")
                    result = dict(params) if isinstance(params, dict) else {}
                    result["order_id"] = next(order_ids)
                    reply = {"jsonrpc": "2.0", "id": request.get("id"), "result": result}
                except (msgspec.DecodeError, AttributeError):
                    reply = {"jsonrpc": "2.0", "id": None,
                             "error": {"code": -32700, "message": "parse error"}}
                await ws.send(encode(reply), text=True)
        except ConnectionClosed:
            pass

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with serve(echo, host, port, compression=None, max_size=2**20) as server:
        bound = server.sockets[0].getsockname()
        print(f"echo: listening on ws://{bound[0]}:{bound[1]}/ws", flush=True)
        await stop.wait()


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.echo_server", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766, help="0 picks a free port")
    args = parser.parse_args(argv)
    uvloop.run(main(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(cli())
