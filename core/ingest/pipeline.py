"""A batch of raw MQTT messages becomes stored alerts, tickets, dead letters
and telemetry, written in one transaction.

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

Stages 1 to 3 run before the write transaction opens (see :class:`_Batch`):
on SQLite it holds the database's only write lock, and the less time a
batch holds it, the less other ingest processes and the API's writers wait.

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
from core.db.sensor_models import DeadLetter
from core.devices import DeviceRegistry, RegisteredDevice
from core.envelopes import EnvelopeError, as_utc, unwrap
from core.ingest.alerts import AlertDesk, IncomingAlert, RetryCarefully
from core.ingest.batch import BatchOutcome, RawMessage
from core.ingest.records import (
    DeviceState,
    IgnoredTally,
    UnregisteredTally,
    dead_letter,
    load_states,
    store_dead_letters,
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
        self.read_sessions = runtime.read_sessions
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
        """Every write in ONE transaction, committed before returning (the caller
        acks after). Never raises for bad input; re-raises only database errors
        (then the caller does not ack, and the broker redelivers)."""
        if not messages:
            return BatchOutcome()
        try:
            outcome, readings = self._process(messages, careful=False)
        except RetryCarefully as exc:
            log.warning(
                "a batch of %d messages failed (%s); processing it again, one ticket at a time",
                len(messages),
                exc,
            )
            outcome, readings = self._process(messages, careful=True)
        self.hand_readings(readings)
        return outcome

    def _process(
        self, messages: list[RawMessage], careful: bool
    ) -> tuple[BatchOutcome, list[Reading]]:
        outcome = BatchOutcome()
        readings: list[Reading] = []
        batch = _Batch(self, outcome, readings, careful)
        # What needs no lock first: on SQLite the write transaction holds the
        # database's only write lock, which other ingest processes and the
        # API's writers wait for.
        with self.read_sessions() as reading:
            batch.prepare(reading, messages)
        with self.runtime.sessions() as session:
            try:
                batch.store(session)
                session.commit()
            except BaseException:
                session.rollback()
                raise
        return outcome, readings

    def hand_readings(self, readings: list[Reading]) -> None:
        if not readings:
            return
        try:
            store_readings(self.runtime, readings)
        except Exception:  # telemetry must never cost an alert: they are committed already
            log.exception("handing %d readings to telemetry failed", len(readings))


@dataclass
class _Interpreted:
    """What one message gave, before it is stored: alerts and readings, or
    the dead letter saying why it gave nothing."""

    alerts: list[IncomingAlert]
    readings: list[Reading]
    dead_letter: DeadLetter | None = None


class _Batch:
    """One batch: :meth:`prepare` reads and interprets outside the write
    transaction, :meth:`store` writes it all in one.

    Device states are read twice. :meth:`prepare` interprets each message
    with its device's state as it was read then (no lock); :meth:`store`
    reads the states again inside the write transaction (locked on
    PostgreSQL) and interprets again the messages of any device whose state
    another ingest process changed meanwhile. The stored result is the same
    as interpreting everything inside the transaction.
    """

    def __init__(
        self,
        pipeline: IngestPipeline,
        outcome: BatchOutcome,
        readings: list[Reading],
        careful: bool = False,
    ) -> None:
        self.careful = careful
        self.pipeline = pipeline
        self.runtime = pipeline.runtime
        self.outcome = outcome
        self.readings = readings
        self.unregistered = UnregisteredTally()
        self.ignored = IgnoredTally()
        self._dead_letters: list[DeadLetter] = []  # before interpretation
        self._readable: list[_Readable] = []
        self._states: dict[int, DeviceState] = {}
        self._results: list[_Interpreted] = []
        self._session: Session | None = None

    def prepare(self, session: Session, messages: list[RawMessage]) -> None:
        unwrapped = [(m, u) for m, u in ((m, self._unwrap(m)) for m in messages) if u is not None]
        self._readable = self._find_devices(session, unwrapped)
        self._states = load_states(session, {r.device.pk for r in self._readable}, lock=False)
        self._results = [self._interpret(item, self._states) for item in self._readable]

    def store(self, session: Session) -> None:
        self._session = session
        states = load_states(session, self._states.keys(), decode=False)
        moved = set()
        for pk, state in states.items():
            if state.stored == self._states[pk].stored:
                state.take_over(self._states[pk])
            else:  # changed meanwhile: its messages are read again below
                state.decode()
                moved.add(pk)
        incoming: list[IncomingAlert] = []
        for item, result in zip(self._readable, self._results, strict=True):
            pk = item.device.pk
            if pk in moved or pk not in states:
                result = self._interpret(item, states)  # its state changed meanwhile
            if result.dead_letter is not None:
                self._dead_letters.append(result.dead_letter)
                continue
            self.outcome.accepted += 1
            self.outcome.readings += len(result.readings)
            self.readings += result.readings
            incoming += result.alerts
        store_dead_letters(session, self._dead_letters)
        self.outcome.dead_letters += len(self._dead_letters)
        desk = AlertDesk(
            self.runtime, session, self.outcome, self._alert_failed, careful=self.careful
        )
        desk.handle(incoming)
        write_states(session, states.values())
        self.unregistered.write(session)
        self.ignored.write(session)
        desk.finish()

    # --- Stages ---------------------------------------------------------------------

    @staticmethod
    def _letter(
        message: RawMessage, stage: str, reason: str, device_id: str | None = None
    ) -> DeadLetter:
        received = as_utc(message.received_at)
        return dead_letter(message.topic, message.payload, received, stage, reason, device_id)

    def _dead(self, message: RawMessage, stage: str, reason: str) -> None:
        self._dead_letters.append(self._letter(message, stage, reason))

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

    def _find_devices(
        self, session: Session, unwrapped: list[tuple[RawMessage, Uplink]]
    ) -> list[_Readable]:
        registry = self.pipeline.registry
        registry.prefetch(
            session,
            [u.device_id for _, u in unwrapped if u.device_id],
            [u.dev_eui for _, u in unwrapped if u.dev_eui],
        )
        readable = []
        for message, uplink in unwrapped:
            device = registry.find(session, uplink.device_id, uplink.dev_eui)
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

    def _interpret(self, item: _Readable, states: dict[int, DeviceState]) -> _Interpreted:
        """The connector's reading of one message, with (and into) its device's state."""
        device, connector, message = item.device, item.connector, item.message
        info = device.info
        commune = self.runtime.area.commune(info.commune)
        state = states.get(device.pk)
        if state is None:  # deleted since the lookup
            reason = f"device {info.device_id} is no longer registered"
            return _Interpreted([], [], self._letter(message, "device", reason))
        try:
            results = list(connector.interpret(item.uplink, info, commune, state.state))
        except ValueError as exc:
            reason = f"{connector.name}: {exc}"
            return _Interpreted([], [], self._letter(message, "connector", reason, info.device_id))
        except Exception as exc:
            log.exception(
                'connector "%s" failed on a message of %s', connector.name, info.device_id
            )
            reason = f"{connector.name} failed: {type(exc).__name__}: {exc}"
            return _Interpreted([], [], self._letter(message, "connector", reason, info.device_id))
        state.heard(as_utc(item.uplink.received_at))
        key = None
        alerts: list[IncomingAlert] = []
        readings: list[Reading] = []
        for result in results:
            if isinstance(result, Reading):
                if result.commune != info.commune:
                    result = replace(result, commune=info.commune)
                readings.append(result)
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
        return _Interpreted(alerts, readings)

    def _alert_failed(self, item: IncomingAlert, reason: str) -> None:
        if isinstance(item.source, RawMessage) and self._session is not None:
            letter = self._letter(item.source, "ticket", reason, item.alert.device_id)
            store_dead_letters(self._session, [letter])
            self.outcome.dead_letters += 1
