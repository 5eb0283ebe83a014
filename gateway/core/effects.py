"""What the core asks of the adapter besides sending: close codes, heartbeats."""
from __future__ import annotations

import msgspec

# Close codes (RFC 6455 and the 4000-4999 application range).
CLOSE_POLICY = 1008            # flooding after rate_limited
CLOSE_BINARY = (1003, "binary frames are not accepted: send JSON-RPC as text")
CLOSE_NOT_UTF8 = (1007, "a text frame must be UTF-8")    # RFC 6455; websockets' own too
CLOSE_TOO_MANY = (1013, "too many connections from this address; try again later")
CLOSE_TOO_BIG = 1009           # frame_too_large
CLOSE_SLOW_CONSUMER = 4000
CLOSE_HEARTBEAT_TIMEOUT = 4001

HEARTBEAT = msgspec.json.encode({"jsonrpc": "2.0", "method": "heartbeat",
                                 "params": {"type": "test_request"}})


class Heartbeat(msgspec.Struct, frozen=True):
    """Send the session a heartbeat every ``interval`` s while it is quiet (0: stop)."""
    interval: int
