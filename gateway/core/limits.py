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

    def take(self, now: float, n: int = 1) -> float:
        """Take ``n`` tokens; return 0.0, or the seconds until they are there (nothing taken;
        infinity when ``n`` is more than the bucket holds)."""
        tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens = tokens
        if tokens >= n:
            self.tokens = tokens - n
            return 0.0
        if n > self.burst:
            return float("inf")
        return (n - tokens) / self.rate       # rate > 0: the config refuses 0

    def full(self, now: float) -> bool:
        """Whether the bucket holds its whole burst by ``now`` (as good as a new one)."""
        return self.tokens + (now - self.stamp) * self.rate >= self.burst

    def give_back(self, n: int = 1) -> None:
        """Return tokens taken by a message another bucket then refused."""
        self.tokens = min(self.burst, self.tokens + n)
