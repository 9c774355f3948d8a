"""The ingestion pipeline, fed real-format messages, checked through the staff API:
tickets carry the registry's location and asset, repeats are occurrences, a
redelivered message counts once, recoveries are written (and resolve where
the commune says so), unknown devices are listed, ignored ones counted."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from core.db.sensor_models import Device
from core.ingest.pipeline import BatchOutcome, IngestPipeline, RawMessage

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / ".." / "shared" / "samples"
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def sample(name: str) -> RawMessage:
    """A message of /work/shared/samples as the broker delivers it."""
    path = SAMPLES / name
    if not path.is_file():
        pytest.skip(f"the shared samples are not at {SAMPLES.resolve()}")
    data = json.loads(path.read_text(encoding="utf-8"))
    return RawMessage(data["topic"], json.dumps(data["payload"]).encode(), NOW)


def ttn(device_id: str, decoded: dict, at: datetime, f_cnt: int = 1, dev_eui: str | None = None):
    ids = {"device_id": device_id, **({"dev_eui": dev_eui} if dev_eui else {})}
    body = {
        "end_device_ids": ids,
        "correlation_ids": [f"as:up:{device_id}-{f_cnt}-{at.timestamp()}"],
        "received_at": at.isoformat(),
        "uplink_message": {
            "f_cnt": f_cnt,
            "decoded_payload": decoded,
            "received_at": at.isoformat(),
        },
    }
    return RawMessage(f"v3/eau-clermont@ttn/devices/{device_id}/up", json.dumps(body).encode(), at)


def chirpstack(device_id: str, dev_eui: str, obj: dict, at: datetime, f_cnt: int = 1):
    body = {
        "deduplicationId": f"{dev_eui}-{f_cnt}-{at.timestamp()}",
        "time": at.isoformat(),
        "deviceInfo": {"deviceName": device_id, "devEui": dev_eui},
        "fCnt": f_cnt,
        "object": obj,
    }
    return RawMessage(f"application/app/device/{dev_eui}/event/up", json.dumps(body).encode(), at)


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
def pipeline(vigie_runtime, registry) -> IngestPipeline:
    return IngestPipeline(vigie_runtime)


def sensor_tickets(api, headers, device_id: str) -> list[dict]:
    response = api.client.get(
        "/api/v1/tickets", params={"channel": "sensor", "device_id": device_id}, headers=headers
    )
    assert response.status_code == 200, response.text
    return response.json()["items"]


def test_samples_become_tickets_with_the_registry_location(vigie_api, pipeline):
    admin = vigie_api.headers("admin")
    outcome = pipeline.process_batch(
        [
            sample("ttn-v3/water-leak.json"),
            sample("ttn-v3/water-reading.json"),
            sample("direct/izar-backflow.json"),
            sample("direct/wmbus-kamwater.json"),
            sample("chirpstack-v3/parking-occupied.json"),
            sample("direct/parking-overstay.json"),
        ]
    )
    assert outcome.accepted == 6 and outcome.dead_letters == 0
    assert outcome.alerts == 3 and len(outcome.tickets_created) == 3
    assert outcome.readings >= 4  # volumes and occupancy, to telemetry

    [leak] = sensor_tickets(vigie_api, admin, "wm-000451")
    assert leak["device_ids"] == ["wm-000451"]
    assert leak["commune"] == "clermont-ferrand"
    assert leak["category"] == "eau-assainissement"
    assert leak["location"]["address"] == "3 place de Jaude, Clermont-Ferrand"
    assert leak["location"]["latitude"] == pytest.approx(45.7765)
    assert leak["asset"] == "PDL-CLF-JAUDE-03"
    assert leak["occurrences"] == 1
    alerts = vigie_api.client.get(f"/api/v1/tickets/{leak['id']}/alerts", headers=admin).json()
    assert [(a["device_id"], a["condition"], a["device_kind"]) for a in alerts] == [
        ("wm-000451", "leak", "water_meter")
    ]
    assert alerts[0]["first_seen_at"].startswith("2026-11-23T02:14:00")

    [backflow] = sensor_tickets(vigie_api, admin, "PdL-CLF-2207")
    assert backflow["asset"] == "PDL-CLF-PORT-01"
    [kamstrup] = sensor_tickets(vigie_api, admin, "PdL-AUB-0093")
    assert kamstrup["commune"] == "aubiere"
    assert sensor_tickets(vigie_api, admin, "wm-000452") == []  # a reading only
    assert sensor_tickets(vigie_api, admin, "PK-CHAM-0031") == []  # occupied, not overstaying


def test_repeats_are_occurrences_of_one_ticket(vigie_api, pipeline):
    admin = vigie_api.headers("admin")
    leak = {"leakage": True, "current_volume_m3": 10.0}
    first = pipeline.process_batch([ttn("wm-000453", leak, NOW, 1)])
    assert len(first.tickets_created) == 1
    later = pipeline.process_batch(
        [ttn("wm-000453", leak, NOW + timedelta(hours=h), 1 + h) for h in (1, 2)]
    )
    assert later.tickets_created == [] and later.alerts == 2
    [ticket] = sensor_tickets(vigie_api, admin, "wm-000453")
    assert ticket["occurrences"] == 3
    [alert] = vigie_api.client.get(f"/api/v1/tickets/{ticket['id']}/alerts", headers=admin).json()
    assert alert["occurrences"] == 3
    assert alert["first_seen_at"].startswith("2026-11-24T12:00")
    assert alert["last_seen_at"].startswith("2026-11-24T14:00")


def test_a_redelivered_message_is_counted_once(vigie_api, pipeline):
    admin = vigie_api.headers("admin")
    message = sample("ttn-v3/water-leak.json")
    assert pipeline.process_batch([message]).alerts == 1
    again = pipeline.process_batch([message, message])
    assert again.alerts == 0 and again.duplicates == 2 and again.tickets_created == []
    [ticket] = sensor_tickets(vigie_api, admin, "wm-000451")
    assert ticket["occurrences"] == 1


def test_recovery_is_written_and_resolves_the_lamp_ticket(vigie_api, pipeline):
    admin = vigie_api.headers("admin")
    pipeline.process_batch([sample("chirpstack-v4/lamp-failure.json")])
    [ticket] = sensor_tickets(vigie_api, admin, "SL-CLF-04412")
    assert ticket["status"] == "new"
    assert ticket["asset"] == "ARM-CLF-112/C2"
    assert ticket["location"]["address"] == "24 rue Blatin, Clermont-Ferrand"

    outcome = pipeline.process_batch([sample("chirpstack-v4/lamp-recovered.json")])
    assert outcome.alerts == 1
    detail = vigie_api.client.get(f"/api/v1/tickets/{ticket['id']}", headers=admin).json()
    assert detail["status"] == "resolved"  # clermont-ferrand: lighting resolve_on_recovery
    recovered = [e for e in detail["history"] if e["action"] == "recovered"]
    assert recovered and recovered[0]["actor"] == "sensor:SL-CLF-04412"
    assert recovered[0]["changes"]["condition"] == "lamp_failure"
    assert any(
        e["action"] == "status_changed" and e["changes"]["status"] == ["new", "resolved"]
        for e in detail["history"]
    )
    [alert] = vigie_api.client.get(f"/api/v1/tickets/{ticket['id']}/alerts", headers=admin).json()
    assert alert["recovered_at"].startswith("2026-11-23T08:02:40")


def test_recovery_is_only_written_where_the_commune_does_not_resolve(vigie_api, pipeline):
    admin = vigie_api.headers("admin")
    pipeline.process_batch([ttn("wm-000454", {"leakage": True}, NOW, 1)])
    pipeline.process_batch([ttn("wm-000454", {"leakage": False}, NOW + timedelta(hours=1), 2)])
    [ticket] = sensor_tickets(vigie_api, admin, "wm-000454")
    detail = vigie_api.client.get(f"/api/v1/tickets/{ticket['id']}", headers=admin).json()
    assert detail["status"] == "new"  # clermont-ferrand: water resolve_on_recovery = false
    assert [e["actor"] for e in detail["history"] if e["action"] == "recovered"] == [
        "sensor:wm-000454"
    ]


def test_a_recovery_without_an_open_alert_is_kept_quietly(vigie_runtime, vigie_api, pipeline):
    # The device remembers a failure Vigie never stored (e.g. before it was registered).
    with vigie_runtime.sessions() as session:
        lamp = session.scalar(select(Device).where(Device.device_id == "SL-CLF-04405"))
        lamp.state = {"active": {"lamp_failure": "2026-11-20T20:00:00+00:00"}}
        session.commit()
    outcome = pipeline.process_batch(
        [chirpstack("SL-CLF-04405", "0004a30b00e8f105", {"status": "ok"}, NOW)]
    )
    assert outcome == BatchOutcome(accepted=1, alerts=1)
    assert sensor_tickets(vigie_api, vigie_api.headers("admin"), "SL-CLF-04405") == []


def test_devices_are_found_by_dev_eui_in_any_case(vigie_api, pipeline):
    # The network names it differently from the registry; its DevEUI matches.
    outcome = pipeline.process_batch(
        [ttn("eui-70b3d5e75e000455", {"burst": True}, NOW, dev_eui="70B3D5E75E000455")]
    )
    assert outcome.unregistered == 0 and len(outcome.tickets_created) == 1
    [ticket] = sensor_tickets(vigie_api, vigie_api.headers("admin"), "wm-000455")
    assert ticket["priority"] == "urgent"


def test_unknown_devices_are_listed_not_ticketed(vigie_api, pipeline):
    admin = vigie_api.headers("admin")
    messages = [
        ttn("wm-999001", {"leakage": True}, NOW, 1, dev_eui="70B3D5E75E999001"),
        ttn("wm-999001", {"leakage": True}, NOW + timedelta(minutes=5), 2),
    ]
    outcome = pipeline.process_batch(messages)
    assert outcome.unregistered == 2 and outcome.tickets_created == []
    assert vigie_api.client.get("/api/v1/tickets", headers=admin).json()["total"] == 0
    listed = vigie_api.client.get("/api/v1/devices/unregistered", headers=admin).json()
    [device] = listed["items"]
    assert device["device_id"] == "wm-999001"
    assert device["dev_eui"] == "70b3d5e75e999001"
    assert device["message_count"] == 2
    assert device["topic"] == "v3/eau-clermont@ttn/devices/wm-999001/up"
    assert '"leakage": true' in device["last_payload"]
    pipeline.process_batch([ttn("wm-999001", {}, NOW + timedelta(minutes=9), 3)])
    listed = vigie_api.client.get("/api/v1/devices/unregistered", headers=admin).json()
    assert listed["items"][0]["message_count"] == 3


def test_devices_of_a_commune_without_the_connector_are_ignored_and_counted(vigie_api, pipeline):
    # Chamalières enables parking and lighting, not water.
    messages = [
        ttn("wm-cha-000101", {"leakage": True}, NOW + timedelta(minutes=m), m) for m in range(3)
    ]
    outcome = pipeline.process_batch(messages)
    assert outcome.ignored == 3 and outcome.accepted == 0 and outcome.tickets_created == []
    ignored = vigie_api.client.get(
        "/api/v1/devices/ignored", headers=vigie_api.headers("agent", ["chamalieres"])
    ).json()
    assert ignored == [
        {
            "commune": "chamalieres",
            "connector": "water",
            "message_count": 3,
            "last_device_id": "wm-cha-000101",
            "last_seen_at": ignored[0]["last_seen_at"],
        }
    ]
    other = vigie_api.headers("agent", ["aubiere"])
    assert vigie_api.client.get("/api/v1/devices/ignored", headers=other).json() == []


def test_readings_reach_telemetry_after_the_commit(vigie_runtime, pipeline, monkeypatch):
    handed = []

    def store_readings(runtime, readings):
        # A new session already sees what the batch stored.
        with runtime.sessions() as session:
            meter = session.scalar(select(Device).where(Device.device_id == "wm-000452"))
            handed.append((list(readings), meter.last_seen_at))

    monkeypatch.setattr("core.ingest.pipeline.store_readings", store_readings)
    pipeline.process_batch([sample("ttn-v3/water-reading.json")])
    [(readings, last_seen)] = handed
    assert [(r.device_id, r.commune, r.fields["volume_m3"]) for r in readings] == [
        ("wm-000452", "clermont-ferrand", 1204.057)
    ]
    assert last_seen is not None


def test_a_failing_telemetry_store_costs_no_alert(vigie_api, pipeline, monkeypatch):
    def broken(runtime, readings):
        raise ConnectionError("time-series store down")

    monkeypatch.setattr("core.ingest.pipeline.store_readings", broken)
    outcome = pipeline.process_batch([sample("ttn-v3/water-leak.json")])
    assert outcome.alerts == 1
    assert sensor_tickets(vigie_api, vigie_api.headers("admin"), "wm-000451")


def test_the_device_state_carries_from_one_batch_to_the_next(vigie_runtime, pipeline):
    pipeline.process_batch([sample("chirpstack-v4/lamp-failure.json")])
    with vigie_runtime.sessions() as session:
        lamp = session.scalar(select(Device).where(Device.device_id == "SL-CLF-04412"))
        assert "lamp_failure" in lamp.state["active"]
        assert lamp.last_seen_at is not None
    pipeline.process_batch([sample("chirpstack-v4/lamp-recovered.json")])
    with vigie_runtime.sessions() as session:
        lamp = session.scalar(select(Device).where(Device.device_id == "SL-CLF-04412"))
        assert lamp.state["active"] == {}


def test_silent_meters_become_tickets_once(vigie_api, vigie_runtime, pipeline):
    from core.ingest.pipeline import check_silent_meters

    admin = vigie_api.headers("admin")
    pipeline.process_batch([sample("ttn-v3/water-reading.json")])  # wm-000452 heard
    assert check_silent_meters(vigie_runtime, NOW).tickets_created == []
    later = NOW + timedelta(days=3)  # clermont-ferrand: silent after 48 h
    outcome = check_silent_meters(vigie_runtime, later)
    assert len(outcome.tickets_created) == 1
    again = check_silent_meters(vigie_runtime, later + timedelta(hours=1))
    assert again.tickets_created == [] and again.duplicates == 1
    [ticket] = sensor_tickets(vigie_api, admin, "wm-000452")
    alerts = vigie_api.client.get(f"/api/v1/tickets/{ticket['id']}/alerts", headers=admin).json()
    assert [a["condition"] for a in alerts] == ["silent"]


def test_an_alert_that_cannot_be_stored_is_dead_lettered_and_the_batch_is_kept(
    vigie_api, pipeline, monkeypatch
):
    """A batch's tickets are opened together, with no savepoint each; when one
    fails for a reason other than the database, the batch is done again one
    ticket at a time: only the failing message goes to the dead letters."""
    import core.ingest.alerts

    real_accept = core.ingest.alerts.accept_signal

    def accept(runtime, session, signal, actor, checked=False):
        if signal.device_id == "wm-000451":
            raise RuntimeError("a bug in ticket drafting")
        return real_accept(runtime, session, signal, actor, checked=checked)

    monkeypatch.setattr(core.ingest.alerts, "accept_signal", accept)
    leak = sample("ttn-v3/water-leak.json")
    outcome = pipeline.process_batch(
        [sample("direct/izar-backflow.json"), leak, sample("direct/wmbus-kamwater.json")]
    )
    assert len(outcome.tickets_created) == 2 and outcome.dead_letters == 1
    admin = vigie_api.headers("admin")
    assert sensor_tickets(vigie_api, admin, "wm-000451") == []
    [backflow] = sensor_tickets(vigie_api, admin, "PdL-CLF-2207")
    [kamstrup] = sensor_tickets(vigie_api, admin, "PdL-AUB-0093")
    # Stored once each, with their whole history, after the retry.
    detail = vigie_api.client.get(f"/api/v1/tickets/{backflow['id']}", headers=admin).json()
    assert [e["action"] for e in detail["history"]].count("created") == 1
    [letter] = vigie_api.client.get(
        "/api/v1/deadletters", params={"stage": "ticket"}, headers=admin
    ).json()["items"]
    assert letter["device_id"] == "wm-000451"
    assert "RuntimeError: a bug in ticket drafting" in letter["reason"]
    assert letter["topic"] == leak.topic


def test_a_device_state_another_process_changed_meanwhile_is_read_again(
    vigie_api, vigie_runtime, pipeline
):
    """A batch reads and interprets before its write transaction; if another
    ingest process changed a device's state in between, that device's
    messages are interpreted again with the state as it now is."""
    from core.ingest.pipeline import _Batch

    recovery = _Batch(pipeline, BatchOutcome(), [])
    with vigie_runtime.read_sessions() as session:  # the lamp has no failure yet
        recovery.prepare(session, [sample("chirpstack-v4/lamp-recovered.json")])
    # Meanwhile another process stores the failure.
    IngestPipeline(vigie_runtime).process_batch([sample("chirpstack-v4/lamp-failure.json")])
    with vigie_runtime.sessions() as session:
        recovery.store(session)
        session.commit()
    [ticket] = sensor_tickets(vigie_api, vigie_api.headers("admin"), "SL-CLF-04412")
    assert ticket["status"] == "resolved", "the recovery was read against the stored failure"
    with vigie_runtime.sessions() as session:
        lamp = session.scalar(select(Device).where(Device.device_id == "SL-CLF-04412"))
        assert lamp.state["active"] == {}


def test_a_redelivered_repeat_is_counted_once(vigie_api, pipeline):
    """A repeat of an open condition, delivered again in a later batch (the
    broker redelivers what was not acknowledged before a disconnect)."""
    admin = vigie_api.headers("admin")
    leak = {"leakage": True, "current_volume_m3": 10.0}
    pipeline.process_batch([ttn("wm-000453", leak, NOW, 1)])
    repeat = ttn("wm-000453", leak, NOW + timedelta(hours=1), 2)
    assert pipeline.process_batch([repeat]).alerts == 1
    again = pipeline.process_batch([repeat])
    assert again.alerts == 0 and again.duplicates == 1
    [ticket] = sensor_tickets(vigie_api, admin, "wm-000453")
    assert ticket["occurrences"] == 2
    # The keys it remembers for that are its own business, not the API's.
    [alert] = vigie_api.client.get(f"/api/v1/tickets/{ticket['id']}/alerts", headers=admin).json()
    assert alert["occurrences"] == 2
    assert not any(key.startswith("_") for key in alert["details"])
