"""Per-key rate limiting: token buckets per API key, in this process.

Requests: each key has a bucket of `burst` tokens refilled at `per_minute / 60`
tokens a second; a request takes one token or is refused with 429 and
`Retry-After` (whole seconds until a token is back). The API takes it at its door
for every request; the console takes it for each lookup (`Members.admit`), so a
member's lookups draw on one bucket whichever edge they come through. Taking a
token reads the bucket's state in the same locked step (`Quota`: its size, whole
tokens left, whole seconds until it is full again), which the API sends back as the
`RateLimit-Limit` / `-Remaining` / `-Reset` fields; a refusal carries it too
(`OutOfRequests`). With the limit off (0 a minute) there is no bucket and no state.

Index work: each key also has a bucket of query units (hashdb/budget.py: one plain
query at the default threshold is 1), refilled at `HASHDB_KEY_COST_PER_SECOND` up
to `HASHDB_KEY_COST_BURST`; a lookup spends its cost (`spend`, from the matching
use case, `hashdb/consortium/matching.py`) or is refused with 429 and the time
until enough units are back. Units, not requests, so that a
batch of 100 plain queries costs what 100 single lookups cost (100 units) and a
member's sustained index work is bounded whatever the shape of its requests.

The two budgets do different jobs. The request rate bounds the request path's own
work (a key check, parsing, a response) and is set so that it does not stand in the
way of a platform that looks up every upload as it arrives: by default 1,000
requests a second (burst 1,000). The query-unit budget is what protects the index:
by default 10,000 units a second (burst HASHDB_MAX_REQUEST_COST, 50,000), so a key
may look up 1,000 single hashes a second, or up to 10,000 hashes a second in
batches, and no shape of request buys more index work than that.

The buckets live in the worker process, not in the database: a shared limiter
would put a write on the hot path of every request, which costs more than the
abuse it prevents for a consortium of known, authenticated members. The price is
that a key's ceiling across a deployment is the configured rate times the number
of worker processes (`HASHDB_WORKERS` x servers); the defaults are generous, and a
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


@dataclass(frozen=True, slots=True)
class Quota:
    """A key's request bucket just after a request was counted (or refused)."""

    limit: int  # the bucket's size: HASHDB_RATE_LIMIT_BURST requests
    remaining: int  # whole requests left now
    reset: int  # whole seconds until the bucket is full again; 0 when it is


class OutOfRequests(RateLimited):
    """RateLimited by the key's request bucket (429, `rate_limited`, as any other),
    with the bucket's state at the refusal, for the RateLimit header fields."""

    def __init__(self, message: str, *, retry_after: int, quota: Quota) -> None:
        super().__init__(message, retry_after=retry_after)
        self.quota = quota


class RateLimiter:
    def __init__(
        self, per_minute: int, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.per_second = per_minute / 60.0
        self.burst = burst
        self._clock = clock
        self._buckets: dict[int, _Bucket] = {}
        self._costs: dict[int, _Bucket] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.per_second > 0

    def take(self, key_id: int) -> Quota | None:
        """Spend one token of `key_id`'s request bucket and return the bucket's state
        after it, or raise OutOfRequests; None (nothing counted) when the limit is off."""
        if not self.enabled:
            return None
        left, wait = self._withdraw(self._buckets, key_id, 1.0, self.per_second, self.burst)
        quota = Quota(
            limit=self.burst,
            remaining=math.floor(left + _SLACK),
            reset=_whole_seconds((self.burst - left) / self.per_second),
        )
        if wait > 0:
            raise OutOfRequests(
                f"rate limit of {self.per_second * 60:g} requests a minute exceeded for this key",
                retry_after=max(1, _whole_seconds(wait)),
                quota=quota,
            )
        return quota

    def spend(self, key_id: int, units: int, per_second: float, capacity: int) -> None:
        """Spend `units` query units of `key_id`'s index-work bucket (refilled at
        `per_second` up to `capacity`; 0 a second disables it), or raise RateLimited."""
        if per_second <= 0 or units <= 0:
            return
        # A request above the capacity is refused earlier (max_request_cost <= capacity);
        # clamping keeps one that slips through from waiting forever.
        need = float(min(units, capacity))
        _, wait = self._withdraw(self._costs, key_id, need, per_second, capacity)
        if wait > 0:
            raise RateLimited(
                f"index work budget of {per_second:g} query units a second "
                f"(HASHDB_KEY_COST_PER_SECOND, burst {capacity}) exceeded for this key; "
                f"this request costs {units} units",
                retry_after=max(1, _whole_seconds(wait)),
                cost=units,
                budget_per_second=per_second,
            )

    def _withdraw(
        self, buckets: dict[int, _Bucket], key_id: int, amount: float, rate: float, capacity: float
    ) -> tuple[float, float]:
        """Take `amount` from the key's bucket: (tokens left, 0.0) if taken, else
        (tokens there, seconds until `amount` is back)."""
        now = self._clock()
        with self._lock:
            bucket = buckets.get(key_id)
            if bucket is None:
                bucket = buckets[key_id] = _Bucket(float(capacity), now)
            bucket.tokens = min(capacity, bucket.tokens + (now - bucket.at) * rate)
            bucket.at = now
            if bucket.tokens >= amount:
                bucket.tokens -= amount
                return bucket.tokens, 0.0
            return bucket.tokens, (amount - bucket.tokens) / rate


# Refills are float arithmetic: a bucket that is a hair's breadth under a whole token
# (or over a whole second) counts as the whole one, not one less (or one more).
_SLACK = 1e-9


def _whole_seconds(seconds: float) -> int:
    return max(0, math.ceil(seconds - _SLACK))
