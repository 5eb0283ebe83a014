"""The server as a process: start, run until SIGINT or SIGTERM, stop cleanly."""
from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from gateway.config import Config
from gateway.demo.participants import Demo, levels_of
from gateway.server.websocket import Server


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
