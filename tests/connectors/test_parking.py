"""Parking bays: occupancy readings, overstays computed by Vigie once per
occupation (by a message or by the periodic job), reserved bays, faults."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors import parking
from connectors.mapping import ValueMap
from core.config import Category, Commune
from core.envelopes import unwrap
from core.signals import Alert, DeviceInfo, Location, Reading, Uplink
from core.testing import sample_message

T0 = datetime(2026, 11, 24, 9, 12, tzinfo=UTC)
CONNECTOR = parking.ParkingConnector()
STATIONNEMENT = Category(code="stationnement", name="Stationnement gênant", group="Voirie")


def commune(**plugin_settings: object) -> Commune:
    return Commune(
        slug="chamalieres",
        name="Chamalières",
        reference_prefix="CHA",
        categories=(STATIONNEMENT,),
        plugins={"parking": parking.Settings(**plugin_settings)},
    )


CHAMALIERES = commune()


def device(device_id: str = "PK-CHAM-0032", **extra: object) -> DeviceInfo:
    return DeviceInfo(device_id=device_id, kind="parking_spot", commune="chamalieres", **extra)


def sample(name: str, received_at: datetime) -> Uplink:
    message = sample_message(name)
    return unwrap(message.topic, message.payload, received_at)


def uplink(payload: dict, at: datetime, tags: dict | None = None) -> Uplink:
    return Uplink(
        topic="vigie/chamalieres/parking/PK-CHAM-0032",
        payload=payload,
        received_at=at,
        tags=tags or {},
    )


def run(message: Uplink, state: dict, where: Commune = CHAMALIERES, **device_info: object):
    results = CONNECTOR.interpret(message, device(**device_info), where, state)
    return [r for r in results if isinstance(r, Alert)], [
        r for r in results if isinstance(r, Reading)
    ]


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def status(value: str, minutes: float, **extra: object) -> Uplink:
    return uplink({"status": value, **extra}, at(minutes))


def conditions(alerts: list[Alert]) -> set[tuple[str, bool]]:
    return {(a.condition, a.recovered) for a in alerts}


# --- The shared samples, end to end ---------------------------------------------------------------


def test_chirpstack_v3_occupied_bay() -> None:
    state: dict = {}
    message = sample(
        "chirpstack-v3/parking-occupied.json", datetime(2026, 11, 24, 14, 5, 33, tzinfo=UTC)
    )
    alerts, readings = run(message, state, device_id="PK-CHAM-0031")
    assert alerts == []
    [reading] = readings
    assert reading.fields == {"occupied": 1}
    assert reading.observed_at == datetime(2026, 11, 24, 14, 5, 31, tzinfo=UTC)
    assert reading.tags == {"asset": "CHAM-GAMBETTA-31"}  # the bay tag
    assert state["occupied_since"] == "2026-11-24T14:05:31+00:00"
    assert state["limit"] == {"condition": "overstay", "minutes": 120}


def test_blue_zone_limit_from_the_bay_tag() -> None:
    state: dict = {}
    message = sample(
        "chirpstack-v3/parking-occupied.json", datetime(2026, 11, 24, 14, 5, 33, tzinfo=UTC)
    )
    run(message, state, commune(overstay_by_tag={"zone=blue": 90}), device_id="PK-CHAM-0031")
    assert state["limit"] == {"condition": "overstay", "minutes": 90}


def test_fiware_overstay_raised_once_then_recovered() -> None:
    state: dict = {}
    first = sample("direct/parking-overstay.json", at(0.1))
    alerts, readings = run(first, state)
    assert alerts == []
    assert readings[0].fields == {"occupied": 1}

    alerts, _ = run(status("occupied", 60), state)
    assert alerts == []
    alerts, _ = run(status("occupied", 125), state)
    [overstay] = alerts
    assert (overstay.condition, overstay.recovered, overstay.severity) == (
        "overstay",
        False,
        "normal",
    )
    assert overstay.observed_at == at(125)
    assert overstay.details == {
        "occupied_since": T0.isoformat(),
        "occupied_minutes": 125,
        "limit_minutes": 120,
        "source": "vigie",
    }
    assert overstay.idempotency_key == f"parking:overstay:PK-CHAM-0032:{T0.isoformat()}"
    # Once per occupation.
    alerts, _ = run(status("occupied", 200), state)
    assert alerts == []

    alerts, readings = run(status("free", 230), state)
    assert conditions(alerts) == {("overstay", True)}
    assert readings[0].fields == {"occupied": 0}
    assert "occupied_since" not in state
    # A new occupation starts the clock again.
    run(status("occupied", 240), state)
    alerts, _ = run(status("occupied", 361), state)
    assert conditions(alerts) == {("overstay", False)}
    assert alerts[0].details["occupied_since"] == at(240).isoformat()


def test_any_message_from_an_occupied_bay_checks_the_limit() -> None:
    state: dict = {}
    run(status("occupied", 0), state)
    alerts, _ = run(uplink({"battery": 3.1}, at(121)), state)
    assert conditions(alerts) == {("overstay", False)}


def test_periodic_overstay_alerts() -> None:
    states: dict = {"PK-1": {}, "PK-2": {}, "PK-3": {}, "broken": "not a dict"}
    run(status("occupied", 0), states["PK-1"])
    run(status("occupied", 100), states["PK-2"])
    run(status("free", 0), states["PK-3"])
    devices = {"PK-1": device("PK-1", address="3 avenue de Royat", tags={"bay": "CHAM-ROYAT-3"})}

    alerts = parking.overstay_alerts(states, at(130), devices=devices)
    [alert] = alerts
    assert (alert.device_id, alert.condition, alert.commune) == ("PK-1", "overstay", "chamalieres")
    assert alert.location == Location(address="3 avenue de Royat")
    assert alert.asset == "CHAM-ROYAT-3"
    assert alert.idempotency_key == f"parking:overstay:PK-1:{T0.isoformat()}"
    assert states["PK-1"]["active"] == {"overstay": T0.isoformat()}
    # Reported once: neither the next run nor the bay's next message repeat it.
    assert parking.overstay_alerts(states, at(140)) == []
    alerts, _ = run(status("occupied", 150), states["PK-1"], device_id="PK-1")
    assert alerts == []
    # Leaving recovers what the periodic job raised.
    alerts, _ = run(status("free", 160), states["PK-1"], device_id="PK-1")
    assert conditions(alerts) == {("overstay", True)}


def test_periodic_limits_replace_the_stored_ones() -> None:
    states: dict = {"PK-1": {}}
    run(status("occupied", 0), states["PK-1"])
    assert parking.overstay_alerts(states, at(31), limits={"PK-1": 45}) == []
    assert len(parking.overstay_alerts(states, at(46), limits={"PK-1": 45})) == 1


def test_message_and_periodic_job_give_the_same_key() -> None:
    by_job: dict = {}
    by_message: dict = {}
    for state in (by_job, by_message):
        run(status("occupied", 0), state)
    [from_job] = parking.overstay_alerts({"PK-CHAM-0032": by_job}, at(130))
    [from_message], _ = run(status("occupied", 130), by_message)
    assert from_job.idempotency_key == from_message.idempotency_key


# --- Bay limits -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tags", "asset", "expected"),
    [
        ({}, None, ("overstay", 120)),
        ({"zone": "blue"}, None, ("overstay", 90)),
        ({"zone": "blue"}, "CHAM-GAMBETTA-31", ("overstay", 20)),
        ({"bay_type": "PMR", "zone": "blue"}, "CHAM-GAMBETTA-31", ("disabled_bay_occupied", 10)),
        ({"bay_type": "disabled"}, None, ("disabled_bay_occupied", 10)),
        ({"bay_type": "livraison"}, None, ("delivery_bay_occupied", 30)),
        ({"bay_type": "delivery"}, None, ("delivery_bay_occupied", 30)),
        ({"bay_type": "standard"}, None, ("overstay", 120)),
    ],
)
def test_bay_limit(tags: dict, asset: str | None, expected: tuple[str, int]) -> None:
    settings = parking.Settings(
        overstay_by_tag={"zone=blue": 90}, overstay_by_asset={"CHAM-GAMBETTA-31": 20}
    )
    assert settings.bay_limit(asset, tags) == expected


def test_disabled_bay_occupied_past_the_grace() -> None:
    state: dict = {}
    tags = {"bay_type": "pmr"}
    run(uplink({"status": "occupied"}, at(0), tags), state)
    alerts, _ = run(uplink({"status": "occupied"}, at(9), tags), state)
    assert alerts == []
    alerts, _ = run(uplink({"status": "occupied"}, at(11), tags), state)
    [alert] = alerts
    assert (alert.condition, alert.details["limit_minutes"]) == ("disabled_bay_occupied", 10)
    draft = parking.draft_ticket(alert, CHAMALIERES)
    assert draft.title == "Place réservée aux personnes handicapées occupée"
    alerts, _ = run(uplink({"status": "free"}, at(20), tags), state)
    assert conditions(alerts) == {("disabled_bay_occupied", True)}


def test_delivery_bay_from_the_registry_tags_with_talq_events() -> None:
    state: dict = {}
    message = sample(
        "chirpstack-v4/parking-talq-events.json", datetime(2026, 11, 24, 16, 40, 1, tzinfo=UTC)
    )
    alerts, readings = run(message, state, device_id="PK-CLF-0107")
    assert conditions(alerts) == {("forbidden_parking", False)}
    assert alerts[0].asset == "CLF-JAUDE-07"
    assert readings[0].fields == {"occupied": 1}
    assert state["limit"] == {"condition": "delivery_bay_occupied", "minutes": 30}
    later = uplink({"event": "occupancyChangeToVacant"}, datetime(2026, 11, 24, 17, 30, tzinfo=UTC))
    alerts, _ = run(later, state, device_id="PK-CLF-0107", tags={"bay_type": "livraison"})
    assert conditions(alerts) == {("forbidden_parking", True)}


# --- Occupancy vocabularies -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "occupied"),
    [
        ({"status": "occupied"}, 1),
        ({"status": "Free"}, 0),
        ({"event": "occupancyChangeToOccupied"}, 1),
        ({"events": [{"event": "occupancyChangeToVacant"}]}, 0),
        ({"occupied": True}, 1),
        ({"occupied": 0}, 0),
    ],
)
def test_occupancy_reading(payload: dict, occupied: int) -> None:
    _, readings = run(uplink(payload, at(0)), {})
    assert readings[0].fields == {"occupied": occupied}


def test_closed_bay_ends_the_occupation() -> None:
    state: dict = {}
    run(status("occupied", 0), state)
    run(status("occupied", 121), state)
    alerts, readings = run(status("closed", 130), state)
    assert conditions(alerts) == {("overstay", True)}
    assert readings[0].fields == {"closed": 1}


def test_unknown_status_is_a_sensor_fault_until_the_sensor_knows_again() -> None:
    state: dict = {}
    run(status("occupied", 0), state)
    alerts, readings = run(status("unknown", 130), state)
    assert conditions(alerts) == {("sensor_fault", False)}  # and no overstay from a blind sensor
    assert readings == []
    assert alerts[0].severity == "low"
    alerts, _ = run(status("occupied", 140), state)
    assert conditions(alerts) == {("sensor_fault", True), ("overstay", False)}


@pytest.mark.parametrize(
    ("payload", "condition"),
    [
        ({"event": "overstayDetected"}, "overstay"),
        ({"event": "forbiddenParkingDetected"}, "forbidden_parking"),
        ({"forbidden_parking": True}, "forbidden_parking"),
        ({"sensor_fault": True}, "sensor_fault"),
        ({"fault": 1}, "sensor_fault"),
    ],
)
def test_device_raised_conditions(payload: dict, condition: str) -> None:
    state: dict = {}
    alerts, _ = run(uplink(payload, at(0)), state)
    assert conditions(alerts) == {(condition, False)}


def test_device_overstay_is_not_raised_again_by_vigie_and_cleared_event_recovers() -> None:
    state: dict = {}
    run(status("occupied", 0), state)
    alerts, _ = run(uplink({"event": "overstayDetected"}, at(100)), state)
    assert conditions(alerts) == {("overstay", False)}
    alerts, _ = run(status("occupied", 130), state)
    assert alerts == []
    alerts, _ = run(uplink({"event": "overstayDetected", "cleared": True}, at(140)), state)
    assert conditions(alerts) == {("overstay", True)}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"status": "reserved"}, "status: unknown ParkingSpot status 'reserved'"),
        ({"status": ["occupied"]}, "status: expected a string, got a list"),
        ({"occupied": "yes"}, "occupied: expected true or false, got 'yes'"),
        ({"observedAt": 12.5e20}, "observedAt: 1.25e+21 is not an ISO 8601 timestamp"),
        ({"events": [None]}, "events[0]: expected an event name or object, got null"),
    ],
)
def test_nonsense_is_refused_naming_the_field(payload: dict, message: str) -> None:
    state: dict = {}
    run(status("occupied", 0), state)
    before = copy.deepcopy(state)
    with pytest.raises(ValueError) as caught:
        run(uplink(payload, at(10)), state)
    assert str(caught.value).startswith(message)
    assert state == before


# --- Another vendor -------------------------------------------------------------------------------


def test_field_map_occupancy_for_an_invented_vendor() -> None:
    where = commune(
        field_map={
            "etat": ValueMap(
                values={"0": "free", "1": "occupied", "2": "closed", "9": "sensor_fault"}
            ),
            "interdit": "forbidden_parking",
        }
    )
    state: dict = {}
    alerts, readings = run(uplink({"etat": 1, "interdit": True}, at(0)), state, where)
    assert conditions(alerts) == {("forbidden_parking", False)}
    assert readings[0].fields == {"occupied": 1}
    alerts, readings = run(uplink({"etat": 9}, at(5)), state, where)
    assert conditions(alerts) == {("sensor_fault", False)}
    assert readings == []
    alerts, readings = run(uplink({"etat": 0, "interdit": False}, at(10)), state, where)
    assert conditions(alerts) == {("forbidden_parking", True), ("sensor_fault", True)}
    assert readings[0].fields == {"occupied": 0}


def test_field_map_boolean_occupancy() -> None:
    where = commune(field_map={"car_present": "occupied"})
    _, readings = run(uplink({"car_present": False}, at(0)), {}, where)
    assert readings[0].fields == {"occupied": 0}


def test_settings_errors() -> None:
    with pytest.raises(ValueError, match="expected tag=value"):
        parking.Settings(overstay_by_tag={"blue": 90})
    with pytest.raises(ValueError, match="overstay_minutes"):
        parking.Settings(overstay_minutes=0)
    with pytest.raises(ValueError, match="'parked' is not a condition"):
        parking.Settings(field_map={"x": "parked"})


# --- Tickets --------------------------------------------------------------------------------------


def test_draft_from_the_defaults_and_an_override() -> None:
    state: dict = {}
    run(status("occupied", 0), state)
    [overstay], _ = run(status("occupied", 130), state, asset="CHAM-GAMBETTA-32")
    draft = parking.draft_ticket(overstay, CHAMALIERES)
    assert (draft.category, draft.priority, draft.asset) == (
        "stationnement",
        "normal",
        "CHAM-GAMBETTA-32",
    )
    assert draft.description == (
        "La place CHAM-GAMBETTA-32 est occupée depuis le 24/11/2026 10:12 "
        "(130 min pour une limite de 120 min)."
    )
    where = commune(
        conditions={"overstay": {"category": "police-stationnement", "priority": "high"}}
    )
    assert (
        parking.draft_ticket(overstay, where).category,
        parking.draft_ticket(overstay, where).priority,
    ) == (
        "police-stationnement",
        "high",
    )
    assert parking.draft_ticket(replace(overstay, recovered=True), CHAMALIERES) is None


# --- Never anything but alerts, readings or a ValueError ------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=10),
    st.sampled_from(
        ["free", "occupied", "closed", "unknown", "occupancyChangeToOccupied", "overstayDetected"]
    ),
)
VALUES = st.recursive(
    SCALARS,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
    max_leaves=6,
)
KEYS = st.sampled_from(
    [
        "status", "occupied", "event", "events", "cleared", "fault", "sensor_fault",
        "forbidden_parking", "observedAt", "etat",
    ]
) | st.text(max_size=5)  # fmt: skip
STATES = st.dictionaries(
    st.sampled_from(["active", "occupied_since", "limit"]) | st.text(max_size=3),
    VALUES
    | st.sampled_from(["2026-11-24T07:00:00+00:00", "0001-01-01T00:00:00"])
    | st.fixed_dictionaries({"condition": SCALARS, "minutes": SCALARS}),
    max_size=3,
)


@settings(max_examples=400)
@given(
    payload=st.dictionaries(KEYS, VALUES, max_size=6),
    state=STATES,
    bay_type=st.sampled_from(["", "pmr", "livraison"]),
)
def test_any_payload_gives_alerts_and_readings_or_a_value_error(
    payload: dict, state: dict, bay_type: str
) -> None:
    before = copy.deepcopy(state)
    try:
        results = CONNECTOR.interpret(
            uplink(payload, at(0), {"bay_type": bay_type}), device(), CHAMALIERES, state
        )
    except ValueError as exc:
        assert ":" in str(exc)
        assert state == before
        return
    assert all(isinstance(r, Alert | Reading) for r in results)
    json.dumps(state)


@settings(max_examples=200)
@given(
    states=st.dictionaries(st.text(max_size=4), STATES, max_size=3),
    limits=st.dictionaries(
        st.text(max_size=4),
        st.floats(min_value=0.001, max_value=1e300) | st.integers(1, 10**12),
        max_size=2,
    ),
)
def test_any_states_for_the_periodic_job(states: dict, limits: dict) -> None:
    alerts = parking.overstay_alerts(states, at(0), limits)
    assert all(isinstance(a, Alert) for a in alerts)
