"""Abuse limits: token buckets per client address and per api_key, and a body cap.

The buckets are core's (:mod:`core.ratelimit`), kept in the process: with
several API processes each enforces its own, so the effective limit is the
configured one times the number of processes.
"""

from __future__ import annotations

from collections.abc import Hashable

from starlette.requests import Request

from core.ratelimit import RateLimit, TokenBuckets, client_address, retry_after

from .formats import Open311Error

__all__ = [
    "MAX_BODY_BYTES", "TokenBuckets", "client_address", "read_capped_body", "refuse_if_limited",
]  # fmt: skip

# A POST requests body: a 4,000-character description percent-encoded in UTF-8
# is under 36 KiB, and the other fields are short.
MAX_BODY_BYTES = 64 * 1024


def refuse_if_limited(buckets: TokenBuckets, key: Hashable, limit: RateLimit, what: str) -> None:
    """Raise the 429 refusal, with Retry-After, when ``key`` has no token left."""
    wait = buckets.take(key, limit)
    if wait > 0:
        seconds = retry_after(wait)
        raise Open311Error(
            429,
            f"too many requests {what}; try again in {seconds} s",
            headers={"Retry-After": str(seconds)},
        )


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
