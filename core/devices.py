"""The device registry: which sensor is where, of what kind, in which commune.

Ingestion finds a message's device by ``device_id`` (the network server's
device name) or else by ``dev_eui`` (hex, any case) through
:class:`DeviceRegistry`, which keeps an in-process cache per database: an
import through this process clears it at once; one through another process
is seen after ``settings.ingest.device_cache_seconds``.

Devices come from CSV files with the columns ``device_id, dev_eui, kind,
commune, latitude, longitude, address, asset, tags`` (tags as ``k=v;k=v`` or
a JSON object), or from a GeoJSON FeatureCollection with those as
properties (a Point geometry gives the coordinates). An import checks every
row first and stores nothing if one is wrong; each problem reads
``FILE:line N: field: reason`` (``FILE:feature N: ...`` for GeoJSON).
Devices are matched by ``device_id``: a known one is updated, keeping the
connector's state and when it was last heard.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import threading
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, Row, event, or_, select
from sqlalchemy.orm import Session

from core.connectors import SensorConnector
from core.db.lists import among
from core.db.sensor_models import Device
from core.db.types import utcnow
from core.runtime import Runtime
from core.signals import DeviceInfo

COLUMNS = (
    "device_id",
    "dev_eui",
    "kind",
    "commune",
    "latitude",
    "longitude",
    "address",
    "asset",
    "tags",
)
REQUIRED = ("device_id", "kind", "commune")
# The kinds of the connectors shipped with Vigie; installed connectors may add others.
STANDARD_KINDS = ("water_meter", "streetlight", "parking_spot")
_LIMITS = {"device_id": 200, "address": 300, "asset": 128}
_EUI_SEPARATORS = re.compile(r"[\s:-]")
_HEX16 = re.compile(r"^[0-9a-f]{16}$")
_CHUNK = 500  # ids per IN (...) query


# --- Lookups ---------------------------------------------------------------------


@dataclass(frozen=True)
class RegisteredDevice:
    """A registry row as ingestion uses it: its primary key and what connectors see."""

    pk: int
    info: DeviceInfo


class _Cache:
    """Positive and negative lookups of one database, each trusted for ``ttl`` seconds."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_id: dict[str, tuple[RegisteredDevice | None, float]] = {}
        self.by_eui: dict[str, tuple[RegisteredDevice | None, float]] = {}

    def clear(self) -> None:
        with self.lock:
            self.by_id.clear()
            self.by_eui.clear()


_caches: dict[str, _Cache] = {}
_caches_lock = threading.Lock()


def _cache_key(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _cache_for(engine: Engine) -> _Cache:
    key = _cache_key(engine)
    with _caches_lock:
        return _caches.setdefault(key, _Cache())


def invalidate_cache(engine: Engine) -> None:
    """Forget every cached lookup of this database (after an import)."""
    _cache_for(engine).clear()


def normalize_eui(value: str) -> str | None:
    """16 lowercase hex digits (separators dropped), or None if ``value`` is not a DevEUI."""
    text = _EUI_SEPARATORS.sub("", value).lower()
    return text if _HEX16.match(text) else None


# What a lookup reads of a device: not its state, read with a lock once per batch.
LOOKUP_COLUMNS = (
    Device.id,
    Device.device_id,
    Device.kind,
    Device.commune,
    Device.dev_eui,
    Device.latitude,
    Device.longitude,
    Device.address,
    Device.asset,
    Device.tags,
)


def as_registered(row: Device | Row[Any]) -> RegisteredDevice:
    """A registry row (a Device, or a row of :data:`LOOKUP_COLUMNS`) as ingestion uses it."""
    return RegisteredDevice(
        pk=row.id,
        info=DeviceInfo(
            device_id=row.device_id,
            kind=row.kind,
            commune=row.commune,
            dev_eui=row.dev_eui,
            latitude=row.latitude,
            longitude=row.longitude,
            address=row.address,
            asset=row.asset,
            tags={str(k): str(v) for k, v in (row.tags or {}).items()},
        ),
    )


class DeviceRegistry:
    """Finds devices by ``device_id`` or ``dev_eui``, through the process's cache."""

    def __init__(self, runtime: Runtime) -> None:
        self.ttl = runtime.settings.ingest.device_cache_seconds
        self._cache = _cache_for(runtime.engine)

    def prefetch(
        self, session: Session, device_ids: Iterable[str], dev_euis: Iterable[str]
    ) -> None:
        """Load, in as few queries as possible, the lookups the cache does not hold."""
        now = time.monotonic()
        cache = self._cache
        by_id, by_eui = cache.by_id, cache.by_eui
        lowered = {e.lower() for e in dev_euis}
        with cache.lock:
            # Stale: never looked up, or expired. Inline, as this runs for every message.
            ids = {i for i in device_ids if (entry := by_id.get(i)) is None or entry[1] <= now}
            euis = {e for e in lowered if (entry := by_eui.get(e)) is None or entry[1] <= now}
        if not ids and not euis:
            return
        found: list[RegisteredDevice] = []
        id_list, eui_list = sorted(ids), sorted(euis)
        for start in range(0, max(len(id_list), len(eui_list)), _CHUNK):
            id_part, eui_part = id_list[start : start + _CHUNK], eui_list[start : start + _CHUNK]
            clauses = []
            if id_part:
                clauses.append(among(session, Device.device_id, id_part))
            if eui_part:
                clauses.append(among(session, Device.dev_eui, eui_part))
            query = select(*LOOKUP_COLUMNS).where(or_(*clauses))
            found += [as_registered(row) for row in session.execute(query)]
        expires = now + self.ttl
        with cache.lock:
            for key in ids:
                cache.by_id[key] = (None, expires)
            for key in euis:
                cache.by_eui[key] = (None, expires)
            for device in found:
                cache.by_id[device.info.device_id] = (device, expires)
                if device.info.dev_eui:
                    cache.by_eui[device.info.dev_eui] = (device, expires)

    def find(
        self, session: Session, device_id: str | None, dev_eui: str | None
    ) -> RegisteredDevice | None:
        """The device named ``device_id``, else the one with ``dev_eui``; None if unknown."""
        eui = dev_eui.lower() if dev_eui else None
        now = time.monotonic()
        cache = self._cache
        by_id = cache.by_id.get(device_id) if device_id else None
        by_eui = cache.by_eui.get(eui) if eui else None
        # Stale (never looked up, or expired): ask the database.
        if (device_id and (by_id is None or by_id[1] <= now)) or (
            eui and (by_eui is None or by_eui[1] <= now)
        ):
            self.prefetch(session, [device_id] if device_id else [], [eui] if eui else [])
            by_id = cache.by_id.get(device_id) if device_id else None
            by_eui = cache.by_eui.get(eui) if eui else None
        if by_id is not None and by_id[0] is not None:
            return by_id[0]
        if by_eui is not None and by_eui[0] is not None:
            return by_eui[0]
        return None


# --- Import ----------------------------------------------------------------------


class DeviceImportError(ValueError):
    """A device file with problems; ``problems`` lists each as ``FILE:line N: field: reason``."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))

    def parts(self) -> list[tuple[str, str, str]]:
        """Each problem as (where, field, reason); field is "" for the whole file."""
        found = []
        for problem in self.problems:
            where, _, rest = problem.partition(": ")
            field, sep, reason = rest.partition(": ")
            found.append((where, field, reason) if sep else (where, "", rest))
        return found


@dataclass
class DeviceRow:
    """One device as read from a file, checked."""

    device_id: str
    kind: str
    commune: str
    dev_eui: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    address: str | None = None
    asset: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    where: str = ""  # "FILE:line N", for messages


@dataclass(frozen=True)
class ImportResult:
    created: int
    updated: int

    @property
    def total(self) -> int:
        return self.created + self.updated


def known_kinds(runtime: Runtime) -> tuple[str, ...]:
    """Device kinds of the installed sensor connectors, and Vigie's standard ones."""
    kinds = [c.device_kind for c in runtime.connectors.values() if isinstance(c, SensorConnector)]
    return tuple(dict.fromkeys([*STANDARD_KINDS, *kinds]))


def is_geojson(name: str, text: str) -> bool:
    lowered = name.lower()
    if lowered.endswith(".csv"):
        return False
    if lowered.endswith((".geojson", ".json")):
        return True
    return text.lstrip().startswith("{")


def parse_devices(
    name: str,
    data: bytes | str,
    communes: Collection[str],
    kinds: Collection[str],
    allowed: Collection[str] | None = None,
) -> list[DeviceRow]:
    """Every device in a CSV or GeoJSON file, or DeviceImportError listing every problem.

    ``allowed``: the communes the importer may register devices in (None: all).
    """
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DeviceImportError([f"{name}: not UTF-8 text (byte {exc.start})"]) from None
    else:
        text = data.removeprefix("\ufeff")
    reader = _GeoJsonReader(name, text) if is_geojson(name, text) else _CsvReader(name, text)
    problems: list[str] = []
    rows: list[DeviceRow] = []
    for where, values in reader.records(problems):
        row = _check_row(where, values, communes, kinds, problems, allowed)
        if row is not None:
            rows.append(row)
    problems += _duplicates(rows)
    if not rows and not problems:
        problems.append(f"{name}: no devices")
    if problems:
        raise DeviceImportError(problems)
    return rows


class _CsvReader:
    def __init__(self, name: str, text: str) -> None:
        self.name, self.text = name, text

    def records(self, problems: list[str]) -> Iterable[tuple[str, dict[str, Any]]]:
        reader = csv.reader(io.StringIO(self.text))
        try:
            header = next(reader, None)
        except csv.Error as exc:
            problems.append(f"{self.name}:line 1: {exc}")
            return
        if header is None:
            return
        header = [h.strip().lower() for h in header]
        unknown = [h for h in header if h not in COLUMNS]
        missing = [c for c in REQUIRED if c not in header]
        for column in unknown:
            problems.append(
                f"{self.name}:line 1: {column or '(empty)'}: unknown column; "
                f"columns are {', '.join(COLUMNS)}"
            )
        for column in missing:
            problems.append(f"{self.name}:line 1: {column}: missing column")
        if unknown or missing:
            return
        try:
            for cells in reader:
                if not any(cell.strip() for cell in cells):
                    continue
                where = f"{self.name}:line {reader.line_num}"
                if len(cells) != len(header):
                    problems.append(
                        f"{where}: row: {len(cells)} cells, the header has {len(header)}"
                    )
                    continue
                yield where, dict(zip(header, cells, strict=True))
        except csv.Error as exc:
            problems.append(f"{self.name}:line {reader.line_num}: {exc}")


class _GeoJsonReader:
    def __init__(self, name: str, text: str) -> None:
        self.name, self.text = name, text

    def records(self, problems: list[str]) -> Iterable[tuple[str, dict[str, Any]]]:
        try:
            document = json.loads(self.text)
        except (json.JSONDecodeError, RecursionError) as exc:
            line = getattr(exc, "lineno", 1)
            problems.append(f"{self.name}:line {line}: not valid JSON ({getattr(exc, 'msg', exc)})")
            return
        if not isinstance(document, dict) or document.get("type") != "FeatureCollection":
            problems.append(f"{self.name}: type: expected a GeoJSON FeatureCollection")
            return
        features = document.get("features")
        if not isinstance(features, list):
            problems.append(f"{self.name}: features: expected a list")
            return
        for number, feature in enumerate(features, start=1):
            where = f"{self.name}:feature {number}"
            if not isinstance(feature, dict) or feature.get("type") != "Feature":
                problems.append(f"{where}: type: expected a GeoJSON Feature")
                continue
            properties = feature.get("properties") or {}
            if not isinstance(properties, dict):
                problems.append(f"{where}: properties: expected an object")
                continue
            unknown = [key for key in properties if key not in COLUMNS]
            for key in unknown:
                problems.append(
                    f"{where}: {key}: unknown property; properties are {', '.join(COLUMNS)}"
                )
            values = {key: value for key, value in properties.items() if key in COLUMNS}
            geometry = feature.get("geometry")
            if geometry is not None:
                point = _point(geometry)
                if point is None:
                    problems.append(
                        f"{where}: geometry: expected a Point with [longitude, latitude]"
                    )
                    continue
                values["longitude"], values["latitude"] = point
            if not unknown:
                yield where, values


def _point(geometry: Any) -> tuple[Any, Any] | None:
    if not isinstance(geometry, dict) or geometry.get("type") != "Point":
        return None
    coordinates = geometry.get("coordinates")
    if not isinstance(coordinates, list) or len(coordinates) < 2:
        return None
    return coordinates[0], coordinates[1]


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip()
    return text or None


def _coordinate(
    value: Any, name: str, limit: float, problems: list[str], where: str
) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value.replace(",", ".") if isinstance(value, str) else value)
    except (TypeError, ValueError):
        problems.append(f"{where}: {name}: {value!r} is not a number")
        return None
    if not math.isfinite(number) or not -limit <= number <= limit:
        problems.append(f"{where}: {name}: {value!r} is outside -{limit:g}..{limit:g}")
        return None
    return number


def parse_tags(value: Any) -> dict[str, str]:
    """``k=v;k=v`` or a JSON object (in text, or already decoded) as a dict of strings."""
    if value is None or value == "":
        return {}
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON ({exc.msg})") from None
    if isinstance(value, dict):
        tags = {}
        for key, item in value.items():
            if isinstance(item, dict | list) or item is None:
                raise ValueError(f"{key}: expected a text or a number")
            tags[str(key)] = _text(item) or ""
        return tags
    if not isinstance(value, str):
        raise ValueError("expected k=v;k=v or a JSON object")
    tags = {}
    for part in value.split(";"):
        if not part.strip():
            continue
        key, sep, item = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{part.strip()!r} is not key=value (write k=v;k=v)")
        tags[key.strip()] = item.strip()
    return tags


def _check_row(
    where: str,
    values: Mapping[str, Any],
    communes: Collection[str],
    kinds: Collection[str],
    problems: list[str],
    allowed: Collection[str] | None = None,
) -> DeviceRow | None:
    found_before = len(problems)
    texts = {
        name: _text(values.get(name))
        for name in ("device_id", "dev_eui", "kind", "commune", "address", "asset")
    }
    for name in REQUIRED:
        if texts[name] is None:
            problems.append(f"{where}: {name}: required")
    for name, limit in _LIMITS.items():
        if texts[name] is not None and len(texts[name]) > limit:
            problems.append(f"{where}: {name}: longer than {limit} characters")
    kind, commune = texts["kind"], texts["commune"]
    if kind is not None and kind not in kinds:
        problems.append(f"{where}: kind: unknown kind {kind!r}; kinds: {', '.join(kinds)}")
    if commune is not None and commune not in communes:
        problems.append(
            f"{where}: commune: unknown commune {commune!r}; communes: {', '.join(communes)}"
        )
    elif commune is not None and allowed is not None and commune not in allowed:
        problems.append(f"{where}: commune: your token does not cover {commune}")
    dev_eui = None
    if texts["dev_eui"] is not None:
        dev_eui = normalize_eui(texts["dev_eui"])
        if dev_eui is None:
            problems.append(f"{where}: dev_eui: {texts['dev_eui']!r} is not 16 hex digits")
    latitude = _coordinate(values.get("latitude"), "latitude", 90, problems, where)
    longitude = _coordinate(values.get("longitude"), "longitude", 180, problems, where)
    given = {name: _text(values.get(name)) is not None for name in ("latitude", "longitude")}
    if given["latitude"] != given["longitude"]:
        missing = "longitude" if given["latitude"] else "latitude"
        problems.append(f"{where}: {missing}: required with the other coordinate")
    try:
        tags = parse_tags(values.get("tags"))
    except ValueError as exc:
        problems.append(f"{where}: tags: {exc}")
        tags = {}
    if len(problems) > found_before:
        return None
    return DeviceRow(
        device_id=texts["device_id"],
        kind=kind,
        commune=commune,
        dev_eui=dev_eui,
        latitude=latitude,
        longitude=longitude,
        address=texts["address"],
        asset=texts["asset"],
        tags=tags,
        where=where,
    )


def _duplicates(rows: list[DeviceRow]) -> list[str]:
    problems = []
    seen_ids: dict[str, str] = {}
    seen_euis: dict[str, str] = {}
    for row in rows:
        if row.device_id in seen_ids:
            problems.append(
                f"{row.where}: device_id: {row.device_id!r} is also at {seen_ids[row.device_id]}"
            )
        seen_ids.setdefault(row.device_id, row.where)
        if row.dev_eui:
            if row.dev_eui in seen_euis:
                problems.append(
                    f"{row.where}: dev_eui: {row.dev_eui} is also at {seen_euis[row.dev_eui]}"
                )
            seen_euis.setdefault(row.dev_eui, row.where)
    return problems


def _chunks(items: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def import_devices(
    runtime: Runtime,
    session: Session,
    name: str,
    data: bytes | str,
    allowed: Collection[str] | None = None,
) -> ImportResult:
    """Check ``data`` (CSV or GeoJSON, named ``name`` in messages) and upsert its devices.

    Raises DeviceImportError listing every problem, having stored nothing.
    ``allowed``: the communes the importer may register devices in (None: all).
    The caller commits; the process's registry cache is cleared on commit.
    """
    rows = parse_devices(name, data, list(runtime.area.communes), known_kinds(runtime), allowed)
    existing: dict[str, Device] = {}
    for part in _chunks([row.device_id for row in rows]):
        for device in session.scalars(select(Device).where(Device.device_id.in_(part))):
            existing[device.device_id] = device
    owners: dict[str, str] = {}
    for part in _chunks([row.dev_eui for row in rows if row.dev_eui]):
        for device_id, dev_eui in session.execute(
            select(Device.device_id, Device.dev_eui).where(Device.dev_eui.in_(part))
        ):
            owners[dev_eui] = device_id
    # A DevEUI may move to another device only if its holder is in the file too
    # (and so gets another one: the file's DevEUIs are unique).
    in_file = {row.device_id for row in rows}
    problems = [
        f"{row.where}: dev_eui: {row.dev_eui} is registered to device {owners[row.dev_eui]!r}"
        for row in rows
        if row.dev_eui and owners.get(row.dev_eui, row.device_id) not in in_file
    ]
    if problems:
        raise DeviceImportError(problems)
    now = utcnow()
    created = updated = 0
    # Free dev_euis moving between devices of this file before any is given again.
    for row in rows:
        device = existing.get(row.device_id)
        if device is not None and device.dev_eui and device.dev_eui != row.dev_eui:
            device.dev_eui = None
    session.flush()
    for row in rows:
        fields = dict(
            dev_eui=row.dev_eui,
            kind=row.kind,
            commune=row.commune,
            latitude=row.latitude,
            longitude=row.longitude,
            address=row.address,
            asset=row.asset,
            tags=row.tags,
        )
        device = existing.get(row.device_id)
        if device is None:
            session.add(
                Device(device_id=row.device_id, state={}, created_at=now, updated_at=now, **fields)
            )
            created += 1
        else:
            for key, value in fields.items():
                setattr(device, key, value)
            device.updated_at = now
            updated += 1
    session.flush()
    invalidate_cache(runtime.engine)
    event.listen(session, "after_commit", lambda _s: invalidate_cache(runtime.engine), once=True)
    return ImportResult(created=created, updated=updated)
