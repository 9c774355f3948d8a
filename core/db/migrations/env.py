"""Alembic environment: the engine comes from Vigie's settings (or the caller)."""

from __future__ import annotations

from alembic import context

import core.db.sensor_models  # noqa: F401
from core.db.models import Base
from core.plugin_manager import get_plugin_manager

config = context.config
# Plugins may declare tables on core's Base (e.g. the SMS conversations):
# loading them makes autogenerate see every table, without core naming any.
get_plugin_manager()


def _engine():
    engine = config.attributes.get("engine")
    if engine is not None:
        return engine
    from core.db.engine import make_engine
    from core.settings import Settings

    return make_engine(Settings().database_url)


def run_migrations_online() -> None:
    with _engine().connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations_online()
