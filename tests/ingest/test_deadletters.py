"""Bad input ends in the dead letters with its reason, byte for byte, and
ingestion carries on; ``GET /api/v1/deadletters`` shows them."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from core.db.sensor_models import DeadLetter
from core.devices import import_devices
from core.ingest.pipeline import IngestPipeline, RawMessage

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / ".." / "shared" / "samples"
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
DEVICES = (
    "device_id,dev_eui,kind,commune,latitude,longitude,address,asset,tags\n"
    "wm-000451,70b3d5e75e000451,water_meter,clermont-ferrand,45.7765,3.0822,3 place de Jaude,,\n"
    "SL-CLF-04412,0004a30b00e8f112,streetlight,clermont-ferrand,45.7762,3.0824,,ARM-CLF-112/C2,\n"
    "PK-CHAM-0031,a81758fffe0345a1,parking_spot,chamalieres,45.7743,3.0670,,CHAM-GAMBETTA-31,\n"
)
TTN_TOPIC = "v3/eau-clermont@ttn/devices/wm-000451/up"


def shared_bytes(name: str) -> bytes:
    path = SAMPLES / name
    if not path.is_file():
        pytest.skip(f"the shared samples are not at {SAMPLES.resolve()}")
    return path.read_bytes()


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
def pipeline(vigie_runtime) -> IngestPipeline:
    with vigie_runtime.sessions() as session:
        import_devices(vigie_runtime, session, "devices.csv", DEVICES)
        session.commit()
    return IngestPipeline(vigie_runtime)


def test_bad_samples_are_listed_with_their_reasons(vigie_api, pipeline):
    truncated = shared_bytes("bad/truncated.json")  # the bytes as they arrive: cut short
    wrong = json.loads(shared_bytes("bad/wrong-types.json"))
    wrong_bytes = json.dumps(wrong["payload"]).encode()
    outcome = pipeline.process_batch(
        [
            RawMessage(TTN_TOPIC, truncated, NOW),
            RawMessage(wrong["topic"], wrong_bytes, NOW.replace(minute=1)),
        ]
    )
    assert outcome.dead_letters == 2 and outcome.accepted == 0

    response = vigie_api.client.get("/api/v1/deadletters", headers=vigie_api.headers("admin"))
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["total"] == 2
    newest, oldest = page["items"]  # newest first
    assert newest["topic"] == wrong["topic"]
    assert newest["stage"] == "envelope"
    assert newest["reason"] == "end_device_ids.device_id: expected a string, got 451"
    assert newest["encoding"] == "utf-8" and newest["payload"].encode() == wrong_bytes
    assert oldest["reason"].startswith("message is not valid JSON")
    assert oldest["payload"].encode() == truncated and oldest["size"] == len(truncated)
    assert oldest["received_at"].startswith("2026-11-24T12:00:00")


def test_a_payload_the_connector_rejects_is_dead_lettered_and_the_batch_goes_on(
    vigie_api, pipeline
):
    def lamp(status: str, f_cnt: int) -> RawMessage:
        body = {
            "deduplicationId": f"d-{f_cnt}",
            "deviceInfo": {"deviceName": "SL-CLF-04412", "devEui": "0004a30b00e8f112"},
            "object": {"status": status},
        }
        topic = "application/a/device/0004a30b00e8f112/event/up"
        return RawMessage(topic, json.dumps(body).encode(), NOW)

    outcome = pipeline.process_batch([lamp("brokenGlass", 1), lamp("defectiveLamp", 2)])
    assert outcome.dead_letters == 1 and outcome.accepted == 1
    assert len(outcome.tickets_created) == 1
    [letter] = vigie_api.client.get(
        "/api/v1/deadletters", params={"stage": "connector"}, headers=vigie_api.headers("admin")
    ).json()["items"]
    assert letter["reason"].startswith("lighting: status: unknown Streetlight status 'brokenGlass'")


def test_binary_and_oversized_payloads(vigie_api, vigie_runtime, pipeline):
    binary = b"\x00\xff\xfe garbage \x80"
    big = b'{"x": "' + b"a" * (vigie_runtime.settings.ingest.max_payload_bytes + 10) + b'"}'
    outcome = pipeline.process_batch(
        [RawMessage("wmbus/x", binary, NOW), RawMessage("wmbus/y", big, NOW.replace(minute=5))]
    )
    assert outcome.dead_letters == 2
    items = vigie_api.client.get("/api/v1/deadletters", headers=vigie_api.headers("admin")).json()[
        "items"
    ]
    oversized, garbage = items
    assert oversized["reason"].startswith(
        f"message is {len(big)} bytes, more than the 65536 allowed"
    )
    assert oversized["size"] == 65536  # what is kept of it
    assert garbage["encoding"] == "base64"
    assert base64.b64decode(garbage["payload"]) == binary
    assert garbage["reason"].startswith("message is not UTF-8 text")


def test_dead_letters_are_for_all_commune_admins_and_supervisors(vigie_api, pipeline):
    client = vigie_api.client
    assert (
        client.get("/api/v1/deadletters", headers=vigie_api.headers("supervisor")).status_code
        == 200
    )
    for role, communes in (("agent", ["all"]), ("supervisor", ["aubiere"]), ("admin", ["aubiere"])):
        response = client.get("/api/v1/deadletters", headers=vigie_api.headers(role, communes))
        assert response.status_code == 403, (role, communes)
    assert client.get("/api/v1/deadletters").status_code == 401


# --- Whatever arrives, process_batch never raises and nothing is lost ------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
payload_fields = st.dictionaries(
    st.sampled_from(
        ["leakage", "burst", "status", "current_status", "current_alarms", "current_volume_m3",
         "remaining_battery_life_y", "timestamp_utc", "event", "events", "cleared", "powerState",
         "refStreetlightControlCabinet", "circuit", "observedAt", "alarmFlowPersistence"]
    ) | st.text(max_size=8),
    json_values,
    max_size=5,
)  # fmt: skip


@st.composite
def messages(draw) -> RawMessage:
    kind = draw(st.sampled_from(["bytes", "json", "ttn", "chirpstack", "plain"]))
    if kind == "bytes":
        topic, raw = draw(st.sampled_from([TTN_TOPIC, "wmbus/x", "vigie/a/b/c"])), draw(st.binary())
    elif kind == "json":
        topic, raw = TTN_TOPIC, json.dumps(draw(json_values)).encode()
    elif kind == "ttn":
        decoded = draw(payload_fields)
        body = {
            "end_device_ids": {"device_id": "wm-000451"},
            "uplink_message": {"decoded_payload": decoded},
        }
        topic, raw = TTN_TOPIC, json.dumps(body).encode()
    elif kind == "chirpstack":
        body = {
            "deviceInfo": {"deviceName": "SL-CLF-04412", "devEui": "0004a30b00e8f112"},
            "deduplicationId": draw(st.uuids()).hex,
            "object": draw(payload_fields),
        }
        topic, raw = "application/a/device/0004a30b00e8f112/event/up", json.dumps(body).encode()
    else:
        topic, raw = (
            "vigie/chamalieres/parking/PK-CHAM-0031",
            json.dumps(draw(payload_fields)).encode(),
        )
    return RawMessage(topic, raw, NOW)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(messages(), min_size=1, max_size=4))
def test_malformed_messages_never_crash_and_land_in_the_dead_letters(
    vigie_runtime, pipeline, batch
):
    with vigie_runtime.sessions() as session:
        before = session.scalar(select(func.max(DeadLetter.id))) or 0
        repeats_before = session.scalar(select(func.sum(DeadLetter.repeats))) or 0
    outcome = pipeline.process_batch(batch)  # must not raise
    # Every message read or kept (no topic here names an unknown device).
    assert outcome.accepted + outcome.dead_letters + outcome.unregistered == len(batch)
    with vigie_runtime.sessions() as session:
        letters = session.scalars(
            select(DeadLetter).where(DeadLetter.id > before).order_by(DeadLetter.id)
        ).all()
        repeats = (session.scalar(select(func.sum(DeadLetter.repeats))) or 0) - repeats_before
    # Each one stored, or counted on the letter of the same bytes (hypothesis repeats itself).
    assert len(letters) + repeats == outcome.dead_letters
    kept = [(letter.topic, letter.payload) for letter in letters]
    for item in kept:
        assert item in [(m.topic, m.payload) for m in batch]  # byte for byte
    assert all(letter.reason for letter in letters)


def test_the_same_bad_message_again_is_a_repeat_not_another_letter(vigie_api, pipeline):
    """The broker redelivers a batch it had no ack for; a device resends: one
    dead letter, its repeats counted."""
    bad = RawMessage("vigie/clermont/junk", b'{"truncated": ', NOW)
    other = RawMessage("vigie/clermont/junk", b"not json at all", NOW)
    first = pipeline.process_batch([bad, bad])
    assert first.dead_letters == 2
    later = RawMessage(bad.topic, bad.payload, NOW + timedelta(minutes=5))
    pipeline.process_batch([later, other])
    items = vigie_api.client.get(
        "/api/v1/deadletters", headers=vigie_api.headers("admin")
    ).json()["items"]
    assert len(items) == 2
    [letter] = [i for i in items if i["payload"] == '{"truncated": ']
    assert letter["repeats"] == 2
    assert letter["last_received_at"].startswith((NOW + timedelta(minutes=5)).isoformat()[:16])
    [fresh] = [i for i in items if i["payload"] == "not json at all"]
    assert fresh["repeats"] == 0 and fresh["last_received_at"] is None
