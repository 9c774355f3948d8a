"""Rate limits for public endpoints: token buckets per key (a client address, an
api_key, a sender number), kept in the process.

With several API processes each keeps its own buckets, so the effective limit
is the configured one times the number of processes. That is the price of
needing no shared store; the limits are there to stop floods, not to meter.
A refused request must be refused before anything is stored.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Hashable

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request


class RateLimit(BaseModel):
    """A token bucket: ``burst`` calls at once, refilled at ``per_minute``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    per_minute: float = Field(gt=0)
    burst: int = Field(ge=1)


class TokenBuckets:
    """One bucket per key; thread-safe (sync routes run in a thread pool)."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000
    ) -> None:
        self.clock = clock
        self.max_keys = max_keys
        self._lock = threading.Lock()
        # key -> (tokens left, when counted, when the bucket is full again)
        self._buckets: dict[Hashable, tuple[float, float, float]] = {}

    def take(self, key: Hashable, limit: RateLimit) -> float:
        """Take one token: 0.0 when allowed, else the seconds until one is back."""
        rate = limit.per_minute / 60.0
        now = self.clock()
        with self._lock:
            tokens, counted_at, _full_at = self._buckets.get(key, (float(limit.burst), now, now))
            tokens = min(float(limit.burst), tokens + (now - counted_at) * rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / rate
            self._buckets[key] = (tokens, now, now + (limit.burst - tokens) / rate)
            if len(self._buckets) > self.max_keys:
                self._forget_full(now)
            return wait

    def _forget_full(self, now: float) -> None:
        # A bucket that has refilled is the same as no bucket.
        for key in [k for k, (_t, _c, full_at) in self._buckets.items() if full_at <= now]:
            del self._buckets[key]


def retry_after(wait: float) -> int:
    """Whole seconds for a ``Retry-After`` header: at least 1."""
    return max(1, math.ceil(wait))


def client_address(request: Request) -> str:
    """The caller's address as the server sees it (behind a proxy, uvicorn's
    ``--forwarded-allow-ips`` makes this the original client)."""
    return request.client.host if request.client else "unknown"
