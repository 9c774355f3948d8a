"""SQLite's WAL copied back into the database by a thread, not by a writer.

In WAL mode a commit appends to the ``-wal`` file; now and then the pages
are copied back into the database file (a checkpoint), with an fsync of both
files. By default the commit that takes the WAL past 1,000 pages does that
work itself, after its data is committed but before it returns: the request
that committed waits for it, and, since the write turn (``core.db.write_turns``)
ends only when the commit returns, so does every other writer of the file.
On this project's 2-core machine, with 300 Open311 POSTs a second, those
stalls made about one request in a hundred wait over 100 ms.

:class:`BackgroundCheckpoints` runs ``PRAGMA wal_checkpoint(PASSIVE)`` every
``every`` seconds on a connection of its own, outside any write turn (a
PASSIVE checkpoint copies what no reader still needs and never waits for
writers or readers), and raises the engine's automatic threshold to
:data:`SAFETY_PAGES`: should the thread stop, writers checkpoint again, only
less often.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Engine, event

log = logging.getLogger(__name__)

SAFETY_PAGES = 20_000  # about 80 MB of WAL before a writer checkpoints itself
EVERY_SECONDS = 1.0


class BackgroundCheckpoints:
    """Checkpoints of one SQLite file engine, by a thread of their own."""

    def __init__(self, engine: Engine, every: float = EVERY_SECONDS) -> None:
        self.engine, self.every = engine, every
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Raise the writers' threshold (connections opened from now on: the
        pool's idle ones are replaced), then checkpoint every ``every`` s."""
        event.listen(self.engine, "connect", self._raise_threshold)
        self.engine.dispose()  # idle pooled connections kept the old threshold
        self._thread = threading.Thread(target=self._run, name="vigie-checkpoints", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(10)
        if event.contains(self.engine, "connect", self._raise_threshold):
            event.remove(self.engine, "connect", self._raise_threshold)

    def checkpoint(self) -> tuple[int, int, int]:
        """One PASSIVE checkpoint: (busy, WAL frames, frames checkpointed)."""
        connection = self.engine.raw_connection()  # autocommit: no BEGIN, no write turn
        try:
            cursor = connection.cursor()
            busy, frames, copied = cursor.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            cursor.close()
            return busy, frames, copied
        finally:
            connection.close()

    def _raise_threshold(self, dbapi_connection, _record) -> None:  # one listener each
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA wal_autocheckpoint={SAFETY_PAGES}")
        cursor.close()

    def _run(self) -> None:
        while not self._stopping.wait(self.every):
            try:
                self.checkpoint()
            except Exception:  # a locked or vanished file: writers still checkpoint
                log.warning("background checkpoint of the SQLite WAL failed", exc_info=True)


def checkpoint_in_background(engine: Engine) -> BackgroundCheckpoints | None:
    """Started :class:`BackgroundCheckpoints` for an SQLite file; None for any
    other database (PostgreSQL has its own checkpointer)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    checkpoints = BackgroundCheckpoints(engine)
    checkpoints.start()
    return checkpoints
