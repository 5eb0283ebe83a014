"""Frames in, in turns: no connection's requests hold the others' up.

A client that pipelines hundreds of requests in one write hands the server
hundreds of frames in one read; run one after another, every other client
waits for all of them (a burst of the costliest answers the rate limits let
through held a clean client up for 50 ms). So a connection's frames run as
they are read only until it has had ``TURN_S`` of the loop's time in this
turn (from one seal to the next); the rest wait in its inbox, its backlog.
Backlogs are worked through a slice per turn, a connection's frames ``TURN_S``
at a time, in turn; meanwhile the loop goes on reading the sockets, and a
frame from a connection without a backlog runs as soon as it is read. A
connection's frames still run in the order it sent them; frames that fit in
a turn run as they did before (first come, first served, and each turn's
answers to a connection leave in one write).

An inbox holds at most ``INBOX_FRAMES``; a connection that fills it stops
being read (the transport pauses) until half of it has run.
"""
from __future__ import annotations

import logging
import time
from collections import deque

log = logging.getLogger("gpux.gateway")
_clock = time.perf_counter          # the loop's own clock moves in whole milliseconds

INBOX_FRAMES = 64          # frames read ahead of the core, per connection
TURN_S = 0.0005            # a connection's frames in a row, before another's
SLICE_S = 0.002            # backlogs worked through per turn, beside as long as frames
                           # ran as they were read (so a backlog never starves)


class Inbound:
    """Runs frames as they are read, within each connection's share of a turn, and the
    backlogs of connections past their share, a slice at a time.

    Args:
        loop: The event loop.
        handle: ``(conn, frame)``: run one frame through the core.
        end_turn: Seals the turn once the loop has run what is ready.
    """

    def __init__(self, loop, handle, end_turn) -> None:
        self.loop = loop
        self.handle = handle
        self.end_turn = end_turn
        self.turn = 0                      # which turn it is: the seal moves it on
        self._backlog: deque = deque()
        self._scheduled = False
        self._ran_at_once = 0.0            # the time frames ran as read, since the last slice
        self._stopped = False

    def sealed(self) -> None:
        """A turn ended: every connection has its share again."""
        self.turn += 1

    def _run(self, conn, frame) -> None:
        """One frame; a failure is the core's bug, logged, and the round goes on."""
        try:
            self.handle(conn, frame)
        except Exception:
            log.exception("a frame of connection %s failed", conn.state.conn_id)

    def received(self, conn, frame) -> bool:
        """Run a frame of ``conn`` now, or queue it behind the connection's backlog; True
        when its inbox is full: the transport stops reading it until
        ``conn.resume_reading()``."""
        inbox = conn.inbox
        if not inbox:
            now = _clock()
            if conn.turn != self.turn:
                conn.turn, conn.turn_ends = self.turn, now + TURN_S
            if now < conn.turn_ends:
                self._run(conn, frame)
                self._ran_at_once += _clock() - now
                self.end_turn()
                return False
            self._backlog.append(conn)
            if not self._scheduled:
                self._scheduled = True
                self.loop.call_soon(self._serve)
        inbox.append(frame)
        if len(inbox) >= INBOX_FRAMES:
            conn.reading_paused = True
            return True
        return False

    def _serve(self) -> None:
        """One slice of backlogs: each connection's frames for TURN_S, in turn; then the loop
        reads the sockets and seals the turn."""
        if self._stopped:
            return
        backlog, run = self._backlog, self._run
        now = _clock()
        deadline = now + SLICE_S + self._ran_at_once
        self._ran_at_once = 0.0
        while backlog:
            conn = backlog.popleft()
            inbox = conn.inbox
            turn_ends = now + TURN_S
            while True:                  # a turn's frames: their answers go in one write
                run(conn, inbox.popleft())
                now = _clock()
                if not inbox or now >= turn_ends:
                    break
            if inbox:
                backlog.append(conn)
            else:
                self._done(conn)
            if now >= deadline:
                break
        self.end_turn()
        if backlog:
            self.loop.call_soon(self._serve)
        else:
            self._scheduled = False

    def _done(self, conn) -> None:
        """A backlog has run: read the connection again, or end it if it has gone."""
        if conn.ended is not None:
            then, conn.ended = conn.ended, None
            then()
        elif conn.reading_paused:
            conn.reading_paused = False
            conn.resume_reading()

    def ended(self, conn, then) -> None:
        """The connection has gone: what it sent still runs, in its turns (a client that
        pipelines a read's worth of frames and resets must not stall the others), and
        ``then()`` after its last frame."""
        conn.resume_reading = lambda: None     # no socket to read any more
        if conn.inbox:
            conn.ended = then
        else:
            then()

    def finish(self) -> None:
        """The server is stopping: every backlog runs now, and nothing more is taken."""
        while self._backlog:
            conn = self._backlog.popleft()
            while conn.inbox:
                self._run(conn, conn.inbox.popleft())
            self._done(conn)
        self._stopped = True
