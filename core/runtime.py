"""Everything a running Vigie process holds: settings, plugins, communes, database.

Built once by the serve, ingest or CLI entry point, never at import.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from core import events
from core.answer_cache import AnswerCache, EntryCache
from core.auth import RecentTokens
from core.config import Area, Commune
from core.config.loader import load_area
from core.connectors import Connector, collect_connectors
from core.db import ids
from core.db.data_version import DataVersion, count_commits
from core.db.engine import (
    READ_ONLY,
    make_engine,
    make_public_read_engine,
    make_session_factory,
    read_again_if_disconnected,
)
from core.db.migrate import ensure_schema
from core.errors import NotFound
from core.plugin_manager import VigiePluginManager, get_plugin_manager
from core.settings import Settings

if TYPE_CHECKING:
    from core.intake_queue import IntakeQueue

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Runtime:
    settings: Settings
    pm: VigiePluginManager
    area: Area
    engine: Engine
    sessions: sessionmaker[Session]
    schema: str = field(default="unknown")
    _public_read_engine: Engine | None = field(default=None, init=False, repr=False)

    def commune(self, slug: str) -> Commune:
        commune = self.area.commune(slug)
        if commune is None:
            raise NotFound(f"no commune {slug!r}; communes: {', '.join(self.area.communes)}")
        return commune

    @cached_property
    def read_sessions(self) -> sessionmaker[Session]:
        """Sessions for work that only reads (public GETs): on SQLite they take no
        write lock, so they neither wait for writers nor hold them up."""
        return make_session_factory(self.engine.execution_options(**{READ_ONLY: True}))

    @cached_property
    def public_read_sessions(self) -> sessionmaker[Session]:
        """Sessions for the public GETs of Open311: read-only, a few statements
        that are the same at every call. On SQLite, :attr:`read_sessions`; on
        PostgreSQL, autocommit connections of their own that may keep generic
        plans (:func:`core.db.engine.make_public_read_engine`)."""
        if self.engine.dialect.name != "postgresql":
            return self.read_sessions
        self._public_read_engine = make_public_read_engine(self.engine.url)
        return make_session_factory(self._public_read_engine)

    def public_read(self, read: Callable[[Session], T]) -> T:
        """``read(session)`` in a session of :attr:`public_read_sessions`, read
        again once if its connection was dead: on PostgreSQL their pool does
        not ping a connection at each checkout
        (:func:`core.db.engine.read_again_if_disconnected`)."""
        return read_again_if_disconnected(self.public_read_sessions, read)

    @cached_property
    def recent_tokens(self) -> RecentTokens:
        """Tokens of the public write endpoints, looked up at most every few seconds."""
        return RecentTokens(self.read_sessions)

    @cached_property
    def intake_queue(self) -> IntakeQueue:
        """Where requests hand over the reports they bring: stored together when
        they arrive together (group commit, see :mod:`core.intake_queue`)."""
        from core.intake_queue import IntakeQueue  # it builds on this module

        return IntakeQueue(self, self.settings.api.intake_batch_size)

    @cached_property
    def data_version(self) -> DataVersion:
        """The database's count of commits, which kept public answers are checked against."""
        return DataVersion(self.engine, announced=self.settings.api.answer_cache_listens)

    @cached_property
    def answer_cache(self) -> AnswerCache:
        """Whole public answers, served again while the data is unchanged (see
        :mod:`core.answer_cache`; ``settings.api.answer_cache_*``)."""
        api = self.settings.api
        megabytes, seconds = api.answer_cache_megabytes, api.answer_cache_seconds
        return AnswerCache(self.data_version, int(megabytes * 2**20), seconds)

    @cached_property
    def entry_cache(self) -> EntryCache:
        """The parts of public answers that many of them show (an Open311
        request's entry), each with the mark of its row; a cache of its own, so
        that answers asked once (a map's bbox) do not push them out."""
        api = self.settings.api
        megabytes, seconds = api.entry_cache_megabytes, api.answer_cache_seconds
        return EntryCache(int(megabytes * 2**20), seconds)

    @cached_property
    def connectors(self) -> dict[str, Connector]:
        return collect_connectors(self.pm)

    def close(self) -> None:
        if "intake_queue" in self.__dict__:  # made on first use (cached_property)
            self.intake_queue.close()
        if "data_version" in self.__dict__:
            self.data_version.close()
        self.engine.dispose()
        if self._public_read_engine is not None:
            self._public_read_engine.dispose()


def open_runtime(
    settings: Settings | None = None,
    pm: VigiePluginManager | None = None,
    prepare_schema: bool = True,
) -> Runtime:
    """Load plugins and configuration (raising ConfigError with every problem),
    connect to the database and, with ``prepare_schema``, create an empty
    database or refuse an out-of-date one (SchemaOutOfDate)."""
    settings = settings or Settings()
    pm = pm or get_plugin_manager(settings)
    area = load_area(settings.config_dir, pm, area_name=settings.area_name)
    engine = make_engine(settings.database_url, pool_size=settings.database_pool_size)
    count_commits(engine)  # the data version that public answers are kept under
    sessions = make_session_factory(engine)
    events.install(sessions, pm)
    ids.install(sessions)  # SQLite: a flush's new rows inserted a table at a time
    schema = ensure_schema(engine) if prepare_schema else "not checked"
    log.info("database %s", schema)
    return Runtime(settings, pm, area, engine, sessions, schema)
