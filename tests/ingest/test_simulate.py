"""``vigie simulate``: deterministic devices and traffic that the envelopes and
connectors read as meant (readings, alerts, recoveries, junk, a storm)."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from itertools import count

from click.testing import CliRunner
from sqlalchemy import func, select

from core.db.models import SignalRecord
from core.db.sensor_models import DeadLetter, Device
from core.devices import import_devices
from core.ingest.batch import BatchOutcome, RawMessage
from core.ingest.mqtt import MqttIngestor
from core.ingest.pipeline import IngestPipeline
from core.settings import IngestSettings
from core.simulate import REGISTRY_COLUMNS, Simulation, publish

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def ticking_clock(start: datetime = T0):
    steps = count()
    return lambda: start + timedelta(seconds=next(steps))


def register(runtime, simulation: Simulation) -> int:
    registry = io.StringIO()
    simulation.write_registry(registry)
    with runtime.sessions() as session:
        result = import_devices(runtime, session, "devices.csv", registry.getvalue())
        session.commit()
    return result.total


def test_the_same_seed_gives_the_same_devices_and_messages() -> None:
    first = Simulation(devices=10, seed=42, junk=0.05, storm=5)
    second = Simulation(devices=10, seed=42, junk=0.05, storm=5)
    assert first.devices == second.devices
    assert first.storm_devices == second.storm_devices
    a = [(m.topic, m.payload) for m in first.messages(300, ticking_clock())]
    b = [(m.topic, m.payload) for m in second.messages(300, ticking_clock())]
    assert a == b
    other = Simulation(devices=10, seed=43)
    assert [m.topic for m in other.messages(50, ticking_clock())] != [t for t, _ in a[:50]]


def test_the_traffic_has_every_kind_of_message_in_the_vocabularies() -> None:
    simulation = Simulation(devices=30, seed=1, junk=0.05, alert_ratio=0.2, storm=10)
    messages = list(simulation.messages(3000, ticking_clock())) + simulation.storm_messages(T0)
    purposes = {m.purpose for m in messages}
    assert purposes == {"reading", "alert", "recovery", "junk", "storm"}
    topics = " ".join(m.topic for m in messages)
    assert "v3/" in topics and "/event/up" in topics and "wmbus/" in topics
    text = b" ".join(m.payload for m in messages)
    for word in (
        b'"leakage":true',  # Axioma
        b'"current_status":"',  # Kamstrup
        b'"current_alarms":"',  # Diehl IZAR
        b'"status":"defectiveLamp"',  # FIWARE Streetlight
        b'"event":"lampFailure"',  # TALQ
        b'"cleared":true',  # a TALQ recovery
        b'"status":"unknown"',  # FIWARE ParkingSpot
        b'"deviceInfo"',  # ChirpStack v4
        b'"devEUI"',  # ChirpStack v3
        b'"end_device_ids"',  # The Things Stack v3
        b'"_":"telegram"',  # wmbusmeters
    ):
        assert word in text, word
    assert all(m.condition == "power_loss" for m in messages if m.purpose == "storm")


def test_the_registry_is_a_csv_that_vigie_devices_import_takes(vigie_runtime, tmp_path) -> None:
    simulation = Simulation(devices=7, seed=3, storm=12)
    path = tmp_path / "devices.csv"
    assert simulation.write_registry(path) == 3 * 7 + 12
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == REGISTRY_COLUMNS
    assert {r["kind"] for r in rows} == {"water_meter", "streetlight", "parking_spot"}
    assert register(vigie_runtime, simulation) == 33
    with vigie_runtime.sessions() as session:
        storm_assets = session.scalars(
            select(Device.asset).where(Device.device_id.like("SL-STORM-%"))
        ).all()
    assert set(storm_assets) == {"ARM-SIM-STORM/C1"}


def test_vigie_simulate_writes_the_registry(tmp_path) -> None:
    from core.cli import cli

    path = tmp_path / "devices.csv"
    result = CliRunner().invoke(
        cli,
        [
            "simulate",
            "--devices",
            "4",
            "--storm",
            "0",
            "--duration",
            "0",
            "--registry-out",
            str(path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Wrote 12 devices" in result.output
    assert len(path.read_text().splitlines()) == 13


def test_the_pipeline_reads_the_traffic_as_meant(vigie_api) -> None:
    runtime = vigie_api.runtime
    simulation = Simulation(
        devices=20, seed=5, junk=0.03, alert_ratio=0.15, storm=12, run_id="t" + uuid.uuid4().hex[:6]
    )
    register(runtime, simulation)
    messages = list(simulation.messages(1500)) + simulation.storm_messages()
    pipeline = IngestPipeline(runtime)
    outcome = BatchOutcome()
    for start in range(0, len(messages), 250):
        chunk = messages[start : start + 250]
        outcome.add(
            pipeline.process_batch(
                [RawMessage(m.topic, m.payload, datetime.now(UTC)) for m in chunk]
            )
        )
    junk = sum(1 for m in messages if m.purpose == "junk")
    assert outcome.dead_letters == junk
    assert outcome.unregistered == 0 and outcome.ignored == 0
    assert outcome.accepted == len(messages) - junk
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(DeadLetter)) == junk

    headers = vigie_api.headers("admin")
    tickets = vigie_api.client.get(
        "/api/v1/tickets", params={"channel": "sensor", "page_size": 200}, headers=headers
    ).json()
    assert tickets["total"] > 0
    incidents = [t for t in tickets["items"] if t["is_incident"]]
    assert len(incidents) == 1
    [incident] = incidents
    assert incident["asset"] == "ARM-SIM-STORM/C1"
    with runtime.sessions() as session:
        storm_alerts = session.scalar(
            select(func.count())
            .select_from(SignalRecord)
            .where(SignalRecord.device_id.like("SL-STORM-%"), SignalRecord.kind == "alert")
        )
    assert storm_alerts == 12


def test_vigie_simulate_traffic_goes_through_a_broker(
    vigie_runtime, mqtt_broker, unique_id, wait_until
) -> None:
    simulation = Simulation(
        devices=10, seed=9, junk=0.02, storm=0, run_id="t" + uuid.uuid4().hex[:6]
    )
    register(vigie_runtime, simulation)
    totals = BatchOutcome()
    real = IngestPipeline(vigie_runtime)

    class Counting:
        def process_batch(self, messages):
            outcome = real.process_batch(messages)
            totals.add(outcome)
            return outcome

    ingestor = MqttIngestor(
        vigie_runtime,
        Counting(),
        mqtt_broker.url,
        simulation.topic_filters(),
        unique_id("simulate"),
        options=IngestSettings(batch_ms=20, session_expiry_seconds=300),
    )
    ingestor.start()
    try:
        assert ingestor.wait_ready(10)
        report = publish(simulation, mqtt_broker.url, rate=400, duration=1.0)
        assert report.total == 400
        assert wait_until(lambda: totals.accepted + totals.dead_letters == 400, timeout=20), totals
        assert totals.dead_letters == report.sent["junk"]
    finally:
        ingestor.stop()
