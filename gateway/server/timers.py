"""The server's timers: tickers, the scheduler's periodic commands, snapshots, heartbeats.

Each runs on the event loop and only asks the core (or durability) for what is
due; what they produce leaves with the next turn, like any request's output.
"""
from __future__ import annotations

import asyncio
import logging

from gateway.core.effects import CLOSE_HEARTBEAT_TIMEOUT, HEARTBEAT
from gateway.core.scheduler import Scheduler

log = logging.getLogger("gpux.gateway")

TICKER_INTERVAL_S = 0.1
TIMER_INTERVAL_S = 1.0


async def tickers(server) -> None:
    """Tickers and curves that changed, at most every 100 ms."""
    while True:
        await asyncio.sleep(TICKER_INTERVAL_S)
        try:
            server.core.tick()
            server.end_turn()
        except Exception:
            log.exception("publishing tickers failed")


async def schedule(server) -> None:
    """Every interval: a snapshot if one is due, and the scheduler's commands."""
    params = server.config.schedule
    scheduler = Scheduler(params, server.venue, server.venue.now())
    core, durability = server.core, server.durability
    while True:
        await asyncio.sleep(min(TIMER_INTERVAL_S, params.mark_interval_s))
        try:
            durability.maybe_snapshot()
            core.snapshot_seq = durability.snapshot_seq
            durability.prune_archive()
        except Exception:
            log.exception("starting a snapshot failed")
        for command in scheduler.commands(server.venue.now()):
            try:
                core.submit(command)
            except Exception:
                log.exception("the scheduled %s failed", type(command).__name__)
        server.end_turn()


async def heartbeat(server, conn, interval: int) -> None:
    """A heartbeat every ``interval`` s; a client silent for two intervals is closed."""
    loop = asyncio.get_running_loop()
    while conn.closing is None:
        await asyncio.sleep(interval)
        if loop.time() - conn.state.last_rx > 2 * interval:
            server.core.out.close(conn.state, CLOSE_HEARTBEAT_TIMEOUT, "heartbeat timeout")
            server.end_turn()
            return
        conn.push(HEARTBEAT)
