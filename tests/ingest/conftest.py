"""Fixtures for MQTT tests: a real broker, unique topics, a publisher.

``mqtt_broker`` is the Mosquitto of the machine on 127.0.0.1:1883 when one
answers there, else an amqtt broker started in-process on a free port (so the
suite passes on a laptop without Mosquitto; ``VIGIE_TEST_MQTT=amqtt`` forces
it). Tests on the shared broker use their own topic prefix (``mqtt_prefix``:
``vigie-test/<uuid>``), subscribe to exactly that, and their own client ids
and shared-subscription groups, so that they never see nor take each other's
traffic.

``private_mosquitto`` starts a Mosquitto of the test's own on a free port,
with a config of the test's choosing (persistence, passwords...); tests using
it are skipped when the ``mosquitto`` binary is missing.
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from core.ingest.broker import Answer, EmbeddedBroker, probe
from core.ingest.mqtt import BrokerUrl, new_client
from core.testing import PrivateMosquitto, free_port, wait_until

SHARED_MOSQUITTO = ("127.0.0.1", 1883)


REPO = Path(__file__).resolve().parents[2]


@dataclass
class TestBroker:
    __test__ = False
    url: str
    kind: str  # "mosquitto" or "amqtt"

    @property
    def mqtt5(self) -> bool:
        return self.kind == "mosquitto"

    def require_redelivery(self) -> None:
        if self.kind == "amqtt":
            pytest.skip(
                "amqtt drops a QoS 1 message not acknowledged within 5 s instead of "
                "redelivering it to the session: run with Mosquitto on 127.0.0.1:1883"
            )


@pytest.fixture(scope="session")
def mqtt_broker() -> Iterator[TestBroker]:
    host, port = SHARED_MOSQUITTO
    # VIGIE_TEST_MQTT=amqtt: test as on a laptop without Mosquitto.
    wanted = os.environ.get("VIGIE_TEST_MQTT", "")
    if wanted != "amqtt" and probe(host, port, timeout=1.0).answer is Answer.MQTT:
        yield TestBroker(f"mqtt://{host}:{port}", "mosquitto")
        return
    broker = EmbeddedBroker(free_port())
    broker.start()
    try:
        # amqtt keeps the sessions of named clients only.
        yield TestBroker(f"mqtt://vigie-test@127.0.0.1:{broker.port}", "amqtt")
    finally:
        broker.stop()


@pytest.fixture
def mqtt_prefix() -> str:
    return f"vigie-test/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def unique_id() -> Callable[[str], str]:
    run = uuid.uuid4().hex[:8]
    return lambda name: f"vigie-test-{name}-{run}"


class Publisher:
    """A QoS 1 publisher that waits until the broker has each message."""

    def __init__(self, url: str, ca_file: Path | None = None) -> None:
        broker = BrokerUrl.parse(url)
        self.client = new_client(f"vigie-test-pub-{uuid.uuid4().hex[:8]}")
        broker.configure(self.client, ca_file)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self._pending: list[Any] = []

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, wait: bool = True) -> None:
        info = self.client.publish(topic, payload, qos=qos)
        self._pending.append(info)
        if wait:
            self.flush()

    def flush(self, timeout: float = 30.0) -> None:
        for info in self._pending:
            info.wait_for_publish(timeout)
        self._pending.clear()

    def close(self) -> None:
        self.flush()
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publisher(mqtt_broker: TestBroker) -> Iterator[Publisher]:
    pub = Publisher(mqtt_broker.url)
    yield pub
    pub.close()


@pytest.fixture
def publisher_for() -> Iterator[Callable[..., Publisher]]:
    """Publishers on other brokers (private ones, with credentials or TLS)."""
    made: list[Publisher] = []

    def make(url: str, ca_file: Path | None = None) -> Publisher:
        made.append(Publisher(url, ca_file))
        return made[-1]

    yield make
    for pub in made:
        pub.close()


@dataclass
class RawStandIn:
    topic: str
    payload: bytes
    received_at: datetime


@dataclass
class RecordingPipeline:
    """Stands in for the ingestion pipeline: records batches; ``fail`` makes
    ``process_batch`` raise (as the real one does when the database is down)."""

    batches: list[list[RawStandIn]] = field(default_factory=list)
    fail: bool = False
    calls: int = 0
    on_batch: Callable[[list[RawStandIn]], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def process_batch(self, messages: list[RawStandIn]) -> None:
        with self.lock:
            self.calls += 1
        if self.on_batch is not None:
            self.on_batch(messages)
        if self.fail:
            raise RuntimeError("database unavailable (test)")
        with self.lock:
            self.batches.append(list(messages))

    @property
    def payloads(self) -> list[bytes]:
        with self.lock:
            return [m.payload for batch in self.batches for m in batch]


@pytest.fixture
def private_mosquitto(tmp_path: Path) -> Iterator[Callable[..., PrivateMosquitto]]:
    if shutil.which("mosquitto") is None:
        pytest.skip("the mosquitto binary is not installed (apt-get install mosquitto)")
    started: list[PrivateMosquitto] = []

    def start(extra_config: str = "") -> PrivateMosquitto:
        directory = tmp_path / f"mosquitto-{len(started)}"
        directory.mkdir()
        broker = PrivateMosquitto(directory, extra_config)
        started.append(broker)  # stopped at the end even if it fails to answer
        broker.start()
        return broker

    yield start
    for broker in started:
        broker.stop()


@pytest.fixture
def recording_pipeline() -> type[RecordingPipeline]:
    return RecordingPipeline


@pytest.fixture(name="wait_until")
def wait_until_fixture() -> Callable[..., bool]:
    return wait_until


@pytest.fixture
def make_ingestor() -> Iterator[Callable[..., Any]]:
    """``make_ingestor(url, pipeline, topics, client_id, group="", **ingest_settings)``:
    an :class:`MqttIngestor` with test-sized settings, stopped at the end."""
    from core.ingest.mqtt import MqttIngestor
    from core.settings import IngestSettings

    made: list[MqttIngestor] = []

    def make(url, pipeline, topics, client_id, group="", **options) -> MqttIngestor:
        settings = IngestSettings(
            **{
                "batch_size": 100,
                "batch_ms": 20,
                "reconnect_min_seconds": 1,
                "reconnect_max_seconds": 2,
                # Test sessions must not linger on the machine's broker.
                "session_expiry_seconds": 300,
                **options,
            }
        )
        ingestor = MqttIngestor(
            None,
            pipeline,
            url,
            topics,
            client_id,
            group,
            options=settings,
            message_factory=RawStandIn,
        )
        made.append(ingestor)
        return ingestor

    yield make
    for ingestor in made:
        if ingestor.running:
            ingestor.stop(timeout=2)


@pytest.fixture
def registry(vigie_runtime) -> None:
    """The demo registry of config/devices/, imported."""
    from core.devices import import_devices

    with vigie_runtime.sessions() as session:
        for path in sorted((REPO / "config" / "devices").iterdir()):
            if path.suffix in (".csv", ".geojson"):
                import_devices(vigie_runtime, session, path.name, path.read_bytes())
        session.commit()
