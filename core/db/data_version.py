"""A number that changes whenever the database's committed data may have changed.

A cache of answers built from the database (:mod:`core.answer_cache`) reads it
before it serves a kept answer, and keeps a new one under the number it read
before the answer was built: an answer is served again only while nothing was
committed since it was built. The number is the database's, so it sees the
commits of every process and every machine serving the same database.

- SQLite: ``PRAGMA data_version`` on a connection of its own, which changes
  when any other connection commits a change to the file (SQLite's own count:
  nothing to do on the writers' side, and it sees writes made outside Vigie).
- PostgreSQL: the sequence ``vigie_data_changes`` (migration 0006), advanced
  right *after* each commit of a transaction that wrote (see
  :func:`count_commits`): advanced before the commit, a reader could read the
  new number and still the old rows, and keep those under it. A change made
  outside Vigie (``psql``) is not counted: the cache's age limit bounds it.
  Each advance is also announced (``NOTIFY vigie_data_changes``, with the
  schema and the number), and each process listens on a connection of its
  own (:class:`_Announcements`): the number is then known without a round
  trip per read. A process's own commits count at once; another process's
  within the moment its announcement takes to arrive, the same kind of
  moment as the one between a commit and its ``nextval``. While the
  listening connection is down, the number is read at each call.

Reading it costs a statement on a connection kept for it (SQLite: a few
microseconds; PostgreSQL: one round trip, unless announced), much less than
the answers it guards. Both numbers only grow. If it cannot be read,
:meth:`DataVersion.current` returns :data:`UNKNOWN` (-1), under which nothing
kept is served.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import sqlite3
import threading
import weakref
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import NullPool

from core.db.engine import after_transaction_end, connection_key

log = logging.getLogger(__name__)

SEQUENCE = "vigie_data_changes"
# The number the sequence's last nextval gave (one less than its start if none),
# the same scale as the numbers announced.
_LAST_GIVEN = f"last_value - (NOT is_called)::int FROM {SEQUENCE}"
# Execution option of connections whose writes no answer shows (a counter that
# numbers tickets, say): their commits leave the data version as it was.
UNSEEN_BY_ANSWERS = "vigie_unseen_by_answers"
_WRITES = re.compile(r"^\s*(insert|update|delete|merge)\b", re.IGNORECASE)
UNKNOWN = -1
# PostgreSQL: the highest number this process's own commits reached, per engine
# (count_commits); its DataVersion counts them without waiting for their NOTIFY.
_advanced: weakref.WeakKeyDictionary[Engine, int] = weakref.WeakKeyDictionary()
# The advance, announced with the schema whose sequence it is (several Vigie
# databases may share a PostgreSQL database, one schema each).
_ADVANCE = (
    f"SELECT number, pg_notify('{SEQUENCE}', current_schema() || ' ' || number)"
    f" FROM (SELECT nextval('{SEQUENCE}') AS number) AS advanced"
)


class DataVersion:
    """The database's data version, read on a connection of its own (thread-safe)."""

    def __init__(self, engine: Engine, announced: bool = True) -> None:
        """``announced`` (PostgreSQL): listen for the advances instead of reading
        the number at each call (see the module)."""
        self._engine = engine
        self._lock = threading.Lock()
        self._connection: Any = None  # a DBAPI connection, opened on first use
        self._own_engine: Engine | None = None  # PostgreSQL: where it comes from (no pool)
        self._broken_logged = False
        self._last = UNKNOWN  # the last number returned
        self._offset = 0  # added to the readings of the current connection
        self._announcements: _Announcements | None = None
        self._announced = announced and engine.dialect.name == "postgresql"

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    @property
    def listener_name(self) -> str | None:
        """PostgreSQL: the ``application_name`` of the connection that listens for
        the announcements (in ``pg_stat_activity``), once it was asked for."""
        return self._announcements.name if self._announcements is not None else None

    @property
    def listening(self) -> bool:
        """Whether the number is known from announcements (PostgreSQL), without a
        round trip per reading."""
        return self._announcements is not None and self._announcements.heard() is not None

    def current(self) -> int:
        """The version now: equal to an earlier reading only if no change was
        committed in between (PostgreSQL: by Vigie) since that reading."""
        with self._lock:
            heard = self._heard()
            if heard is not None:
                return heard
            try:
                if self._connection is None:
                    self._connection = self._connect()
                    if self.dialect == "sqlite":
                        # A new connection counts from its own start: go on from the
                        # last number. (PostgreSQL's sequence is the same for all.)
                        self._offset = self._last + 1 - self._read(self._connection)
                value = self._read(self._connection) + self._offset
                self._broken_logged = False
                self._last = max(self._last, value)
                return self._last
            except Exception as exc:
                self._drop_connection()
                if not self._broken_logged:
                    log.warning("data version unreadable (answers are not reused): %s", exc)
                    self._broken_logged = True
                return UNKNOWN

    def _heard(self) -> int | None:
        """The version as announced, if this process is listening (under the lock)."""
        if not self._announced:
            return None
        if self._announcements is None:
            self._announcements = _Announcements(self._engine)
        number = self._announcements.heard()
        if number is None:
            return None
        # The sequence's own numbers, as the readings give them: the two agree.
        self._last = max(self._last, number, _advanced.get(self._engine, number))
        return self._last

    def close(self) -> None:
        with self._lock:
            if self._announcements is not None:
                self._announcements.close()
                self._announcements = None
            self._drop_connection()
            if self._own_engine is not None:
                self._own_engine.dispose()
                self._own_engine = None

    def _connect(self) -> Any:
        if self.dialect == "sqlite":
            path = self._engine.url.database
            if not path or path == ":memory:":
                raise RuntimeError("an in-memory SQLite database has no shared data version")
            return sqlite3.connect(path, timeout=30, check_same_thread=False)
        if self._own_engine is None:
            self._own_engine = create_engine(self._engine.url, poolclass=NullPool)
        connection = self._own_engine.raw_connection()
        connection.driver_connection.autocommit = True  # psycopg: no transaction to end
        return connection

    def _read(self, connection: Any) -> int:
        cursor = connection.cursor()
        try:
            if self.dialect == "sqlite":
                cursor.execute("PRAGMA data_version")
                return int(cursor.fetchone()[0])
            cursor.execute(f"SELECT {_LAST_GIVEN}")
            return int(cursor.fetchone()[0])
        finally:
            cursor.close()

    def _drop_connection(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except Exception:  # already broken: nothing more to release
                pass
            self._connection = None


_listeners = itertools.count(1)


class _Announcements:
    """PostgreSQL: the advances of :data:`SEQUENCE` as ``NOTIFY`` brings them, on a
    connection and a thread of their own, reconnecting after a failure."""

    RETRY_SECONDS = (0.5, 1, 2, 5, 10, 30)

    def __init__(self, engine: Engine) -> None:
        # Its name in pg_stat_activity: one listening connection per process and engine.
        self.name = f"vigie-data-version-{os.getpid()}-{next(_listeners)}"
        self._source = create_engine(
            engine.url, poolclass=NullPool, connect_args={"application_name": self.name}
        )
        self._lock = threading.Lock()
        self._number: int | None = None  # the highest announced; None while not listening
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="vigie-data-version", daemon=True)
        self._thread.start()

    def heard(self) -> int | None:
        """The highest number announced since listening started (None while not
        listening)."""
        with self._lock:
            return self._number

    def close(self) -> None:
        """Stop listening: the thread ends within a second, closing its connection."""
        self._stop.set()

    def _listen(self) -> None:
        failures = 0
        while not self._stop.is_set():
            started = False
            try:
                raw = self._source.raw_connection()
                try:
                    connection = raw.driver_connection
                    connection.autocommit = True
                    schema = self._start(connection)
                    started = True
                    self._hear(connection, schema)
                finally:
                    with self._lock:
                        self._number = None
                    raw.close()
            except Exception as exc:
                failures = 0 if started else failures
                self._failed(exc, failures)
                failures += 1
        self._source.dispose()

    def _start(self, connection: Any) -> str:
        """LISTEN, then read the number (every advance after it is announced);
        the schema whose announcements count."""
        connection.execute(f"LISTEN {SEQUENCE}")
        schema, number = connection.execute(f"SELECT current_schema(), {_LAST_GIVEN}").fetchone()
        with self._lock:
            self._number = int(number)
        return schema

    def _hear(self, connection: Any, schema: str) -> None:
        """Take in the announcements until stopped (psycopg keeps those that come
        between two calls of ``notifies``)."""
        while not self._stop.is_set():
            for notice in connection.notifies(timeout=1.0):
                announced_schema, _, number = notice.payload.partition(" ")
                if announced_schema == schema and number.isdigit():
                    with self._lock:
                        self._number = max(self._number or 0, int(number))

    def _failed(self, exc: Exception, failures: int) -> None:
        if not self._stop.is_set():
            wait = self.RETRY_SECONDS[min(failures, len(self.RETRY_SECONDS) - 1)]
            if failures == 0:
                log.warning("data version: not listening (read at each call meanwhile): %s", exc)
            self._stop.wait(wait)


def count_commits(engine: Engine) -> None:
    """PostgreSQL: advance :data:`SEQUENCE` after every commit on ``engine`` of a
    transaction that ran an INSERT, UPDATE or DELETE (ORM, core or plain SQL).

    Every way a transaction ends is seen (:func:`core.db.engine.after_transaction_end`:
    a session's, ``engine.begin()``'s). Writes on a connection whose execution
    options set :data:`UNSEEN_BY_ANSWERS` are not counted. A failure to advance
    the sequence is logged and swallowed: the commit is done, and must not be
    reported as failed."""
    if engine.dialect.name != "postgresql":
        return
    wrote: set[int] = set()  # connection_key() of the connections whose transaction wrote

    @event.listens_for(engine, "after_cursor_execute")
    def _note_write(connection, cursor, statement, parameters, context, executemany) -> None:
        if _WRITES.match(statement) and not connection.get_execution_options().get(
            UNSEEN_BY_ANSWERS
        ):
            wrote.add(connection_key(connection.connection.dbapi_connection))

    def ended(dbapi_connection: Any, committed: bool) -> None:
        key = connection_key(dbapi_connection)
        if key in wrote:
            wrote.discard(key)
            if committed:
                number = _advance(dbapi_connection)
                if number is not None and number > _advanced.get(engine, -1):
                    _advanced[engine] = number

    after_transaction_end(engine, ended)


def _advance(dbapi_connection: Any) -> int | None:
    """``nextval``, announced, in autocommit: one round trip, where a transaction
    of its own would be three (psycopg sends BEGIN, the SELECT and COMMIT one by
    one). The new number, or None if it could not be taken."""
    driver_connection = getattr(dbapi_connection, "dbapi_connection", dbapi_connection)
    autocommit = driver_connection.autocommit
    try:
        driver_connection.autocommit = True
        try:
            cursor = driver_connection.cursor()
            try:
                cursor.execute(_ADVANCE)
                return int(cursor.fetchone()[0])
            finally:
                cursor.close()
        finally:
            driver_connection.autocommit = autocommit
    except Exception as exc:
        log.warning("could not count a commit in %s (cached answers age out): %s", SEQUENCE, exc)
        try:
            dbapi_connection.rollback()
        except Exception:  # the connection is gone: the pool will find out
            pass
    return None
