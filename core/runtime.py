"""Everything a running Vigie process holds: settings, plugins, communes, database.

Built once by the serve, ingest or CLI entry point, never at import.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from core import events
from core.config import Area, Commune
from core.config.loader import load_area
from core.connectors import Connector, collect_connectors
from core.db.engine import READ_ONLY, make_engine, make_session_factory
from core.db.migrate import ensure_schema
from core.errors import NotFound
from core.plugin_manager import VigiePluginManager, get_plugin_manager
from core.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    pm: VigiePluginManager
    area: Area
    engine: Engine
    sessions: sessionmaker[Session]
    schema: str = field(default="unknown")

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
    def connectors(self) -> dict[str, Connector]:
        return collect_connectors(self.pm)

    def close(self) -> None:
        self.engine.dispose()


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
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    events.install(sessions, pm)
    schema = ensure_schema(engine) if prepare_schema else "not checked"
    log.info("database %s", schema)
    return Runtime(settings, pm, area, engine, sessions, schema)
