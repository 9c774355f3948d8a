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

The parts answers are built from (an Open311 request's entry, which many
listings show) are kept by an :class:`EntryCache`, each with the mark of the
row it was built from (a ticket's ``updated_at``): a commit drops none of
them, and a part is used again only if the row read for the new answer still
bears the same mark. While residents post reports, the listings are built
again after each commit, from the entries of the tickets that did not change.

Each cache's size is bounded in bytes, as the caller counts them (least
recently used first out); a value larger than a tenth of it is not kept. The
caches are per process (a cluster of processes shares the data version, not
the answers). Thread-safe: reads run on the event loop and in worker threads.
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


class _Kept:
    """Values by key, bounded in bytes (least recently used first out) and in age;
    ``hits`` and ``misses`` count the look-ups."""

    def __init__(self, max_bytes: int, max_age: float) -> None:
        self.max_bytes = max_bytes
        self.max_age = max_age
        self._values: OrderedDict[Hashable, tuple[float, Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0 and self.max_age > 0

    @property
    def size(self) -> tuple[int, int]:
        """How many values are kept, and their bytes."""
        with self._lock:
            return len(self._values), self._bytes

    def _find(self, key: Hashable, now: float) -> Any:
        """The value kept for ``key`` if young enough (else None). Under the lock."""
        found = self._values.get(key)
        if found is None:
            return None
        if now - found[0] >= self.max_age:
            self._forget(key)
            return None
        self._values.move_to_end(key)
        return found[1]

    def _put(self, key: Hashable, at: float, value: Any, size: int) -> None:
        """Keep ``value``, made at ``at``. Under the lock."""
        if key in self._values:
            self._forget(key)
        self._values[key] = (at, value, size)
        self._bytes += size
        while self._bytes > self.max_bytes:
            self._forget(next(iter(self._values)))

    def _clear(self) -> None:
        self._values.clear()
        self._bytes = 0

    def _forget(self, key: Hashable) -> None:
        self._bytes -= self._values.pop(key)[2]


class AnswerCache(_Kept):
    """Whole answers, kept while the database's data version does not move."""

    def __init__(self, data_version: DataVersion, max_bytes: int, max_age: float) -> None:
        super().__init__(max_bytes, max_age)
        self.data_version = data_version
        self._version: int | None = None

    def stamp(self) -> Stamp:
        """The data version and the clock now: read it before building an answer."""
        now = time.monotonic()
        return Stamp(self.data_version.current() if self.enabled else UNKNOWN, now)

    def lookup(self, key: Hashable) -> tuple[Answer | None, Stamp]:
        """What is kept for ``key`` if it is still good (else None), and the stamp
        under which to :meth:`keep` a new one (build it after this call, not before)."""
        stamp = self.stamp()
        with self._lock:
            found = self._find(key, stamp.at) if self._holds(stamp) else None
            if found is None:
                self.misses += 1
            else:
                self.hits += 1
        return found, stamp

    def keep(self, key: Hashable, stamp: Stamp, answer: Answer) -> None:
        """Keep ``answer``, built after reading ``stamp``."""
        size = len(answer.body)
        if size > self.max_bytes // 10:
            return
        with self._lock:
            if self._holds(stamp):  # else a commit came while it was built
                self._put(key, stamp.at, answer, size)

    def _holds(self, stamp: Stamp) -> bool:
        """Whether what is kept is of ``stamp``'s version; a newer version drops it
        all (data versions only grow). Under the lock."""
        if stamp.version == UNKNOWN or not self.enabled:
            return False
        if self._version is None or stamp.version > self._version:
            self._clear()
            self._version = stamp.version
        return stamp.version == self._version


class EntryCache(_Kept):
    """Parts of answers, each kept with the mark of the row it was built from
    (which changes whenever the row does: a ticket's ``updated_at``)."""

    def get(self, key: Hashable, mark: Hashable) -> Any:
        """The part kept for ``key`` if it was built from a row bearing ``mark``."""
        if not self.enabled:
            return None
        with self._lock:
            found = self._find(key, time.monotonic())
            if found is None or found[0] != mark:
                self.misses += 1
                return None
            self.hits += 1
            return found[1]

    def keep(self, key: Hashable, mark: Hashable, part: Any, size: int) -> None:
        """Keep ``part``, built from a row bearing ``mark``; it takes about ``size`` bytes."""
        if not self.enabled or size > self.max_bytes // 10:
            return
        with self._lock:
            self._put(key, time.monotonic(), (mark, part), size)
