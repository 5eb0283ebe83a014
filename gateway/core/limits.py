"""Token buckets: the message rate limits of connections and accounts."""
from __future__ import annotations

from gateway.config import Bucket

# The buckets a connection draws on, by what a message is.
ORDER, REQUEST, SUBSCRIBE = "orders", "requests", "subscriptions"


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; each message takes one.

    Time is passed in (seconds, monotonic), so the bucket is easy to test.
    """

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, spec: Bucket, now: float) -> None:
        self.rate = spec.rate
        self.burst = spec.burst
        self.tokens = float(spec.burst)
        self.stamp = now

    def take(self, now: float) -> float:
        """Take a token; return 0.0, or the seconds until one is there (nothing taken)."""
        tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return 0.0
        self.tokens = tokens
        return (1.0 - tokens) / self.rate       # rate > 0: the config refuses 0

    def give_back(self) -> None:
        """Return a token taken by a message another bucket then refused."""
        self.tokens = min(self.burst, self.tokens + 1.0)
