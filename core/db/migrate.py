"""Schema migrations with Alembic: upgrade, and refuse to serve an out-of-date database."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect


class SchemaOutOfDate(RuntimeError):
    """The database is behind (or ahead of) the code; the message says what to run."""


def alembic_config(engine: Engine | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", "core.db:migrations")
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    command.upgrade(alembic_config(engine), revision)


def is_empty(engine: Engine) -> bool:
    return not inspect(engine).get_table_names()


def ensure_schema(engine: Engine) -> str:
    """Upgrade an empty database; accept one at head; refuse anything else.

    Returns what was done ("created" or "up to date").
    """
    head = head_revision()
    current = current_revision(engine)
    if current == head:
        return "up to date"
    if current is None and is_empty(engine):
        upgrade(engine)
        return "created"
    url = engine.url.render_as_string(hide_password=True)
    raise SchemaOutOfDate(
        f"the database at {url} is at schema revision {current or 'none (tables without Alembic)'}"
        f" but this version of Vigie needs {head}: run `vigie db upgrade` (back it up first)"
    )
