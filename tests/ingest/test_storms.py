"""Storms: many devices behind one asset raising the same condition within the
window become one incident ticket holding every alert."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from core.devices import import_devices
from core.ingest.pipeline import IngestPipeline, RawMessage

NOW = datetime(2026, 11, 24, 21, 0, tzinfo=UTC)
CIRCUIT = "ARM-CLF-300/C1"


def lamps_csv(count: int, asset: str = CIRCUIT, prefix: str = "SL-T") -> str:
    lines = ["device_id,dev_eui,kind,commune,latitude,longitude,address,asset,tags"]
    for i in range(count):
        lines.append(
            f"{prefix}-{i:05d},,streetlight,clermont-ferrand,45.77,3.08,{i} rue Blatin,{asset},"
        )
    return "\n".join(lines)


def meters_csv(count: int, sector: str) -> str:
    lines = ["device_id,dev_eui,kind,commune,latitude,longitude,address,asset,tags"]
    for i in range(count):
        lines.append(f"WM-S-{i:04d},,water_meter,clermont-ferrand,,,,,sector={sector}")
    return "\n".join(lines)


def lamp_event(device_id: str, event: str, at: datetime, cleared: bool = False) -> RawMessage:
    payload = {"event": event, "cleared": cleared, "observedAt": at.isoformat()}
    return RawMessage(
        f"vigie/clermont-ferrand/lighting/{device_id}", json.dumps(payload).encode(), at
    )


@pytest.fixture(autouse=True)
def telemetry(monkeypatch) -> list:
    """Readings handed to telemetry, kept here: the example config's time-series
    plugin must not be written to (nor left with buffered points) by these tests."""
    handed: list = []
    monkeypatch.setattr(
        "core.ingest.pipeline.store_readings", lambda runtime, readings: handed.extend(readings)
    )
    return handed


@pytest.fixture
def register(vigie_runtime):
    def load(csv: str) -> None:
        with vigie_runtime.sessions() as session:
            import_devices(vigie_runtime, session, "storm.csv", csv)
            session.commit()

    return load


@pytest.fixture
def pipeline(vigie_runtime) -> IngestPipeline:
    return IngestPipeline(vigie_runtime)


def incidents(api, headers) -> list[dict]:
    items = api.client.get(
        "/api/v1/tickets", params={"channel": "sensor", "page_size": 200}, headers=headers
    ).json()["items"]
    return [t for t in items if t["is_incident"]]


def test_a_tripped_circuit_becomes_one_incident(vigie_api, register, pipeline):
    admin = vigie_api.headers("admin")
    register(lamps_csv(30))
    lamps = [f"SL-T-{i:05d}" for i in range(30)]
    # Five lamps first: below the threshold (10), each its own ticket.
    first = pipeline.process_batch(
        [lamp_event(d, "supplyLoss", NOW + timedelta(seconds=i)) for i, d in enumerate(lamps[:5])]
    )
    assert len(first.tickets_created) == 5
    assert incidents(vigie_api, admin) == []
    # The rest of the circuit: the 10th lamp opens the incident, which gathers them all.
    rest = pipeline.process_batch(
        [
            lamp_event(d, "supplyLoss", NOW + timedelta(seconds=30 + i))
            for i, d in enumerate(lamps[5:])
        ]
    )
    assert rest.alerts == 25
    [incident] = incidents(vigie_api, admin)
    assert incident["reference"] in rest.tickets_created
    assert incident["asset"] == CIRCUIT
    assert incident["priority"] == "urgent"  # power_loss is high; an incident one level up
    assert incident["description"].startswith(f"Panne sur {CIRCUIT} : 30 lampadaires")
    assert sorted(incident["device_ids"]) == lamps
    alerts = vigie_api.client.get(f"/api/v1/tickets/{incident['id']}/alerts", headers=admin).json()
    assert len(alerts) == 30 and {a["condition"] for a in alerts} == {"power_loss"}

    # The lamps' own tickets are closed as duplicates of the incident, with history.
    own = vigie_api.client.get(
        "/api/v1/tickets", params={"status": "duplicate", "page_size": 50}, headers=admin
    ).json()["items"]
    assert len(own) == 9
    assert {t["duplicate_of"] for t in own} == {incident["reference"]}
    assert {t["incident"] for t in own} == {incident["reference"]}
    assert all(t["device_ids"] == [] for t in own)  # their alerts moved to the incident
    history = vigie_api.client.get(f"/api/v1/tickets/{own[0]['id']}", headers=admin).json()[
        "history"
    ]
    assert any(e["action"] == "linked" and e["actor"] == "system:storm-detection" for e in history)

    # Later alerts of the storm join it, and so do repeats.
    later = pipeline.process_batch(
        [lamp_event(d, "supplyLoss", NOW + timedelta(minutes=5)) for d in lamps[:3]]
    )
    assert later.tickets_created == []
    [incident] = incidents(vigie_api, admin)
    assert incident["occurrences"] == 33
    assert len(incident["device_ids"]) == 30


def test_the_storm_grows_across_batches_and_recovers(vigie_api, register, pipeline):
    admin = vigie_api.headers("admin")
    register(lamps_csv(40))
    lamps = [f"SL-T-{i:05d}" for i in range(40)]
    pipeline.process_batch([lamp_event(d, "lampFailure", NOW) for d in lamps[:20]])
    pipeline.process_batch(
        [lamp_event(d, "lampFailure", NOW + timedelta(minutes=2)) for d in lamps[20:]]
    )
    [incident] = incidents(vigie_api, admin)
    assert incident["description"].startswith(f"Panne sur {CIRCUIT} : 40 lampadaires")
    detail = vigie_api.client.get(f"/api/v1/tickets/{incident['id']}", headers=admin).json()
    assert any(
        e["action"] == "storm_grew" and e["changes"] == {"devices": [20, 40]}
        for e in detail["history"]
    )
    # The circuit is repaired: every lamp clears; the incident is resolved once all have.
    back = NOW + timedelta(hours=2)
    pipeline.process_batch([lamp_event(d, "lampFailure", back, cleared=True) for d in lamps[:39]])
    assert incidents(vigie_api, admin)[0]["status"] == "new"
    pipeline.process_batch([lamp_event(lamps[39], "lampFailure", back, cleared=True)])
    detail = vigie_api.client.get(f"/api/v1/tickets/{incident['id']}", headers=admin).json()
    assert detail["status"] == "resolved"
    assert sum(1 for e in detail["history"] if e["action"] == "recovered") == 40


def test_few_devices_or_far_apart_make_no_storm(vigie_api, register, pipeline):
    admin = vigie_api.headers("admin")
    register(lamps_csv(12))
    lamps = [f"SL-T-{i:05d}" for i in range(12)]
    # One an hour: never 10 within the 10-minute window.
    outcome = pipeline.process_batch(
        [lamp_event(d, "lampFailure", NOW + timedelta(hours=i)) for i, d in enumerate(lamps)]
    )
    assert len(outcome.tickets_created) == 12
    assert incidents(vigie_api, admin) == []


def test_devices_without_an_asset_storm_by_sector(vigie_api, register, pipeline):
    admin = vigie_api.headers("admin")
    register(meters_csv(12, "nord"))
    messages = []
    for i in range(12):
        at = NOW + timedelta(seconds=i)
        body = {"burst": True, "timestamp": at.isoformat()}
        topic = f"vigie/clermont-ferrand/water/WM-S-{i:04d}"
        messages.append(RawMessage(topic, json.dumps(body).encode(), at))
    pipeline.process_batch(messages[:4])
    pipeline.process_batch(messages[4:])
    [incident] = incidents(vigie_api, admin)
    assert incident["asset"] is None
    assert incident["description"].startswith("Panne sur sector nord : 12 compteurs d'eau")
    assert len(incident["device_ids"]) == 12


def test_a_large_storm_is_one_incident_with_every_alert_quickly(vigie_api, register, pipeline):
    admin = vigie_api.headers("admin")
    count = 1500
    register(lamps_csv(count))
    messages = [
        lamp_event(f"SL-T-{i:05d}", "circuitBreakerTripped", NOW + timedelta(milliseconds=20 * i))
        for i in range(count)
    ]
    started = time.perf_counter()
    created = []
    for start in range(0, count, 500):
        created += pipeline.process_batch(messages[start : start + 500]).tickets_created
    elapsed = time.perf_counter() - started
    [incident] = incidents(vigie_api, admin)
    assert incident["reference"] in created and len(created) == 10
    assert incident["occurrences"] == count
    assert len(incident["device_ids"]) == count
    assert elapsed < 10, f"{count} storm alerts took {elapsed:.1f}s"


def test_two_processes_each_seeing_half_a_storm_open_one_incident(
    vigie_api, vigie_runtime, register
):
    """As two pipeline processes (or two ``vigie ingest``) storing at the same
    time: each sees half of the circuit's lamps, and each half is enough to
    open an incident. One opens it; the other's lamps join it."""
    admin = vigie_api.headers("admin")
    register(lamps_csv(400))
    halves = [
        [
            lamp_event(f"SL-T-{i:05d}", "supplyLoss", NOW + timedelta(milliseconds=10 * i))
            for i in range(start, 400, 2)
        ]
        for start in (0, 1)
    ]
    pipelines = [IngestPipeline(vigie_runtime), IngestPipeline(vigie_runtime)]
    ready = threading.Barrier(2)
    outcomes: list = [None, None]
    errors: list = []

    def store(n: int) -> None:
        try:
            ready.wait()
            outcomes[n] = pipelines[n].process_batch(halves[n])
        except Exception as exc:  # pragma: no cover - shown by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=store, args=(n,)) for n in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    [incident] = incidents(vigie_api, admin)
    assert incident["occurrences"] == 400
    assert len(incident["device_ids"]) == 400
    assert sum(o.alerts for o in outcomes) == 400
    # No lamp kept a ticket of its own open beside the incident.
    open_tickets = vigie_api.client.get(
        "/api/v1/tickets",
        params={"channel": "sensor", "status": "new", "page_size": 200},
        headers=admin,
    ).json()["items"]
    assert [t["reference"] for t in open_tickets if not t["is_incident"]] == []
