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

Reading it costs a statement on a connection kept for it (SQLite: a few
microseconds; PostgreSQL: one round trip), much less than the answers it
guards. Both numbers only grow. If it cannot be read,
:meth:`DataVersion.current` returns :data:`UNKNOWN` (-1), under which nothing
kept is served.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import NullPool

from core.db.engine import after_transaction_end, connection_key

log = logging.getLogger(__name__)

SEQUENCE = "vigie_data_changes"
# Execution option of connections whose writes no answer shows (a counter that
# numbers tickets, say): their commits leave the data version as it was.
UNSEEN_BY_ANSWERS = "vigie_unseen_by_answers"
_WRITES = re.compile(r"^\s*(insert|update|delete|merge)\b", re.IGNORECASE)
UNKNOWN = -1


class DataVersion:
    """The database's data version, read on a connection of its own (thread-safe)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._connection: Any = None  # a DBAPI connection, opened on first use
        self._own_engine: Engine | None = None  # PostgreSQL: where it comes from (no pool)
        self._broken_logged = False
        self._last = UNKNOWN  # the last number returned
        self._offset = 0  # added to the readings of the current connection

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    def current(self) -> int:
        """The version now: equal to an earlier reading only if no change was
        committed in between (PostgreSQL: by Vigie) since that reading."""
        with self._lock:
            try:
                if self._connection is None:
                    self._connection = self._connect()
                    # A new connection counts from its own start: go on from the last number.
                    self._offset = self._last + 1 - self._read(self._connection)
                value = self._read(self._connection) + self._offset
                self._broken_logged = False
                self._last = max(self._last, value)
                return value
            except Exception as exc:
                self._drop_connection()
                if not self._broken_logged:
                    log.warning("data version unreadable (answers are not reused): %s", exc)
                    self._broken_logged = True
                return UNKNOWN

    def close(self) -> None:
        with self._lock:
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
            cursor.execute(f"SELECT last_value + is_called::int FROM {SEQUENCE}")
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
                _advance(dbapi_connection)

    after_transaction_end(engine, ended)


def _advance(dbapi_connection: Any) -> None:
    """``nextval`` in autocommit: one round trip, where a transaction of its own
    would be three (psycopg sends BEGIN, the SELECT and COMMIT one by one)."""
    driver_connection = getattr(dbapi_connection, "dbapi_connection", dbapi_connection)
    autocommit = driver_connection.autocommit
    try:
        driver_connection.autocommit = True
        try:
            cursor = driver_connection.cursor()
            try:
                cursor.execute(f"SELECT nextval('{SEQUENCE}')")
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
