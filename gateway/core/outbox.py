"""What one turn produced for the connections, in the order it must reach each.

The core fills an Outbox; the server adapter releases it only once the journal
holds every command the turn ran (ack after durable), and releases outboxes in
the order they were sealed. An entry is a message that may not be dropped (a
request's reply is marked as one, so that a cluster's gateway can count the
answers it waits for), a message a fresher one may replace (a book delta, a ticker: ``channel`` names
it), a channel's current state (sent even to a connection whose stream of that
channel was conflated, which it repairs), or a close once what precedes it is
sent.
"""
from __future__ import annotations

SEND, LATEST, CURRENT, CLOSE, REPLY = 0, 1, 2, 3, 4


class Outbox:
    """Entries ``(kind, session, payload, channel)`` in order; see the module doc."""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries: list[tuple] = []

    def __len__(self) -> int:
        return len(self.entries)

    def send(self, session, frame: bytes) -> None:
        self.entries.append((SEND, session, frame, None))

    def latest(self, session, channel: str, frame: bytes) -> None:
        self.entries.append((LATEST, session, frame, channel))

    def current(self, session, channel: str, frame: bytes) -> None:
        self.entries.append((CURRENT, session, frame, channel))

    def close(self, session, code: int, reason: str) -> None:
        """Close the session's connection when the turn ends; it is read no more meanwhile."""
        session.closing = True
        self.entries.append((CLOSE, session, (code, reason), None))

    def reply(self, session, frame: bytes) -> None:
        self.entries.append((REPLY, session, frame, None))

    def insert(self, at: int, session, frame: bytes) -> None:
        """A reply goes before the updates its request caused."""
        self.entries.insert(at, (REPLY, session, frame, None))

    def frames(self, session) -> list[bytes]:
        """What this outbox sends one session (for tests)."""
        return [payload for kind, s, payload, _ in self.entries
                if s is session and kind != CLOSE]
