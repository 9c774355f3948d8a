"""A sensor connector works on a copy of the device's state: a payload it
rejects half-way leaves the state exactly as it was, however deep the
connector wrote into it; one it accepts leaves what the connector wrote."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.mapping import MappedSensorConnector, Message, SensorSettings, copied_state
from core.config import Commune
from core.signals import Alert, DeviceInfo, Reading, Uplink

NOW = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
COMMUNE = Commune(slug="testville", name="Testville", reference_prefix="TST")
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=12,
)


class Scribbler(MappedSensorConnector):
    """Writes everywhere in the state, then rejects the payload if it says so."""

    name = "scribbler"
    device_kind = "scribble"
    settings_model = SensorSettings

    def read(self, message: Message) -> list[Alert | Reading]:
        state = message.state
        state.setdefault("nested", {}).setdefault("list", []).append({"n": 1})
        for value in state.values():
            if isinstance(value, dict):
                value["touched"] = True
            elif isinstance(value, list):
                value.append("touched")
                for item in value:
                    if isinstance(item, dict):
                        item.clear()
        state["top"] = "written"
        if message.payload.get("reject"):
            raise ValueError("reject: asked to")
        return []


def interpret(state: dict, reject: bool) -> None:
    uplink = Uplink(
        topic="vigie/testville/scribble/s-1", payload={"reject": reject}, received_at=NOW
    )
    device = DeviceInfo(device_id="s-1", kind="scribble", commune="testville")
    Scribbler().interpret(uplink, device, COMMUNE, state)


@given(state=st.dictionaries(st.text(max_size=4), JSON, max_size=4))
def test_a_rejected_payload_leaves_the_state_as_it_was(state: dict) -> None:
    before = copy.deepcopy(state)
    with pytest.raises(ValueError, match="reject"):
        interpret(state, reject=True)
    assert state == before


@given(state=st.dictionaries(st.text(max_size=4), JSON, max_size=4))
def test_an_accepted_payload_leaves_what_the_connector_wrote(state: dict) -> None:
    expected = copy.deepcopy(state)
    message_state = copy.deepcopy(state)
    Scribbler().read(
        Message(
            connector=Scribbler(),
            uplink=Uplink(topic="t", payload={}, received_at=NOW),
            device=DeviceInfo(device_id="s-1", kind="scribble", commune="testville"),
            commune=COMMUNE,
            settings=SensorSettings(),
            state=expected,
            observed_at=NOW,
        )
    )
    interpret(message_state, reject=False)
    assert message_state == expected


@given(value=JSON)
def test_the_copy_of_a_state_is_equal_and_shares_nothing_mutable(value: object) -> None:
    copied = copied_state(value)
    assert copied == value or value != value  # NaN is not equal to itself

    def containers(node: object) -> list[int]:
        if isinstance(node, dict):
            return [id(node), *(i for item in node.values() for i in containers(item))]
        if isinstance(node, list):
            return [id(node), *(i for item in node for i in containers(item))]
        return []

    assert not set(containers(copied)) & set(containers(value))


def test_values_other_than_json_are_deep_copied_too() -> None:
    inner = {"a": [1]}
    state = {"tuple": (inner,), "set": {1, 2}}
    copied = copied_state(state)
    assert copied == state
    assert copied["tuple"][0] is not inner and copied["set"] is not state["set"]
