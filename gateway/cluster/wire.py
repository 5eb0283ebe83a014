"""What a cluster's gateways and its leading matcher say to each other over NATS.

A gateway serves the connections that only read the market from its own replica
of the stream; a connection's account requests (from its ``auth.login`` on) are
the leader's, since only the leader's state is current (read your writes). The
gateway sends the leader each such connection's frames, in order, and the leader
runs them through its request core as a session of that gateway's connection and
sends back what the outbox holds for it: replies (marked, so the gateway counts
what it still waits for), private updates, closes.

Both directions are plain NATS messages (at most once), numbered per sender (a
leader's from 1 for each gateway, under its lease's epoch): a gap means something
was lost, and the sessions it may have touched are ended (their clients reconnect
and resend by client_order_id). A gateway sends, every second, the connections it
has at the leader; the leader ends the sessions of a gateway it has not heard from
for ``GATEWAY_TIMEOUT_S`` (cancel-on-disconnect fires as on a disconnect) and those
its gateway no longer lists, and closes connections it does not know (a new leader
knows none). The leader writes to each gateway at least every second too; a gateway
that has not heard from it for ``GATEWAY_TIMEOUT_S``, or that sees a newer lead
(on the stream, or in a message), closes what the leader served, and drops what an
older lead sends.
"""
from __future__ import annotations

import re
import secrets
from typing import Any

import msgspec

TO_LEADER = "gpux.rpc.leader"
GATEWAY_HEARTBEAT_S = 1.0
GATEWAY_TIMEOUT_S = 5.0
# A gateway's connection the leader does not know: its session is lost (a new leader).
CLOSE_SESSION_LOST = (1012, "the exchange's leader changed: connect and log in again")

# What a gateway says of a connection.
OPEN, FRAME, END, RESYNC, OVERSIZED = 0, 1, 2, 3, 4
# What the leader does with an answer NATS could not carry (max_payload): that connection
# closes, and the others are untouched.
CLOSE_TOO_BIG_FOR_NATS = (1011, "an answer too large for the cluster's messages "
                          "(NATS max_payload)")
HEADROOM = 4096             # a message's bytes beside its entries' payloads, at most
DEFAULT_MAX_PAYLOAD = 1 << 20       # nats-server's own default
ENTRY_BYTES = 32            # an entry's framing, roughly, beside its payload


class ToLeader(msgspec.Struct, array_like=True):
    """A gateway's message: ``entries`` are ``(what, conn_id, data)``: OPEN (None), FRAME
    (the frame's bytes), END (None), RESYNC (the channels to send the current state of),
    OVERSIZED (the size of a frame past the limit, which the leader refuses unread).
    ``live``: on a heartbeat, every connection the gateway has at the leader."""
    gateway: str
    seq: int
    entries: list[tuple[int, int, Any]]
    live: list[int] | None = None


class ToGateway(msgspec.Struct, array_like=True):
    """The leader's message to one gateway: ``entries`` are outbox entries
    ``(kind, conn_id, payload, channel)`` (gateway.core.outbox's kinds)."""
    epoch: int
    seq: int
    entries: list[tuple[int, int, Any, str | None]]


encode = msgspec.msgpack.Encoder().encode
decode_to_leader = msgspec.msgpack.Decoder(ToLeader).decode
decode_to_gateway = msgspec.msgpack.Decoder(ToGateway).decode


def to_gateway(gateway: str) -> str:
    return f"gpux.rpc.gateway.{gateway}"


def gateway_id(name: str) -> str:
    """A name for one run of a gateway (a subject token): its given name and a random
    part, so that a restarted gateway is a new one to the leader."""
    return f"{re.sub(r'[^A-Za-z0-9_-]', '_', name)[:40]}-{secrets.token_hex(4)}"


def entry_size(payload) -> int:
    """An entry's bytes in a message, roughly: its payload's and its framing's."""
    return ENTRY_BYTES + (len(payload) if type(payload) is bytes else 0)


def chunks(entries: list, size_of, limit: int) -> list[list]:
    """``entries`` cut into runs of at most ``limit`` bytes (an entry bigger alone)."""
    runs, run, size = [], [], 0
    for entry in entries:
        n = size_of(entry)
        if run and size + n > limit:
            runs.append(run)
            run, size = [], 0
        run.append(entry)
        size += n
    if run:
        runs.append(run)
    return runs
