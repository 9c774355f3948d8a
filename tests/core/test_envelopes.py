"""Envelope unwrapping: every network's uplink becomes an Uplink, anything else
an EnvelopeError that says which field is wrong."""

from __future__ import annotations

import base64
import json
import string
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.envelopes import EnvelopeError, parse_timestamp, unwrap
from core.signals import Location, Uplink

SHARED_SAMPLES = Path(__file__).resolve().parents[2] / ".." / "shared" / "samples"
OWN_SAMPLES = Path(__file__).resolve().parents[1] / "samples"
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def shared_sample(name: str) -> tuple[str, bytes]:
    if not SHARED_SAMPLES.is_dir():
        pytest.skip(f"the shared samples are not at {SHARED_SAMPLES.resolve()}")
    data = json.loads((SHARED_SAMPLES / name).read_text(encoding="utf-8"))
    return data["topic"], json.dumps(data["payload"]).encode()


def own_sample(name: str) -> tuple[str, bytes]:
    data = json.loads((OWN_SAMPLES / name).read_text(encoding="utf-8"))
    return data["topic"], json.dumps(data["payload"]).encode()


def raw(message: object) -> bytes:
    return json.dumps(message).encode()


def reason(topic: str, body: bytes) -> str:
    with pytest.raises(EnvelopeError) as caught:
        unwrap(topic, body, NOW)
    assert caught.value.reason == str(caught.value)
    return caught.value.reason


TTN_TOPIC = "v3/eau-clermont@ttn/devices/wm-000451/up"
CS_TOPIC = "application/12/device/a81758fffe0345a1/event/up"


def ttn(**changes: object) -> dict:
    message = {
        "end_device_ids": {"device_id": "wm-000451", "dev_eui": "70B3D5E75E000451"},
        "received_at": "2026-11-23T02:14:07.512345678Z",
        "uplink_message": {"f_cnt": 4411, "decoded_payload": {"leakage": True}},
    }
    message.update(changes)
    return message


# --- The shared samples ----------------------------------------------------------

EXPECTED = {
    "ttn-v3/water-leak.json": dict(
        network="ttn-v3",
        device_id="wm-000451",
        dev_eui="70b3d5e75e000451",
        message_id="as:up:01JD7Q5R8N2V3X4Y5Z6A7B8C9D",
        # uplink_message.received_at wins over the top-level one; nanoseconds cut.
        received_at=datetime(2026, 11, 23, 2, 14, 7, 301122, tzinfo=UTC),
        payload_key="leakage",
    ),
    "ttn-v3/water-reading.json": dict(
        network="ttn-v3",
        device_id="wm-000452",
        dev_eui="70b3d5e75e000452",
        message_id="wm-000452:3902:2026-11-23T03:00:04.050000+00:00",
        received_at=datetime(2026, 11, 23, 3, 0, 4, 50000, tzinfo=UTC),
        payload_key="current_volume_m3",
    ),
    "chirpstack-v4/lamp-failure.json": dict(
        network="chirpstack-v4",
        device_id="SL-CLF-04412",
        dev_eui="0004a30b00e8f112",
        message_id="9b2f7c1e-3d4a-4f6b-8c9d-0e1f2a3b4c5d",
        received_at=datetime(2026, 11, 22, 21, 47, 12, 804512, tzinfo=UTC),
        tags={"cabinet": "ARM-CLF-112", "circuit": "C2"},
        payload_key="status",
    ),
    "chirpstack-v4/lamp-recovered.json": dict(
        network="chirpstack-v4",
        device_id="SL-CLF-04412",
        message_id="1c4d7e2f-5a6b-4c8d-9e0f-a1b2c3d4e5f6",
        tags={},
        payload_key="status",
    ),
    "chirpstack-v3/parking-occupied.json": dict(
        network="chirpstack-v3",
        device_id="PK-CHAM-0031",
        dev_eui="a81758fffe0345a1",
        message_id="a81758fffe0345a1:902",
        received_at=NOW,  # no time in the envelope: the broker's
        tags={"bay": "CHAM-GAMBETTA-31", "zone": "blue"},
        payload_key="status",
    ),
    "direct/wmbus-kamwater.json": dict(
        network="plain",
        device_id="PdL-AUB-0093",
        dev_eui=None,
        message_id=None,
        tags={"meter_id": "76348812"},
        payload_key="current_status",
    ),
    "direct/izar-backflow.json": dict(
        network="plain",
        device_id="PdL-CLF-2207",
        tags={"meter_id": "21242987"},
        payload_key="current_alarms",
    ),
    "direct/parking-overstay.json": dict(
        network="plain",
        device_id="PK-CHAM-0032",
        tags={"entity_id": "urn:ngsi-ld:ParkingSpot:chamalieres:gambetta:32"},
        location=Location(latitude=45.77431, longitude=3.06712),
        payload_key="status",
    ),
}
BAD = {
    "bad/wrong-types.json": "end_device_ids.device_id: expected a string, got 451",
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shared_sample_unwraps(name: str) -> None:
    topic, body = shared_sample(name)
    uplink = unwrap(topic, body, NOW)
    expected = dict(EXPECTED[name])
    assert expected.pop("payload_key") in uplink.payload
    assert uplink.topic == topic
    for field, value in expected.items():
        assert getattr(uplink, field) == value, field
    assert uplink.received_at.tzinfo is not None


@pytest.mark.parametrize("name", sorted(BAD))
def test_shared_bad_sample_is_refused_with_the_field(name: str) -> None:
    assert reason(*shared_sample(name)) == BAD[name]


def test_truncated_file_is_refused_as_not_json() -> None:
    if not SHARED_SAMPLES.is_dir():
        pytest.skip(f"the shared samples are not at {SHARED_SAMPLES.resolve()}")
    body = (SHARED_SAMPLES / "bad" / "truncated.json").read_bytes()
    assert reason(TTN_TOPIC, body).startswith("message is not valid JSON: ")


def test_every_shared_sample_is_checked() -> None:
    if not SHARED_SAMPLES.is_dir():
        pytest.skip(f"the shared samples are not at {SHARED_SAMPLES.resolve()}")
    on_disk = {
        p.relative_to(SHARED_SAMPLES).as_posix()
        for p in SHARED_SAMPLES.rglob("*.json")
        if not p.is_relative_to(SHARED_SAMPLES / "open311")
    }
    assert on_disk == set(EXPECTED) | set(BAD) | {"bad/truncated.json"}


# --- The Things Stack ---------------------------------------------------------------


def test_ttn_without_tenant_and_without_correlation_ids() -> None:
    topic, body = own_sample("ttn-v3/water-vendor-x.json")
    uplink = unwrap(topic, body, NOW)
    assert uplink.network == "ttn-v3"
    assert uplink.device_id == "hydro-x-0007"
    assert uplink.dev_eui == "a1b2c3d4e5f60007"
    assert uplink.message_id == "hydro-x-0007:77:2026-11-24T07:00:03.999999+00:00"
    assert uplink.location == Location(latitude=45.7561, longitude=3.1142)


def test_ttn_f_cnt_zero_is_left_out_by_the_network() -> None:
    message = ttn(uplink_message={"decoded_payload": {}})
    del message["received_at"]
    uplink = unwrap(TTN_TOPIC, raw(message), NOW)
    assert uplink.message_id == f"wm-000451:0:{NOW.isoformat()}"
    assert uplink.received_at == NOW


def test_ttn_device_location_preferred_to_the_registered_one() -> None:
    locations = {
        "user": {"latitude": 45.0, "longitude": 3.0},
        "frm-payload": {"latitude": 45.5, "longitude": 3.5},
    }
    message = ttn(uplink_message={"decoded_payload": {}, "locations": locations})
    assert unwrap(TTN_TOPIC, raw(message), NOW).location == Location(45.5, 3.5)


def test_ttn_unusable_location_is_left_out() -> None:
    locations = {"user": {"latitude": "north", "longitude": 3.0}}
    message = ttn(uplink_message={"decoded_payload": {}, "locations": locations})
    assert unwrap(TTN_TOPIC, raw(message), NOW).location == Location()


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (ttn(end_device_ids=None), "end_device_ids: missing"),
        (ttn(end_device_ids=[]), "end_device_ids: expected an object, got a list"),
        (ttn(end_device_ids={}), "end_device_ids.device_id: missing"),
        (ttn(end_device_ids={"device_id": " "}), "end_device_ids.device_id: empty"),
        (
            ttn(end_device_ids={"device_id": "x", "dev_eui": 7}),
            "end_device_ids.dev_eui: expected a string, got 7",
        ),
        (ttn(uplink_message=None), "uplink_message: missing"),
        (
            ttn(uplink_message={"f_cnt": 3}),
            "uplink_message.decoded_payload: no decoded payload; "
            "configure a payload formatter in The Things Stack",
        ),
        (
            ttn(uplink_message={"decoded_payload": [1]}),
            "uplink_message.decoded_payload: expected an object, got a list",
        ),
        (
            ttn(uplink_message={"decoded_payload": {}, "f_cnt": "12"}),
            "uplink_message.f_cnt: expected an integer, got '12'",
        ),
        (
            ttn(uplink_message={"decoded_payload": {}, "received_at": "yesterday"}),
            "uplink_message.received_at: 'yesterday' is not an ISO 8601 timestamp or a Unix time",
        ),
        (ttn(correlation_ids="as:up:1"), "correlation_ids: expected a list, got 'as:up:1'"),
    ],
)
def test_ttn_fields_are_checked(message: dict, expected: str) -> None:
    assert reason(TTN_TOPIC, raw(message)) == expected


def test_ttn_topic_with_another_payload_is_refused() -> None:
    assert reason(TTN_TOPIC, raw({"deviceId": "x"})) == "end_device_ids: missing"


# --- ChirpStack ---------------------------------------------------------------------


def test_chirpstack_v4_without_codec_is_refused() -> None:
    topic, body = own_sample("bad/no-codec.json")
    assert reason(topic, body) == "object: no decoded payload; configure a codec in ChirpStack"


def test_chirpstack_v4_dev_eui_is_lowercased() -> None:
    topic, body = own_sample("chirpstack-v4/parking-talq-events.json")
    uplink = unwrap(topic, body, NOW)
    assert uplink.dev_eui == "a81758fffe0345b7"
    assert uplink.tags == {"bay_type": "livraison", "bay": "CLF-JAUDE-07"}
    assert uplink.received_at == datetime(2026, 11, 24, 16, 40, tzinfo=UTC)


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        ({"devEui": "0004a30b00e8f112"}, "deviceInfo.deviceName: missing"),
        (
            {"deviceName": "SL-1", "devEui": 12},
            "deviceInfo.devEui: expected a DevEUI string, got 12",
        ),
        (
            {"deviceName": "SL-1", "devEui": "0004a30b00e8f112", "tags": {"cabinet": ["A"]}},
            "deviceInfo.tags.cabinet: expected a string, got a list",
        ),
    ],
)
def test_chirpstack_v4_fields_are_checked(info: dict, expected: str) -> None:
    assert reason(CS_TOPIC, raw({"deviceInfo": info, "object": {}})) == expected


def test_chirpstack_v4_without_deduplication_id() -> None:
    message = {
        "deviceInfo": {"deviceName": "SL-1", "devEui": "0004A30B00E8F112"},
        "fCnt": 9,
        "time": "2026-11-24T10:00:00Z",
        "object": {},
    }
    uplink = unwrap(CS_TOPIC, raw(message), NOW)
    assert uplink.message_id == "0004a30b00e8f112:9:2026-11-24T10:00:00+00:00"


def test_chirpstack_v3_object_json_and_base64_dev_eui() -> None:
    topic, body = own_sample("chirpstack-v3/water-objectjson.json")
    uplink = unwrap(topic, body, NOW)
    assert uplink.network == "chirpstack-v3"
    assert uplink.device_id == "wm-000461"
    assert uplink.dev_eui == "70b3d5e75e000461"
    assert uplink.payload["burst"] is True
    assert uplink.tags == {"district": "centre"}
    # The gateway's time keeps two uplinks with one counter (after a rejoin) apart.
    assert uplink.message_id == "70b3d5e75e000461:5120:2026-11-24T04:10:00.123456+00:00"
    assert uplink.received_at == datetime(2026, 11, 24, 4, 10, 0, 123456, tzinfo=UTC)


def v3(**changes: object) -> dict:
    message = {"applicationID": "12", "deviceName": "PK-1", "devEUI": "a81758fffe0345a1"}
    message.update(changes)
    return message


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (v3(), "object: no decoded payload; configure a codec in ChirpStack"),
        (v3(objectJSON=""), "object: no decoded payload; configure a codec in ChirpStack"),
        (v3(objectJSON='{"status": "occ'), "objectJSON: not valid JSON (Unterminated string"),
        (v3(objectJSON="[1, 2]"), "objectJSON: expected a JSON object, got a list"),
        (v3(objectJSON={"status": "free"}), "objectJSON: expected a JSON string, got an object"),
        (v3(object="free"), "object: expected an object, got 'free'"),
        (
            v3(devEUI="not-an-eui", object={}),
            "devEUI: 'not-an-eui' is not a DevEUI (16 hex digits)",
        ),
        (v3(deviceName=None, object={}), "deviceName: missing"),
        (v3(object={}, tags=["a"]), "tags: expected an object, got a list"),
        (v3(object={}, fCnt=-1.5), "fCnt: expected an integer, got -1.5"),
    ],
)
def test_chirpstack_v3_fields_are_checked(message: dict, expected: str) -> None:
    assert reason(CS_TOPIC, raw(message)).startswith(expected)


def test_chirpstack_topic_with_neither_version_is_refused() -> None:
    assert reason(CS_TOPIC, raw({"object": {}})).startswith("deviceInfo: missing")


def test_chirpstack_v3_older_rx_topic() -> None:
    uplink = unwrap("application/12/device/a81758fffe0345a1/rx", raw(v3(object={})), NOW)
    assert uplink.network == "chirpstack-v3"


# --- Plain JSON -------------------------------------------------------------------------


def test_vigie_topic_names_the_device_and_keeps_the_fiware_id() -> None:
    topic, body = own_sample("direct/fiware-water.json")
    uplink = unwrap(topic, body, NOW)
    assert uplink.device_id == "PdL-CLF-3001"
    assert uplink.tags == {
        "entity_id": "urn:ngsi-ld:WaterConsumptionObserved:clermont-ferrand:3001"
    }
    assert uplink.location == Location(45.7797, 3.0893, "4 rue du Port, Clermont-Ferrand")
    assert uplink.message_id is None


def test_fiware_id_is_the_device_on_other_topics() -> None:
    topic, body = own_sample("direct/streetlight-column.json")
    uplink = unwrap(topic, body, NOW)
    assert uplink.device_id == "urn:ngsi-ld:Streetlight:clermont-ferrand:04417"
    assert uplink.tags == {}


@pytest.mark.parametrize(
    ("message", "device_id"),
    [
        ({"deviceId": "A", "device_id": "B", "id": "C"}, "A"),
        ({"device_id": "B", "id": "C"}, "B"),
        ({"id": "C"}, "C"),
        ({"_": "telegram", "name": "PdL-1", "id": 7, "deviceId": "X"}, "PdL-1"),
    ],
)
def test_plain_device_id_rule(message: dict, device_id: str) -> None:
    assert unwrap("sensors/anything", raw(message), NOW).device_id == device_id


def test_vigie_topic_wins_over_the_payload() -> None:
    uplink = unwrap("vigie/aubiere/water/PdL-AUB-1", raw({"deviceId": "other"}), NOW)
    assert uplink.device_id == "PdL-AUB-1"


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"value": 3}, "device_id: none found; publish on vigie/<commune>/<kind>/<device>"),
        ({"deviceId": 451}, "deviceId: expected a string, got 451"),
        ({"id": None}, "id: missing"),
        ({"_": "telegram", "id": "1"}, "name: missing"),
        ({"device_id": "x" * 201}, "device_id: longer than 200 characters"),
    ],
)
def test_plain_without_a_usable_device_id_is_refused(message: dict, expected: str) -> None:
    assert reason("sensors/anything", raw(message)).startswith(expected)


# --- Bytes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", "message is empty"),
        (b"\xff\xfe{}", "message is not UTF-8 text (byte 0: invalid start byte)"),
        (
            b"{'a': 1}",
            "message is not valid JSON: Expecting property name enclosed in double quotes",
        ),
        (b"[1, 2]", "message is a list, expected a JSON object"),
        (b'"hello"', "message is 'hello', expected a JSON object"),
        (b'{"deviceId": "x", "v": NaN}', "message is not valid JSON: NaN is not a JSON number"),
        (b"[" * 100_000, "message is 100000 bytes, more than the 65536 allowed"),
    ],
)
def test_unreadable_bytes_are_refused(body: bytes, expected: str) -> None:
    assert reason("vigie/a/b/c", body).startswith(expected)


def test_deep_nesting_is_refused_not_crashed() -> None:
    body = b'{"deviceId": "x", "v": ' + b"[" * 30_000 + b"]" * 30_000 + b"}"
    assert reason("vigie/a/b/c", body) == "message is not valid JSON: nested too deeply"


def test_size_limit_is_a_parameter() -> None:
    with pytest.raises(EnvelopeError, match="more than the 50 allowed"):
        unwrap("vigie/a/b/c", raw({"v": "x" * 100}), NOW, max_bytes=50)


def test_utf8_bom_is_accepted_and_naive_time_taken_as_utc() -> None:
    uplink = unwrap("vigie/a/b/c", b"\xef\xbb\xbf{}", datetime(2026, 1, 1))
    assert uplink.received_at == datetime(2026, 1, 1, tzinfo=UTC)


# --- Timestamps ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-23T02:14:07.512345678Z", datetime(2026, 11, 23, 2, 14, 7, 512345, tzinfo=UTC)),
        ("2026-11-23T03:14:07+01:00", datetime(2026, 11, 23, 2, 14, 7, tzinfo=UTC)),
        ("2026-11-23T02:14:07.5+01:00", datetime(2026, 11, 23, 1, 14, 7, 500000, tzinfo=UTC)),
        ("2026-11-23 02:14:07", datetime(2026, 11, 23, 2, 14, 7, tzinfo=UTC)),
        (1795503600, datetime(2026, 11, 24, 7, 0, tzinfo=UTC)),
        (1795503600500, datetime(2026, 11, 24, 7, 0, 0, 500000, tzinfo=UTC)),
    ],
)
def test_parse_timestamp(value: object, expected: datetime) -> None:
    assert parse_timestamp(value, "time") == expected


@pytest.mark.parametrize(
    "value", [True, None, [], "soon", 1e300, float("nan"), "9999-12-31T23:59:59-01:00"]
)
def test_parse_timestamp_names_the_field(value: object) -> None:
    with pytest.raises(ValueError, match="^observedAt: "):
        parse_timestamp(value, "observedAt")


# --- Never anything but an Uplink or an EnvelopeError ---------------------------------------

TOPICS = st.one_of(
    st.sampled_from(
        [TTN_TOPIC, "v3/app/devices/x/up", CS_TOPIC, "vigie/a/water/x", "wmbus/a/1", ""]
    ),
    st.text(alphabet=string.ascii_letters + "/@+#", max_size=30),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
JSON = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
FIELD_NAMES = st.sampled_from(
    [
        "end_device_ids", "device_id", "dev_eui", "uplink_message", "decoded_payload",
        "received_at", "f_cnt", "correlation_ids", "locations", "deviceInfo", "deviceName",
        "devEui", "devEUI", "applicationID", "tags", "object", "objectJSON", "fCnt", "time",
        "deduplicationId", "publishedAt", "rxInfo", "deviceId", "name", "id", "_", "meter",
        "location", "address", "latitude", "longitude", "type", "coordinates",
    ]
)  # fmt: skip
ENVELOPE_LIKE = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(FIELD_NAMES, children, max_size=6)
    ),
    max_leaves=20,
)


def assert_uplink_or_envelope_error(topic: str, body: bytes) -> None:
    try:
        uplink = unwrap(topic, body, NOW)
    except EnvelopeError as exc:
        assert exc.reason
        return
    assert isinstance(uplink, Uplink)
    assert isinstance(uplink.payload, dict)
    assert uplink.device_id
    assert uplink.received_at.utcoffset() == timedelta(0)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in uplink.tags.items())


@settings(max_examples=300)
@given(topic=TOPICS, body=st.binary(max_size=300))
def test_any_bytes(topic: str, body: bytes) -> None:
    assert_uplink_or_envelope_error(topic, body)


@settings(max_examples=300)
@given(topic=TOPICS, value=JSON)
def test_any_json_value(topic: str, value: object) -> None:
    assert_uplink_or_envelope_error(topic, raw(value))


@settings(max_examples=500)
@given(topic=TOPICS, value=ENVELOPE_LIKE, object_json=st.booleans())
def test_any_envelope_like_json(topic: str, value: object, object_json: bool) -> None:
    if object_json and isinstance(value, dict) and isinstance(value.get("object"), dict):
        value["objectJSON"] = json.dumps(value.pop("object"))
    assert_uplink_or_envelope_error(topic, raw(value))


@given(eui=st.binary(min_size=0, max_size=12))
def test_any_base64_dev_eui(eui: bytes) -> None:
    message = v3(devEUI=base64.b64encode(eui).decode(), object={})
    assert_uplink_or_envelope_error(CS_TOPIC, raw(message))
