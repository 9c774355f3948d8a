"""Water meters: each vendor's words become Vigie's conditions, recoveries only
for what was active, silence found by the periodic job, tickets drafted from
the commune's settings."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from connectors import water
from connectors.mapping import ReadingRule, ValueMap
from core.config import Category, Commune
from core.envelopes import EnvelopeError, unwrap
from core.signals import Alert, DeviceInfo, Location, Reading, Report, Uplink
from core.testing import sample_message

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
CONNECTOR = water.WaterConnector()
EAU = Category(code="eau-assainissement", name="Eau et assainissement", group="Eau")


def commune(**plugin_settings: object) -> Commune:
    return Commune(
        slug="clermont-ferrand",
        name="Clermont-Ferrand",
        reference_prefix="CLF",
        categories=(EAU,),
        plugins={"water": water.Settings(**plugin_settings)},
    )


CLERMONT = commune()


def device(device_id: str = "wm-000451", **extra: object) -> DeviceInfo:
    return DeviceInfo(device_id=device_id, kind="water_meter", commune="clermont-ferrand", **extra)


def sample(name: str, received_at: datetime = NOW) -> Uplink:
    message = sample_message(name)
    return unwrap(message.topic, message.payload, received_at)


def uplink(payload: dict, received_at: datetime = NOW) -> Uplink:
    return Uplink(
        topic="vigie/clermont-ferrand/water/wm-000451", payload=payload, received_at=received_at
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


# --- The shared samples, end to end ----------------------------------------------------


def test_qalcosonic_leak_over_the_things_stack() -> None:
    state: dict = {}
    alerts, readings = run(sample("ttn-v3/water-leak.json"), state)
    [leak] = alerts
    assert (leak.condition, leak.recovered, leak.severity) == ("leak", False, "high")
    assert leak.observed_at == datetime(2026, 11, 23, 2, 14, tzinfo=UTC)  # the meter's own time
    assert (leak.device_kind, leak.connector, leak.commune) == (
        "water_meter",
        "water",
        "clermont-ferrand",
    )
    assert leak.details["source"] == "leakage"
    assert leak.idempotency_key is None
    [reading] = readings
    assert reading.fields == {"volume_m3": 812.331}
    assert state["active"] == {"leak": "2026-11-23T02:14:00+00:00"}


def test_routine_reading_clears_an_active_leak() -> None:
    state: dict = {}
    run(sample("ttn-v3/water-leak.json"), state)
    alerts, readings = run(sample("ttn-v3/water-reading.json"), state)
    [recovery] = alerts
    assert (recovery.condition, recovery.recovered) == ("leak", True)
    assert recovery.details == {
        "active_since": "2026-11-23T02:14:00+00:00",
        "resolve_on_recovery": True,
    }
    assert readings[0].fields == {"volume_m3": 1204.057}
    assert state["active"] == {}


def test_routine_reading_alone_recovers_nothing() -> None:
    alerts, readings = run(sample("ttn-v3/water-reading.json"))
    assert alerts == []
    assert readings[0].fields == {"volume_m3": 1204.057}


def test_kamstrup_leak_from_wmbusmeters() -> None:
    message = sample("direct/wmbus-kamwater.json", datetime(2026, 11, 24, 5, 31, 12, tzinfo=UTC))
    alerts, readings = run(message, device_id="PdL-AUB-0093")
    assert conditions(alerts) == {("leak", False)}
    assert alerts[0].observed_at == datetime(2026, 11, 24, 5, 31, 9, tzinfo=UTC)
    assert readings[0].fields == {"volume_m3": 431.206}


def test_izar_backflow_from_wmbusmeters() -> None:
    message = sample("direct/izar-backflow.json", datetime(2026, 11, 24, 6, 10, 50, tzinfo=UTC))
    alerts, readings = run(message, device_id="PdL-CLF-2207")
    assert conditions(alerts) == {("backflow", False)}
    assert readings[0].fields == {"volume_m3": 88.412, "battery_years": 11.5}


def test_wrong_types_sample_is_refused_naming_the_field() -> None:
    message = sample_message("bad/wrong-types.json")
    with pytest.raises(
        EnvelopeError, match=r"^end_device_ids\.device_id: expected a string, got 451$"
    ):
        unwrap(message.topic, message.payload, NOW)
    # Even with a valid device id, the decoded payload makes no sense.
    decoded = json.loads(message.payload)["uplink_message"]["decoded_payload"]
    with pytest.raises(ValueError, match=r"^leakage: expected true or false, got 'maybe'$"):
        run(uplink(decoded))
    with pytest.raises(ValueError, match=r"^current_volume_m3: expected a number, got 'a lot'$"):
        run(uplink({"current_volume_m3": "a lot"}))


def test_burst_and_low_battery_over_chirpstack_v3() -> None:
    alerts, readings = run(sample("chirpstack-v3/water-objectjson.json"), device_id="wm-000461")
    assert conditions(alerts) == {("burst", False), ("low_battery", False)}
    assert {a.severity for a in alerts} == {"urgent", "low"}
    assert readings[0].fields == {"volume_m3": 77.5}


def test_fiware_water_consumption_observed() -> None:
    message = sample("direct/fiware-water.json", datetime(2026, 11, 24, 3, 0, 5, tzinfo=UTC))
    alerts, readings = run(message, device_id="PdL-CLF-3001")
    assert conditions(alerts) == {("leak", False), ("tamper", False)}
    [leak] = [a for a in alerts if a.condition == "leak"]
    assert leak.details["source"] == "alarmFlowPersistence"
    # No registered position: the one in the message.
    assert leak.location == Location(45.7797, 3.0893, "4 rue du Port, Clermont-Ferrand")
    assert readings[0].fields == {"volume_m3": 191051.0}


# --- Every vocabulary word -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "condition"),
    [
        ({"leakage": True}, "leak"),
        ({"burst": True}, "burst"),
        ({"backflow": True}, "backflow"),
        ({"pipe_empty": True}, "dry"),
        ({"low_battery": True}, "low_battery"),
        ({"status": "DRY"}, "dry"),
        ({"status": "REVERSE"}, "backflow"),
        ({"status": "LEAK"}, "leak"),
        ({"status": "BURST"}, "burst"),
        ({"status": "TAMPER"}, "tamper"),
        ({"status": "LOW_BATTERY"}, "low_battery"),
        ({"current_alarms": "leakage"}, "leak"),
        ({"current_alarms": "back_flow"}, "backflow"),
        ({"current_alarms": "meter_blocked"}, "tamper"),
        ({"current_alarms": "sensor_fraud"}, "tamper"),
        ({"current_alarms": "mechanical_fraud"}, "tamper"),
        ({"remaining_battery_life_y": 0.5}, "low_battery"),
        ({"alarmStopsLeaks": 1}, "leak"),
        ({"alarmFlowPersistence": "In progress impacting persistence"}, "leak"),
        ({"alarmTamper": 1}, "tamper"),
        ({"moduleTampered": 1}, "tamper"),
        ({"alarmWaterQuality": 1}, "backflow"),
        ({"leak": True}, "leak"),
        ({"tamper": "true"}, "tamper"),
        ({"dry": 1}, "dry"),
    ],
)
def test_vocabulary_word_raises_then_its_absence_recovers(payload: dict, condition: str) -> None:
    state: dict = {}
    alerts, _ = run(uplink(payload), state)
    assert conditions(alerts) == {(condition, False)}
    [field] = payload
    cleared = {
        "status": "OK",
        "current_alarms": "no_alarm",
        "remaining_battery_life_y": 9.0,
        "alarmFlowPersistence": "No persistence",
    }.get(field, False)
    alerts, _ = run(uplink({field: cleared}, NOW + timedelta(hours=1)), state)
    assert conditions(alerts) == {(condition, True)}


def test_several_words_in_one_status() -> None:
    alerts, _ = run(uplink({"status": "LEAK BURST", "current_alarms": "leakage,sensor_fraud"}))
    assert conditions(alerts) == {("leak", False), ("burst", False), ("tamper", False)}


def test_kamstrup_empty_status_clears_and_unknown_words_are_ignored() -> None:
    state: dict = {}
    run(uplink({"status": "DRY"}), state)
    alerts, _ = run(uplink({"status": "HIGH_FLOW"}, NOW + timedelta(hours=1)), state)
    assert conditions(alerts) == {("dry", True)}
    alerts, _ = run(uplink({"status": ""}), state)
    assert alerts == []


def test_qalcosonic_numeric_status_is_not_kamstrup() -> None:
    state = {"active": {"dry": "2026-11-24T10:00:00+00:00"}}
    alerts, _ = run(uplink({"status": 8}), state)
    assert alerts == []
    assert "dry" in state["active"]


def test_one_vocabulary_clearing_does_not_hide_another_raising() -> None:
    alerts, _ = run(uplink({"leakage": False, "status": "LEAK"}))
    assert conditions(alerts) == {("leak", False)}


def test_repeated_condition_is_flagged_repeat() -> None:
    state: dict = {}
    first, _ = run(uplink({"leakage": True}), state)
    again, _ = run(uplink({"leakage": True}, NOW + timedelta(hours=1)), state)
    assert first[0].details["repeat"] is False
    assert again[0].details["repeat"] is True
    assert again[0].details["active_since"] == NOW.isoformat()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"leakage": "maybe"}, "leakage: expected true or false, got 'maybe'"),
        ({"alarmTamper": 2}, "alarmTamper: expected true or false, got 2"),
        ({"status": 8.5}, "status: expected words separated by spaces or commas, got 8.5"),
        ({"current_alarms": {"leakage": True}}, "current_alarms: expected words"),
        ({"alarmFlowPersistence": "Sometimes"}, "alarmFlowPersistence: unknown value 'Sometimes'"),
        ({"total_m3": True}, "total_m3: expected a number, got true"),
        ({"waterConsumption": "1e999"}, "waterConsumption: expected a finite number"),
        ({"timestamp": "tuesday"}, "timestamp: 'tuesday' is not an ISO 8601 timestamp"),
    ],
)
def test_nonsense_is_refused_naming_the_field_and_state_is_kept(
    payload: dict, message: str
) -> None:
    state = {
        "active": {"leak": "2026-11-24T10:00:00+00:00"},
        "last_seen": "2026-11-24T10:00:00+00:00",
    }
    before = copy.deepcopy(state)
    with pytest.raises(ValueError) as caught:
        run(uplink({"leakage": False, **payload}), state)
    assert str(caught.value).startswith(message)
    assert state == before


# --- Time ----------------------------------------------------------------------------------


def test_observed_at_falls_back_to_reception_and_ignores_a_clock_ahead() -> None:
    alerts, _ = run(uplink({"leak": True}))
    assert alerts[0].observed_at == NOW
    alerts, _ = run(uplink({"leak": True, "timestamp": "2027-01-01T00:00:00Z"}))
    assert alerts[0].observed_at == NOW
    alerts, _ = run(uplink({"leak": True, "timestamp": "2026-11-24T13:00:00+02:00"}))
    assert alerts[0].observed_at == datetime(2026, 11, 24, 11, 0, tzinfo=UTC)


# --- Silent meters ----------------------------------------------------------------------------


def test_silent_meter_alerts() -> None:
    seen = {
        "wm-1": NOW - timedelta(hours=49),
        "wm-2": NOW - timedelta(hours=47),
        "wm-3": (NOW - timedelta(days=5)).replace(tzinfo=None),
    }
    devices = {"wm-1": device("wm-1", address="3 rue Blatin", asset="secteur-nord")}
    alerts = water.silent_meter_alerts(seen, NOW, 48, devices=devices)
    assert [a.device_id for a in alerts] == ["wm-1", "wm-3"]
    first = alerts[0]
    assert (first.condition, first.observed_at, first.commune) == (
        "silent",
        NOW,
        "clermont-ferrand",
    )
    assert first.location.address == "3 rue Blatin"
    assert first.asset == "secteur-nord"
    assert first.details == {"last_seen": (NOW - timedelta(hours=49)).isoformat()}
    # The next run reports the same silence with the same key: intake keeps one.
    again = water.silent_meter_alerts(seen, NOW + timedelta(hours=1), 48, devices=devices)
    assert again[0].idempotency_key == first.idempotency_key
    assert first.idempotency_key != alerts[1].idempotency_key


def test_message_after_a_silence_recovers_it() -> None:
    state: dict = {}
    run(uplink({"volume_m3": 1.0}, NOW), state)
    alerts, _ = run(uplink({"volume_m3": 1.0}, NOW + timedelta(hours=10)), state)
    assert alerts == []
    alerts, _ = run(uplink({"volume_m3": 1.0}, NOW + timedelta(hours=60)), state)
    assert conditions(alerts) == {("silent", True)}
    assert alerts[0].details["last_seen"] == (NOW + timedelta(hours=10)).isoformat()
    assert state["last_seen"] == (NOW + timedelta(hours=60)).isoformat()


def test_silence_threshold_is_the_communes() -> None:
    state = {"last_seen": (NOW - timedelta(hours=7)).isoformat()}
    alerts, _ = run(uplink({}), state, commune(silent_after_hours=6))
    assert conditions(alerts) == {("silent", True)}


# --- Another vendor, mapped by the commune -----------------------------------------------------


VENDOR_X = commune(
    field_map={
        "alarm_code": ValueMap(values={"0": "", "1": "leak", "2": "burst"}),
        "alarms.leak": "leak",
    },
    reading_map={"index_l": ReadingRule(name="volume_m3", scale=0.001)},
)


def test_field_map_for_an_invented_vendor() -> None:
    state: dict = {}
    alerts, readings = run(
        sample("ttn-v3/water-vendor-x.json"), state, VENDOR_X, device_id="hydro-x-0007"
    )
    assert conditions(alerts) == {("burst", False), ("leak", False)}
    assert {a.details["source"] for a in alerts} == {"alarm_code=2", "alarms.leak"}
    assert readings[0].fields == {"volume_m3": pytest.approx(532.118)}
    assert readings[0].observed_at == datetime(2026, 11, 24, 7, 0, tzinfo=UTC)
    alerts, _ = run(uplink({"alarm_code": 0, "alarms": {"leak": False}}), state, VENDOR_X)
    assert conditions(alerts) == {("burst", True), ("leak", True)}


def test_field_map_unknown_value_is_refused() -> None:
    with pytest.raises(
        ValueError, match=r"^alarm_code: unknown value '7'; expected one of '0', '1', '2'$"
    ):
        run(uplink({"alarm_code": 7}), where=VENDOR_X)


def test_field_map_replaces_the_built_in_reading_of_a_field() -> None:
    where = commune(field_map={"status": {"values": {"A": "leak", "N": ""}, "separator": ","}})
    alerts, _ = run(uplink({"status": "N,A"}), where=where)
    assert conditions(alerts) == {("leak", False)}


def test_field_map_from_toml_shaped_settings() -> None:
    settings = water.Settings.model_validate(
        {
            "field_map": {"alarm_leak": "leak", "code": {"values": {"1": "burst", "0": ""}}},
            "reading_map": {"vol": "volume_m3"},
            "conditions": {"leak": {"category": "eau-fuite"}},
        }
    )
    assert settings.conditions["leak"].priority == "high"  # the default kept
    assert settings.conditions["leak"].category == "eau-fuite"
    assert settings.conditions["burst"].category == "eau-assainissement"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"field_map": {"x": "flood"}}, "field_map.x: 'flood' is not a condition"),
        (
            {"field_map": {"x": {"values": {"1": "flood"}}}},
            "field_map.x: 'flood' is not a condition",
        ),
        (
            {"conditions": {"leak": {"description": "Fuite {meter}"}}},
            "conditions.leak.description: unknown placeholder {meter}",
        ),
        (
            {"conditions": {"leak": {"title": "{device_id.__class__}"}}},
            "unknown placeholder {device_id.__class__}",
        ),
        (
            {"conditions": {"leak": {"description": "{device_id:d}"}}},
            "conditions.leak.description: Unknown format code",
        ),
        ({"conditions": {"leak": {"priority": "asap"}}}, "conditions.leak.priority"),
        (
            {"conditions": {"Freeze": {"category": "eau", "description": "x"}}},
            "conditions.Freeze: a condition is",
        ),
        (
            {"conditions": {"freeze": {"category": "eau-assainissement"}}},
            "conditions.freeze.description",
        ),
        ({"silent_after_hours": 0}, "silent_after_hours"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_settings_errors_name_the_setting(data: dict, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        water.Settings.model_validate(data)
    assert message in str(caught.value)


def test_a_commune_can_add_a_condition_for_its_vendor() -> None:
    where = commune(
        field_map={"low_temperature": "freeze"},
        conditions={
            "freeze": {
                "category": "eau-assainissement",
                "priority": "high",
                "description": "Gel {device_id}",
            }
        },
    )
    alerts, _ = run(uplink({"low_temperature": True}), where=where)
    assert conditions(alerts) == {("freeze", False)}
    assert water.draft_ticket(alerts[0], where).description == "Gel wm-000451"


# --- Tickets -------------------------------------------------------------------------------------


def leak_alert(**changes: object) -> Alert:
    alerts, _ = run(
        uplink({"leakage": True}), address="3 rue Blatin", latitude=45.77, longitude=3.08
    )
    return replace(alerts[0], **changes)


def test_draft_from_the_defaults() -> None:
    draft = water.draft_ticket(leak_alert(), CLERMONT)
    assert (draft.commune, draft.category, draft.priority, draft.channel) == (
        "clermont-ferrand",
        "eau-assainissement",
        "high",
        "sensor",
    )
    assert draft.title == "Fuite d'eau détectée par un compteur"
    # The time in the commune's zone, the place by its address.
    assert draft.description == (
        "Le compteur wm-000451 signale une fuite d'eau (3 rue Blatin), le 24/11/2026 13:00."
    )
    assert draft.location == Location(45.77, 3.08, "3 rue Blatin")


def test_draft_from_a_commune_override_and_without_settings() -> None:
    where = commune(
        conditions={
            "leak": {
                "category": "eau-fuite",
                "priority": "urgent",
                "description": "Fuite {device_id} à {address} ({asset})",
            }
        },
    )
    draft = water.draft_ticket(leak_alert(asset="secteur-nord"), where)
    assert (draft.category, draft.priority) == ("eau-fuite", "urgent")
    assert draft.description == "Fuite wm-000451 à 3 rue Blatin (secteur-nord)"
    bare = Commune(slug="aubiere", name="Aubière", reference_prefix="AUB")
    assert water.draft_ticket(leak_alert(), bare).category == "eau-assainissement"


def test_no_draft_for_recoveries_other_kinds_reports_or_muted_conditions() -> None:
    assert water.draft_ticket(leak_alert(recovered=True), CLERMONT) is None
    assert water.draft_ticket(leak_alert(device_kind="streetlight"), CLERMONT) is None
    assert water.draft_ticket(leak_alert(condition="unheard_of"), CLERMONT) is None
    report = Report(
        commune="clermont-ferrand", category="eau-assainissement", description="x", channel="web"
    )
    assert water.draft_ticket(report, CLERMONT) is None
    muted = commune(conditions={"leak": {"open_ticket": False}})
    assert water.draft_ticket(leak_alert(), muted) is None


def test_recovery_carries_resolve_on_recovery() -> None:
    state: dict = {}
    where = commune(resolve_on_recovery=False)
    run(uplink({"leak": True}), state, where)
    alerts, _ = run(uplink({"leak": False}), state, where)
    assert alerts[0].details["resolve_on_recovery"] is False


def test_check_commune_names_missing_categories() -> None:
    assert water.check_commune(CLERMONT) == []
    where = commune(
        conditions={"leak": {"category": "eau-fuite"}, "silent": {"open_ticket": False}}
    )
    assert water.check_commune(where) == [
        'category "eau-fuite" (conditions leak) is not a category of clermont-ferrand; '
        "define it, or set conditions.<condition>.category"
    ]


# --- Never anything but alerts, readings or a ValueError ------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(
        [
            "OK",
            "LEAK BURST",
            "leakage,back_flow",
            "no_alarm",
            "In progress persistence",
            "true",
            "0",
            "2026-11-24T10:00:00Z",
        ]
    ),
)
VALUES = st.recursive(
    SCALARS,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
    max_leaves=6,
)
KEYS = st.sampled_from(
    [
        "leakage", "burst", "backflow", "pipe_empty", "low_battery", "leak", "tamper", "dry",
        "status", "current_status", "current_alarms", "remaining_battery_life_y", "alarmStopsLeaks",
        "alarmTamper", "moduleTampered", "alarmWaterQuality", "alarmFlowPersistence", "volume_m3",
        "current_volume_m3", "total_m3", "waterConsumption", "timestamp", "timestamp_utc",
        "observedAt", "alarm_code", "alarms", "index_l",
    ]
) | st.text(max_size=6)  # fmt: skip
STATES = st.dictionaries(
    st.sampled_from(["active", "last_seen"]) | st.text(max_size=4), VALUES, max_size=3
) | st.builds(
    lambda active, seen: {"active": active, "last_seen": seen},
    st.dictionaries(
        st.sampled_from(["leak", "burst", "silent"]) | st.text(max_size=4), VALUES, max_size=3
    ),
    SCALARS,
)


@settings(max_examples=400)
@given(payload=st.dictionaries(KEYS, VALUES, max_size=8), state=STATES, mapped=st.booleans())
def test_any_payload_gives_alerts_and_readings_or_a_value_error(
    payload: dict, state: dict, mapped: bool
) -> None:
    before = copy.deepcopy(state)
    try:
        results = CONNECTOR.interpret(
            uplink(payload), device(), VENDOR_X if mapped else CLERMONT, state
        )
    except ValueError as exc:
        assert ":" in str(exc)
        assert state == before
        return
    assert all(isinstance(r, Alert | Reading) for r in results)
    for alert in results:
        if isinstance(alert, Alert):
            assert alert.observed_at.utcoffset() == timedelta(0)
            assert alert.condition in water.Settings.DEFAULT_CONDITIONS
            json.dumps(alert.details)
    json.dumps(state)
