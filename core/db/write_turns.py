"""SQLite's one writer at a time, handed over in turn instead of polled for.

SQLite lets one transaction write at a time. A writer that finds the lock
taken waits in SQLite's busy handler, which sleeps and tries again: 1, 2,
5 ms... then 100 ms at a time. The lock is free for most of those sleeps,
and whoever asks at the right moment takes it: under load, writes wait for
nothing (the lock idle while writers sleep) and unevenly (a writer that has
waited long sleeps longest). Measured with 32 clients posting Open311
requests to two workers: 239 POST/s, p50 32 ms, p99 1.9 s, the server busy
on 1.06 of its 2 cores.

A :class:`WriteTurns` queues the writers of one database file before they
``BEGIN IMMEDIATE``: the threads of a process wait on a lock (woken as soon
as it is released), and the one whose turn it is takes a file lock
(``fcntl.flock`` on ``<database>-writeturn``) that orders the processes on
the file (workers of ``vigie serve``, ingest pipeline processes, the CLI).
The turn ends when the transaction does (after its COMMIT or ROLLBACK).

Never for ever: a turn not given within ``WAIT_SECONDS`` is taken without
it (logged), and SQLite's own lock, with its busy timeout, decides as
before. A process that dies holding the file lock releases it with its
file descriptors.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # not on Windows: the threads of one process still take turns
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

WAIT_SECONDS = 30.0  # as SQLite's busy timeout (core.db.engine)
# Pauses between tries of another process's file lock, then the last one
# until the turn comes. Short: two workers' batches pass the turn back and
# forth many times a second, and each longer pause left the database idle
# (Open311 POST, two workers: 417 POST/s with pauses up to 2 ms, 474 and 506
# with 0.5 ms). Each try is one system call.
_FILE_POLL_SECONDS = (0.0001, 0.0002, 0.0005)


class WriteTurns:
    """Turns to write one SQLite database file (see the module)."""

    def __init__(self, database: str) -> None:
        self.path = Path(f"{database}-writeturn")
        self._thread_turn = threading.Lock()
        self._file: int | None = None  # this process's descriptor of the lock file
        self._pid = os.getpid()

    def take(self) -> bool:
        """Wait for this thread's turn; False when none came (then write anyway)."""
        deadline = time.monotonic() + WAIT_SECONDS
        if not self._thread_turn.acquire(timeout=WAIT_SECONDS):
            log.warning("no turn to write within %.0f s: writing without it", WAIT_SECONDS)
            return False
        try:
            if self._take_file(deadline):
                return True
        except OSError as exc:  # a read-only folder, say: the threads still take turns
            log.warning("cannot lock %s (%s): processes do not take turns", self.path, exc)
            return True
        log.warning(
            "another process held its turn to write for %.0f s: writing without it",
            WAIT_SECONDS,
        )
        self._thread_turn.release()
        return False

    def give_back(self) -> None:
        """End the turn taken by :meth:`take` (which returned True)."""
        try:
            if self._file is not None and fcntl is not None:
                fcntl.flock(self._file, fcntl.LOCK_UN)
        finally:
            self._thread_turn.release()

    def _take_file(self, deadline: float) -> bool:
        descriptor = self._descriptor()
        if descriptor is None:
            return True
        pauses, pause = iter(_FILE_POLL_SECONDS), 0.0
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                pause = next(pauses, pause)  # then the last one, until the deadline
                time.sleep(pause)

    def _descriptor(self) -> int | None:
        if fcntl is None:
            return None
        if self._file is None or self._pid != os.getpid():
            self._file = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            self._pid = os.getpid()
        return self._file


_turns: dict[str, WriteTurns] = {}
_turns_lock = threading.Lock()


def turns_for(database: str) -> WriteTurns:
    """The process's one :class:`WriteTurns` for a database file."""
    key = str(Path(database).resolve())
    with _turns_lock:
        turns = _turns.get(key)
        if turns is None:
            turns = _turns[key] = WriteTurns(key)
        return turns
