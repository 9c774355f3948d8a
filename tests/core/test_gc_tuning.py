"""A service process's collector, set once it has started (core.gc_tuning): in a
process of its own, since frozen objects are never freed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import gc, json
from core.gc_tuning import YOUNG_THRESHOLD, tune_for_service
before = gc.get_threshold()
tune_for_service()
garbage = []
garbage.append(garbage)  # a cycle made after start-up is still collected
del garbage
print(json.dumps({"before": before, "after": gc.get_threshold(), "young": YOUNG_THRESHOLD,
                  "frozen": gc.get_freeze_count(), "collected": gc.collect()}))
"""


def test_startup_objects_are_frozen_and_young_collections_are_rarer():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["after"][0] == seen["young"] > seen["before"][0]
    assert seen["after"][1:] == seen["before"][1:]
    assert seen["frozen"] > 1000  # modules and what they made, out of the collector's sight
    assert seen["collected"] >= 1


WORKER_SCRIPT = """
import gc, json
from core.api.app import create_worker_app
from core.gc_tuning import YOUNG_THRESHOLD
create_worker_app()
print(json.dumps({"young": gc.get_threshold()[0], "tuned": YOUNG_THRESHOLD,
                  "frozen": gc.get_freeze_count()}))
"""


def test_each_process_of_serve_workers_is_tuned_too(tmp_path):
    """``vigie serve --workers N`` builds each process's app by a factory: tuned there."""
    env = {
        "PATH": "/usr/bin:/bin",
        "VIGIE_DATABASE_URL": f"sqlite:///{tmp_path / 'vigie.db'}",
        "VIGIE_CONFIG_DIR": str(REPO / "config"),
        "VIGIE_DATA_DIR": str(tmp_path / "data"),
        "VIGIE_INGEST__ENABLED": "false",
    }
    result = subprocess.run(
        [sys.executable, "-c", WORKER_SCRIPT], cwd=REPO, capture_output=True, text=True,
        timeout=60, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["young"] == seen["tuned"]
    assert seen["frozen"] > 1000
