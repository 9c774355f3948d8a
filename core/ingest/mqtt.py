"""MQTT in: messages become batches for the pipeline, acknowledged once stored.

:class:`MqttIngestor` is a paho-mqtt 2.x subscriber with QoS 1, a persistent
session and manual acknowledgements:

- paho's network thread puts each message on an in-memory queue
  (``on_message`` does nothing else);
- a worker thread takes batches (``ingest.batch_size`` messages, or what came
  within ``ingest.batch_ms``) and hands them to the pipeline
  (:mod:`core.ingest.handover`): up to ``ingest.batches_in_flight`` at once,
  so that the next is on its way while one is being stored;
- an acknowledging thread takes the pipeline's answers, oldest first, and
  sends the PUBACKs of each batch once it is committed. Stored before
  acknowledged: a message is acked only after its batch is committed;
- when a batch fails (the database is down), nothing of it is acked; it is
  handed over again with back-off, followed by the batches sent after it
  (the pipeline skipped them), so that none is stored before it. If the
  process stops meanwhile, the broker redelivers the unacked messages to the
  next one (same client id, persistent session), and the pipeline counts
  each once.

The session survives restarts: MQTT 5 ``clean_start=False`` with a session
expiry (``ingest.session_expiry_seconds``), or MQTT 3.1.1
``clean_session=False``. With MQTT 5 the client asks for ``Receive Maximum``
(``ingest.receive_maximum``) unacknowledged messages in flight, so that
batches can fill up (a 3.1.1 client gets the broker's ``max_inflight_messages``,
20 on Mosquitto by default).

Several ``vigie ingest`` processes split the load through a shared
subscription ``$share/<group>/<filter>`` (``ingest.shared_group``, default
``vigie``; MQTT 5 brokers: Mosquitto >= 1.6, EMQX, HiveMQ, VerneMQ). Each
process needs its own stable client id.

PUBACKs are sent only on the connection that delivered the message: after a
reconnection the broker resends what was not acked, with packet ids that may
since name other messages.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from core.ingest.batch import BatchOutcome
from core.ingest.handover import handover_for
from core.ingest.paho_client import ingest_client
from core.settings import IngestSettings

if TYPE_CHECKING:
    from core.ingest.broker import LocalBroker
    from core.runtime import Runtime

log = logging.getLogger(__name__)

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


# --- Where the broker is -------------------------------------------------------


@dataclass(frozen=True)
class BrokerUrl:
    """``mqtt://user:pass@host:1883`` or ``mqtts://host`` (TLS, port 8883)."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str) -> BrokerUrl:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS:
            raise ValueError(
                f"MQTT URL {url!r}: expected mqtt://[user:password@]host[:port] or mqtts://..."
            )
        if not parts.hostname:
            raise ValueError(f"MQTT URL {url!r}: no host")
        try:
            port = parts.port or DEFAULT_PORTS[scheme]
        except ValueError:
            raise ValueError(f"MQTT URL {url!r}: the port is not from 1 to 65535") from None
        return cls(
            host=parts.hostname,
            port=port,
            tls=scheme == "mqtts",
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
        )

    def __str__(self) -> str:
        user = f"{self.username}:***@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"

    def ssl_context(self, ca_file: Path | None = None) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)

    def configure(self, client: mqtt.Client, ca_file: Path | None = None) -> None:
        """Credentials and TLS on a paho client."""
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        context = self.ssl_context(ca_file)
        if context is not None:
            client.tls_set_context(context)


def new_client(
    client_id: str = "",
    protocol: int = mqtt.MQTTv311,
    clean: bool = True,
) -> mqtt.Client:
    """A paho 2.x client with the version 2 callback API."""
    if protocol == mqtt.MQTTv5:
        return mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=protocol,
        )
    return mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean,
        protocol=protocol,
    )


def default_client_id(role: str = "ingest") -> str:
    """``vigie-<role>-<hostname>``: stable across restarts of this process on this host."""
    host = socket.gethostname().split(".")[0] or "host"
    return f"vigie-{role}-{host}"[:100]


def topics_for(runtime: Runtime, extra: Iterable[str] = ()) -> list[str]:
    """The union of the communes' ``mqtt_topics`` (else ``ingest.default_topics``),
    plus ``ingest.extra_topics`` and ``extra``, in a stable order."""
    options = runtime.settings.ingest
    found: list[str] = []
    for commune in runtime.area.communes.values():
        found += list(getattr(commune, "mqtt_topics", None) or ())
    if not found:
        found = list(options.default_topics)
    found += list(options.extra_topics) + list(extra)
    return list(dict.fromkeys(topic.strip() for topic in found if topic.strip()))


# --- The subscriber ------------------------------------------------------------


class BatchProcessor(Protocol):
    """What the ingestor feeds: ``core.ingest.pipeline.IngestPipeline``."""

    def process_batch(self, messages: list[Any]) -> Any: ...


@dataclass
class IngestCounters:
    """What the ingestor did since it started (logged each minute, shown by /readyz)."""

    received: int = 0
    redelivered: int = 0  # received with the DUP flag: the broker resent them
    processed: int = 0
    acked: int = 0
    batches: int = 0
    failed_batches: int = 0
    resent: int = 0  # batches handed over again: a failed one, and those sent after it
    # Stored, but delivered on a connection since lost: the broker resends them.
    not_acked: int = 0
    connects: int = 0
    disconnects: int = 0
    subscribe_failures: int = 0
    last_batch_size: int = 0
    last_batch_seconds: float = 0.0
    last_error: str | None = None


@dataclass(slots=True)
class _Inbound:
    topic: str
    payload: bytes
    received_at: datetime
    arrived: float  # time.monotonic()
    mid: int
    qos: int
    connection: int


@dataclass(slots=True)
class _Handed:
    """A batch handed to the pipeline, until it is answered and acked."""

    batch: list[_Inbound]
    messages: list[Any]
    token: Any = None
    error: Exception | None = None  # when it could not be handed over at all
    started: float = 0.0


def _raw_message_type() -> Callable[[str, bytes, datetime], Any]:
    from core.ingest.pipeline import RawMessage

    return RawMessage


class MqttIngestor:
    """Subscribe, batch, process, acknowledge. ``start()`` returns at once;
    ``stop()`` drains what was received, acks it and disconnects."""

    def __init__(
        self,
        runtime: Runtime | None,
        pipeline: BatchProcessor,
        url: str,
        topics: Sequence[str],
        client_id: str,
        shared_group: str | None = None,
        *,
        options: IngestSettings | None = None,
        message_factory: Callable[[str, bytes, datetime], Any] | None = None,
    ) -> None:
        if not topics:
            raise ValueError("no MQTT topic to subscribe to")
        self.runtime = runtime
        self.pipeline = pipeline
        self.broker = BrokerUrl.parse(url)
        self.topics = list(topics)
        self.client_id = client_id
        self.shared_group = shared_group or None
        self.options = options or (runtime.settings.ingest if runtime else IngestSettings())
        self.counters = IngestCounters()
        self._make_message = message_factory or _raw_message_type()
        self._queue: deque[_Inbound] = deque()
        self._cond = threading.Condition()
        # Messages received and not yet answered (queued, or in a batch on its
        # way); reading stops at _most_in_hand (see _holding_too_many).
        self._in_hand = 0
        self._most_in_hand = max(
            self.options.receive_maximum,
            self.options.batch_size * (self.options.batches_in_flight + 1),
        )
        self._connection_lock = threading.Lock()
        self._connection = 0
        self._connected = False
        self._subscribed = threading.Event()
        self._stopping = threading.Event()
        self._abort = threading.Event()
        self._worker: threading.Thread | None = None
        self._acker: threading.Thread | None = None
        self.handover = handover_for(pipeline)
        # Batches handed over and not yet answered, oldest first.
        self._handed: deque[_Handed] = deque()
        self._handed_cond = threading.Condition()
        self._handing_over = True  # False once the worker has stopped
        self._send_lock = threading.Lock()  # batches go over in order, retries first
        self._slots = threading.BoundedSemaphore(self.options.batches_in_flight)
        self._client: mqtt.Client | None = None
        self.protocol = mqtt.MQTTv5
        self.subscriptions: list[str] = []

    # -- life cycle ------------------------------------------------------------

    def start(self) -> None:
        self.protocol = self._choose_protocol()
        if self.shared_group and self.protocol != mqtt.MQTTv5:
            log.warning(
                "MQTT broker %s does not speak MQTT 5: subscribing without $share/%s/ "
                "(run one ingest process only)",
                self.broker,
                self.shared_group,
            )
            self.shared_group = None
        self.subscriptions = [
            f"$share/{self.shared_group}/{topic}" if self.shared_group else topic
            for topic in self.topics
        ]
        client = ingest_client(self.client_id, self.protocol)
        client.hold_reading = self._holding_too_many
        self.broker.configure(client, self.options.tls_ca_file)
        client.reconnect_delay_set(
            max(1, round(self.options.reconnect_min_seconds)),
            max(1, round(self.options.reconnect_max_seconds)),
        )
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self._client = client
        self._worker = threading.Thread(target=self._work, name="vigie-ingest-worker", daemon=True)
        self._worker.start()
        self._acker = threading.Thread(
            target=self._acknowledge, name="vigie-ingest-acks", daemon=True
        )
        self._acker.start()
        if self.protocol == mqtt.MQTTv5:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = self.options.session_expiry_seconds
            properties.ReceiveMaximum = self.options.receive_maximum
            client.connect_async(
                self.broker.host,
                self.broker.port,
                self.options.keepalive,
                clean_start=False,
                properties=properties,
            )
        else:
            client.connect_async(self.broker.host, self.broker.port, self.options.keepalive)
        client.loop_start()
        log.info(
            "MQTT ingestion: %s as %s (MQTT %s, persistent session), topics %s",
            self.broker,
            self.client_id,
            "5" if self.protocol == mqtt.MQTTv5 else "3.1.1",
            ", ".join(self.subscriptions),
        )

    def wait_ready(self, timeout: float = 10.0) -> bool:
        """True once connected and subscribed."""
        return self._subscribed.wait(timeout)

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def running(self) -> bool:
        """Started and not stopped."""
        return self._client is not None and not self._stopping.is_set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking messages, process and ack those received, disconnect.

        Messages the broker sends meanwhile are left unacked: it redelivers
        them to the next start. A batch still failing after ``timeout`` is
        left unacked too.
        """
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in (self._worker, self._acker):
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
        if any(t is not None and t.is_alive() for t in (self._worker, self._acker)):
            log.warning("MQTT ingestion: batch still failing at stop; leaving it unacked")
            self._abort.set()
            for thread in (self._worker, self._acker):
                if thread is not None:
                    thread.join(5)
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
        self._log_counters()

    def status(self) -> dict[str, Any]:
        """For ``/readyz`` and logs."""
        return {
            "broker": str(self.broker),
            "client_id": self.client_id,
            "connected": self._connected,
            "subscriptions": self.subscriptions,
            "queued": len(self._queue),
            "batches_in_flight": len(self._handed),
            **asdict(self.counters),
        }

    # -- paho callbacks (network thread) ---------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("MQTT broker %s refused the connection: %s", self.broker, reason_code)
            self.counters.last_error = f"connect refused: {reason_code}"
            return
        with self._connection_lock:
            self._connection += 1
            self._connected = True
        self.counters.connects += 1
        log.info(
            "connected to MQTT broker %s (%s)",
            self.broker,
            "session resumed" if flags.session_present else "new session",
        )
        if self.protocol == mqtt.MQTTv5:
            client.subscribe([(topic, SubscribeOptions(qos=1)) for topic in self.subscriptions])
        else:
            client.subscribe([(topic, 1) for topic in self.subscriptions])

    def _on_connect_fail(self, client, userdata) -> None:
        self.counters.last_error = "broker unreachable"
        log.warning("cannot reach MQTT broker %s; retrying with back-off", self.broker)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._connection_lock:
            was_connected, self._connected = self._connected, False
        self._subscribed.clear()
        if not was_connected:
            return  # a refused connection: logged by _on_connect
        self.counters.disconnects += 1
        if not self._stopping.is_set():
            self.counters.last_error = f"disconnected: {reason_code}"
            log.warning("MQTT broker %s disconnected (%s); reconnecting", self.broker, reason_code)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        failed = [
            (topic, code)
            for topic, code in zip(self.subscriptions, reason_codes, strict=False)
            if code.is_failure
        ]
        for topic, code in failed:
            self.counters.subscribe_failures += 1
            log.error("MQTT broker %s refused subscription %s: %s", self.broker, topic, code)
        self._subscribed.set()

    def _holding_too_many(self) -> bool:
        """More messages in hand, unacknowledged, than the Receive Maximum allows
        the broker to send: read no more until some are acknowledged."""
        return self._in_hand >= self._most_in_hand

    def _on_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        if self._stopping.is_set():
            return  # not acked: the broker redelivers it to the next start
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = message._topic.decode("utf-8", "replace")
        item = _Inbound(
            topic,
            message.payload,
            datetime.now(UTC),
            time.monotonic(),
            message.mid,
            message.qos,
            self._connection,
        )
        self.counters.received += 1
        if message.dup:
            self.counters.redelivered += 1
        with self._cond:
            self._queue.append(item)
            self._in_hand += 1
            size = len(self._queue)
            if size == 1 or size >= self.options.batch_size:
                self._cond.notify()

    # -- worker thread: batches handed over -------------------------------------

    def _work(self) -> None:
        last_log = time.monotonic()
        try:
            while True:
                batch = self._next_batch()
                if batch:
                    if not self._take_slot():
                        return  # aborted: left unacked
                    self._hand_over(
                        _Handed(
                            batch,
                            [self._make_message(i.topic, i.payload, i.received_at) for i in batch],
                        )
                    )
                elif self._stopping.is_set():
                    return
                if time.monotonic() - last_log >= 60:
                    last_log = time.monotonic()
                    self._log_counters()
        finally:
            with self._handed_cond:
                self._handing_over = False
                self._handed_cond.notify_all()

    def _next_batch(self) -> list[_Inbound]:
        size, wait = self.options.batch_size, self.options.batch_ms / 1000
        with self._cond:
            while not self._queue:
                if self._stopping.is_set():
                    return []
                self._cond.wait(1.0)
            # The batch closes batch_ms after its first message arrived.
            deadline = self._queue[0].arrived + wait
            while len(self._queue) < size and not self._stopping.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            return [self._queue.popleft() for _ in range(min(size, len(self._queue)))]

    def _take_slot(self) -> bool:
        """Wait until fewer than ``ingest.batches_in_flight`` batches are unanswered."""
        while not self._slots.acquire(timeout=0.5):
            if self._abort.is_set():
                return False
        return True

    def _hand_over(self, handed: _Handed) -> None:
        with self._send_lock:
            if self._abort.is_set():
                return  # stopped while a batch kept failing: left unacked
            self._send(handed, again=False)
            with self._handed_cond:
                self._handed.append(handed)
                self._handed_cond.notify_all()

    def _send(self, handed: _Handed, again: bool) -> None:
        handed.started = time.monotonic()
        handed.error = None
        try:
            handed.token = self.handover.send(handed.messages, again=again)
        except Exception as exc:  # could not even be handed over: answered as failed
            handed.error = exc

    # -- acknowledging thread: answers, in order ----------------------------------

    def _acknowledge(self) -> None:
        while True:
            with self._handed_cond:
                while not self._handed and self._handing_over:
                    self._handed_cond.wait(1.0)
                if not self._handed:
                    return  # the worker stopped and every batch is answered
                handed = self._handed[0]
            try:
                self._answer(handed)
            except Exception as exc:
                if not self._retry(exc):
                    return  # aborted at stop: the rest is left unacked
            self._done(self._handed.popleft())

    def _answer(self, handed: _Handed) -> BatchOutcome:
        if handed.error is not None:
            raise handed.error
        return self.handover.receive(handed.token)

    def _retry(self, exc: Exception) -> bool:
        """The oldest batch failed: send it and those after it again, in order,
        with back-off, until it is stored (True) or the ingestor aborts (False).
        Nothing handed over meanwhile: the worker waits for ``_send_lock``."""
        delay = 0.5
        with self._send_lock:
            while True:
                first = self._handed[0]
                self.counters.failed_batches += 1
                self.counters.last_error = f"{type(exc).__name__}: {exc}"[:300]
                log.error(
                    "MQTT ingestion: a batch of %d messages was not stored (%s); "
                    "none acked, retrying in %.1f s",
                    len(first.batch),
                    self.counters.last_error,
                    delay,
                )
                # The batches sent after it were skipped: read those answers first.
                for later in list(self._handed)[1:]:
                    with contextlib.suppress(Exception):
                        self._answer(later)
                if self._abort.wait(delay):
                    return False
                delay = min(delay * 2, 30.0)
                for position, handed in enumerate(self._handed):
                    self._send(handed, again=position == 0)
                    self.counters.resent += 1
                try:
                    self._answer(first)
                    return True
                except Exception as again:
                    exc = again

    def _done(self, handed: _Handed) -> None:
        self.counters.batches += 1
        self.counters.processed += len(handed.batch)
        self.counters.last_batch_size = len(handed.batch)
        self.counters.last_batch_seconds = round(time.monotonic() - handed.started, 4)
        self._ack(handed.batch)
        with self._cond:
            self._in_hand -= len(handed.batch)
        self._slots.release()

    def _ack(self, batch: list[_Inbound]) -> None:
        client = self._client
        assert client is not None
        acked = skipped = 0
        with self._connection_lock:
            qos1: list[int] = []
            for item in batch:
                if item.qos == 0:
                    continue
                if not self._connected or item.connection != self._connection:
                    skipped += 1
                elif item.qos == 1:
                    qos1.append(item.mid)
                else:
                    client.ack(item.mid, item.qos)
                    acked += 1
            acked += client.ack_many(qos1)
        self.counters.acked += acked
        self.counters.not_acked += skipped

    def _log_counters(self) -> None:
        c = self.counters
        log.info(
            "MQTT ingestion: %d received (%d redelivered), %d stored in %d batches, "
            "%d failed batches, %d acked, queue %d, %s",
            c.received,
            c.redelivered,
            c.processed,
            c.batches,
            c.failed_batches,
            c.acked,
            len(self._queue),
            "connected" if self._connected else "not connected",
        )

    # -- protocol --------------------------------------------------------------

    def _choose_protocol(self) -> int:
        wanted = self.options.protocol
        if wanted == "5":
            return mqtt.MQTTv5
        if wanted == "3.1.1":
            return mqtt.MQTTv311
        from core.ingest.broker import speaks_mqtt5

        context = self.broker.ssl_context(self.options.tls_ca_file)
        found = speaks_mqtt5(self.broker.host, self.broker.port, tls=context)
        if found is None:
            log.warning(
                "MQTT broker %s does not answer yet; assuming MQTT 5 "
                "(set VIGIE_INGEST__PROTOCOL=3.1.1 for an older broker)",
                self.broker,
            )
            return mqtt.MQTTv5
        return mqtt.MQTTv5 if found else mqtt.MQTTv311


# --- A running ingestion: broker, subscriber, periodic checks --------------------


class Ingestion:
    """What ``vigie serve`` and ``vigie ingest`` run: the subscriber on the
    configured broker (or a local one), and the silent-meter check every
    ``ingest.silent_check_minutes``."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        url: str | None = None,
        topics: Sequence[str] | None = None,
        client_id: str | None = None,
        role: str = "ingest",
        embedded_broker: bool = False,
        pipeline: BatchProcessor | None = None,
        check_silent: bool = True,
    ) -> None:
        self.runtime = runtime
        self.url = url or runtime.settings.mqtt_url
        self.topics = list(topics) if topics else topics_for(runtime)
        self.client_id = client_id or runtime.settings.ingest.client_id or default_client_id(role)
        self.embedded_broker = embedded_broker
        self.pipeline = pipeline
        self._own_pipeline: Any = None  # a PipelineProcess or PipelinePool this object started
        self.check_silent = check_silent
        self.local: LocalBroker | None = None
        self.ingestor: MqttIngestor | None = None
        self.broker_url: str | None = None  # the broker used, once started
        self._stop = threading.Event()
        self._checker: threading.Thread | None = None

    def start(self) -> MqttIngestor:
        """Start; raise :class:`core.ingest.broker.BrokerUnavailable` when no
        broker can be used."""
        options = self.runtime.settings.ingest
        url, group, protocol_options = self.url, options.shared_group, options
        if url is None:
            if self.embedded_broker:
                from core.ingest.broker import local_broker

                self.local = local_broker(options.embedded_port)
                url = self.local.url
                if self.local.embedded is not None:
                    # amqtt: MQTT 3.1.1, no shared subscriptions, and it keeps
                    # the sessions of clients with a user name only.
                    url = url.replace("mqtt://", "mqtt://vigie@", 1)
                    group = ""
                    protocol_options = options.model_copy(update={"protocol": "3.1.1"})
            else:
                url = f"mqtt://127.0.0.1:{options.embedded_port}"
        if self.pipeline is None:
            in_child = options.pipeline_process
            if in_child and multiprocessing.current_process().daemon:
                in_child = False
                log.warning(
                    "ingest.pipeline_process: this process is a daemonic multiprocessing "
                    "child, which may not start processes; the pipeline runs in it"
                )
            if in_child:
                from core.ingest.pipeline_pool import pipeline_processes

                self.pipeline = self._own_pipeline = pipeline_processes(self.runtime.settings)
                # Started now, beside the MQTT connection: the first batch need not wait.
                threading.Thread(
                    target=self._start_pipeline, name="vigie-pipeline-start", daemon=True
                ).start()
            else:
                from core.ingest.pipeline import IngestPipeline

                self.pipeline = IngestPipeline(self.runtime)
        self.broker_url = url
        self.ingestor = MqttIngestor(
            self.runtime,
            self.pipeline,
            url,
            self.topics,
            self.client_id,
            group,
            options=protocol_options,
        )
        self.ingestor.start()
        if self.check_silent:
            self._checker = threading.Thread(
                target=self._check_silent_meters, name="vigie-silent-meters", daemon=True
            )
            self._checker.start()
        return self.ingestor

    def _start_pipeline(self) -> None:
        try:
            self._own_pipeline.start()
        except Exception:  # the first batch tries again, and is not acked until it works
            log.exception("the ingest pipeline process could not start")

    def stop(self) -> None:
        self._stop.set()
        if self.ingestor is not None:
            self.ingestor.stop()
        if self._own_pipeline is not None:
            self._own_pipeline.close()
        if self._checker is not None:
            self._checker.join(5)
        if self.local is not None:
            self.local.stop()

    def _check_silent_meters(self) -> None:
        from core.ingest.pipeline import check_silent_meters

        interval = self.runtime.settings.ingest.silent_check_minutes * 60
        while not self._stop.wait(interval):
            try:
                check_silent_meters(self.runtime, datetime.now(UTC))
            except Exception:
                log.exception("silent meter check failed; will try again")
