"""pytest fixtures for Vigie and for plugin authors, loaded as a pytest plugin.

A connector's own tests can be a few lines::

    import my_plugin

    @pytest.fixture
    def vigie_plugins():
        return (my_plugin,)

    def test_creates_ticket(vigie_api):
        headers = vigie_api.headers("admin")
        response = vigie_api.client.post("/api/v1/tickets", json={...}, headers=headers)
        assert response.status_code == 201

Fixtures: ``vigie_database_url`` (SQLite, and PostgreSQL too when
``VIGIE_TEST_DATABASE_URL`` is set: tests using it run once per database),
``vigie_config_dir``, ``vigie_plugins``, ``vigie_settings``, ``vigie_runtime``,
``vigie_app``, ``vigie_api``.
"""

from __future__ import annotations

import getpass
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

TEST_DATABASE_ENV = "VIGIE_TEST_DATABASE_URL"


def _postgres_schema_url(base_url: str) -> Iterator[str]:
    """A fresh schema on the test server for one test; dropped afterwards."""
    from sqlalchemy import create_engine, text

    schema = f"vigie_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in base_url else "?"
    try:
        yield f"{base_url}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def vigie_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: SQLite, then PostgreSQL if VIGIE_TEST_DATABASE_URL is set."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'vigie.db'}"
        return
    base_url = os.environ.get(TEST_DATABASE_ENV)
    if not base_url:
        pytest.skip(f"PostgreSQL: set {TEST_DATABASE_ENV} to run this test on PostgreSQL too")
    yield from _postgres_schema_url(base_url)


@pytest.fixture
def vigie_config_dir() -> Path:
    """The configuration to load; defaults to the example area shipped in ``config/``."""
    return Path(__file__).resolve().parent.parent / "config"


@pytest.fixture
def vigie_plugins() -> tuple[Any, ...]:
    """Extra plugin objects to register (override in your tests). Each needs a ``name``
    attribute or a ``__name__``; a commune uses it only if its config enables it."""
    return ()


@pytest.fixture
def vigie_settings(vigie_database_url: str, vigie_config_dir: Path, tmp_path: Path):
    from core.settings import Settings

    settings = Settings(
        database_url=vigie_database_url,
        config_dir=vigie_config_dir,
        data_dir=tmp_path / "data",
        area_name=None,
    )
    # Ingestion's pipeline in the test process: a child process would load the
    # plugins from the settings alone, not the test's ``vigie_plugins``.
    settings.ingest = settings.ingest.model_copy(update={"pipeline_process": False})
    return settings


@pytest.fixture
def vigie_runtime(vigie_settings, vigie_plugins):
    from core.plugin_manager import get_plugin_manager
    from core.runtime import open_runtime

    pm = get_plugin_manager(vigie_settings, extra_plugins=tuple(vigie_plugins))
    runtime = open_runtime(vigie_settings, pm)
    yield runtime
    runtime.close()


@pytest.fixture
def vigie_app(vigie_runtime):
    from core.api.app import create_app

    return create_app(runtime=vigie_runtime)


@dataclass
class VigieApi:
    """A test client on the app, and tokens made on demand."""

    client: Any
    runtime: Any

    def token(self, role: str = "admin", communes: tuple[str, ...] | list[str] = ("all",)) -> str:
        from core.auth import create_token

        with self.runtime.sessions() as session:
            plaintext = create_token(
                session, role, list(communes), f"test-{role}", list(self.runtime.area.communes)
            )
            session.commit()
        return plaintext

    def headers(
        self, role: str = "admin", communes: tuple[str, ...] | list[str] = ("all",)
    ) -> dict:
        return {"Authorization": f"Bearer {self.token(role, communes)}"}


@pytest.fixture
def vigie_api(vigie_app, vigie_runtime) -> Iterator[VigieApi]:
    from fastapi.testclient import TestClient

    with TestClient(vigie_app, raise_server_exceptions=False) as client:
        yield VigieApi(client, vigie_runtime)


# --- Sample messages ----------------------------------------------------------

_REPO = Path(__file__).resolve().parent.parent
SAMPLE_DIRS = (_REPO / "tests" / "samples", _REPO.parent / "shared" / "samples")


@dataclass(frozen=True)
class SampleMessage:
    """A real-format message: the MQTT topic and the payload's bytes as published."""

    topic: str
    payload: bytes
    note: str = ""


def sample_message(name: str) -> SampleMessage:
    """Load ``name`` (e.g. ``"ttn-v3/water-leak.json"``) from the project's own
    samples (``tests/samples``) or the shared ones beside the repository.

    Files hold ``topic``, ``payload`` and ``note``; a file that is not JSON
    (a truncated message) is the payload itself. Skips the test when the
    sample is nowhere to be found.
    """
    import json

    for folder in SAMPLE_DIRS:
        path = folder / name
        if path.is_file():
            break
    else:
        pytest.skip(f"sample {name} not found in {', '.join(str(d) for d in SAMPLE_DIRS)}")
    raw = path.read_bytes()
    try:
        data = json.loads(raw)
    except ValueError:
        return SampleMessage(topic="", payload=raw, note="not JSON: the payload as it came")
    payload = data["payload"]
    body = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
    return SampleMessage(topic=data["topic"], payload=body, note=data.get("note", ""))


def wait_until(condition: Callable[[], Any], timeout: float = 10.0, step: float = 0.02) -> bool:
    """Whether ``condition()`` came true within ``timeout`` seconds (checked every
    ``step``): for what happens in another thread or process. ``assert`` it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return bool(condition())


# --- A Mosquitto of one's own (tests of broker restarts, the ingestion benchmark) ---


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PrivateMosquitto:
    """A Mosquitto of one's own, on a free port, with its own config and data dir
    (``extra_config``: more lines of mosquitto.conf; default: anonymous clients)."""

    directory: Path
    extra_config: str = ""
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        conf = self.directory / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            # Run as ourselves: as root, Mosquitto would switch to user mosquitto,
            # who cannot write our directory.
            f"user {getpass.getuser()}\n"
            f"persistence true\npersistence_location {self.directory}/\n"
            f"log_dest file {self.directory}/mosquitto.log\n"
            + (self.extra_config or "allow_anonymous true\n")
        )
        self.process = subprocess.Popen(
            ["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 10
        while not self._listening():
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"mosquitto did not start: {self.log()}")
            time.sleep(0.05)

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM: Mosquitto saves its persistence file, as on a service restart."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(10)
        self.process = None

    def log(self) -> str:
        path = self.directory / "mosquitto.log"
        return path.read_text() if path.exists() else ""
