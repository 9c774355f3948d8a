"""Abuse limits: token buckets per client address and per api_key, and a body cap.

The buckets live in the process: with several API processes each enforces
its own, so the effective limit is the configured one times the number of
processes. That is the price of needing no shared store; the limits are there
to stop floods, not to meter.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Hashable

from starlette.requests import Request

from .formats import Open311Error
from .settings import RateLimit

# A POST requests body: a 4,000-character description percent-encoded in UTF-8
# is under 36 KiB, and the other fields are short.
MAX_BODY_BYTES = 64 * 1024


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


def refuse_if_limited(buckets: TokenBuckets, key: Hashable, limit: RateLimit, what: str) -> None:
    """Raise the 429 refusal, with Retry-After, when ``key`` has no token left."""
    wait = buckets.take(key, limit)
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise Open311Error(
            429,
            f"too many requests {what}; try again in {seconds} s",
            headers={"Retry-After": str(seconds)},
        )


def client_address(request: Request) -> str:
    """The caller's address as the server sees it (behind a proxy, uvicorn's
    ``--forwarded-allow-ips`` makes this the original client)."""
    return request.client.host if request.client else "unknown"


async def read_capped_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refused with 413 beyond ``limit`` bytes (before reading it
    when Content-Length already says so)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise Open311Error(413, f"request body too large: at most {limit} bytes")
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > limit:
            raise Open311Error(413, f"request body too large: at most {limit} bytes")
    return bytes(received)
