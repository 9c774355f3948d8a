"""Street lighting: FIWARE Streetlight status and TALQ events become conditions
on the lamp's circuit, an ``ok`` after a repair is a recovery."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors import lighting
from connectors.mapping import ValueMap
from core.config import Category, Commune
from core.envelopes import unwrap
from core.signals import Alert, DeviceInfo, Location, Reading, Uplink
from core.testing import sample_message

NOW = datetime(2026, 11, 24, 21, 0, tzinfo=UTC)
CONNECTOR = lighting.LightingConnector()
ECLAIRAGE = Category(code="eclairage", name="Éclairage public", group="Voirie")


def commune(**plugin_settings: object) -> Commune:
    return Commune(
        slug="clermont-ferrand",
        name="Clermont-Ferrand",
        reference_prefix="CLF",
        categories=(ECLAIRAGE,),
        plugins={"lighting": lighting.Settings(**plugin_settings)},
    )


CLERMONT = commune()


def device(device_id: str = "SL-CLF-04412", **extra: object) -> DeviceInfo:
    return DeviceInfo(device_id=device_id, kind="streetlight", commune="clermont-ferrand", **extra)


def sample(name: str, received_at: datetime = NOW) -> Uplink:
    message = sample_message(name)
    return unwrap(message.topic, message.payload, received_at)


def uplink(payload: dict, received_at: datetime = NOW, tags: dict | None = None) -> Uplink:
    return Uplink(
        topic="vigie/clermont-ferrand/lighting/SL-CLF-04412",
        payload=payload,
        received_at=received_at,
        tags=tags or {},
    )


def run(
    message: Uplink, state: dict | None = None, where: Commune = CLERMONT, **device_info: object
):
    results = CONNECTOR.interpret(
        message, device(**device_info), where, {} if state is None else state
    )
    return [r for r in results if isinstance(r, Alert)], [
        r for r in results if isinstance(r, Reading)
    ]


def conditions(alerts: list[Alert]) -> set[tuple[str, bool]]:
    return {(a.condition, a.recovered) for a in alerts}


# --- The shared samples, end to end --------------------------------------------------------


def test_lamp_failure_then_recovery_over_chirpstack_v4() -> None:
    state: dict = {}
    alerts, readings = run(sample("chirpstack-v4/lamp-failure.json"), state)
    [failure] = alerts
    assert (failure.condition, failure.recovered, failure.severity) == (
        "lamp_failure",
        False,
        "normal",
    )
    assert failure.asset == "ARM-CLF-112/C2"
    assert failure.observed_at == datetime(2026, 11, 22, 21, 47, 10, tzinfo=UTC)
    assert failure.details["source"] == "status=defectiveLamp"
    assert readings[0].fields == {"power_w": 0.0, "power_state": "off"}
    assert readings[0].tags == {"asset": "ARM-CLF-112/C2"}

    alerts, readings = run(sample("chirpstack-v4/lamp-recovered.json"), state)
    [recovery] = alerts
    assert (recovery.condition, recovery.recovered) == ("lamp_failure", True)
    assert recovery.observed_at == datetime(2026, 11, 23, 8, 2, 40, tzinfo=UTC)
    assert state["active"] == {}


def test_ok_without_a_failure_recovers_nothing() -> None:
    alerts, _ = run(sample("chirpstack-v4/lamp-recovered.json"))
    assert alerts == []


def test_talq_cabinet_events() -> None:
    state = {"active": {"lamp_failure": "2026-11-20T20:00:00+00:00"}}
    message = sample("direct/talq-power-loss.json", datetime(2026, 11, 24, 19, 2, 15, tzinfo=UTC))
    alerts, readings = run(message, state, device_id="ARM-CLF-112")
    assert conditions(alerts) == {
        ("power_loss", False),
        ("cabinet_door_open", False),
        ("lamp_failure", True),
    }
    assert {a.condition: a.severity for a in alerts if not a.recovered} == {
        "power_loss": "high",
        "cabinet_door_open": "high",
    }
    assert readings[0].fields == {"energy_kwh": 18231.4}


def test_fiware_streetlight_column_issue() -> None:
    message = sample(
        "direct/streetlight-column.json", datetime(2026, 11, 24, 20, 15, 3, tzinfo=UTC)
    )
    alerts, readings = run(message, device_id="urn:ngsi-ld:Streetlight:clermont-ferrand:04417")
    [column] = alerts
    assert (column.condition, column.severity) == ("column_damage", "urgent")
    assert column.asset == "ARM-CLF-112/C3"  # the FIWARE reference's id
    assert column.location == Location(45.7772, 3.0871)
    assert readings[0].fields == {"illuminance_level": 0.7, "power_state": "on"}


# --- Every vocabulary word ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "condition"),
    [
        ("defectiveLamp", "lamp_failure"),
        ("columnIssue", "column_damage"),
        ("brokenLantern", "broken_lantern"),
    ],
)
def test_streetlight_status_then_ok(status: str, condition: str) -> None:
    state: dict = {}
    alerts, _ = run(uplink({"status": status}), state)
    assert conditions(alerts) == {(condition, False)}
    alerts, _ = run(uplink({"status": "ok"}, NOW + timedelta(hours=1)), state)
    assert conditions(alerts) == {(condition, True)}


def test_status_change_from_one_fault_to_another() -> None:
    state: dict = {}
    run(uplink({"status": "defectiveLamp"}), state)
    alerts, _ = run(uplink({"status": "brokenLantern"}), state)
    assert conditions(alerts) == {("broken_lantern", False), ("lamp_failure", True)}


@pytest.mark.parametrize(
    ("event", "condition"),
    [
        ("lampFailure", "lamp_failure"),
        ("supplyLoss", "power_loss"),
        ("circuitBreakerTripped", "power_loss"),
        ("lampUnexpectedOn", "burning_by_day"),
        ("communicationFailure", "communication_lost"),
        ("cabinetDoorOpen", "cabinet_door_open"),
    ],
)
def test_talq_event_then_cleared(event: str, condition: str) -> None:
    state: dict = {}
    alerts, _ = run(uplink({"event": event}), state)
    assert conditions(alerts) == {(condition, False)}
    assert alerts[0].details["source"] == event
    alerts, _ = run(uplink({"event": event, "cleared": True}), state)
    assert conditions(alerts) == {(condition, True)}
    # Cleared again: nothing was active any more.
    alerts, _ = run(uplink({"events": [{"type": event, "cleared": True}]}), state)
    assert alerts == []


def test_events_without_news_of_a_condition_leave_it_active() -> None:
    state: dict = {}
    run(uplink({"event": "lampFailure"}), state)
    alerts, _ = run(uplink({"event": "lampOn", "power_w": 70}), state)
    assert alerts == []
    assert "lamp_failure" in state["active"]


def test_per_event_cleared_wins_over_the_message_flag() -> None:
    alerts, _ = run(uplink({"cleared": True, "events": [{"name": "supplyLoss", "cleared": False}]}))
    assert conditions(alerts) == {("power_loss", False)}


@pytest.mark.parametrize("condition", sorted(lighting.Settings.DEFAULT_CONDITIONS))
def test_condition_named_booleans(condition: str) -> None:
    state: dict = {}
    assert conditions(run(uplink({condition: True}), state)[0]) == {(condition, False)}
    assert conditions(run(uplink({condition: False}), state)[0]) == {(condition, True)}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"status": "flickering"}, "status: unknown Streetlight status 'flickering'"),
        ({"status": 3}, "status: expected a string, got 3"),
        ({"events": "lampFailure"}, "events: expected a list, got 'lampFailure'"),
        ({"events": [12]}, "events[0]: expected an event name or object, got 12"),
        ({"events": [{"cleared": True}]}, "events[0]: no event name (event, type or name)"),
        ({"event": {"event": 5}}, "event.event: expected a string, got 5"),
        ({"event": "lampFailure", "cleared": "perhaps"}, "cleared: expected true or false"),
        ({"powerConsumption": "lots"}, "powerConsumption: expected a number, got 'lots'"),
        ({"powerState": False}, "powerState: expected a string, got false"),
        ({"circuit": 2}, "circuit: expected a string, got 2"),
    ],
)
def test_nonsense_is_refused_naming_the_field(payload: dict, message: str) -> None:
    state = {"active": {"lamp_failure": "2026-11-24T10:00:00+00:00"}}
    before = copy.deepcopy(state)
    with pytest.raises(ValueError) as caught:
        run(uplink(payload), state)
    assert str(caught.value).startswith(message)
    assert state == before


# --- Asset --------------------------------------------------------------------------------------


def test_asset_from_tags_and_registry() -> None:
    tags = {"cabinet": "ARM-CLF-112", "circuit": "C2"}
    alerts, _ = run(uplink({"event": "lampFailure"}, tags=tags))
    assert alerts[0].asset == "ARM-CLF-112/C2"
    alerts, _ = run(uplink({"event": "lampFailure"}, tags={"cabinet": "ARM-CLF-112"}))
    assert alerts[0].asset == "ARM-CLF-112"
    alerts, _ = run(uplink({"event": "lampFailure"}, tags={"circuit": "C2"}))
    assert alerts[0].asset is None  # a circuit of which cabinet?
    alerts, _ = run(uplink({"event": "lampFailure", "circuit": "C9"}, tags=tags))
    assert alerts[0].asset == "ARM-CLF-112/C9"
    alerts, _ = run(uplink({"event": "lampFailure"}, tags=tags), asset="CANDELABRE-77")
    assert alerts[0].asset == "CANDELABRE-77"


def test_registry_position_wins_over_the_message() -> None:
    message = sample(
        "direct/streetlight-column.json", datetime(2026, 11, 24, 20, 15, 3, tzinfo=UTC)
    )
    alerts, _ = run(message, latitude=45.1, longitude=3.1, address="1 place de Jaude")
    assert alerts[0].location == Location(45.1, 3.1, "1 place de Jaude")


# --- Another vendor -------------------------------------------------------------------------------


def test_field_map_for_an_invented_vendor() -> None:
    where = commune(
        field_map={
            "lampe": ValueMap(values={"OK": "", "HS": "lamp_failure", "CASSE": "broken_lantern"}),
            "defaut_secteur": "power_loss",
        },
        reading_map={"conso_wh": {"name": "energy_kwh", "scale": 0.001}},
    )
    state: dict = {}
    alerts, readings = run(
        uplink({"lampe": "HS", "defaut_secteur": 1, "conso_wh": 2500}), state, where
    )
    assert conditions(alerts) == {("lamp_failure", False), ("power_loss", False)}
    assert readings[0].fields == {"energy_kwh": 2.5}
    alerts, _ = run(uplink({"lampe": "OK", "defaut_secteur": 0}), state, where)
    assert conditions(alerts) == {("lamp_failure", True), ("power_loss", True)}


# --- Tickets --------------------------------------------------------------------------------------


def failure_alert(**changes: object) -> Alert:
    alerts, _ = run(sample("chirpstack-v4/lamp-failure.json"))
    return replace(alerts[0], **changes)


def test_draft_from_the_defaults() -> None:
    draft = lighting.draft_ticket(failure_alert(), CLERMONT)
    assert (draft.category, draft.priority, draft.channel, draft.asset) == (
        "eclairage",
        "normal",
        "sensor",
        "ARM-CLF-112/C2",
    )
    assert draft.description == (
        "Le point lumineux SL-CLF-04412 signale une lampe en panne (ARM-CLF-112/C2), "
        "le 22/11/2026 22:47."
    )


def test_draft_from_a_commune_override() -> None:
    where = commune(
        conditions={
            "power_loss": {
                "priority": "urgent",
                "title": "Panne secteur {asset}",
                "description": "Armoire {asset} : {commune}",
            }
        }
    )
    alert = failure_alert(condition="power_loss")
    draft = lighting.draft_ticket(alert, where)
    assert (draft.priority, draft.title, draft.description) == (
        "urgent",
        "Panne secteur ARM-CLF-112/C2",
        "Armoire ARM-CLF-112/C2 : Clermont-Ferrand",
    )
    assert lighting.draft_ticket(replace(alert, recovered=True), where) is None
    assert lighting.draft_ticket(replace(alert, device_kind="water_meter"), where) is None


# --- Never anything but alerts, readings or a ValueError ------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(
        ["ok", "defectiveLamp", "columnIssue", "lampFailure", "supplyLoss", "on", "ARM-1"]
    ),
)
VALUES = st.recursive(
    SCALARS,
    lambda c: (
        st.lists(c, max_size=3)
        | st.dictionaries(
            st.sampled_from(["event", "type", "name", "cleared"]) | st.text(max_size=4),
            c,
            max_size=3,
        )
    ),
    max_leaves=8,
)
KEYS = st.sampled_from(
    [
        "status", "powerState", "event", "events", "cleared", "refStreetlightControlCabinet",
        "circuit", "powerConsumption", "activePower", "energy_kwh", "illuminanceLevel",
        "lamp_failure", "power_loss", "observationDateTime", "lampe",
    ]
) | st.text(max_size=6)  # fmt: skip


@settings(max_examples=400)
@given(
    payload=st.dictionaries(KEYS, VALUES, max_size=8),
    state=st.dictionaries(st.just("active") | st.text(max_size=3), VALUES, max_size=2),
    tags=st.dictionaries(st.sampled_from(["cabinet", "circuit"]), st.text(max_size=5), max_size=2),
)
def test_any_payload_gives_alerts_and_readings_or_a_value_error(
    payload: dict, state: dict, tags: dict
) -> None:
    before = copy.deepcopy(state)
    try:
        results = CONNECTOR.interpret(uplink(payload, tags=tags), device(), CLERMONT, state)
    except ValueError as exc:
        assert ":" in str(exc)
        assert state == before
        return
    assert all(isinstance(r, Alert | Reading) for r in results)
    json.dumps(state)
