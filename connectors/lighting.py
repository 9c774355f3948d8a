"""Street lighting: lamp controllers and cabinets. Plugin ``lighting``,
device kind ``streetlight``.

Conditions: ``lamp_failure``, ``broken_lantern``, ``column_damage``,
``burning_by_day``, ``power_loss``, ``communication_lost``,
``cabinet_door_open``. Readings: ``power_w``, ``energy_kwh``,
``illuminance_level``, ``power_state``.

Read out of the box (a commune maps other vendors with ``field_map``):

- FIWARE Streetlight ``status``: ok, defectiveLamp, columnIssue, brokenLantern
  (``ok`` recovers the other three), and ``powerState``;
- TALQ events (``{"event": "lampFailure"}``, ``{"events": [...]}``, optional
  ``"cleared": true``): lampFailure, supplyLoss and circuitBreakerTripped
  (power_loss), lampUnexpectedOn (burning_by_day), communicationFailure
  (communication_lost), cabinetDoorOpen;
- booleans named after the conditions (``{"power_loss": true}``).

An alert's asset is the device's registered asset, else the payload's
cabinet and circuit (``refStreetlightControlCabinet``, ``circuit``), else the
network tags ``cabinet`` and ``circuit``: ``"ARM-CLF-112/C2"``. Alerts of the
lamps of one circuit then share an asset, which ticket matching can use.

State keys: ``active`` (condition -> ISO time raised).
"""

from __future__ import annotations

from connectors.mapping import (
    MappedSensorConnector,
    Message,
    SensorSettings,
    read_numbers,
    talq_events,
    text,
)
from core.config import Commune
from core.hookspecs import hookimpl
from core.signals import Alert, Reading, Signal, TicketDraft

_CATEGORY = "eclairage"


def _rule(priority: str, title: str, description: str) -> dict[str, str]:
    return {"category": _CATEGORY, "priority": priority, "title": title, "description": description}


class Settings(SensorSettings):
    DEFAULT_CONDITIONS = {
        "lamp_failure": _rule(
            "normal",
            "Lampe d'éclairage public en panne",
            "Le point lumineux {device_id} signale une lampe en panne ({where}), le {observed_at}.",
        ),
        "broken_lantern": _rule(
            "high",
            "Lanterne d'éclairage public cassée",
            "Le point lumineux {device_id} signale une lanterne cassée ({where}), "
            "le {observed_at}.",
        ),
        "column_damage": _rule(
            "urgent",
            "Mât d'éclairage endommagé",
            "Le point lumineux {device_id} signale un mât endommagé ({where}), le {observed_at} : "
            "risque de chute.",
        ),
        "burning_by_day": _rule(
            "low",
            "Éclairage allumé en journée",
            "Le point lumineux {device_id} est allumé en journée ({where}), le {observed_at}.",
        ),
        "power_loss": _rule(
            "high",
            "Coupure d'alimentation de l'éclairage public",
            "{device_id} signale une perte d'alimentation ({where}), le {observed_at} : "
            "vérifier l'armoire et le réseau.",
        ),
        "communication_lost": _rule(
            "low",
            "Contrôleur d'éclairage injoignable",
            "Le contrôleur {device_id} ne communique plus ({where}), depuis le {observed_at}.",
        ),
        "cabinet_door_open": _rule(
            "high",
            "Porte d'armoire d'éclairage ouverte",
            "La porte de l'armoire {where} est ouverte ({device_id}), depuis le {observed_at}.",
        ),
    }


_STREETLIGHT_STATUS = {
    "ok": None,
    "defectivelamp": "lamp_failure",
    "columnissue": "column_damage",
    "brokenlantern": "broken_lantern",
}
_TALQ_EVENTS = {
    "lampfailure": "lamp_failure",
    "supplyloss": "power_loss",
    "circuitbreakertripped": "power_loss",
    "lampunexpectedon": "burning_by_day",
    "communicationfailure": "communication_lost",
    "cabinetdooropen": "cabinet_door_open",
}
_FLAGS = {condition: condition for condition in Settings.DEFAULT_CONDITIONS}
_READINGS = {
    "power_w": ("power_w", "powerConsumption", "activePower"),
    "energy_kwh": ("energy_kwh", "energyConsumed", "activeEnergy"),
    "illuminance_level": ("illuminanceLevel",),
}


class LightingConnector(MappedSensorConnector):
    name = "lighting"
    device_kind = "streetlight"
    description = "Street lighting: lamp, lantern, column, power, communication, cabinet door"
    settings_model = Settings

    def read(self, message: Message) -> list[Alert | Reading]:
        payload, skip = message.payload, message.skip
        message.asset = message.device.asset or _circuit_asset(message)
        observed = message.observe()
        observed.read_flags(payload, _FLAGS, skip)
        if "status" not in skip and payload.get("status") is not None:
            status = text(payload["status"], "status")
            if status.strip().lower() not in _STREETLIGHT_STATUS:
                raise ValueError(
                    f"status: unknown Streetlight status {status!r}; "
                    "expected ok, defectiveLamp, columnIssue or brokenLantern"
                )
            observed.read_words(status.strip(), "status", _STREETLIGHT_STATUS)
        for name, cleared in talq_events(payload):
            condition = _TALQ_EVENTS.get(name.lower())
            if condition:
                observed.report(condition, not cleared, name)
        fields: dict[str, float | int | bool | str] = {**read_numbers(payload, _READINGS, skip)}
        if "powerState" not in skip and payload.get("powerState") is not None:
            fields["power_state"] = text(payload["powerState"], "powerState")
        return [*message.track(observed), *message.reading(fields)]


def _circuit_asset(message: Message) -> str | None:
    """``cabinet/circuit`` (or the cabinet alone), from the payload or else the tags."""
    payload, tags = message.payload, message.tags
    cabinet = payload.get("refStreetlightControlCabinet")
    if cabinet is not None:
        # A FIWARE reference names the entity: urn:ngsi-ld:StreetlightControlCabinet:<id>.
        cabinet = text(cabinet, "refStreetlightControlCabinet").removeprefix("urn:ngsi-ld:")
        cabinet = cabinet.removeprefix("StreetlightControlCabinet:")
    circuit = payload.get("circuit")
    if circuit is not None:
        circuit = text(circuit, "circuit")
    cabinet = cabinet or tags.get("cabinet")
    circuit = circuit or tags.get("circuit")
    if not cabinet:
        return None
    return f"{cabinet}/{circuit}" if circuit else cabinet


@hookimpl
def register_connectors() -> list[LightingConnector]:
    return [LightingConnector()]


@hookimpl
def check_commune(commune: Commune) -> list[str]:
    return LightingConnector.check_commune(commune)


@hookimpl
def draft_ticket(signal: Signal, commune: Commune) -> TicketDraft | None:
    """A lighting controller's alert becomes a ticket in the commune's lighting category."""
    return LightingConnector.draft_ticket(signal, commune)
