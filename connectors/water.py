"""Water meters: leaks, bursts, backflow, tampering, empty pipes, low batteries
and meters that fell silent. Plugin ``water``, device kind ``water_meter``.

Conditions: ``leak``, ``burst``, ``backflow``, ``tamper``, ``dry``,
``low_battery``, ``silent``. Readings: ``volume_m3``, ``battery_years``.

Read out of the box (a commune maps other vendors with ``field_map``):

- Axioma Qalcosonic booleans: leakage, burst, backflow, pipe_empty, low_battery;
- Kamstrup status words (wmbusmeters ``current_status`` or ``status``): DRY,
  REVERSE, LEAK, BURST, TAMPER, LOW_BATTERY, OK;
- Diehl IZAR ``current_alarms``: leakage, back_flow, meter_blocked,
  sensor_fraud, mechanical_fraud (the last three: tamper), no_alarm; and
  ``remaining_battery_life_y`` under ``low_battery_years``;
- FIWARE WaterConsumptionObserved: alarmStopsLeaks, alarmFlowPersistence
  (leak), alarmTamper, moduleTampered (tamper), alarmWaterQuality (backflow);
- booleans named after the conditions (``{"leak": true}``).

``silent`` is Vigie's: :func:`silent_meter_alerts`, run periodically, raises
it for a meter not heard for ``silent_after_hours``; the meter's next message
recovers it. Settings::

    [plugins.water]
    silent_after_hours = 48
    low_battery_years = 1.0
    [plugins.water.conditions.leak]
    category = "eau-fuite"

State keys: ``active`` (condition -> ISO time raised), ``last_seen`` (ISO time
of the newest message).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import Field

from connectors.mapping import (
    MappedSensorConnector,
    Message,
    SensorSettings,
    build_alert,
    read_numbers,
    stored_time,
    text,
)
from core.config import Commune
from core.envelopes import as_utc
from core.hookspecs import hookimpl
from core.signals import Alert, DeviceInfo, Reading, Signal, TicketDraft

_CATEGORY = "eau-assainissement"


def _rule(priority: str, title: str, description: str) -> dict[str, str]:
    return {"category": _CATEGORY, "priority": priority, "title": title, "description": description}


class Settings(SensorSettings):
    DEFAULT_CONDITIONS = {
        "leak": _rule(
            "high",
            "Fuite d'eau détectée par un compteur",
            "Le compteur {device_id} signale une fuite d'eau ({where}), le {observed_at}.",
        ),
        "burst": _rule(
            "urgent",
            "Rupture de canalisation d'eau",
            "Le compteur {device_id} signale un débit de rupture de canalisation ({where}), "
            "le {observed_at}.",
        ),
        "backflow": _rule(
            "high",
            "Retour d'eau sur le réseau",
            "Le compteur {device_id} signale un retour d'eau, risque pour la qualité de l'eau "
            "({where}), le {observed_at}.",
        ),
        "tamper": _rule(
            "normal",
            "Compteur d'eau manipulé ou bloqué",
            "Le compteur {device_id} signale une manipulation ou un blocage ({where}), "
            "le {observed_at}.",
        ),
        "dry": _rule(
            "normal",
            "Canalisation vide",
            "Le compteur {device_id} signale une canalisation vide ({where}), le {observed_at}.",
        ),
        "low_battery": _rule(
            "low",
            "Pile faible sur un compteur d'eau",
            "La pile du compteur {device_id} est faible ({where}) : prévoir son remplacement.",
        ),
        "silent": _rule(
            "normal",
            "Compteur d'eau muet",
            "Le compteur {device_id} n'a rien transmis depuis le {last_seen} ({where}).",
        ),
    }
    EXTRA_TEMPLATE_FIELDS = frozenset({"last_seen"})

    # A meter not heard for this long is "silent".
    silent_after_hours: float = Field(default=48, gt=0, le=24 * 366)
    # Diehl IZAR remaining battery life under which the battery is low.
    low_battery_years: float = Field(default=1.0, ge=0, le=100)


_FLAGS = {
    # Vigie's own booleans, then Axioma Qalcosonic's.
    "leak": "leak",
    "burst": "burst",
    "backflow": "backflow",
    "tamper": "tamper",
    "dry": "dry",
    "low_battery": "low_battery",
    "leakage": "leak",
    "pipe_empty": "dry",
    # FIWARE WaterConsumptionObserved (0/1).
    "alarmStopsLeaks": "leak",
    "alarmTamper": "tamper",
    "moduleTampered": "tamper",
    "alarmWaterQuality": "backflow",
}
_KAMSTRUP = {
    "ok": None,
    "dry": "dry",
    "reverse": "backflow",
    "leak": "leak",
    "burst": "burst",
    "tamper": "tamper",
    "low_battery": "low_battery",
}
_IZAR = {
    "no_alarm": None,
    "leakage": "leak",
    "back_flow": "backflow",
    "meter_blocked": "tamper",
    "sensor_fraud": "tamper",
    "mechanical_fraud": "tamper",
}
# FIWARE alarmFlowPersistence: is water flowing without a stop right now?
_FLOW_PERSISTENCE = {
    "nothing to report": False,
    "no persistence": False,
    "past persistence during the period": False,
    "in progress persistence": True,
    "in progress impacting persistence": True,
}
_READINGS = {
    "volume_m3": ("volume_m3", "current_volume_m3", "total_m3", "waterConsumption"),
    "battery_years": ("remaining_battery_life_y",),
}


class WaterConnector(MappedSensorConnector):
    name = "water"
    device_kind = "water_meter"
    description = "Water meters: leak, burst, backflow, tamper, dry pipe, low battery, silence"
    settings_model = Settings

    def read(self, message: Message) -> list[Alert | Reading]:
        payload, skip, settings = message.payload, message.skip, message.settings
        observed = message.observe()
        observed.read_flags(payload, _FLAGS, skip)
        status_field = (
            "current_status" if isinstance(payload.get("current_status"), str) else "status"
        )
        status = payload.get(status_field)
        # Qalcosonic's status is a number (its flags are read above); Kamstrup's are words.
        if status_field not in skip and status is not None and not _is_integer(status):
            observed.read_words(status, status_field, _KAMSTRUP)
        if "current_alarms" not in skip and payload.get("current_alarms") is not None:
            observed.read_words(payload["current_alarms"], "current_alarms", _IZAR)
        if "alarmFlowPersistence" not in skip and payload.get("alarmFlowPersistence") is not None:
            value = text(payload["alarmFlowPersistence"], "alarmFlowPersistence")
            if value.strip().lower() not in _FLOW_PERSISTENCE:
                raise ValueError(
                    f"alarmFlowPersistence: unknown value {value!r}; expected one of "
                    "'Nothing to report', 'No persistence', 'In progress impacting persistence', "
                    "'In progress persistence', 'Past Persistence during the period'"
                )
            observed.report(
                "leak", _FLOW_PERSISTENCE[value.strip().lower()], "alarmFlowPersistence"
            )
        fields = read_numbers(payload, _READINGS, skip)
        if "battery_years" in fields:
            observed.report(
                "low_battery",
                fields["battery_years"] < settings.low_battery_years,
                "remaining_battery_life_y",
            )
        alerts = message.track(observed)
        alerts += self._heard_again(message)
        return [*alerts, *message.reading(fields)]

    def _heard_again(self, message: Message) -> list[Alert]:
        """A ``silent`` recovery when this message ends a silence long enough to
        have been reported by :func:`silent_meter_alerts`."""
        last_seen = stored_time(message.state, "last_seen")
        if last_seen is None or message.observed_at > last_seen:
            message.state["last_seen"] = message.observed_at.isoformat()
        silence = timedelta(hours=message.settings.silent_after_hours)
        if last_seen is None or message.observed_at - last_seen < silence:
            return []
        details = {"last_seen": last_seen.isoformat()}
        return [message.alert("silent", recovered=True, details=details)]


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def silent_meter_alerts(
    devices_last_seen: Mapping[str, datetime],
    now: datetime,
    hours: float = 48,
    devices: Mapping[str, DeviceInfo] | None = None,
) -> list[Alert]:
    """``silent`` alerts for the meters not heard for ``hours`` (the commune's
    ``silent_after_hours``), for a periodic job.

    ``devices`` (by device id), when given, fills in each alert's commune,
    location and asset. Each alert's ``idempotency_key`` names the meter and
    the time it was last heard: a job running every hour reports each silence
    once.
    """
    now = as_utc(now)
    alerts = []
    for device_id, last_seen in sorted(devices_last_seen.items()):
        last_seen = as_utc(last_seen)
        if now - last_seen < timedelta(hours=hours):
            continue
        alerts.append(
            build_alert(
                WaterConnector,
                device_id,
                "silent",
                now,
                device=(devices or {}).get(device_id),
                details={"last_seen": last_seen.isoformat()},
                idempotency_key=f"water:silent:{device_id}:{last_seen.isoformat()}",
            )
        )
    return alerts


@hookimpl
def register_connectors() -> list[WaterConnector]:
    return [WaterConnector()]


@hookimpl
def check_commune(commune: Commune) -> list[str]:
    return WaterConnector.check_commune(commune)


@hookimpl
def draft_ticket(signal: Signal, commune: Commune) -> TicketDraft | None:
    """A water meter's alert becomes a ticket in the commune's water category."""
    return WaterConnector.draft_ticket(signal, commune)
