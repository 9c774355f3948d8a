"""Realistic sensor traffic for a demo, a test or a benchmark: ``vigie simulate``.

:class:`Simulation` makes devices of each kind (water meters, street lights,
parking bays) and the messages they would publish through a LoRaWAN network
server (The Things Stack v3, ChirpStack v4 and v3) or straight to the broker
(wmbusmeters): readings, alerts and recoveries in the vocabularies the
connectors read (Axioma Qalcosonic booleans, Kamstrup status words, Diehl
IZAR ``current_alarms``, FIWARE Streetlight and ParkingSpot ``status``, TALQ
events), junk (truncated JSON, wrong types, bytes that are not text), and a
storm: many lamps behind one lighting cabinet losing power at once.

The same seed gives the same devices and the same sequence of messages (only
the timestamps, taken from the clock, differ). :meth:`Simulation.write_registry`
writes the devices as a CSV that ``vigie devices import`` takes.

:func:`publish` sends a simulation to a broker at a given rate.
"""

from __future__ import annotations

import csv
import json
import math
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

KINDS = ("water_meter", "streetlight", "parking_spot")
FORMATS = ("ttn", "chirpstack", "mixed")
REGISTRY_COLUMNS = (
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
# Where devices are put when the commune's centre is not given: Clermont-Ferrand.
DEFAULT_CENTER = (45.7772, 3.0870)
STORM_CABINET = "ARM-SIM-STORM"
STORM_CIRCUIT = "C1"

_STREETS = (
    "place de Jaude",
    "rue Blatin",
    "avenue des États-Unis",
    "boulevard Lafayette",
    "rue Montlosier",
    "avenue Julien",
    "rue du Port",
    "boulevard Gergovia",
    "rue Fontgiève",
    "avenue de la République",
    "rue Ballainvilliers",
    "boulevard Trudaine",
)
_VENDORS = {
    "water_meter": ("axioma", "kamstrup", "izar"),
    "streetlight": ("fiware", "talq"),
    "parking_spot": ("fiware", "talq"),
}
# Conditions each vendor's vocabulary can say, and how it says them.
_AXIOMA_FLAGS = {
    "leak": "leakage",
    "burst": "burst",
    "backflow": "backflow",
    "dry": "pipe_empty",
    "low_battery": "low_battery",
}
_KAMSTRUP_WORDS = {
    "leak": "LEAK",
    "burst": "BURST",
    "backflow": "REVERSE",
    "dry": "DRY",
    "tamper": "TAMPER",
    "low_battery": "LOW_BATTERY",
}
_IZAR_ALARMS = {
    "leak": "leakage",
    "backflow": "back_flow",
    "tamper": "meter_blocked",
}
_STREETLIGHT_STATUS = {
    "lamp_failure": "defectiveLamp",
    "broken_lantern": "brokenLantern",
    "column_damage": "columnIssue",
}
_TALQ_LIGHTING = {
    "lamp_failure": "lampFailure",
    "power_loss": "supplyLoss",
    "burning_by_day": "lampUnexpectedOn",
    "communication_lost": "communicationFailure",
}
_TALQ_PARKING = {
    "forbidden_parking": "forbiddenParkingDetected",
}
_CONDITIONS = {
    ("water_meter", "axioma"): tuple(_AXIOMA_FLAGS),
    ("water_meter", "kamstrup"): tuple(_KAMSTRUP_WORDS),
    ("water_meter", "izar"): tuple(_IZAR_ALARMS),
    ("streetlight", "fiware"): tuple(_STREETLIGHT_STATUS),
    ("streetlight", "talq"): tuple(_TALQ_LIGHTING),
    ("parking_spot", "fiware"): ("sensor_fault",),
    ("parking_spot", "talq"): tuple(_TALQ_PARKING),
}
_APPLICATIONS = {"water_meter": "eau", "streetlight": "eclairage", "parking_spot": "stationnement"}


@dataclass(frozen=True)
class SimDevice:
    device_id: str
    dev_eui: str
    kind: str
    commune: str
    latitude: float
    longitude: float
    address: str
    asset: str
    vendor: str
    network: str  # "ttn", "chirpstack-v4", "chirpstack-v3", "wmbus"
    tags: dict[str, str] = field(default_factory=dict)

    def registry_row(self) -> dict[str, str]:
        return {
            "device_id": self.device_id,
            "dev_eui": self.dev_eui,
            "kind": self.kind,
            "commune": self.commune,
            "latitude": f"{self.latitude:.6f}",
            "longitude": f"{self.longitude:.6f}",
            "address": self.address,
            "asset": self.asset,
            "tags": ";".join(f"{k}={v}" for k, v in sorted(self.tags.items())),
        }


@dataclass(frozen=True)
class SimMessage:
    """One message and what it is meant to be, for tests and the benchmark."""

    topic: str
    payload: bytes
    # "reading", "alert", "recovery", "junk" or "storm" (a storm lamp's alert)
    purpose: str
    device_id: str | None = None
    kind: str | None = None
    condition: str | None = None


@dataclass
class _DeviceState:
    f_cnt: int = 0
    active: str | None = None  # the condition raised and not yet recovered
    volume: float = 0.0
    energy: float = 0.0
    occupied: bool = False


class Simulation:
    """Devices and their traffic, the same for the same seed."""

    def __init__(
        self,
        devices: int = 50,
        format: str = "mixed",
        seed: int = 0,
        communes: Sequence[str] | Mapping[str, Sequence[str]] = ("clermont-ferrand",),
        centers: dict[str, tuple[float, float]] | None = None,
        alert_ratio: float = 0.05,
        junk: float = 0.01,
        storm: int = 0,
        run_id: str | None = None,
        traffic_seed: int | None = None,
    ) -> None:
        if format not in FORMATS:
            raise ValueError(f"format: expected one of {', '.join(FORMATS)}, got {format!r}")
        # Communes of each kind's devices (a list: the same for every kind).
        if isinstance(communes, Mapping):
            by_kind = {kind: list(communes.get(kind) or ()) for kind in KINDS}
        else:
            by_kind = {kind: list(communes) for kind in KINDS}
        if not all(by_kind.values()):
            raise ValueError("communes: give at least one commune for each kind of device")
        if not 0 <= junk < 1 or not 0 <= alert_ratio <= 1:
            raise ValueError(
                "junk and alert_ratio are fractions: 0 <= junk < 1, 0 <= alert_ratio <= 1"
            )
        self.format = format
        self.seed = seed
        self.alert_ratio = alert_ratio
        self.junk = junk
        self.random = random.Random(seed)
        # Application ids (hence topics) of this run: tests subscribe to exactly them.
        self.run_id = run_id or "sim"
        self.applications = {kind: f"{_APPLICATIONS[kind]}-{self.run_id}" for kind in KINDS}
        self.chirpstack_ids = {
            kind: str(
                uuid.UUID(int=random.Random(f"{self.run_id}:{kind}").getrandbits(128), version=4)
            )
            for kind in KINDS
        }
        self._centers = centers or {}
        self._communes = by_kind
        self.devices = [self._make_device(kind, n) for kind in KINDS for n in range(1, devices + 1)]
        self.storm_devices = [self._storm_device(n) for n in range(1, storm + 1)]
        self._state = {d.device_id: _DeviceState() for d in self.devices + self.storm_devices}
        for device in self.devices + self.storm_devices:
            state = self._state[device.device_id]
            state.volume = round(self.random.uniform(20, 2000), 3)
            state.energy = round(self.random.uniform(100, 5000), 2)
        self._serial = 0
        self.counts: Counter[str] = Counter()
        # Another traffic from the same devices (the benchmark's second phase).
        if traffic_seed is not None:
            self.random = random.Random(f"traffic:{traffic_seed}")

    # -- devices ---------------------------------------------------------------

    def _place(self, commune: str) -> tuple[float, float, str]:
        lat, lon = self._centers.get(commune, DEFAULT_CENTER)
        radius = 0.015
        lat += self.random.uniform(-radius, radius)
        lon += self.random.uniform(-radius, radius) / math.cos(math.radians(lat))
        address = f"{self.random.randint(1, 120)} {self.random.choice(_STREETS)}"
        return round(lat, 6), round(lon, 6), address

    def _network(self, kind: str) -> str:
        if self.format == "ttn":
            return "ttn"
        if self.format == "chirpstack":
            return "chirpstack-v4"
        networks = ["ttn", "chirpstack-v4", "chirpstack-v3"]
        if kind == "water_meter":
            networks.append("wmbus")
        return self.random.choice(networks)

    def _make_device(self, kind: str, n: int) -> SimDevice:
        communes = self._communes[kind]
        commune = communes[(n - 1) % len(communes)]
        lat, lon, address = self._place(commune)
        prefix = {"water_meter": "WM", "streetlight": "SL", "parking_spot": "PK"}[kind]
        vendor = self.random.choice(_VENDORS[kind])
        network = self._network(kind)
        if network == "wmbus":
            vendor = self.random.choice(("kamstrup", "izar"))
        tags: dict[str, str] = {"source": "simulation"}
        if kind == "water_meter":
            asset = f"PDL-SIM-{n:05d}"
        elif kind == "streetlight":
            cabinet = (n - 1) // 25 + 1
            asset = f"ARM-SIM-{cabinet:03d}/C{(n - 1) % 3 + 1}"
        else:
            asset = f"BAY-SIM-{n:05d}"
            tags["zone"] = self.random.choice(("blue", "paid", "free"))
        return SimDevice(
            device_id=f"{prefix}-SIM-{n:05d}",
            dev_eui=self._eui(kind, n),
            kind=kind,
            commune=commune,
            latitude=lat,
            longitude=lon,
            address=address,
            asset=asset,
            vendor=vendor,
            network=network,
            tags=tags,
        )

    def _storm_device(self, n: int) -> SimDevice:
        commune = self._communes["streetlight"][0]
        lat, lon, address = self._place(commune)
        return SimDevice(
            device_id=f"SL-STORM-{n:05d}",
            dev_eui=self._eui("storm", n),
            kind="streetlight",
            commune=commune,
            latitude=lat,
            longitude=lon,
            address=address,
            asset=f"{STORM_CABINET}/{STORM_CIRCUIT}",
            vendor="talq",
            network="chirpstack-v4" if self.format == "chirpstack" else "ttn",
            tags={"source": "simulation", "cabinet": STORM_CABINET, "circuit": STORM_CIRCUIT},
        )

    def _eui(self, kind: str, n: int) -> str:
        code = {"water_meter": 1, "streetlight": 2, "parking_spot": 3, "storm": 4}[kind]
        return f"70b3d5{(self.seed % 256):02x}{code:02x}{n:06x}"

    def write_registry(self, target: str | Path | IO[str]) -> int:
        """The devices (storm lamps included) as CSV for ``vigie devices import``."""
        rows = [d.registry_row() for d in self.devices + self.storm_devices]
        if isinstance(target, str | Path):
            with open(target, "w", newline="", encoding="utf-8") as handle:
                return self._write_rows(handle, rows)
        return self._write_rows(target, rows)

    @staticmethod
    def _write_rows(handle: IO[str], rows: list[dict[str, str]]) -> int:
        writer = csv.DictWriter(handle, fieldnames=REGISTRY_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return len(rows)

    def topic_filters(self) -> list[str]:
        """MQTT filters matching exactly this run's messages."""
        filters = [f"v3/{app}@ttn/devices/+/up" for app in self.applications.values()]
        filters += [f"application/{app}/device/+/event/up" for app in self.chirpstack_ids.values()]
        filters.append(f"wmbus/{self.run_id}/#")
        return filters

    # -- messages --------------------------------------------------------------

    def messages(
        self, count: int, clock: Callable[[], datetime] | None = None
    ) -> Iterator[SimMessage]:
        now = clock or _utcnow
        for _ in range(count):
            yield self.next_message(now())

    def next_message(self, now: datetime | None = None) -> SimMessage:
        now = now or _utcnow()
        device = self.random.choice(self.devices)
        state = self._state[device.device_id]
        roll = self.random.random()
        if roll < self.junk:
            message = self._junk(device, now)
        elif roll < self.junk + self.alert_ratio:
            if state.active and self.random.random() < 0.5:
                message = self._recovery(device, state, now)
            else:
                message = self._alert(device, state, now)
        else:
            message = self._reading(device, state, now)
        self.counts[message.purpose] += 1
        return message

    def storm_messages(self, now: datetime | None = None) -> list[SimMessage]:
        """Every storm lamp losing power (TALQ supplyLoss) at ``now``."""
        now = now or _utcnow()
        out = []
        for device in self.storm_devices:
            state = self._state[device.device_id]
            state.active = "power_loss"
            decoded = {
                "event": "supplyLoss",
                "refStreetlightControlCabinet": STORM_CABINET,
                "circuit": STORM_CIRCUIT,
                "observedAt": _iso(now),
            }
            out.append(self._wrap(device, state, decoded, now, "storm", "power_loss"))
        self.counts["storm"] += len(out)
        return out

    def raise_all(self, kind: str | None = None, now: datetime | None = None) -> list[SimMessage]:
        """One alert from every device (of ``kind``) that has none raised yet."""
        now = now or _utcnow()
        out = []
        for device in self.devices:
            state = self._state[device.device_id]
            if (kind is None or device.kind == kind) and state.active is None:
                out.append(self._alert(device, state, now))
        self.counts["alert"] += len(out)
        return out

    def active_conditions(self) -> dict[str, str]:
        """Device id -> the condition it has raised and not recovered."""
        return {device_id: s.active for device_id, s in self._state.items() if s.active}

    def _alert(self, device: SimDevice, state: _DeviceState, now: datetime) -> SimMessage:
        if state.active is None:
            state.active = self.random.choice(_CONDITIONS[(device.kind, device.vendor)])
        decoded = self._decoded(device, state, now, event=True)
        return self._wrap(device, state, decoded, now, "alert", state.active)

    def _recovery(self, device: SimDevice, state: _DeviceState, now: datetime) -> SimMessage:
        condition, state.active = state.active, None
        decoded = self._decoded(device, state, now, cleared=condition)
        return self._wrap(device, state, decoded, now, "recovery", condition)

    def _reading(self, device: SimDevice, state: _DeviceState, now: datetime) -> SimMessage:
        decoded = self._decoded(device, state, now)
        return self._wrap(device, state, decoded, now, "reading", None)

    def _decoded(
        self,
        device: SimDevice,
        state: _DeviceState,
        now: datetime,
        event: bool = False,
        cleared: str | None = None,
    ) -> dict[str, Any]:
        """The decoded payload in the device vendor's words; stateful vocabularies
        (booleans, status words) always say the active condition."""
        kind, vendor, active = device.kind, device.vendor, state.active
        if kind == "water_meter":
            state.volume = round(state.volume + self.random.uniform(0, 0.05), 3)
            if vendor == "axioma":
                flags = {flag: active == c for c, flag in _AXIOMA_FLAGS.items()}
                return {
                    "current_volume_m3": state.volume,
                    "timestamp_utc": _iso(now, seconds=True),
                    "status": 8 if active else 0,
                    **flags,
                }
            if vendor == "kamstrup":
                word = _KAMSTRUP_WORDS.get(active or "", "OK")
                body = {
                    "media": "cold water",
                    "meter": "kamwater",
                    "total_m3": state.volume,
                    "target_m3": round(state.volume - 0.3, 3),
                    "current_status": word,
                    "status": word,
                    "timestamp": _iso(now, seconds=True),
                }
                if device.network == "wmbus":
                    body = {
                        "_": "telegram",
                        "name": device.device_id,
                        "id": device.dev_eui[-8:],
                        **body,
                    }
                return body
            alarm = _IZAR_ALARMS.get(active or "", "no_alarm")
            body = {
                "media": "water",
                "meter": "izar",
                "total_m3": state.volume,
                "current_alarms": alarm,
                "previous_alarms": "no_alarm",
                "remaining_battery_life_y": 11.5,
                "timestamp": _iso(now, seconds=True),
            }
            if device.network == "wmbus":
                body = {
                    "_": "telegram",
                    "name": device.device_id,
                    "id": device.dev_eui[-8:],
                    **body,
                }
            return body
        if kind == "streetlight":
            cabinet, _, circuit = device.asset.partition("/")
            if vendor == "fiware":
                lit = active is None
                return {
                    "type": "Streetlight",
                    "status": _STREETLIGHT_STATUS.get(active or "", "ok"),
                    "powerState": "on" if lit else "off",
                    "powerConsumption": round(self.random.uniform(30, 70), 1) if lit else 0,
                    "refStreetlightControlCabinet": cabinet,
                    "circuit": circuit,
                    "observationDateTime": _iso(now, seconds=True),
                }
            if event and active:
                return {"event": _TALQ_LIGHTING[active], "observedAt": _iso(now)}
            if cleared:
                return {"event": _TALQ_LIGHTING[cleared], "cleared": True, "observedAt": _iso(now)}
            state.energy = round(state.energy + self.random.uniform(0, 0.1), 2)
            return {
                "activePower": round(self.random.uniform(30, 70), 1),
                "activeEnergy": state.energy,
                "observedAt": _iso(now),
            }
        # parking_spot
        if vendor == "fiware":
            if active != "sensor_fault" and self.random.random() < 0.5:
                state.occupied = not state.occupied
            status = (
                "unknown"
                if active == "sensor_fault"
                else ("occupied" if state.occupied else "free")
            )
            return {"type": "ParkingSpot", "status": status, "observedAt": _iso(now, seconds=True)}
        if event and active:
            state.occupied = True
            return {"event": _TALQ_PARKING[active], "observedAt": _iso(now)}
        if cleared:
            return {"event": _TALQ_PARKING[cleared], "cleared": True, "observedAt": _iso(now)}
        state.occupied = not state.occupied
        change = "occupancyChangeToOccupied" if state.occupied else "occupancyChangeToVacant"
        return {"event": change, "observedAt": _iso(now)}

    def _wrap(
        self,
        device: SimDevice,
        state: _DeviceState,
        decoded: dict[str, Any],
        now: datetime,
        purpose: str,
        condition: str | None,
    ) -> SimMessage:
        topic, envelope = self.envelope(device, state, decoded, now)
        return SimMessage(
            topic,
            json.dumps(envelope, separators=(",", ":")).encode(),
            purpose,
            device.device_id,
            device.kind,
            condition,
        )

    def envelope(
        self, device: SimDevice, state: _DeviceState, decoded: dict[str, Any], now: datetime
    ) -> tuple[str, dict[str, Any]]:
        """Topic and message as the device's network publishes them."""
        state.f_cnt += 1
        self._serial += 1
        stamp = _iso(now)
        if device.network == "wmbus":
            return f"wmbus/{self.run_id}/{device.dev_eui[-8:]}", decoded
        if device.network == "ttn":
            app = self.applications[device.kind]
            return f"v3/{app}@ttn/devices/{device.device_id}/up", {
                "end_device_ids": {
                    "device_id": device.device_id,
                    "application_ids": {"application_id": app},
                    "dev_eui": device.dev_eui.upper(),
                },
                "correlation_ids": [f"as:up:{self._message_id()}"],
                "received_at": stamp,
                "uplink_message": {
                    "f_port": 2,
                    "f_cnt": state.f_cnt,
                    "frm_payload": "AQID",
                    "decoded_payload": decoded,
                    "rx_metadata": [
                        {"gateway_ids": {"gateway_id": "gw-sim-1"}, "rssi": -97, "snr": 6.5}
                    ],
                    "received_at": stamp,
                },
            }
        app = self.chirpstack_ids[device.kind]
        topic = f"application/{app}/device/{device.dev_eui}/event/up"
        if device.network == "chirpstack-v3":
            return topic, {
                "applicationID": app,
                "applicationName": self.applications[device.kind],
                "deviceName": device.device_id,
                "devEUI": device.dev_eui,
                "fCnt": state.f_cnt,
                "fPort": 2,
                "data": "AQID",
                "publishedAt": stamp,
                "object": decoded,
                "tags": dict(device.tags),
            }
        return topic, {
            "deduplicationId": str(uuid.UUID(int=self.random.getrandbits(128), version=4)),
            "time": stamp,
            "deviceInfo": {
                "tenantId": "00000000-0000-4000-8000-000000000001",
                "tenantName": "Simulation",
                "applicationId": app,
                "applicationName": self.applications[device.kind],
                "deviceName": device.device_id,
                "devEui": device.dev_eui,
                "tags": dict(device.tags),
            },
            "fCnt": state.f_cnt,
            "fPort": 2,
            "data": "AQID",
            "object": decoded,
        }

    def _message_id(self) -> str:
        return f"{self._serial:012x}{self.random.getrandbits(64):016x}".upper()

    def _junk(self, device: SimDevice, now: datetime) -> SimMessage:
        state = self._state[device.device_id]
        topic, envelope = self.envelope(device, state, self._decoded(device, state, now), now)
        text = json.dumps(envelope, separators=(",", ":")).encode()
        kind = self.random.choice(("truncated", "wrong_types", "not_text", "not_object", "empty"))
        if kind == "truncated":
            payload = text[: self.random.randint(1, max(1, len(text) - 2))]
        elif kind == "wrong_types":
            payload = json.dumps(_wrong_types(envelope)).encode()
        elif kind == "not_text":
            payload = bytes([0xFF, 0xFE]) + self.random.randbytes(self.random.randint(1, 40))
        elif kind == "not_object":
            payload = b"[1, 2, 3]"
        else:
            payload = b""
        return SimMessage(topic, payload, "junk", device.device_id, device.kind, kind)


def _wrong_types(envelope: dict[str, Any]) -> dict[str, Any]:
    broken = json.loads(json.dumps(envelope))
    if "end_device_ids" in broken:
        broken["end_device_ids"]["device_id"] = 451
    elif "deviceInfo" in broken:
        broken["deviceInfo"] = "a lot"
    elif "devEUI" in broken:
        broken["devEUI"] = ["not", "an", "eui"]
    else:
        broken["name"] = {"meter": None}
        broken.pop("_", None)
        broken["id"] = None
    return broken


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime, seconds: bool = False) -> str:
    moment = moment.astimezone(UTC)
    if seconds:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- Publishing ------------------------------------------------------------------


@dataclass
class PublishReport:
    sent: Counter[str]
    seconds: float

    @property
    def total(self) -> int:
        return sum(self.sent.values())

    def summary(self) -> str:
        parts = ", ".join(f"{n} {purpose}" for purpose, n in sorted(self.sent.items()))
        rate = self.total / self.seconds if self.seconds else 0
        return f"published {self.total} messages in {self.seconds:.1f} s ({rate:.0f}/s): {parts}"


def publish(
    simulation: Simulation,
    url: str,
    rate: float,
    duration: float,
    storm_at: float | None = None,
    qos: int = 1,
    on_publish: Callable[[SimMessage, float], None] | None = None,
    messages: Iterable[SimMessage] | None = None,
) -> PublishReport:
    """Publish ``rate`` messages a second for ``duration`` seconds (or the given
    ``messages``); the storm, if any, ``storm_at`` seconds in (default: half-way).
    ``on_publish(message, wall_time)`` is called as each is handed to the client."""
    from core.ingest.mqtt import BrokerUrl, new_client

    broker = BrokerUrl.parse(url)
    client = new_client(f"vigie-simulate-{uuid.uuid4().hex[:8]}")
    broker.configure(client)
    # No in-flight limit: with one, paho scans every message in flight at
    # each PUBACK (Client._update_inflight), and with 1,000 in flight that
    # scan, not the broker, set the pace. The wait every 5,000 messages
    # below bounds what is outstanding.
    client.max_inflight_messages_set(0)
    client.max_queued_messages_set(0)
    client.connect(broker.host, broker.port, keepalive=30)
    client.loop_start()
    sent: Counter[str] = Counter()
    total = int(rate * duration) if messages is None else None
    source = iter(messages) if messages is not None else simulation.messages(total or 0)
    storm_at = duration / 2 if storm_at is None else storm_at
    storm_done = not simulation.storm_devices
    infos = []
    started = time.monotonic()
    try:
        n = 0
        for message in source:
            elapsed = time.monotonic() - started
            if not storm_done and elapsed >= storm_at:
                storm_done = True
                for storm in simulation.storm_messages():
                    infos.append(client.publish(storm.topic, storm.payload, qos=qos))
                    if on_publish:
                        on_publish(storm, time.time())
                    sent["storm"] += 1
            # Pace: message n goes out at n / rate seconds.
            ahead = n / rate - elapsed if rate > 0 else 0
            if ahead > 0.002:
                time.sleep(ahead)
            infos.append(client.publish(message.topic, message.payload, qos=qos))
            if on_publish:
                on_publish(message, time.time())
            sent[message.purpose] += 1
            n += 1
            if len(infos) >= 5000:
                for info in infos:
                    info.wait_for_publish(60)
                infos.clear()
        if not storm_done:
            for storm in simulation.storm_messages():
                infos.append(client.publish(storm.topic, storm.payload, qos=qos))
                if on_publish:
                    on_publish(storm, time.time())
                sent["storm"] += 1
        for info in infos:
            info.wait_for_publish(60)
    finally:
        client.disconnect()
        client.loop_stop()
    return PublishReport(sent, time.monotonic() - started)


# --- Which communes, and the demo's burst ------------------------------------------


def simulation_communes(
    settings: Any, pm: Any, communes: Sequence[str] = ()
) -> tuple[dict[str, list[str]], dict[str, tuple[float, float]]]:
    """Communes for each kind of device (``communes`` if given, else those that
    enable the kind's connector, else Clermont-Ferrand) and their centres, from
    the configuration when it loads."""
    from core.config.loader import check_config
    from core.connectors import SensorConnector, collect_connectors

    area, _problems = check_config(settings.config_dir, pm, settings.area_name)
    centers: dict[str, tuple[float, float]] = {}
    by_kind: dict[str, list[str]] = {kind: list(communes) for kind in KINDS}
    if area is None:
        return ({k: v or ["clermont-ferrand"] for k, v in by_kind.items()}, centers)
    for slug, commune in area.communes.items():
        if commune.center:
            centers[slug] = (commune.center[0], commune.center[1])
    if not communes:
        for connector in collect_connectors(pm).values():
            if isinstance(connector, SensorConnector) and connector.device_kind in by_kind:
                by_kind[connector.device_kind] = [
                    slug for slug, c in area.communes.items() if c.enables(connector.name)
                ]
    fallback = next(iter(area.communes), "clermont-ferrand")
    return ({k: v or [fallback] for k, v in by_kind.items()}, centers)


def run_demo_burst(runtime: Any, url: str, count: int, ready: Callable[[float], bool]) -> None:
    """``vigie demo``: register a small simulated fleet, then publish ``count``
    messages (readings, alerts, recoveries, junk and a 30-lamp storm) at 200/s
    once ingestion is ready (``ready(timeout)``)."""
    import io
    import logging

    from core.devices import import_devices

    log = logging.getLogger(__name__)
    by_kind, centers = simulation_communes(runtime.settings, runtime.pm)
    simulation = Simulation(
        devices=20,
        seed=2026,
        communes=by_kind,
        centers=centers,
        alert_ratio=0.15,
        junk=0.02,
        storm=30,
        run_id="demo",
    )
    registry = io.StringIO()
    simulation.write_registry(registry)
    with runtime.sessions() as session:
        import_devices(runtime, session, "simulated-devices.csv", registry.getvalue())
        session.commit()
    if not ready(30):
        log.warning("demo: ingestion not ready after 30 s; not publishing simulated traffic")
        return
    log.info(
        "demo: publishing %d simulated sensor messages to %s (20 devices of each kind, "
        "a 30-lamp storm); more with: vigie simulate --help",
        count,
        url,
    )
    report = publish(simulation, url, rate=200, duration=count / 200)
    log.info("demo: %s", report.summary())
