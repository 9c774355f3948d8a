"""A batch of raw MQTT messages becomes stored alerts, tickets, dead letters
and telemetry, in one transaction.

The MQTT transport collects messages, calls :meth:`IngestPipeline.process_batch`
and acknowledges them once it returns: by then everything they caused is
committed. Each message goes through:

1. **envelope**: the size limit, then :func:`core.envelopes.unwrap`; a message
   that fails goes to the dead letters with the reason (stage ``envelope``);
2. **device**: the registry, by ``device_id`` then ``dev_eui``. An unknown
   device is tallied in ``unregistered_devices`` (no ticket). A device whose
   commune does not enable the connector of its kind is ignored and counted
   per commune and connector;
3. **connector**: ``interpret(uplink, device, commune, state)`` with the
   device's stored state; a ``ValueError`` sends the message to the dead
   letters with its reason (stage ``connector``);
4. **alerts**: see :mod:`core.ingest.alerts`; readings are handed to the
   telemetry plugins after the commit.

Bad input never raises out of ``process_batch``; a database error does
(after a rollback), so that the transport does not acknowledge and the
broker delivers the batch again, which idempotency keys make harmless.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace

from sqlalchemy.orm import Session

from core.connectors import SensorConnector
from core.devices import DeviceRegistry, RegisteredDevice
from core.envelopes import EnvelopeError, as_utc, unwrap
from core.ingest.alerts import AlertDesk, IncomingAlert
from core.ingest.batch import BatchOutcome, RawMessage
from core.ingest.records import (
    IgnoredTally,
    UnregisteredTally,
    dead_letter,
    load_states,
    write_states,
)
from core.ingest.silent import check_silent_meters
from core.runtime import Runtime
from core.signals import Alert, Location, Reading, Uplink
from core.telemetry import store_readings

log = logging.getLogger(__name__)

__all__ = ["BatchOutcome", "IngestPipeline", "RawMessage", "check_silent_meters"]

_KEY_LENGTH = 200  # SignalRecord.idempotency_key


def message_id(message: RawMessage, uplink: Uplink) -> str:
    """The network's id of the message, else a hash of its topic and bytes."""
    if uplink.message_id:
        return uplink.message_id
    digest = hashlib.sha256(
        message.topic.encode("utf-8", "surrogatepass") + b"\0" + message.payload
    )
    return digest.hexdigest()


def idempotency_key(message_key: str, condition: str, recovered: bool) -> str:
    key = f"{message_key}:{condition}:{'rec' if recovered else 'raise'}"
    if len(key) > _KEY_LENGTH:
        key = "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return key


def complete_alert(
    alert: Alert, device: RegisteredDevice, connector: SensorConnector, key: str
) -> Alert:
    """The alert with what the registry knows filled in, and its idempotency key."""
    info = device.info
    location = alert.location
    if not location.has_point and info.latitude is not None:
        location = Location(info.latitude, info.longitude, location.address or info.address)
    elif location.address is None and info.address:
        location = Location(location.latitude, location.longitude, info.address)
    return replace(
        alert,
        device_id=alert.device_id or info.device_id,
        commune=info.commune,
        location=location,
        asset=alert.asset or info.asset,
        device_kind=alert.device_kind or info.kind,
        connector=alert.connector or connector.name,
        idempotency_key=alert.idempotency_key or key,
    )


@dataclass
class _Readable:
    message: RawMessage
    uplink: Uplink
    device: RegisteredDevice
    connector: SensorConnector


class IngestPipeline:
    """Turns batches of raw messages into stored signals; one per ingest process."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings.ingest
        self.registry = DeviceRegistry(runtime)
        self._by_kind: dict[str, SensorConnector] | None = None

    def connector_for(self, kind: str) -> SensorConnector | None:
        if self._by_kind is None:
            self._by_kind = {}
            for connector in self.runtime.connectors.values():
                if isinstance(connector, SensorConnector):
                    self._by_kind.setdefault(connector.device_kind, connector)
        return self._by_kind.get(kind)

    def process_batch(self, messages: list[RawMessage]) -> BatchOutcome:
        """Everything in ONE transaction, committed before returning (the caller
        acks after). Never raises for bad input; re-raises only database errors
        (then the caller does not ack, and the broker redelivers)."""
        outcome = BatchOutcome()
        if not messages:
            return outcome
        readings: list[Reading] = []
        with self.runtime.sessions() as session:
            try:
                _Batch(self, session, outcome, readings).run(messages)
                session.commit()
            except BaseException:
                session.rollback()
                raise
        self.hand_readings(readings)
        return outcome

    def hand_readings(self, readings: list[Reading]) -> None:
        if not readings:
            return
        try:
            store_readings(self.runtime, readings)
        except Exception:  # telemetry must never cost an alert: they are committed already
            log.exception("handing %d readings to telemetry failed", len(readings))


class _Batch:
    """One batch in one session: the stages of each message, then the writes."""

    def __init__(
        self,
        pipeline: IngestPipeline,
        session: Session,
        outcome: BatchOutcome,
        readings: list[Reading],
    ) -> None:
        self.pipeline = pipeline
        self.runtime = pipeline.runtime
        self.session = session
        self.outcome = outcome
        self.readings = readings
        self.unregistered = UnregisteredTally()
        self.ignored = IgnoredTally()

    def run(self, messages: list[RawMessage]) -> None:
        unwrapped = [(m, u) for m, u in ((m, self._unwrap(m)) for m in messages) if u is not None]
        readable = self._find_devices(unwrapped)
        states = load_states(self.session, {r.device.pk for r in readable})
        incoming: list[IncomingAlert] = []
        for item in readable:
            incoming += self._interpret(item, states)
        desk = AlertDesk(self.runtime, self.session, self.outcome, self._alert_failed)
        desk.handle(incoming)
        write_states(self.session, states.values())
        self.unregistered.write(self.session)
        self.ignored.write(self.session)
        desk.finish()

    # --- Stages ---------------------------------------------------------------------

    def _dead(
        self, message: RawMessage, stage: str, reason: str, device_id: str | None = None
    ) -> None:
        self.session.add(
            dead_letter(
                message.topic,
                message.payload,
                as_utc(message.received_at),
                stage,
                reason,
                device_id,
            )
        )
        self.outcome.dead_letters += 1

    def _unwrap(self, message: RawMessage) -> Uplink | None:
        limit = self.pipeline.settings.max_payload_bytes
        size = len(message.payload)
        if size > limit:
            kept = RawMessage(message.topic, message.payload[:limit], message.received_at)
            reason = f"message is {size} bytes, more than the {limit} allowed (first {limit} kept)"
            self._dead(kept, "envelope", reason)
            return None
        try:
            return unwrap(message.topic, message.payload, message.received_at, limit)
        except EnvelopeError as exc:
            self._dead(message, "envelope", exc.reason)
        except Exception as exc:  # a bug in envelope code must not stop the batch
            log.exception("unwrapping a message on %s failed", message.topic)
            self._dead(message, "envelope", f"could not be read: {type(exc).__name__}: {exc}")
        return None

    def _find_devices(self, unwrapped: list[tuple[RawMessage, Uplink]]) -> list[_Readable]:
        registry = self.pipeline.registry
        registry.prefetch(
            self.session,
            [u.device_id for _, u in unwrapped if u.device_id],
            [u.dev_eui for _, u in unwrapped if u.dev_eui],
        )
        readable = []
        for message, uplink in unwrapped:
            device = registry.find(self.session, uplink.device_id, uplink.dev_eui)
            received = as_utc(message.received_at)
            if device is None:
                self.unregistered.note(uplink, message.payload, received)
                self.outcome.unregistered += 1
                continue
            info = device.info
            connector = self.pipeline.connector_for(info.kind)
            commune = self.runtime.area.commune(info.commune)
            name = connector.name if connector is not None else info.kind
            if connector is None or commune is None or not commune.enables(connector.name):
                self.ignored.note(info.commune, name, info.device_id, received)
                self.outcome.ignored += 1
                continue
            readable.append(_Readable(message, uplink, device, connector))
        return readable

    def _interpret(self, item: _Readable, states: dict) -> list[IncomingAlert]:
        device, connector, message = item.device, item.connector, item.message
        info = device.info
        commune = self.runtime.area.commune(info.commune)
        state = states.get(device.pk)
        if state is None:  # deleted since the lookup
            self._dead(message, "device", f"device {info.device_id} is no longer registered")
            return []
        try:
            results = list(connector.interpret(item.uplink, info, commune, state.state))
        except ValueError as exc:
            self._dead(message, "connector", f"{connector.name}: {exc}", info.device_id)
            return []
        except Exception as exc:
            log.exception(
                'connector "%s" failed on a message of %s', connector.name, info.device_id
            )
            reason = f"{connector.name} failed: {type(exc).__name__}: {exc}"
            self._dead(message, "connector", reason, info.device_id)
            return []
        self.outcome.accepted += 1
        state.heard(as_utc(item.uplink.received_at))
        key = None
        alerts = []
        for result in results:
            if isinstance(result, Reading):
                if result.commune != info.commune:
                    result = replace(result, commune=info.commune)
                self.readings.append(result)
                self.outcome.readings += 1
            elif isinstance(result, Alert):
                key = key or message_id(message, item.uplink)
                alert = complete_alert(
                    result,
                    device,
                    connector,
                    idempotency_key(key, result.condition, result.recovered),
                )
                alerts.append(IncomingAlert(alert, commune, info, connector, message))
            else:
                log.warning(
                    'connector "%s" returned a %s; ignored', connector.name, type(result).__name__
                )
        return alerts

    def _alert_failed(self, item: IncomingAlert, reason: str) -> None:
        if isinstance(item.source, RawMessage):
            self._dead(item.source, "ticket", reason, item.alert.device_id)
