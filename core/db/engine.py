"""Engines and sessions. One session per request or per message batch, opened by the caller."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

from core.db.write_turns import WriteTurns, turns_for

# Connections opened beyond pool_size, for a burst, and closed when it ends.
POOL_OVERFLOW = 16


def make_engine(
    url: str | URL, pool_size: int | None = None, *, plans_with_values: bool = True, **kwargs
) -> Engine:
    """An engine for ``url``; for SQLite, creates the file's folder and turns on WAL.

    ``pool_size``: connections kept open (see Settings.database_pool_size);
    None leaves SQLAlchemy's default (5). ``plans_with_values`` (PostgreSQL):
    ``plan_cache_mode`` is ``force_custom_plan`` on each connection (see
    :func:`_postgresql_settings`); without it, the server's default."""
    parsed = make_url(url)
    in_memory = not parsed.database or parsed.database == ":memory:"
    if pool_size is not None and not (parsed.get_backend_name() == "sqlite" and in_memory):
        kwargs.setdefault("pool_size", pool_size)
        kwargs.setdefault("max_overflow", POOL_OVERFLOW)
    if parsed.get_backend_name() == "sqlite":
        if not in_memory:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own BEGIN handling defers locks badly; take them at BEGIN,
        # writers in turn (core.db.write_turns) when the database is a file.
        _WriterTurns(None if in_memory else turns_for(parsed.database)).listen(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    engine = create_engine(url, **kwargs)
    if parsed.get_backend_name() == "postgresql" and plans_with_values:
        event.listen(engine, "connect", _postgresql_settings)
    return engine


def make_public_read_engine(url: str | URL) -> Engine:
    """The PostgreSQL engine of public GETs (``Runtime.public_read_sessions``):
    their few statements, the same at every call, on connections of their own.

    - Autocommit: under PostgreSQL's READ COMMITTED each statement reads its
      own snapshot, in a transaction or not, so the BEGIN and ROLLBACK around
      a GET were two round trips that changed nothing.
    - The server's ``plan_cache_mode`` (``auto``): once psycopg has prepared a
      listing (``prepare_threshold``), PostgreSQL may keep a generic plan for
      it instead of planning it again at each GET, as ``force_custom_plan``
      (the ingestion's need, for its arrays of keys) makes it do. ``auto``
      takes the generic plan only when it costs no more than the plans made
      with the values.
    - A small pool (8 kept open): most public GETs are read on the event loop
      (``connectors.open311.routes._small_page``), one at a time per process;
      only pages of more than 50 requests are read in threads. Up to 48 for a
      burst of those, more than the 40 threads FastAPI runs at once, so that a
      read on the event loop never waits for a connection.
    - A statement timeout (:data:`PUBLIC_READ_TIMEOUT`): a read on the event
      loop holds up its process while it runs; a database gone slow makes it
      fail, not hang.
    - No ping at each checkout (``pool_pre_ping``): it was one more round trip
      on the event loop for every answer built. A read that finds its
      connection dead (the server restarted) is read again, once, on a new
      one (:func:`read_again_if_disconnected`)."""
    engine = make_engine(
        url,
        8,
        plans_with_values=False,
        isolation_level="AUTOCOMMIT",
        max_overflow=40,
        pool_pre_ping=False,
    )
    event.listen(engine, "connect", _public_read_settings)
    return engine


PUBLIC_READ_TIMEOUT = "10s"

T = TypeVar("T")


def read_again_if_disconnected(sessions: Callable[[], Session], read: Callable[[Session], T]) -> T:
    """``read(session)`` in a session of ``sessions``; if its connection turns out
    dead, again, once, in a new session. SQLAlchemy then also drops the pool's
    connections older than that one, so the second read gets a fresh
    connection. For reads only, which can run twice: a write that failed on a
    dead connection may or may not have been committed."""
    try:
        with sessions() as session:
            return read(session)
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
    with sessions() as session:
        return read(session)


def _public_read_settings(dbapi_connection, _record) -> None:
    with dbapi_connection.cursor() as cursor:
        cursor.execute(f"SET statement_timeout = '{PUBLIC_READ_TIMEOUT}'")
    dbapi_connection.commit()


# Execution option of connections that only read (see Runtime.read_sessions).
READ_ONLY = "vigie_read_only"


class _WriterTurns:
    """How an SQLite engine begins: a writer takes the write lock at BEGIN, so
    that two writers never deadlock upgrading a read lock, after waiting for
    its turn (``turns``; None: no turns, as for a database in memory). A
    reader needs neither: in WAL mode readers and the writer do not wait for
    each other. The turn ends after the COMMIT or ROLLBACK (the dialect's, so
    that a connection the pool resets gives its turn back too)."""

    def __init__(self, turns: WriteTurns | None) -> None:
        self.turns = turns
        self._holding: set[int] = set()  # id() of the DBAPI connections in their turn

    def listen(self, engine: Engine) -> None:
        event.listen(engine, "begin", self.begin)
        if self.turns is None:
            return
        after_transaction_end(engine, lambda dbapi_connection, _: self._end_turn(dbapi_connection))

    def begin(self, connection) -> None:
        if connection.get_execution_options().get(READ_ONLY):
            connection.exec_driver_sql("BEGIN")
            return
        dbapi_connection = connection.connection.dbapi_connection
        if self.turns is not None and self.turns.take():
            self._holding.add(connection_key(dbapi_connection))
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            self._end_turn(dbapi_connection)
            raise

    def _end_turn(self, dbapi_connection) -> None:
        key = connection_key(dbapi_connection)
        if key in self._holding:
            self._holding.discard(key)
            assert self.turns is not None
            self.turns.give_back()


def connection_key(dbapi_connection: Any) -> int:
    """One number per driver connection, whether given the driver's connection or
    the pool's proxy of it (which the dialect's commit and rollback are handed)."""
    return id(getattr(dbapi_connection, "dbapi_connection", dbapi_connection))


def after_transaction_end(engine: Engine, ended: Callable[[Any, bool], None]) -> None:
    """Call ``ended(dbapi_connection, committed)`` after each COMMIT or ROLLBACK
    of ``engine`` (``committed``: a COMMIT that succeeded), even if it failed.

    The dialect's own methods are wrapped, so that every way a transaction ends
    is seen: a session's, ``engine.begin()``'s, the pool's reset of a connection
    given back. Several wrappers chain."""
    dialect = engine.dialect
    commit, rollback = dialect.do_commit, dialect.do_rollback

    def do_commit(dbapi_connection: Any) -> None:
        committed = False
        try:
            commit(dbapi_connection)
            committed = True
        finally:
            ended(dbapi_connection, committed)

    def do_rollback(dbapi_connection: Any) -> None:
        try:
            rollback(dbapi_connection)
        finally:
            ended(dbapi_connection, False)

    dialect.do_commit = do_commit  # type: ignore[method-assign]
    dialect.do_rollback = do_rollback  # type: ignore[method-assign]


def _postgresql_settings(dbapi_connection, _record) -> None:
    # Prepared statements planned with their parameters' values: a batch's
    # list of keys (core.db.lists) is then hashed, whatever the statistics.
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SET plan_cache_mode = force_custom_plan")
    dbapi_connection.commit()


# Pages read through a memory map of the file: no read() and no copy per page,
# one copy for every connection and process (the OS's page cache), where each
# connection's own page cache (2 MB by default) holds little of a 100,000-ticket
# database. Writes still go through the WAL. 0 turns it off.
SQLITE_MMAP_BYTES = 1 << 30


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (see make_engine)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
    cursor.close()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
