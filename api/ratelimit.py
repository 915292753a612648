"""Per-key rate limiting: one token bucket per API key, in this process.

Each key has a bucket of `burst` tokens refilled at `per_minute / 60` tokens a
second; a request takes one token or is refused with 429 and `Retry-After` (whole
seconds until a token is back).

The buckets live in the worker process, not in the database: a shared limiter
would put a write on the hot path of every request, which costs more than the
abuse it prevents for a consortium of known, authenticated members. The price is
that a key's ceiling across a deployment is the configured rate times the number
of worker processes (`HASHDB_WORKERS` x servers); the default is generous, and a
limit meant as a hard quota should be divided by that number when configured.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from hashdb.errors import RateLimited


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    def __init__(
        self, per_minute: int, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.per_second = per_minute / 60.0
        self.burst = burst
        self._clock = clock
        self._buckets: dict[int, _Bucket] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.per_second > 0

    def take(self, key_id: int) -> None:
        """Spend one token of `key_id`'s bucket, or raise RateLimited."""
        if not self.enabled:
            return
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key_id)
            if bucket is None:
                bucket = self._buckets[key_id] = _Bucket(float(self.burst), now)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.per_second)
            bucket.at = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return
            wait = (1.0 - bucket.tokens) / self.per_second
        raise RateLimited(
            f"rate limit of {self.per_second * 60:g} requests a minute exceeded for this key",
            retry_after=max(1, math.ceil(wait)),
        )
