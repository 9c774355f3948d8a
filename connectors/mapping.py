"""What the sensor connectors share: per-commune settings, vendor field maps,
payload checks, the memory of active conditions, and ticket drafts.

A sensor connector module declares ``Settings(SensorSettings)`` with its
conditions' defaults and a :class:`MappedSensorConnector` subclass whose
``read`` turns one :class:`Message` into alerts and readings. Each commune can
then, in its own file::

    [plugins.water]
    resolve_on_recovery = false
    [plugins.water.conditions.leak]          # any field left out keeps its default
    category = "eau-fuite"
    priority = "urgent"
    [plugins.water.field_map]                # another vendor's field names
    alarm_leak = "leak"                      # a boolean field: true raises, false clears
    [plugins.water.field_map.alarm_code]     # a field whose value names conditions
    values = { "0" = "", "1" = "leak", "2" = "burst" }
    [plugins.water.reading_map]
    index_l = { name = "volume_m3", scale = 0.001 }

A condition is *covered* by a message when the message says whether it holds
(a boolean field, a status word list, a status enumeration). It is raised
when the message says it holds, and recovered when a message covers it
without raising it while the device's state remembers it as active.
"""

from __future__ import annotations

import copy
import functools
import math
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.config import Commune
from core.config.models import Priority
from core.connectors import SensorConnector
from core.envelopes import as_utc, describe_value, parse_timestamp
from core.signals import Alert, DeviceInfo, Location, Reading, Signal, TicketDraft, Uplink

_STRICT = ConfigDict(extra="forbid", frozen=True)

# Where payloads carry their own time, most specific first.
TIMESTAMP_FIELDS = (
    "observedAt",
    "observationDateTime",
    "dateObserved",
    "timestamp_utc",
    "timestamp",
    "time",
)
# A device clock ahead of the network by more than this is not believed.
_CLOCK_AHEAD = timedelta(minutes=5)

# Placeholders every condition's title and description may use.
TEMPLATE_FIELDS = frozenset(
    {"device_id", "condition", "asset", "address", "where", "observed_at", "commune"}
)
_NAME = r"^[a-z][a-z0-9_]*$"


# --- Settings --------------------------------------------------------------------


class ConditionRule(BaseModel):
    """The ticket a condition opens: ``title`` and ``description`` are
    ``str.format`` templates (``{device_id}``, ``{where}``, ``{observed_at}``...)."""

    model_config = _STRICT
    category: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    priority: Priority = "normal"
    title: str | None = None
    description: str
    # False: the alert is kept (and its recovery), but opens no ticket.
    open_ticket: bool = True


class ValueMap(BaseModel):
    """A vendor field whose value names a condition; ``""`` means none.

    Values are compared as text (``1`` and ``true`` as ``"1"`` and ``"true"``);
    with a ``separator``, a value holds several words. A value not listed
    sends the message to the dead letters.
    """

    model_config = _STRICT
    values: dict[str, str]
    separator: str | None = None


class ReadingRule(BaseModel):
    """A vendor's numeric field stored as reading ``name``, multiplied by ``scale``."""

    model_config = _STRICT
    name: str = Field(pattern=_NAME)
    scale: float = 1.0


class SensorSettings(BaseModel):
    """Per-commune settings shared by the sensor connectors.

    Subclasses set ``DEFAULT_CONDITIONS``; a commune's ``conditions`` entry
    overrides the fields it gives and keeps the others, and may add a
    condition of its own (with category and description) for ``field_map``.
    """

    model_config = _STRICT

    DEFAULT_CONDITIONS: ClassVar[dict[str, dict[str, Any]]] = {}
    # field_map targets that are not conditions (parking: occupied, free...).
    EXTRA_TARGETS: ClassVar[frozenset[str]] = frozenset()
    # Alert details a connector offers to templates (parking: limit_minutes...).
    EXTRA_TEMPLATE_FIELDS: ClassVar[frozenset[str]] = frozenset()

    conditions: dict[str, ConditionRule] = {}
    # Tell the ticket workflow to resolve a ticket when its condition clears.
    resolve_on_recovery: bool = True
    field_map: dict[str, str | ValueMap] = {}
    reading_map: dict[str, str | ReadingRule] = {}

    @model_validator(mode="before")
    @classmethod
    def _merge_default_conditions(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        given = data.get("conditions") or {}
        if not isinstance(given, Mapping):
            return data  # pydantic reports the wrong type
        merged: dict[str, Any] = {name: dict(rule) for name, rule in cls.DEFAULT_CONDITIONS.items()}
        for name, rule in given.items():
            if isinstance(rule, ConditionRule):
                rule = rule.model_dump(exclude_unset=True)
            merged[name] = {**merged.get(name, {}), **rule} if isinstance(rule, dict) else rule
        return {**data, "conditions": merged}

    @model_validator(mode="after")
    def _check_names_and_templates(self) -> SensorSettings:
        allowed = TEMPLATE_FIELDS | self.EXTRA_TEMPLATE_FIELDS
        for name, rule in self.conditions.items():
            if not re.match(_NAME, name):
                raise ValueError(f"conditions.{name}: a condition is lowercase letters, digits, _")
            for part in ("title", "description"):
                template = getattr(rule, part)
                if template is not None:
                    _check_template(template, allowed, f"conditions.{name}.{part}")
        targets = set(self.conditions) | self.EXTRA_TARGETS
        for field_name, target in self.field_map.items():
            named = {target} if isinstance(target, str) else set(target.values.values()) - {""}
            for condition in sorted(named - targets):
                raise ValueError(
                    f"field_map.{field_name}: {condition!r} is not a condition; "
                    f"expected one of {', '.join(sorted(targets))}"
                )
        return self

    def mapped_fields(self) -> frozenset[str]:
        """Payload fields the commune maps itself: built-in vocabularies leave them alone."""
        if not self.field_map and not self.reading_map:
            return _NO_FIELDS  # most communes: asked for each message
        return frozenset(self.field_map) | frozenset(self.reading_map)


_NO_FIELDS: frozenset[str] = frozenset()


def _check_template(template: str, allowed: frozenset[str], where: str) -> None:
    try:
        names = _placeholders(template)
        unknown = sorted(names - allowed)
        if unknown:
            raise ValueError(f"unknown placeholder {{{unknown[0]}}}")
        template.format_map({name: name for name in allowed})
    except (ValueError, KeyError, IndexError) as exc:
        raise ValueError(
            f"{where}: {exc}; placeholders are {', '.join('{' + n + '}' for n in sorted(allowed))}"
        ) from None


def _placeholders(template: str) -> set[str]:
    names = set()
    for _, name, spec, _ in string.Formatter().parse(template):
        if name is not None:
            names.add(name)
        if spec and "{" in spec:
            names |= _placeholders(spec)
    return names


@functools.cache
def _default_settings(model: type[SensorSettings]) -> SensorSettings:
    return model()


def settings_for(commune: Commune, plugin_name: str, model: type[SensorSettings]) -> Any:
    """The commune's validated settings for a connector, or the defaults."""
    config = commune.plugin_config(plugin_name)
    if config is None:
        return _default_settings(model)
    if isinstance(config, model):
        return config
    if isinstance(config, Mapping):
        return model.model_validate(dict(config)) if config else _default_settings(model)
    raise TypeError(f"plugins.{plugin_name}: expected {model.__qualname__}, got {config!r}")


# --- Payload values: each raises ValueError("<field>: <reason>") -------------------


def flag(value: Any, field_name: str) -> bool:
    """A boolean: true/false, 0/1 or their text."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "0", "1"):
        return value.strip().lower() in ("true", "1")
    raise ValueError(f"{field_name}: expected true or false, got {describe_value(value)}")


def number(value: Any, field_name: str) -> float:
    """A finite number, or its text."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{field_name}: expected a number, got {describe_value(value)}")
    try:
        result = float(value.strip() if isinstance(value, str) else value)
    except (ValueError, OverflowError):
        raise ValueError(f"{field_name}: expected a number, got {describe_value(value)}") from None
    if not math.isfinite(result):
        raise ValueError(f"{field_name}: expected a finite number, got {describe_value(value)}")
    return result


def text(value: Any, field_name: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{field_name}: expected a string, got {describe_value(value)}")
    return value


def words(value: Any, field_name: str) -> list[str]:
    """Words in a text (separated by spaces, commas, semicolons or bars) or a list of texts."""
    items = value if isinstance(value, list) else [value]
    found = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(
                f"{field_name}: expected words separated by spaces or commas, "
                f"got {describe_value(value)}"
            )
        found += [word for word in re.split(r"[\s,;|]+", item) if word]
    return found


def lookup(payload: Mapping[str, Any], path: str) -> Any:
    """``payload[path]``, or a nested field by dotted path (``alarms.leak``); None if absent."""
    if path in payload:
        return payload[path]
    node: Any = payload
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _value_tokens(value: Any, field_name: str, separator: str | None) -> list[str]:
    items = value if isinstance(value, list) else [value]
    tokens = []
    for item in items:
        if isinstance(item, bool):
            tokens.append("true" if item else "false")
        elif isinstance(item, int):
            tokens.append(str(item))
        elif isinstance(item, float) and math.isfinite(item):
            tokens.append(str(int(item)) if item.is_integer() else repr(item))
        elif isinstance(item, str):
            parts = item.split(separator) if separator else [item]
            tokens += [p.strip() for p in parts if p.strip() or not separator]
        else:
            raise ValueError(
                f"{field_name}: expected a text or a number, got {describe_value(item)}"
            )
    return tokens


# --- What one message says about conditions ---------------------------------------


@dataclass
class Observed:
    """Conditions a message covers, and those it raises (with what raised them)."""

    raised: dict[str, str] = field(default_factory=dict)
    covered: set[str] = field(default_factory=set)

    def report(self, condition: str, present: bool, source: str) -> None:
        self.covered.add(condition)
        if present:
            self.raised.setdefault(condition, source)

    def read_flags(
        self, payload: Mapping[str, Any], flags: Mapping[str, str], skip: frozenset[str]
    ) -> None:
        """Boolean fields, each covering one condition: ``{"leakage": "leak"}``."""
        for field_name, condition in flags.items():
            value = payload.get(field_name)
            if value is not None and field_name not in skip:
                self.report(condition, flag(value, field_name), field_name)

    def read_words(self, value: Any, field_name: str, vocabulary: Mapping[str, str | None]) -> None:
        """A word list covering every condition of ``vocabulary`` (lowercase word ->
        condition, None for words meaning "no alarm"). Unknown words are ignored:
        vendors add words, and a commune can map them with ``field_map``."""
        self.covered.update(c for c in vocabulary.values() if c)
        for word in words(value, field_name):
            condition = vocabulary.get(word.lower())
            if condition:
                self.raised.setdefault(condition, f"{field_name}={word}")

    def read_field_map(
        self, payload: Mapping[str, Any], field_map: Mapping[str, str | ValueMap]
    ) -> None:
        for field_name, rule in field_map.items():
            value = lookup(payload, field_name)
            if value is None:
                continue
            if isinstance(rule, str):
                self.report(rule, flag(value, field_name), field_name)
                continue
            self.covered.update(c for c in rule.values.values() if c)
            for token in _value_tokens(value, field_name, rule.separator):
                if token not in rule.values:
                    known = ", ".join(repr(v) for v in rule.values)
                    raise ValueError(
                        f"{field_name}: unknown value {token!r}; expected one of {known}"
                    )
                if rule.values[token]:
                    self.raised.setdefault(rule.values[token], f"{field_name}={token}")


def read_numbers(
    payload: Mapping[str, Any],
    sources: Mapping[str, Iterable[str]],
    skip: frozenset[str],
) -> dict[str, float]:
    """Reading name -> the first of its candidate fields that the payload has."""
    fields: dict[str, float] = {}
    for name, candidates in sources.items():
        for field_name in candidates:
            value = payload.get(field_name)
            if value is not None and field_name not in skip:
                fields[name] = number(value, field_name)
                break
    return fields


def _read_reading_map(
    payload: Mapping[str, Any], reading_map: Mapping[str, str | ReadingRule]
) -> dict[str, float]:
    fields = {}
    for field_name, rule in reading_map.items():
        value = lookup(payload, field_name)
        if value is None:
            continue
        name, scale = (rule, 1.0) if isinstance(rule, str) else (rule.name, rule.scale)
        scaled = number(value, field_name) * scale
        if not math.isfinite(scaled):
            raise ValueError(f"{field_name}: {describe_value(value)} times {scale} is too large")
        fields[name] = scaled
    return fields


def talq_events(payload: Mapping[str, Any]) -> list[tuple[str, bool]]:
    """TALQ-style events as (name, cleared): ``{"event": "lampFailure"}``,
    ``{"events": ["lampFailure", {"event": "supplyLoss", "cleared": true}]}``;
    a top-level ``"cleared": true`` applies to every event of the message."""
    cleared_all = (
        flag(payload["cleared"], "cleared") if payload.get("cleared") is not None else False
    )
    items: list[tuple[str, Any]] = []
    if payload.get("event") is not None:
        items.append(("event", payload["event"]))
    if payload.get("events") is not None:
        events = payload["events"]
        if not isinstance(events, list):
            raise ValueError(f"events: expected a list, got {describe_value(events)}")
        items += [(f"events[{i}]", item) for i, item in enumerate(events)]
    found = []
    for path, item in items:
        if isinstance(item, str):
            found.append((item, cleared_all))
        elif isinstance(item, dict):
            key = next((k for k in ("event", "type", "name") if item.get(k) is not None), None)
            if key is None:
                raise ValueError(f"{path}: no event name (event, type or name)")
            cleared = item.get("cleared")
            found.append(
                (
                    text(item[key], f"{path}.{key}"),
                    cleared_all if cleared is None else flag(cleared, f"{path}.cleared"),
                )
            )
        else:
            raise ValueError(
                f"{path}: expected an event name or object, got {describe_value(item)}"
            )
    return found


# --- The device's state: active conditions ------------------------------------------


def active_conditions(state: dict[str, Any]) -> dict[str, str]:
    """``state["active"]``: condition -> ISO time it became active (repaired if malformed)."""
    active = state.get("active")
    if not isinstance(active, dict):
        active = {}
    active = {k: v for k, v in active.items() if isinstance(k, str) and isinstance(v, str)}
    state["active"] = active
    return active


_JSON_SCALARS = frozenset({str, int, float, bool, type(None)})


def copied_state(value: Any) -> Any:
    """A deep copy of a device's state: ``copy.deepcopy`` for JSON values, several
    times faster (it is made for each message). Anything else than JSON's
    dicts, lists and scalars is left to ``copy.deepcopy``."""
    kind = type(value)
    if kind is dict:
        return {
            key: item if type(item) in _JSON_SCALARS else copied_state(item)
            for key, item in value.items()
        }
    if kind is list:
        return [item if type(item) in _JSON_SCALARS else copied_state(item) for item in value]
    if kind in _JSON_SCALARS:
        return value
    return copy.deepcopy(value)


def stored_time(state: Mapping[str, Any], key: str) -> datetime | None:
    """A time the connector stored in ``state``; None if absent or unreadable."""
    try:
        return parse_timestamp(state[key], key) if isinstance(state.get(key), str) else None
    except ValueError:
        return None


# --- Alerts and drafts -----------------------------------------------------------------


def build_alert(
    connector: type[MappedSensorConnector] | MappedSensorConnector,
    device_id: str,
    condition: str,
    observed_at: datetime,
    *,
    settings: SensorSettings | None = None,
    recovered: bool = False,
    device: DeviceInfo | None = None,
    commune: str | None = None,
    location: Location | None = None,
    asset: str | None = None,
    details: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> Alert:
    """An alert from ``connector``; severity is the condition's ticket priority."""
    settings = settings or _default_settings(connector.settings_model)
    rule = settings.conditions.get(condition)
    details = dict(details or {})
    if recovered:
        details["resolve_on_recovery"] = settings.resolve_on_recovery
    return Alert(
        device_id=device_id,
        condition=condition,
        observed_at=as_utc(observed_at),
        severity=rule.priority if rule else "normal",
        recovered=recovered,
        commune=commune or (device.commune if device else None),
        location=location or (device.location if device else Location()),
        asset=asset or (device.asset if device else None),
        device_kind=connector.device_kind,
        connector=connector.name,
        idempotency_key=idempotency_key,
        details=details,
    )


def _local_time(moment: datetime, zone: ZoneInfo) -> str:
    try:
        return as_utc(moment).astimezone(zone).strftime("%d/%m/%Y %H:%M")
    except OverflowError:  # a device clock at the ends of the calendar
        return moment.isoformat()


def template_values(alert: Alert, commune: Commune, extra_fields: Iterable[str]) -> dict[str, str]:
    """What a condition's title and description templates are filled with."""
    zone = ZoneInfo(commune.business_hours.timezone)
    place = alert.location
    if place.address:
        where = place.address
    elif alert.asset:
        where = alert.asset
    elif place.has_point:
        where = f"{place.latitude:.5f}, {place.longitude:.5f}"
    else:
        where = "emplacement non renseigné"
    values = {
        "device_id": alert.device_id,
        "condition": alert.condition,
        "asset": alert.asset or "",
        "address": place.address or "",
        "where": where,
        "observed_at": _local_time(alert.observed_at, zone),
        "commune": commune.name,
    }
    for key in extra_fields:
        value = alert.details.get(key)
        if isinstance(value, str):
            try:
                value = _local_time(parse_timestamp(value, key), zone)
            except ValueError:
                pass
        values[key] = "" if value is None else str(value)
    return values


# --- The connector ---------------------------------------------------------------------


@dataclass
class Message:
    """One uplink being read by a connector, with what it needs to build results."""

    connector: MappedSensorConnector
    uplink: Uplink
    device: DeviceInfo
    commune: Commune
    settings: Any  # the connector's Settings
    state: dict[str, Any]
    observed_at: datetime
    asset: str | None = None

    @property
    def payload(self) -> dict[str, Any]:
        return self.uplink.payload

    @property
    def skip(self) -> frozenset[str]:
        return self.settings.mapped_fields()

    @property
    def tags(self) -> dict[str, str]:
        """The network's tags, overridden by the device registry's."""
        return {**self.uplink.tags, **self.device.tags}

    def observe(self) -> Observed:
        """A fresh :class:`Observed` with the commune's ``field_map`` already read."""
        observed = Observed()
        observed.read_field_map(self.payload, self.settings.field_map)
        return observed

    def alert(
        self,
        condition: str,
        *,
        recovered: bool = False,
        details: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Alert:
        device = self.device
        # The registry knows where a fixed device is; a message's position is the fallback.
        location = device.location if device.location.has_point else self.uplink.location
        if location.address is None and device.address:
            location = Location(location.latitude, location.longitude, device.address)
        return build_alert(
            self.connector,
            device.device_id,
            condition,
            self.observed_at,
            settings=self.settings,
            recovered=recovered,
            device=device,
            commune=self.commune.slug,
            location=location,
            asset=self.asset,
            details=details,
            idempotency_key=idempotency_key,
        )

    def track(self, observed: Observed) -> list[Alert]:
        """Alerts for what ``observed`` raises (each time it raises it, with
        ``details["repeat"]`` once already active) and for the active
        conditions it covers without raising (recoveries)."""
        active = active_conditions(self.state)
        alerts = []
        for condition, source in sorted(observed.raised.items()):
            repeat = condition in active
            since = active.setdefault(condition, self.observed_at.isoformat())
            details = {"source": source, "active_since": since, "repeat": repeat}
            alerts.append(self.alert(condition, details=details))
        for condition in sorted(observed.covered - observed.raised.keys()):
            if condition in active:
                since = active.pop(condition)
                alerts.append(
                    self.alert(condition, recovered=True, details={"active_since": since})
                )
        return alerts

    def reading(self, fields: dict[str, float | int | bool | str]) -> list[Reading]:
        """The message's reading (with the commune's ``reading_map``), if it has any field."""
        fields = {**fields, **_read_reading_map(self.payload, self.settings.reading_map)}
        if not fields:
            return []
        tags = {"asset": self.asset} if self.asset else {}
        return [
            Reading(
                device_id=self.device.device_id,
                device_kind=self.connector.device_kind,
                observed_at=self.observed_at,
                fields=fields,
                commune=self.commune.slug,
                tags=tags,
            )
        ]


class MappedSensorConnector(SensorConnector):
    """A sensor connector configured by a :class:`SensorSettings` model,
    registered as plugin ``name`` (its settings are ``[plugins.<name>]``)."""

    settings_model: ClassVar[type[SensorSettings]]

    @classmethod
    def settings(cls, commune: Commune) -> Any:
        return settings_for(commune, cls.name, cls.settings_model)

    def interpret(
        self, uplink: Uplink, device: DeviceInfo, commune: Commune, state: dict[str, Any]
    ) -> list[Alert | Reading]:
        # Work on a copy: a payload rejected half-way leaves the state as it was.
        work = copied_state(state) if isinstance(state, dict) else {}
        message = Message(
            connector=self,
            uplink=uplink,
            device=device,
            commune=commune,
            settings=self.settings(commune),
            state=work,
            observed_at=observed_time(uplink),
            asset=device.asset,
        )
        results = self.read(message)
        state.clear()
        state.update(work)
        return results

    def read(self, message: Message) -> list[Alert | Reading]:
        raise NotImplementedError

    @classmethod
    def check_commune(cls, commune: Commune) -> list[str]:
        """Categories the commune's conditions open tickets in but that it does not define."""
        missing: dict[str, list[str]] = {}
        for name, rule in sorted(cls.settings(commune).conditions.items()):
            if rule.open_ticket and commune.category(rule.category) is None:
                missing.setdefault(rule.category, []).append(name)
        return [
            f'category "{code}" (conditions {", ".join(names)}) is not a category of '
            f"{commune.slug}; define it, or set conditions.<condition>.category"
            for code, names in missing.items()
        ]

    @classmethod
    def draft_ticket(cls, signal: Signal, commune: Commune) -> TicketDraft | None:
        """A draft for an alert raised by this connector's kind of device, else None."""
        if not isinstance(signal, Alert) or signal.recovered:
            return None
        if signal.device_kind != cls.device_kind:
            return None
        settings = cls.settings(commune)
        rule = settings.conditions.get(signal.condition)
        if rule is None or not rule.open_ticket:
            return None
        values = template_values(signal, commune, settings.EXTRA_TEMPLATE_FIELDS)
        return TicketDraft(
            commune=commune.slug,
            category=rule.category,
            description=rule.description.format_map(values),
            channel="sensor",
            priority=rule.priority,
            location=signal.location,
            asset=signal.asset,
            title=rule.title.format_map(values) if rule.title else None,
        )


def observed_time(uplink: Uplink) -> datetime:
    """When the payload says it observed its values, else when the network got them."""
    received = as_utc(uplink.received_at)
    payload = uplink.payload
    for key in TIMESTAMP_FIELDS:
        value = payload.get(key)
        if value is not None:
            moment = parse_timestamp(value, key)
            return received if moment > received + _CLOCK_AHEAD else moment
    return received
