"""On-street parking bays with occupancy sensors. Plugin ``parking``, device
kind ``parking_spot``.

Conditions: ``overstay``, ``forbidden_parking``, ``disabled_bay_occupied``,
``delivery_bay_occupied``, ``sensor_fault``. Readings: ``occupied`` (0/1),
``closed`` (1 when the bay is closed).

Occupancy, read out of the box (a commune maps other vendors with
``field_map``, whose targets may also be ``occupied``, ``free`` and ``closed``):

- FIWARE ParkingSpot ``status``: free, occupied, closed, unknown (unknown
  raises ``sensor_fault``; the others recover it);
- TALQ events occupancyChangeToOccupied / occupancyChangeToVacant;
- a boolean ``occupied``.

Raised by the device: TALQ overstayDetected (``overstay``) and
forbiddenParkingDetected (``forbidden_parking``), booleans
``forbidden_parking``, ``sensor_fault`` and ``fault``.

Computed by Vigie: the state remembers since when the bay is occupied; once
that lasts longer than the bay's limit (see :meth:`Settings.bay_limit`),
a message from the bay or the periodic :func:`overstay_alerts` raises the
bay's condition (``overstay``, or ``disabled_bay_occupied`` /
``delivery_bay_occupied`` for bays whose ``bay_type`` tag says so), once per
occupation. The bay becoming free or closed recovers it.

The alert's asset is the device's registered asset, else its ``bay`` tag.
Settings::

    [plugins.parking]
    overstay_minutes = 120
    disabled_bay_minutes = 10
    [plugins.parking.overstay_by_tag]     # tag=value -> minutes
    "zone=blue" = 90
    [plugins.parking.overstay_by_asset]   # bay -> minutes
    "CHAM-GAMBETTA-31" = 20

State keys: ``active`` (condition -> ISO time raised), ``occupied_since``
(ISO time, while occupied), ``limit`` ({"condition", "minutes"} for the bay,
refreshed by each message), ``limit_reported`` (the ``occupied_since`` of the
occupation whose limit condition was raised).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Annotated, Any, NamedTuple

from pydantic import Field, field_validator

from connectors.mapping import (
    MappedSensorConnector,
    Message,
    Observed,
    SensorSettings,
    active_conditions,
    build_alert,
    flag,
    stored_time,
    talq_events,
    text,
)
from core.config import Commune
from core.envelopes import as_utc
from core.hookspecs import hookimpl
from core.signals import Alert, DeviceInfo, Reading, Signal, TicketDraft

_CATEGORY = "stationnement"


def _rule(priority: str, title: str, description: str) -> dict[str, str]:
    return {"category": _CATEGORY, "priority": priority, "title": title, "description": description}


# A bay's limit in minutes: up to 30 days.
Minutes = Annotated[int, Field(gt=0, le=30 * 24 * 60)]


class BayLimit(NamedTuple):
    """How long a bay may stay occupied, and what is raised after."""

    condition: str
    minutes: int


_DISABLED_BAY_TYPES = frozenset({"disabled", "pmr", "gig-gic", "handicap"})
_DELIVERY_BAY_TYPES = frozenset({"delivery", "livraison"})


class Settings(SensorSettings):
    DEFAULT_CONDITIONS = {
        "overstay": _rule(
            "normal",
            "Dépassement de la durée de stationnement",
            "La place {where} est occupée depuis le {occupied_since} "
            "({occupied_minutes} min pour une limite de {limit_minutes} min).",
        ),
        "forbidden_parking": _rule(
            "normal",
            "Stationnement interdit",
            "Le capteur {device_id} signale un véhicule en stationnement interdit ({where}), "
            "le {observed_at}.",
        ),
        "disabled_bay_occupied": _rule(
            "normal",
            "Place réservée aux personnes handicapées occupée",
            "La place réservée {where} est occupée depuis le {occupied_since} "
            "({occupied_minutes} min) : vérifier la carte de stationnement.",
        ),
        "delivery_bay_occupied": _rule(
            "low",
            "Aire de livraison occupée",
            "L'aire de livraison {where} est occupée depuis le {occupied_since} "
            "({occupied_minutes} min pour une limite de {limit_minutes} min).",
        ),
        "sensor_fault": _rule(
            "low",
            "Capteur de stationnement en défaut",
            "Le capteur {device_id} ne sait plus si la place est occupée ({where}), "
            "depuis le {observed_at}.",
        ),
    }
    EXTRA_TARGETS = frozenset({"occupied", "free", "closed"})
    EXTRA_TEMPLATE_FIELDS = frozenset({"occupied_since", "occupied_minutes", "limit_minutes"})

    overstay_minutes: Minutes = 120
    # "tag=value" -> minutes, e.g. "zone=blue" = 90; the first that matches wins.
    overstay_by_tag: dict[str, Minutes] = {}
    overstay_by_asset: dict[str, Minutes] = {}
    # Device tag whose value says the bay is reserved: disabled (pmr, gig-gic)
    # or delivery (livraison); such a bay raises its own condition after a grace.
    bay_type_tag: str = "bay_type"
    disabled_bay_minutes: Minutes = 10
    delivery_bay_minutes: Minutes = 30

    @field_validator("overstay_by_tag")
    @classmethod
    def _tag_equals_value(cls, value: dict[str, int]) -> dict[str, int]:
        for key in value:
            if "=" not in key:
                raise ValueError(f"{key!r}: expected tag=value, e.g. zone=blue")
        return value

    def bay_limit(self, asset: str | None, tags: Mapping[str, str]) -> BayLimit:
        """The limit of a bay: by its type tag, else its asset, else a tag, else the default."""
        bay_type = tags.get(self.bay_type_tag, "").strip().lower()
        if bay_type in _DISABLED_BAY_TYPES:
            return BayLimit("disabled_bay_occupied", self.disabled_bay_minutes)
        if bay_type in _DELIVERY_BAY_TYPES:
            return BayLimit("delivery_bay_occupied", self.delivery_bay_minutes)
        if asset in self.overstay_by_asset:
            return BayLimit("overstay", self.overstay_by_asset[asset])
        for key, minutes in self.overstay_by_tag.items():
            tag, _, wanted = key.partition("=")
            if tags.get(tag.strip()) == wanted.strip():
                return BayLimit("overstay", minutes)
        return BayLimit("overstay", self.overstay_minutes)


# Raised when an occupation lasts too long.
_LIMIT_CONDITIONS = frozenset({"overstay", "disabled_bay_occupied", "delivery_bay_occupied"})
# Over when the bay is left.
_OCCUPATION_CONDITIONS = _LIMIT_CONDITIONS | {"forbidden_parking"}
_STATUSES = frozenset({"free", "occupied", "closed", "unknown"})
_FLAGS = {
    "forbidden_parking": "forbidden_parking",
    "sensor_fault": "sensor_fault",
    "fault": "sensor_fault",
}
_TALQ_OCCUPANCY = {"occupancychangetooccupied": "occupied", "occupancychangetovacant": "free"}
_TALQ_CONDITIONS = {"overstaydetected": "overstay", "forbiddenparkingdetected": "forbidden_parking"}


class ParkingConnector(MappedSensorConnector):
    name = "parking"
    device_kind = "parking_spot"
    description = "Parking bays: occupancy, overstay, reserved bays, forbidden parking, faults"
    settings_model = Settings

    def read(self, message: Message) -> list[Alert | Reading]:
        payload, skip = message.payload, message.skip
        message.asset = message.device.asset or message.tags.get("bay")
        observed = message.observe()
        occupancy = _mapped_occupancy(observed)
        observed.read_flags(payload, _FLAGS, skip)
        if "status" not in skip and payload.get("status") is not None:
            status = text(payload["status"], "status").strip().lower()
            if status not in _STATUSES:
                raise ValueError(
                    f"status: unknown ParkingSpot status {payload['status']!r}; "
                    "expected free, occupied, closed or unknown"
                )
            observed.report("sensor_fault", status == "unknown", "status=unknown")
            if status != "unknown":
                occupancy = status
        if "occupied" not in skip and payload.get("occupied") is not None:
            occupancy = "occupied" if flag(payload["occupied"], "occupied") else "free"
        for name, cleared in talq_events(payload):
            key = name.lower()
            if key in _TALQ_OCCUPANCY and not cleared:
                occupancy = _TALQ_OCCUPANCY[key]
            elif key in _TALQ_CONDITIONS:
                observed.report(_TALQ_CONDITIONS[key], not cleared, name)
        alerts = message.track(observed)
        alerts += _occupation(message, occupancy, observed)
        fields: dict[str, float | int | bool | str] = {}
        if occupancy in ("free", "occupied"):
            fields["occupied"] = int(occupancy == "occupied")
        elif occupancy == "closed":
            fields["closed"] = 1
        return [*alerts, *message.reading(fields)]


def _mapped_occupancy(observed: Observed) -> str | None:
    """Take the commune's field_map occupancy targets out of ``observed``."""
    raised = {t for t in Settings.EXTRA_TARGETS if observed.raised.pop(t, None)}
    covered = observed.covered & Settings.EXTRA_TARGETS
    observed.covered -= Settings.EXTRA_TARGETS
    if "occupied" in raised:
        return "occupied"
    if "closed" in raised:
        return "closed"
    if "free" in raised:
        return "free"
    if "occupied" in covered and "free" not in covered:  # a boolean, or a map without "free"
        return "free"
    return None


def _occupation(message: Message, occupancy: str | None, observed: Observed) -> list[Alert]:
    """Start or end the bay's occupation; raise its limit condition when passed."""
    state, now = message.state, message.observed_at
    limit = message.settings.bay_limit(message.asset, message.tags)
    state["limit"] = {"condition": limit.condition, "minutes": limit.minutes}
    if occupancy in ("free", "closed"):
        state.pop("occupied_since", None)
        state.pop("limit_reported", None)
        active = active_conditions(state)
        ended = sorted(
            c for c in _OCCUPATION_CONDITIONS & active.keys() if c not in observed.raised
        )
        return [
            message.alert(c, recovered=True, details={"active_since": active.pop(c)}) for c in ended
        ]
    if occupancy == "occupied":
        since = stored_time(state, "occupied_since")
        state["occupied_since"] = min(since or now, now).isoformat()
    if "sensor_fault" in observed.raised:
        return []  # a sensor that does not know cannot tell how long the bay is taken
    passed = _limit_passed(state, now)
    if passed is None:
        return []
    condition, details = passed
    return [
        message.alert(
            condition,
            details=details,
            idempotency_key=_key(message.device.device_id, condition, details),
        )
    ]


def _limit_passed(
    state: dict[str, Any], now: datetime, minutes: float | None = None
) -> tuple[str, dict[str, Any]] | None:
    """(condition, details) when the bay's occupation has just passed its limit.

    Raised once per occupation: ``limit_reported`` remembers the occupation
    (by its start) whose limit condition was raised, by Vigie or the device.
    """
    since = stored_time(state, "occupied_since")
    if since is None:
        return None
    stored = state.get("limit")
    stored = stored if isinstance(stored, dict) else {}
    condition = stored.get("condition")
    if condition not in _LIMIT_CONDITIONS:
        condition = "overstay"
    if minutes is None:
        minutes = stored.get("minutes")
        if isinstance(minutes, bool) or not isinstance(minutes, int | float) or minutes <= 0:
            minutes = Settings.model_fields["overstay_minutes"].default
    try:
        limit = timedelta(minutes=minutes)
    except (OverflowError, ValueError):  # a limit beyond any calendar is never passed
        return None
    occupation = since.isoformat()
    if state.get("limit_reported") == occupation:
        return None
    active = active_conditions(state)
    if condition in active:  # the device said so first
        state["limit_reported"] = occupation
        return None
    occupied = now - since
    if occupied < limit:
        return None
    active[condition] = occupation
    state["limit_reported"] = occupation
    details = {
        "occupied_since": since.isoformat(),
        "occupied_minutes": int(occupied.total_seconds() // 60),
        "limit_minutes": int(minutes) if float(minutes).is_integer() else minutes,
        "source": "vigie",
    }
    return condition, details


def _key(device_id: str, condition: str, details: Mapping[str, Any]) -> str:
    # One occupation, one alert: the same key whichever path found it first.
    return f"parking:{condition}:{device_id}:{details['occupied_since']}"


def overstay_alerts(
    states: Mapping[str, dict[str, Any]],
    now: datetime,
    limits: Mapping[str, float] | None = None,
    devices: Mapping[str, DeviceInfo] | None = None,
) -> list[Alert]:
    """For a periodic job: the bays (device id -> state) whose occupation has
    passed its limit since their last message.

    ``limits`` (device id -> minutes) replaces the limit the bay's last message
    stored; ``devices`` fills in each alert's commune, location and asset.
    Marks each raised condition active in its state (store the states
    afterwards), so a bay is reported once per occupation; each alert's
    ``idempotency_key`` names the bay and the start of its occupation.
    """
    now = as_utc(now)
    alerts = []
    for device_id, state in sorted(states.items()):
        if not isinstance(state, dict):
            continue
        passed = _limit_passed(state, now, (limits or {}).get(device_id))
        if passed is None:
            continue
        condition, details = passed
        device = (devices or {}).get(device_id)
        alerts.append(
            build_alert(
                ParkingConnector,
                device_id,
                condition,
                now,
                device=device,
                asset=(device.asset or device.tags.get("bay")) if device else None,
                details=details,
                idempotency_key=_key(device_id, condition, details),
            )
        )
    return alerts


@hookimpl
def register_connectors() -> list[ParkingConnector]:
    return [ParkingConnector()]


@hookimpl
def check_commune(commune: Commune) -> list[str]:
    return ParkingConnector.check_commune(commune)


@hookimpl
def draft_ticket(signal: Signal, commune: Commune) -> TicketDraft | None:
    """A parking sensor's alert becomes a ticket in the commune's parking category."""
    return ParkingConnector.draft_ticket(signal, commune)
