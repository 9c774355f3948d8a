"""The database a benchmark runs on: a SQLite file in its work directory, or a
PostgreSQL schema of its own (``VIGIE_BENCH_POSTGRES_URL``), dropped afterwards."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def bench_database(
    database: str, workdir: Path, prefix: str = "bench"
) -> tuple[str, Callable[[], None] | None]:
    """The run's database URL, and what drops it afterwards (None for SQLite)."""
    from sqlalchemy import create_engine, text

    if database == "sqlite":
        return f"sqlite:///{workdir / 'bench.db'}", None
    base = os.environ.get("VIGIE_BENCH_POSTGRES_URL", DEFAULT_POSTGRES)
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))

    def cleanup() -> None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    return f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}", cleanup
