"""A sensor ticket resolved by its device's recovery is told to plugins with
what a resident's message or a team's dashboard needs: its devices."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core import hookimpl
from core.ingest.batch import RawMessage
from core.ingest.pipeline import IngestPipeline
from core.testing import sample_message

REPO = Path(__file__).resolve().parents[2]


class StatusWatcher:
    name = "status-watcher"

    def __init__(self) -> None:
        self.changes: list[tuple[str, tuple[str, ...], str, str]] = []

    @hookimpl
    def ticket_status_changed(self, ticket, old_status, new_status, event, commune):
        self.changes.append((ticket.reference, ticket.device_ids, old_status, new_status))


@pytest.fixture
def watcher() -> StatusWatcher:
    return StatusWatcher()


@pytest.fixture
def vigie_plugins(watcher):
    return (watcher,)


@pytest.fixture
def vigie_config_dir(tmp_path: Path) -> Path:
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    with (config / "communes" / "clermont-ferrand.toml").open("a") as file:
        file.write("\n[plugins.status-watcher]\n")
    return config


def raw(name: str) -> RawMessage:
    message = sample_message(name)
    return RawMessage(message.topic, message.payload, datetime.now(UTC))


def test_a_ticket_resolved_on_recovery_is_told_with_its_devices(
    vigie_runtime, registry, watcher, monkeypatch
):
    monkeypatch.setattr("core.ingest.pipeline.store_readings", lambda runtime, readings: None)
    pipeline = IngestPipeline(vigie_runtime)
    [reference] = pipeline.process_batch([raw("chirpstack-v4/lamp-failure.json")]).tickets_created
    assert watcher.changes == []
    # Its signals loaded with the batch's other resolutions, not left out.
    outcome = pipeline.process_batch([raw("chirpstack-v4/lamp-recovered.json")])
    assert outcome.alerts == 1
    assert watcher.changes == [(reference, ("SL-CLF-04412",), "new", "resolved")]
