"""The broker of ``vigie serve`` without VIGIE_MQTT_URL: embedded, borrowed, or a clear refusal."""

from __future__ import annotations

import logging
import socket
import threading

import pytest

from core.ingest.broker import (
    Answer,
    BrokerUnavailable,
    EmbeddedBroker,
    local_broker,
    probe,
    speaks_mqtt5,
)
from core.ingest.mqtt import Ingestion
from core.settings import IngestSettings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_on_a_free_port_the_embedded_broker_starts_and_says_so(caplog) -> None:
    port = _free_port()
    caplog.set_level(logging.INFO, logger="core.ingest.broker")
    broker = local_broker(port)
    try:
        assert broker.embedded is not None
        assert broker.url == f"mqtt://127.0.0.1:{port}"
        assert f"embedded MQTT broker on 127.0.0.1:{port}" in caplog.text
        answer = probe("127.0.0.1", port)
        assert answer.answer is Answer.MQTT and answer.code == 0
        assert speaks_mqtt5("127.0.0.1", port) is False  # amqtt: MQTT 3.1.1
    finally:
        broker.stop()
    assert probe("127.0.0.1", port).answer is Answer.NOTHING


def test_an_mqtt_broker_already_on_the_port_is_used(caplog) -> None:
    port = _free_port()
    other = EmbeddedBroker(port)
    other.start()
    try:
        caplog.set_level(logging.INFO, logger="core.ingest.broker")
        broker = local_broker(port)
        assert broker.embedded is None
        assert broker.url == f"mqtt://127.0.0.1:{port}"
        expected = (
            f"an MQTT broker already answers on 127.0.0.1:{port}: using it "
            "(set VIGIE_MQTT_URL to choose one)"
        )
        assert broker.message == expected
        assert expected in caplog.text
        broker.stop()  # not ours: still serving
        assert probe("127.0.0.1", port).answer is Answer.MQTT
    finally:
        other.stop()


@pytest.mark.parametrize("reply", [b"", b"HTTP/1.1 400 Bad Request\r\n\r\n"])
def test_a_port_held_by_something_else_stops_with_what_to_set(reply: bytes) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]

    def answer() -> None:
        try:
            conn, _ = server.accept()
            if reply:
                conn.sendall(reply)
                conn.close()
            else:
                conn.recv(100)  # hold the connection, say nothing
        except OSError:
            pass

    threading.Thread(target=answer, daemon=True).start()
    try:
        with pytest.raises(BrokerUnavailable) as raised:
            local_broker(port)
    finally:
        server.close()
    message = str(raised.value)
    assert f"127.0.0.1:{port}" in message
    assert "VIGIE_MQTT_URL" in message and "VIGIE_INGEST__EMBEDDED_PORT" in message
    assert "not an MQTT broker" in message


def test_ingestion_runs_through_the_embedded_broker(
    vigie_runtime, mqtt_prefix, publisher_for, recording_pipeline, wait_until
) -> None:
    port = _free_port()
    vigie_runtime.settings = vigie_runtime.settings.model_copy(
        update={"ingest": IngestSettings(embedded_port=port, batch_ms=10)}
    )
    pipeline = recording_pipeline()
    ingestion = Ingestion(
        vigie_runtime,
        topics=[f"{mqtt_prefix}/#"],
        role="serve",
        embedded_broker=True,
        pipeline=pipeline,
        check_silent=False,
    )
    ingestor = ingestion.start()
    try:
        assert ingestion.local is not None and ingestion.local.embedded is not None
        assert ingestor.wait_ready(10)
        assert ingestor.subscriptions == [f"{mqtt_prefix}/#"]  # amqtt: no $share
        publisher_for(f"mqtt://127.0.0.1:{port}").publish(f"{mqtt_prefix}/wm-1", b'{"leak": true}')
        assert wait_until(lambda: pipeline.payloads == [b'{"leak": true}'])
        assert wait_until(lambda: ingestor.counters.acked == 1)
    finally:
        ingestion.stop()
    assert probe("127.0.0.1", port).answer is Answer.NOTHING
