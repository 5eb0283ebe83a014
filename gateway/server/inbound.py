"""Frames in, in turns: no connection's requests hold the others' up.

A client that pipelines hundreds of requests in one write hands the server
hundreds of frames in one read; run one after another, every other client
waits for all of them (a burst of the costliest answers the rate limits let
through held a clean client up for 50 ms). So each connection's frames wait
in its own inbox, and the scheduler takes one frame from each connection
that has any, in turn, for a slice of the loop's time; then the loop looks
at the sockets again (a frame that came meanwhile joins the round) and the
turn is sealed. A connection's frames still run in the order it sent them,
and one connection alone runs as fast as before, a slice at a time.

An inbox holds at most ``INBOX_FRAMES``; a connection that fills it stops
being read (the transport pauses) until the scheduler has taken half.
"""
from __future__ import annotations

from collections import deque

INBOX_FRAMES = 64          # frames read ahead of the core, per connection
SLICE_S = 0.002            # the core's work between two looks at the sockets


class Inbound:
    """The round of connections with frames waiting.

    Args:
        loop: The event loop.
        handle: ``(conn, frame)``: run one frame through the core.
        end_turn: Called after each slice (the turn is sealed once the loop has run it).
    """

    def __init__(self, loop, handle, end_turn) -> None:
        self.loop = loop
        self.handle = handle
        self.end_turn = end_turn
        self._ready: deque = deque()
        self._scheduled = False

    def received(self, conn, frame) -> bool:
        """Queue a frame of ``conn``; True when its inbox is full: the transport stops
        reading it until ``conn.resume_reading()``."""
        inbox = conn.inbox
        inbox.append(frame)
        if len(inbox) == 1:
            self._ready.append(conn)
            if not self._scheduled:
                self._scheduled = True
                self.loop.call_soon(self._serve)
        if len(inbox) >= INBOX_FRAMES:
            conn.reading_paused = True
            return True
        return False

    def _serve(self) -> None:
        """One slice: a frame from each ready connection in turn, until none has any or the
        slice is used up."""
        ready, loop, handle = self._ready, self.loop, self.handle
        deadline = loop.time() + SLICE_S
        while ready:
            conn = ready.popleft()
            inbox = conn.inbox
            handle(conn, inbox.popleft())
            if inbox:
                ready.append(conn)
            if conn.reading_paused and len(inbox) <= INBOX_FRAMES // 2:
                conn.reading_paused = False
                conn.resume_reading()
            if loop.time() >= deadline:
                break
        self.end_turn()
        if ready:
            loop.call_soon(self._serve)
        else:
            self._scheduled = False

    def drain(self, conn) -> None:
        """The connection is ending: run what it sent before it went (at most an inbox)."""
        inbox = conn.inbox
        if inbox:
            self._ready.remove(conn)
            while inbox:
                self.handle(conn, inbox.popleft())
        conn.reading_paused = False
