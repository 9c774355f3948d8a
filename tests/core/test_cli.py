"""The ``vigie`` command line, run as a user runs it: a real process."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]


def vigie(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "core.cli", *args],
        env={**os.environ, "VIGIE_LOG_LEVEL": "WARNING", **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def env(vigie_database_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "VIGIE_DATABASE_URL": vigie_database_url,
        "VIGIE_CONFIG_DIR": str(REPO / "config"),
        "VIGIE_DATA_DIR": str(tmp_path / "data"),
    }


def test_config_check_accepts_the_example_area(env):
    result = vigie("config", "check", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 communes" in result.stdout


def test_config_check_lists_every_problem_and_fails(env, tmp_path):
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    chamalieres = config / "communes" / "chamalieres.toml"
    chamalieres.write_text(
        chamalieres.read_text().replace('reference_prefix = "CHA"', 'reference_prefix = "CLF"')
    )
    with (config / "communes" / "aubiere.toml").open("a") as file:
        file.write("\n[plugins.smss]\nsender = 'Mairie'\n")
    (config / "communes" / "royat.toml").write_text("slug = 'royat'\nname = \n")
    result = vigie("config", "check", env={**env, "VIGIE_CONFIG_DIR": str(config)})
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any(
        line.startswith("communes/aubiere.toml: plugins.smss: unknown plugin") and "routing" in line
        for line in lines
    ), lines
    assert any(
        line.startswith("communes/chamalieres.toml: reference_prefix:") for line in lines
    ) or any(
        line.startswith("communes/clermont-ferrand.toml: reference_prefix:") for line in lines
    ), lines
    assert any(line.startswith("communes/royat.toml:") for line in lines), lines
    assert "problem(s)" in result.stderr


def test_serve_refuses_to_start_on_a_bad_config(env, tmp_path):
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    with (config / "communes" / "aubiere.toml").open("a") as file:
        file.write("\n[plugins.nosuchplugin]\n")
    result = vigie("serve", "--port", "1", env={**env, "VIGIE_CONFIG_DIR": str(config)})
    assert result.returncode == 1
    assert "communes/aubiere.toml: plugins.nosuchplugin: unknown plugin" in result.stderr


def test_token_create_prints_a_working_token_on_its_last_line(env):
    result = vigie("token", "create", "--role", "agent", "--commune", "chamalieres", env=env)
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip().splitlines()[-1]
    assert token.startswith("vig_")
    listing = vigie("token", "list", env=env)
    assert token[:10] in listing.stdout and "chamalieres" in listing.stdout


def test_token_create_refuses_an_unknown_commune(env):
    result = vigie("token", "create", "--role", "agent", "--commune", "vichy", env=env)
    assert result.returncode == 1
    assert "commune: unknown vichy" in result.stderr


def test_plugins_lists_hooks_and_the_communes_enabling_each(env):
    result = vigie("plugins", "--json", env=env)
    assert result.returncode == 0, result.stderr
    import json

    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert "route_ticket" in rows["routing"]["hooks"]
    assert "clermont-ferrand" in rows["routing"]["communes"]
    assert "aubiere" not in rows["routing"]["communes"]
    assert "aubiere" in rows["sla"]["communes"]
    assert rows["routing"]["version"]


def test_serve_refuses_an_out_of_date_database_and_db_upgrade_fixes_it(env):
    from sqlalchemy import text

    from core.db.engine import make_engine
    from core.db.migrate import upgrade

    engine = make_engine(env["VIGIE_DATABASE_URL"])
    upgrade(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0000'"))
    engine.dispose()
    result = vigie("serve", "--port", "1", env=env)
    assert result.returncode == 1
    assert "run `vigie db upgrade`" in result.stderr
    assert "0000" in result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_demo_serves_the_example_area_with_demo_tickets(tmp_path):
    port = _free_port()
    database = tmp_path / "demo.db"
    process = subprocess.Popen(
        [sys.executable, "-m", "core.cli", "demo", "--port", str(port), "--tickets", "40"],
        env={
            **os.environ,
            "VIGIE_DATABASE_URL": f"sqlite:///{database}",
            "VIGIE_LOG_LEVEL": "WARNING",
            "VIGIE_DATA_DIR": str(tmp_path / "data"),
            # Its own embedded broker, not the machine's: the demo's sensor burst stays here.
            "VIGIE_INGEST__EMBEDDED_PORT": str(_free_port()),
            "VIGIE_INGEST__CLIENT_ID": f"vigie-demo-test-{port}",
        },
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        token = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and token is None:
            line = process.stdout.readline()
            if line.startswith("Admin token: "):
                token = line.split(": ", 1)[1].strip()
        assert token, "the demo prints an admin token"
        headers = {"Authorization": f"Bearer {token}"}
        for _ in range(100):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        citizen_channels = [
            ("channel", c) for c in ("phone", "web", "app", "counter", "sms", "email")
        ]
        page = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/tickets", params=citizen_channels, headers=headers
        ).json()
        assert page["total"] == 40, "the demo's residents' tickets (sensor ones come on top)"
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz").json()
        assert ready["checks"]["mqtt"].startswith("connected"), ready
        communes = httpx.get(f"http://127.0.0.1:{port}/api/v1/communes", headers=headers).json()
        assert {c["slug"] for c in communes} >= {"clermont-ferrand", "chamalieres", "aubiere"}
    finally:
        process.terminate()
        process.wait(timeout=10)
