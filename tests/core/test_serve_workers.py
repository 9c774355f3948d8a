"""``vigie serve --workers N``: several API processes on one port, built from the
same environment, without sensor ingestion; stopped with the parent."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc to count the workers")
def test_two_workers_serve_the_api(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "VIGIE_DATABASE_URL": f"sqlite:///{tmp_path / 'vigie.db'}",
        "VIGIE_CONFIG_DIR": str(REPO / "config"),
        "VIGIE_DATA_DIR": str(tmp_path / "data"),
        "VIGIE_LOG_LEVEL": "WARNING",
    }
    vigie = Path(sys.executable).parent / "vigie"
    process = subprocess.Popen(
        [str(vigie), "serve", "--port", str(port), "--workers", "2"], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline, ready = time.monotonic() + 60, None
        while time.monotonic() < deadline and ready is None:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
            except httpx.HTTPError:
                time.sleep(0.2)
        assert ready is not None and ready.status_code == 200, "no worker answered"
        workers = [pid for pid in children(process.pid) if pid != process.pid]
        # uvicorn's supervisor: two workers and multiprocessing's resource tracker.
        assert len(workers) >= 2
    finally:
        os.killpg(process.pid, signal.SIGINT)
        output = process.communicate(timeout=30)[0].decode()
    assert "2 API processes; sensor ingestion: run `vigie ingest` beside them" in output
