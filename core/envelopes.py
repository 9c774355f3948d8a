"""Network envelopes off: one :class:`~core.signals.Uplink` per MQTT message.

A sensor message reaches the broker wrapped by the network that carried it.
:func:`unwrap` recognises the network by the topic, checks the payload has the
shape that network publishes, and returns the decoded application payload with
the device's identity. It never does I/O and never raises anything but
:class:`EnvelopeError`, whose message says which field is wrong: the worker
stores the message in the dead letters with that reason.

Which network, by topic:

- ``v3/{app}[@{tenant}]/devices/{device}/up``: The Things Stack v3.
- ``application/{app}/device/{dev_eui}/event/up`` (or ChirpStack v3's older
  ``.../rx``): ChirpStack; v4 when the payload has ``deviceInfo``, v3 when it
  has ``devEUI``/``applicationID`` at the top level.
- anything else: plain JSON published by the device or a gateway
  (wmbusmeters, FIWARE Smart Data Models keyValues, Vigie's own topics).

The device id of a plain JSON message, first rule that applies:

1. a ``vigie/<commune>/<kind>/<device>`` topic: its last segment;
2. wmbusmeters output (``"_": "telegram"``, or ``meter`` and ``name``): ``name``;
3. ``deviceId``, then ``device_id``;
4. ``id`` as a whole (a FIWARE ``urn:ngsi-ld:...`` entity id).

wmbusmeters' meter id (``id``) is kept in ``tags["meter_id"]``; a FIWARE entity
id that is not the device id is kept in ``tags["entity_id"]``.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import json
import math
import re
from datetime import UTC, datetime
from typing import Any

from core.signals import Location, Uplink

MAX_BYTES = 64 * 1024
_MAX_ID_LENGTH = 200

_TTN_TOPIC = re.compile(r"^v3/[^/]+/devices/[^/]+/up$")
_CHIRPSTACK_TOPIC = re.compile(r"^application/[^/]+/device/[^/]+/(?:event/up|rx)$")
_EXTRA_FRACTION = re.compile(r"(\.\d{6})\d+")
_HEX_EUI = re.compile(r"^[0-9a-fA-F]{16}$")
# The Things Stack lists a device's locations by source; the device's own
# fix is the freshest, the one typed in the console the fallback.
_TTN_LOCATION_ORDER = ("frm-payload", "lora-rss", "user")


class EnvelopeError(ValueError):
    """A message that cannot become an :class:`Uplink`; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def describe_value(value: Any) -> str:
    """A JSON value as an error message shows it: ``451``, ``'a lot'``, ``a list``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def parse_timestamp(value: Any, field: str) -> datetime:
    """A timestamp (ISO 8601 text or Unix seconds/milliseconds) as an aware UTC datetime.

    Text without an offset is taken as UTC; digits beyond microseconds (The
    Things Stack sends nanoseconds) are dropped. Raises ``ValueError`` naming
    ``field``.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"{field}: expected a timestamp, got {describe_value(value)}")
    try:
        if isinstance(value, str):
            text = value.strip()
            if "." in text:  # no dot, no fraction to cut: the search is skipped
                extra = _EXTRA_FRACTION.search(text)
                if extra is not None:
                    text = text[: extra.end(1)] + text[extra.end() :]
            moment = datetime.fromisoformat(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return moment.astimezone(UTC)
        seconds = value / 1000 if abs(value) >= 1e11 else value
        return datetime.fromtimestamp(seconds, UTC)
    except (ValueError, OverflowError, OSError):
        raise ValueError(
            f"{field}: {describe_value(value)} is not an ISO 8601 timestamp or a Unix time"
        ) from None


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def unwrap(topic: str, raw: bytes, received_at: datetime, max_bytes: int = MAX_BYTES) -> Uplink:
    """The :class:`Uplink` inside one MQTT message, or :class:`EnvelopeError`.

    ``received_at`` is when the broker delivered the message; it is used when
    the envelope carries no time of its own. ``message_id`` is the network's
    id for deduplication (None for plain JSON: hash the topic and bytes).
    """
    message = _parse_object(raw, max_bytes)
    received_at = as_utc(received_at)
    try:
        if _TTN_TOPIC.match(topic):
            return _things_stack(topic, message, received_at)
        if _CHIRPSTACK_TOPIC.match(topic):
            if "deviceInfo" in message:
                return _chirpstack_v4(topic, message, received_at)
            if "devEUI" in message or "applicationID" in message:
                return _chirpstack_v3(topic, message, received_at)
            raise EnvelopeError(
                "deviceInfo: missing; expected a ChirpStack v4 event (deviceInfo) "
                "or a ChirpStack v3 event (devEUI)"
            )
        return _plain(topic, message, received_at)
    except EnvelopeError:
        raise
    except ValueError as exc:  # field checks below raise ValueError naming the field
        raise EnvelopeError(str(exc)) from exc


# --- Bytes to a JSON object --------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


# One decoder for every message: ``json.loads`` with an argument builds one per call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _loads(text: str) -> Any:
    """``json.loads`` that turns every failure into ValueError with a short reason."""
    try:
        if text.startswith("\ufeff"):  # as json.loads says it
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        return _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _parse_object(raw: bytes | bytearray | memoryview | str, max_bytes: int) -> dict[str, Any]:
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    if len(data) > max_bytes:
        raise EnvelopeError(f"message is {len(data)} bytes, more than the {max_bytes} allowed")
    if not data or (data[:1].isspace() and not data.strip()):
        raise EnvelopeError("message is empty")
    try:
        # As the utf-8-sig codec does (an error's position counts from after the
        # BOM), without its Python-level wrapper.
        text = (data[3:] if data[:3] == codecs.BOM_UTF8 else data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EnvelopeError(f"message is not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    try:
        message = _loads(text)
    except ValueError as exc:
        raise EnvelopeError(f"message is not valid JSON: {exc}") from None
    if not isinstance(message, dict):
        raise EnvelopeError(f"message is {describe_value(message)}, expected a JSON object")
    return message


# --- Field checks --------------------------------------------------------------


def _object(parent: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    value = parent.get(key)
    if value is None:
        raise ValueError(f"{path}: missing")
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected an object, got {describe_value(value)}")
    return value


def _identifier(parent: dict[str, Any], key: str, path: str) -> str:
    value = parent.get(key)
    if value is None:
        raise ValueError(f"{path}: missing")
    if not isinstance(value, str):
        raise ValueError(f"{path}: expected a string, got {describe_value(value)}")
    value = value.strip()
    if not value:
        raise ValueError(f"{path}: empty")
    if len(value) > _MAX_ID_LENGTH:
        raise ValueError(f"{path}: longer than {_MAX_ID_LENGTH} characters")
    return value


def _optional_text(parent: dict[str, Any], key: str, path: str) -> str | None:
    value = parent.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{path}: expected a string, got {describe_value(value)}")
    return value


def _counter(parent: dict[str, Any], key: str, path: str) -> int:
    # The Things Stack leaves out zero values, f_cnt 0 included.
    value = parent.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{path}: expected an integer, got {describe_value(value)}")
    return value


def _tags(value: Any, path: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected an object, got {describe_value(value)}")
    tags = {}
    for key, item in value.items():
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise ValueError(f"{path}.{key}: expected a string, got {describe_value(item)}")
        tags[key] = item if isinstance(item, str) else str(item)
    return tags


def _decoded(value: Any, path: str, missing: str) -> dict[str, Any]:
    if value is None:
        raise ValueError(f"{path}: {missing}")
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected an object, got {describe_value(value)}")
    return value


def _eui(value: Any, path: str) -> str:
    """A DevEUI as lowercase hex; ChirpStack v3's protobuf JSON sends it in base64."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{path}: expected a DevEUI string, got {describe_value(value)}")
    if _HEX_EUI.match(value):
        return value.lower()
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if len(decoded) != 8:
        raise ValueError(f"{path}: {describe_value(value)} is not a DevEUI (16 hex digits)")
    return decoded.hex()


def _coordinate(value: Any, limit: float) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) and -limit <= value <= limit else None


def _point(latitude: Any, longitude: Any) -> Location | None:
    lat, lon = _coordinate(latitude, 90), _coordinate(longitude, 180)
    if lat is None or lon is None:
        return None
    return Location(latitude=lat, longitude=lon)


# Locations are a convenience (the registry knows where a device is): one
# that cannot be read is left out rather than losing the message.


def _things_stack_location(uplink_message: dict[str, Any]) -> Location:
    locations = uplink_message.get("locations")
    if not isinstance(locations, dict):
        return Location()
    names = [n for n in _TTN_LOCATION_ORDER if n in locations]
    names += [n for n in locations if n not in _TTN_LOCATION_ORDER]
    for name in names:
        entry = locations[name]
        if isinstance(entry, dict):
            point = _point(entry.get("latitude"), entry.get("longitude"))
            if point is not None:
                return point
    return Location()


def _geojson_location(message: dict[str, Any]) -> Location:
    geometry = message.get("location")
    point = None
    if isinstance(geometry, dict) and geometry.get("type") == "Point":
        coordinates = geometry.get("coordinates")
        if isinstance(coordinates, list) and len(coordinates) >= 2:
            point = _point(coordinates[1], coordinates[0])
    address = _address_text(message.get("address"))
    if point is None:
        return Location(address=address)
    return Location(latitude=point.latitude, longitude=point.longitude, address=address)


def _address_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, dict):  # schema.org PostalAddress, as FIWARE models use
        parts = [value.get("streetAddress"), value.get("addressLocality")]
        text = ", ".join(p.strip() for p in parts if isinstance(p, str) and p.strip())
        return text or None
    return None


# --- Networks ------------------------------------------------------------------


def _things_stack(topic: str, message: dict[str, Any], received_at: datetime) -> Uplink:
    ids = _object(message, "end_device_ids", "end_device_ids")
    device_id = _identifier(ids, "device_id", "end_device_ids.device_id")
    dev_eui = _optional_text(ids, "dev_eui", "end_device_ids.dev_eui")
    up = _object(message, "uplink_message", "uplink_message")
    payload = _decoded(
        up.get("decoded_payload"),
        "uplink_message.decoded_payload",
        "no decoded payload; configure a payload formatter in The Things Stack",
    )
    if up.get("received_at") is not None:
        received_at = parse_timestamp(up["received_at"], "uplink_message.received_at")
    elif message.get("received_at") is not None:
        received_at = parse_timestamp(message["received_at"], "received_at")
    f_cnt = _counter(up, "f_cnt", "uplink_message.f_cnt")
    correlation_ids = message.get("correlation_ids", [])
    if not isinstance(correlation_ids, list):
        raise ValueError(f"correlation_ids: expected a list, got {describe_value(correlation_ids)}")
    message_id = next(
        (c for c in correlation_ids if isinstance(c, str) and c.startswith("as:up:")),
        f"{device_id}:{f_cnt}:{received_at.isoformat()}",
    )
    return Uplink(
        topic=topic,
        payload=payload,
        received_at=received_at,
        device_id=device_id,
        dev_eui=dev_eui.lower() if dev_eui else None,
        network="ttn-v3",
        message_id=message_id,
        location=_things_stack_location(up),
    )


_CHIRPSTACK_NO_CODEC = "no decoded payload; configure a codec in ChirpStack"


def _chirpstack_v4(topic: str, message: dict[str, Any], received_at: datetime) -> Uplink:
    info = _object(message, "deviceInfo", "deviceInfo")
    device_id = _identifier(info, "deviceName", "deviceInfo.deviceName")
    dev_eui = _eui(info.get("devEui"), "deviceInfo.devEui")
    payload = _decoded(message.get("object"), "object", _CHIRPSTACK_NO_CODEC)
    if message.get("time") is not None:
        received_at = parse_timestamp(message["time"], "time")
    message_id = _optional_text(message, "deduplicationId", "deduplicationId")
    if not message_id:
        f_cnt = _counter(message, "fCnt", "fCnt")
        message_id = f"{dev_eui}:{f_cnt}:{received_at.isoformat()}"
    return Uplink(
        topic=topic,
        payload=payload,
        received_at=received_at,
        device_id=device_id,
        dev_eui=dev_eui,
        network="chirpstack-v4",
        message_id=message_id,
        tags=_tags(info.get("tags"), "deviceInfo.tags"),
    )


def _chirpstack_v3(topic: str, message: dict[str, Any], received_at: datetime) -> Uplink:
    dev_eui = _eui(message.get("devEUI"), "devEUI")
    device_id = _identifier(message, "deviceName", "deviceName")
    payload = message.get("object")
    if payload is None:
        object_json = message.get("objectJSON")
        if object_json is not None and not isinstance(object_json, str):
            raise ValueError(
                f"objectJSON: expected a JSON string, got {describe_value(object_json)}"
            )
        if object_json:
            try:
                payload = _loads(object_json)
            except ValueError as exc:
                raise ValueError(f"objectJSON: not valid JSON ({exc})") from None
            if not isinstance(payload, dict):
                raise ValueError(
                    f"objectJSON: expected a JSON object, got {describe_value(payload)}"
                )
    payload = _decoded(payload, "object", _CHIRPSTACK_NO_CODEC)
    f_cnt = _counter(message, "fCnt", "fCnt")
    published = _v3_publication_time(message)
    if published is not None:
        received_at = published
    # fCnt restarts when a device rejoins: the publication time, when there
    # is one, keeps two uplinks with the same counter apart.
    message_id = f"{dev_eui}:{f_cnt}" + (f":{published.isoformat()}" if published else "")
    return Uplink(
        topic=topic,
        payload=payload,
        received_at=received_at,
        device_id=device_id,
        dev_eui=dev_eui,
        network="chirpstack-v3",
        message_id=message_id,
        tags=_tags(message.get("tags"), "tags"),
    )


def _v3_publication_time(message: dict[str, Any]) -> datetime | None:
    if message.get("publishedAt") is not None:
        return parse_timestamp(message["publishedAt"], "publishedAt")
    rx_info = message.get("rxInfo")
    if isinstance(rx_info, list) and rx_info and isinstance(rx_info[0], dict):
        if rx_info[0].get("time") is not None:
            return parse_timestamp(rx_info[0]["time"], "rxInfo[0].time")
    return None


def _is_wmbusmeters(message: dict[str, Any]) -> bool:
    return message.get("_") == "telegram" or ("meter" in message and "name" in message)


def _plain(topic: str, message: dict[str, Any], received_at: datetime) -> Uplink:
    parts = topic.split("/")
    wmbus = _is_wmbusmeters(message)
    if len(parts) == 4 and parts[0] == "vigie" and parts[3].strip():
        device_id = parts[3].strip()
    elif wmbus:
        device_id = _identifier(message, "name", "name")
    elif "deviceId" in message:
        device_id = _identifier(message, "deviceId", "deviceId")
    elif "device_id" in message:
        device_id = _identifier(message, "device_id", "device_id")
    elif "id" in message:
        device_id = _identifier(message, "id", "id")
    else:
        raise ValueError(
            "device_id: none found; publish on vigie/<commune>/<kind>/<device> or include "
            "deviceId, device_id, name (wmbusmeters) or id (FIWARE)"
        )
    tags: dict[str, str] = {}
    entity_id = message.get("id")
    if wmbus and isinstance(entity_id, str | int) and not isinstance(entity_id, bool):
        tags["meter_id"] = str(entity_id)
    elif isinstance(entity_id, str) and entity_id != device_id:
        tags["entity_id"] = entity_id
    return Uplink(
        topic=topic,
        payload=message,
        received_at=received_at,
        device_id=device_id,
        network="plain",
        tags=tags,
        location=_geojson_location(message),
    )
