"""Answers to public reads, kept and served again while the data behind them is unchanged.

Public GETs (an app's map, its list of the newest requests) ask the same
questions over and over, and the data changes seldom: a city of 400,000
calls a year commits a change every minute or so. An answer kept here is
served again only if

- the database's data version (:mod:`core.db.data_version`) is the one read
  *before* the answer was built: any commit since, by any process, and every
  kept answer is dropped; and
- it is younger than ``max_age`` seconds: what the database does not count
  (a change made outside Vigie on PostgreSQL) and answers that depend on the
  time (the spec's "last 90 days") are bounded by it.

A cache may also keep the parts answers are built from (an Open311 request's
entry, which many listings show): :meth:`AnswerCache.get` finds them under the
stamp of the answer being built. Its size is bounded in bytes, as the caller
counts them (least recently used first out); a value larger than a tenth of
it is not kept. The caches are per process (a cluster of processes shares the
data version, not the answers). Thread-safe: reads run on the event loop and
in worker threads.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from core.db.data_version import UNKNOWN, DataVersion


@dataclass(frozen=True)
class Answer:
    """A response as kept: status, content type and body."""

    status: int
    content_type: str
    body: bytes


@dataclass(frozen=True)
class Stamp:
    """When a lookup was made: the data version and the clock, read before building."""

    version: int
    at: float


class AnswerCache:
    def __init__(self, data_version: DataVersion, max_bytes: int, max_age: float) -> None:
        self.data_version = data_version
        self.max_bytes = max_bytes
        self.max_age = max_age
        self._answers: OrderedDict[Hashable, tuple[float, Any, int]] = OrderedDict()
        self._bytes = 0
        self._version: int | None = None
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0 and self.max_age > 0

    def stamp(self) -> Stamp:
        """The data version and the clock now: read it before building an answer."""
        now = time.monotonic()
        return Stamp(self.data_version.current() if self.enabled else UNKNOWN, now)

    def lookup(self, key: Hashable) -> tuple[Any, Stamp]:
        """What is kept for ``key`` if it is still good (else None), and the stamp
        under which to :meth:`keep` a new one (build it after this call, not before)."""
        stamp = self.stamp()
        found = self.get(key, stamp)
        with self._lock:
            if found is None:
                self.misses += 1
            else:
                self.hits += 1
        return found, stamp

    def get(self, key: Hashable, stamp: Stamp) -> Any:
        """What is kept for ``key``, if nothing was committed since ``stamp``'s
        version (for the parts of an answer: the stamp of its lookup)."""
        with self._lock:
            if not self._holds(stamp):
                return None
            found = self._answers.get(key)
            if found is None:
                return None
            if stamp.at - found[0] >= self.max_age:
                self._forget(key)
                return None
            self._answers.move_to_end(key)
            return found[1]

    def keep(self, key: Hashable, stamp: Stamp, value: Any, size: int | None = None) -> None:
        """Keep ``value`` (an :class:`Answer`, or a part of one of ``size`` bytes),
        built after reading ``stamp``."""
        if size is None:
            size = len(value.body)
        if size > self.max_bytes // 10:
            return
        with self._lock:
            if not self._holds(stamp):  # a commit came while it was built
                return
            if key in self._answers:
                self._forget(key)
            self._answers[key] = (stamp.at, value, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                self._forget(next(iter(self._answers)))

    @property
    def size(self) -> tuple[int, int]:
        """How many values are kept, and their bytes."""
        with self._lock:
            return len(self._answers), self._bytes

    def _holds(self, stamp: Stamp) -> bool:
        """Whether what is kept is of ``stamp``'s version; a newer version drops it
        all (data versions only grow). Under the lock."""
        if stamp.version == UNKNOWN or not self.enabled:
            return False
        if self._version is None or stamp.version > self._version:
            self._answers.clear()
            self._bytes = 0
            self._version = stamp.version
        return stamp.version == self._version

    def _forget(self, key: Hashable) -> None:
        self._bytes -= self._answers.pop(key)[2]
