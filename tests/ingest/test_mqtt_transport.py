"""The MQTT transport on a real broker: batches, acks after storing, redelivery,
persistent sessions, shared subscriptions, credentials.

The pipeline is a stand-in that records batches: these tests are about the
transport's own promises; end-to-end tests use the real pipeline.
"""

from __future__ import annotations

import subprocess
import threading
import time

import pytest

from core.ingest.handover import InlineHandover
from core.ingest.mqtt import BrokerUrl, MqttIngestor


def running(ingestor: MqttIngestor) -> MqttIngestor:
    ingestor.start()
    assert ingestor.wait_ready(10), "not connected and subscribed within 10 s"
    return ingestor


def test_broker_url_forms() -> None:
    plain = BrokerUrl.parse("mqtt://broker.example")
    assert (plain.host, plain.port, plain.tls) == ("broker.example", 1883, False)
    assert plain.username is None
    secure = BrokerUrl.parse("mqtts://vigie:p%40ss%3Aw0rd@broker.example")
    assert (secure.port, secure.tls, secure.username, secure.password) == (
        8883,
        True,
        "vigie",
        "p@ss:w0rd",
    )
    assert "p@ss" not in str(secure) and "p@ss" not in repr(secure)
    assert BrokerUrl.parse("mqtt://10.0.0.5:11883").port == 11883
    with pytest.raises(ValueError, match="mqtt://"):
        BrokerUrl.parse("http://broker.example")
    with pytest.raises(ValueError, match="port"):
        BrokerUrl.parse("mqtt://broker.example:99999")


def test_batches_are_acked_only_after_they_are_stored(
    mqtt_broker, mqtt_prefix, unique_id, publisher, make_ingestor, recording_pipeline, wait_until
) -> None:
    pipeline = recording_pipeline()
    ingestor = make_ingestor(mqtt_broker.url, pipeline, [f"{mqtt_prefix}/#"], unique_id("acks"))
    acked_when_called: list[tuple[int, int]] = []
    pipeline.on_batch = lambda batch: acked_when_called.append(
        (ingestor.counters.acked, len(batch))
    )
    running(ingestor)
    for i in range(300):
        publisher.publish(f"{mqtt_prefix}/dev-{i % 7}", f'{{"n": {i}}}', wait=False)
    publisher.flush()
    assert wait_until(lambda: len(pipeline.payloads) == 300)
    assert wait_until(lambda: ingestor.counters.acked == 300)
    ingestor.stop()

    assert sorted(pipeline.payloads) == sorted(f'{{"n": {i}}}'.encode() for i in range(300))
    assert all(len(batch) <= 100 for batch in pipeline.batches)
    stored_before = 0
    for acked, size in acked_when_called:
        # Nothing of this batch acked before it was stored (the previous batch
        # may still be waiting for its acks: batches are handed over two at a time).
        assert acked <= stored_before
        stored_before += size
    assert all(m.topic.startswith(mqtt_prefix) for b in pipeline.batches for m in b)

    # Everything was acked: the same session gets nothing again.
    again = recording_pipeline()
    running(make_ingestor(mqtt_broker.url, again, [f"{mqtt_prefix}/#"], ingestor.client_id))
    time.sleep(0.5)
    assert again.payloads == []


def test_a_batch_that_fails_is_not_acked_and_the_broker_redelivers_it(
    mqtt_broker, mqtt_prefix, unique_id, publisher, make_ingestor, recording_pipeline, wait_until
) -> None:
    mqtt_broker.require_redelivery()
    client_id = unique_id("redeliver")
    failing = recording_pipeline(fail=True)
    ingestor = running(make_ingestor(mqtt_broker.url, failing, [f"{mqtt_prefix}/#"], client_id))
    for i in range(5):
        publisher.publish(f"{mqtt_prefix}/alert", f"leak {i}")
    assert wait_until(lambda: failing.calls >= 1)
    ingestor.stop(timeout=0.5)  # the database never came back: give up, ack nothing
    assert ingestor.counters.acked == 0
    assert ingestor.counters.failed_batches >= 1

    recovered = recording_pipeline()
    after = running(make_ingestor(mqtt_broker.url, recovered, [f"{mqtt_prefix}/#"], client_id))
    assert wait_until(lambda: len(recovered.payloads) == 5)
    assert sorted(recovered.payloads) == [f"leak {i}".encode() for i in range(5)]
    assert wait_until(lambda: after.counters.acked == 5)
    after.stop()


def test_a_failed_batch_is_retried_until_stored(
    mqtt_broker, mqtt_prefix, unique_id, publisher, make_ingestor, recording_pipeline, wait_until
) -> None:
    pipeline = recording_pipeline(fail=True)

    def database_back_on_second_try(batch) -> None:
        pipeline.fail = pipeline.calls < 2

    pipeline.on_batch = database_back_on_second_try
    ingestor = running(
        make_ingestor(mqtt_broker.url, pipeline, [f"{mqtt_prefix}/#"], unique_id("retry"))
    )
    publisher.publish(f"{mqtt_prefix}/alert", "burst")
    assert wait_until(lambda: pipeline.payloads == [b"burst"], timeout=10)
    assert wait_until(lambda: ingestor.counters.acked == 1)
    assert ingestor.counters.failed_batches == 1
    ingestor.stop()


class AnswersAfterTwoMore(InlineHandover):
    """The pipeline in this process, whose answer for its second batch (the
    failed one) is read only once two more batches were handed over (the
    window of three is then full): they are skipped for sure, and must be
    sent again after it."""

    def __init__(self, pipeline) -> None:
        super().__init__(pipeline)
        self.sent = self.received = 0
        self.cond = threading.Condition()

    def send(self, messages, again=False):
        super().send(messages, again)
        with self.cond:
            self.sent += 1
            self.cond.notify_all()

    def receive(self, token=None):
        with self.cond:
            self.received += 1
            if self.received == 2:
                self.cond.wait_for(lambda: self.sent >= 4, timeout=10)
        return super().receive(token)


def test_batches_after_a_failed_one_are_stored_after_it(
    mqtt_broker, mqtt_prefix, unique_id, publisher, make_ingestor, recording_pipeline, wait_until
) -> None:
    # One device's messages, queued in the session before the ingestor comes,
    # so that batches are full and ready one after another.
    client_id = unique_id("order")
    topics = [f"{mqtt_prefix}/#"]
    running(make_ingestor(mqtt_broker.url, recording_pipeline(), topics, client_id)).stop()
    pipeline = recording_pipeline()
    pipeline.on_batch = lambda batch: setattr(pipeline, "fail", pipeline.calls == 2)
    sent = [f'{{"n": {i}}}'.encode() for i in range(1000)]
    for payload in sent:
        publisher.publish(f"{mqtt_prefix}/meter-1", payload, wait=False)
    publisher.flush()
    handover = AnswersAfterTwoMore(pipeline)
    ingestor = running(
        make_ingestor(mqtt_broker.url, handover, topics, client_id, batches_in_flight=3)
    )
    assert wait_until(lambda: ingestor.counters.acked == 1000, timeout=30), ingestor.counters
    ingestor.stop()
    assert ingestor.counters.failed_batches == 1
    assert ingestor.counters.resent == 3  # the failed batch, then the two skipped behind it
    assert pipeline.payloads == sent  # in the order published, none twice


def test_a_batch_closes_after_batch_ms(
    mqtt_broker, mqtt_prefix, unique_id, publisher, make_ingestor, recording_pipeline, wait_until
) -> None:
    pipeline = recording_pipeline()
    ingestor = running(
        make_ingestor(
            mqtt_broker.url,
            pipeline,
            [f"{mqtt_prefix}/#"],
            unique_id("latency"),
            batch_size=1000,
            batch_ms=50,
        )
    )
    sent = time.monotonic()
    publisher.publish(f"{mqtt_prefix}/one", "alone")
    assert wait_until(lambda: pipeline.payloads == [b"alone"], timeout=5)
    assert time.monotonic() - sent < 1.0
    ingestor.stop()


def test_the_session_keeps_messages_published_while_ingestion_is_down(
    mqtt_broker, mqtt_prefix, unique_id, publisher, make_ingestor, recording_pipeline, wait_until
) -> None:
    client_id = unique_id("session")
    first = recording_pipeline()
    running(make_ingestor(mqtt_broker.url, first, [f"{mqtt_prefix}/#"], client_id)).stop()
    for i in range(20):
        publisher.publish(f"{mqtt_prefix}/while-away", str(i))

    later = recording_pipeline()
    ingestor = running(make_ingestor(mqtt_broker.url, later, [f"{mqtt_prefix}/#"], client_id))
    assert wait_until(lambda: len(later.payloads) == 20)
    ingestor.stop()


def test_stop_stores_and_acks_what_was_received(
    mqtt_broker, mqtt_prefix, unique_id, publisher, make_ingestor, recording_pipeline, wait_until
) -> None:
    mqtt_broker.require_redelivery()
    client_id = unique_id("drain")
    pipeline = recording_pipeline(on_batch=lambda batch: time.sleep(0.2))
    ingestor = running(
        make_ingestor(mqtt_broker.url, pipeline, [f"{mqtt_prefix}/#"], client_id, batch_size=10)
    )
    for i in range(60):
        publisher.publish(f"{mqtt_prefix}/m", str(i), wait=False)
    publisher.flush()
    assert wait_until(lambda: ingestor.counters.received > 0)
    ingestor.stop()
    stored = set(pipeline.payloads)
    assert ingestor.counters.acked == len(pipeline.payloads)

    # What arrived during the stop was not acked: the next start gets it, the rest never again.
    rest = recording_pipeline()
    after = running(make_ingestor(mqtt_broker.url, rest, [f"{mqtt_prefix}/#"], client_id))
    assert wait_until(lambda: stored | set(rest.payloads) == {str(i).encode() for i in range(60)})
    time.sleep(0.3)
    assert not stored & set(rest.payloads)
    after.stop()


def test_shared_subscription_splits_the_load(
    mqtt_broker, mqtt_prefix, unique_id, publisher, make_ingestor, recording_pipeline, wait_until
) -> None:
    if not mqtt_broker.mqtt5:
        pytest.skip("shared subscriptions need an MQTT 5 broker (Mosquitto >= 1.6); amqtt has none")
    group = unique_id("group").replace("-", "")
    pipelines = [recording_pipeline(), recording_pipeline()]
    ingestors = [
        running(
            make_ingestor(mqtt_broker.url, p, [f"{mqtt_prefix}/#"], unique_id(f"share{n}"), group)
        )
        for n, p in enumerate(pipelines)
    ]
    assert all(i.subscriptions == [f"$share/{group}/{mqtt_prefix}/#"] for i in ingestors)
    for i in range(200):
        publisher.publish(f"{mqtt_prefix}/d{i}", str(i), wait=False)
    publisher.flush()
    assert wait_until(lambda: sum(len(p.payloads) for p in pipelines) >= 200)
    time.sleep(0.3)
    for ingestor in ingestors:
        ingestor.stop()
    together = pipelines[0].payloads + pipelines[1].payloads
    assert sorted(together) == sorted(str(i).encode() for i in range(200))  # each once
    assert all(p.payloads for p in pipelines)  # both took a share


def _mosquitto_with_password(private_mosquitto, tmp_path, username: str, password: str):
    passwords = tmp_path / "passwords"
    subprocess.run(
        ["mosquitto_passwd", "-c", "-b", str(passwords), username, password],
        check=True,
        capture_output=True,
    )
    passwords.chmod(0o600)
    return private_mosquitto(f"allow_anonymous false\npassword_file {passwords}\n")


def test_username_and_password_from_the_url(
    private_mosquitto,
    tmp_path,
    mqtt_prefix,
    unique_id,
    make_ingestor,
    recording_pipeline,
    wait_until,
    publisher_for,
) -> None:
    broker = _mosquitto_with_password(private_mosquitto, tmp_path, "vigie", "s3cr:t@")
    url = f"mqtt://vigie:s3cr%3At%40@127.0.0.1:{broker.port}"
    pipeline = recording_pipeline()
    ingestor = running(make_ingestor(url, pipeline, [f"{mqtt_prefix}/#"], unique_id("auth")))
    publisher_for(url).publish(f"{mqtt_prefix}/x", "with password")
    assert wait_until(lambda: pipeline.payloads == [b"with password"])
    ingestor.stop()

    refused = make_ingestor(
        f"mqtt://vigie:wrong@127.0.0.1:{broker.port}",
        recording_pipeline(),
        [f"{mqtt_prefix}/#"],
        unique_id("noauth"),
    )
    refused.start()
    assert not refused.wait_ready(1.5)
    assert "refused" in (refused.counters.last_error or "")
    refused.stop()


def test_tls_with_the_brokers_ca(
    private_mosquitto,
    tmp_path,
    mqtt_prefix,
    unique_id,
    make_ingestor,
    recording_pipeline,
    wait_until,
    publisher_for,
) -> None:
    key, cert = tmp_path / "broker.key", tmp_path / "broker.crt"
    subprocess.run(
        f"openssl req -x509 -newkey rsa:2048 -nodes -days 2 -keyout {key} -out {cert} "
        "-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1".split(),
        check=True,
        capture_output=True,
    )
    broker = private_mosquitto(f"allow_anonymous true\ncertfile {cert}\nkeyfile {key}\n")
    url = f"mqtts://127.0.0.1:{broker.port}"
    pipeline = recording_pipeline()
    ingestor = running(
        make_ingestor(url, pipeline, [f"{mqtt_prefix}/#"], unique_id("tls"), tls_ca_file=cert)
    )
    assert ingestor.broker.tls
    publisher_for(url, cert).publish(f"{mqtt_prefix}/secure", "over tls")
    assert wait_until(lambda: pipeline.payloads == [b"over tls"])
    ingestor.stop()


def test_a_backlog_waits_at_the_broker_not_in_memory(
    private_mosquitto,
    mqtt_prefix,
    unique_id,
    publisher_for,
    make_ingestor,
    recording_pipeline,
    wait_until,
) -> None:
    """No more messages in hand than the Receive Maximum, whatever the broker
    sends: Mosquitto 2.0.11 goes past it once acknowledgements flow, and after a
    long outage the whole backlog would come into the ingestor's memory."""
    broker = private_mosquitto("allow_anonymous true\nmax_queued_messages 100000\n")
    client_id = unique_id("backlog")
    options = {"batch_size": 50, "receive_maximum": 200}
    in_hand: list[int] = []
    pipeline = recording_pipeline(
        on_batch=lambda batch: (
            in_hand.append(ingestor.counters.received - ingestor.counters.acked),
            time.sleep(0.02),
        )
    )
    topics = [f"{mqtt_prefix}/#"]
    ingestor = running(make_ingestor(broker.url, pipeline, topics, client_id, **options))
    ingestor.stop()  # the session keeps the subscription: the backlog queues at the broker
    publisher = publisher_for(broker.url)
    for i in range(3000):
        publisher.publish(f"{mqtt_prefix}/meter-{i % 10}", f"{i:05d}" + "x" * 200, wait=False)
    publisher.flush()

    ingestor = running(make_ingestor(broker.url, pipeline, topics, client_id, **options))
    assert wait_until(lambda: ingestor.counters.acked == 3000, timeout=60), ingestor.counters
    assert len(set(pipeline.payloads)) == 3000
    assert max(in_hand) <= 200 + 2, max(in_hand)


def test_a_long_hold_keeps_the_connection(
    mqtt_broker, mqtt_prefix, unique_id, publisher, make_ingestor, recording_pipeline, wait_until
) -> None:
    """While storing is stuck (the database down), reading stays held, but the
    broker's keep-alive answers still get in: the connection is not dropped."""
    release = threading.Event()
    pipeline = recording_pipeline(on_batch=lambda batch: release.wait(60))
    options = {"batch_size": 10, "receive_maximum": 50, "batches_in_flight": 1, "keepalive": 5}
    ingestor = running(
        make_ingestor(mqtt_broker.url, pipeline, [f"{mqtt_prefix}/#"], unique_id("hold"), **options)
    )
    try:
        for i in range(300):
            publisher.publish(f"{mqtt_prefix}/meter-{i % 10}", str(i), wait=False)
        publisher.flush()
        assert wait_until(lambda: ingestor.counters.received >= 50)
        time.sleep(13)  # more than twice the keep-alive: paho would have given up
        assert ingestor.counters.received < 300  # still held
        assert (ingestor.counters.connects, ingestor.counters.disconnects) == (1, 0)
    finally:
        release.set()
    assert wait_until(lambda: ingestor.counters.acked == 300, timeout=60), ingestor.counters
    assert sorted(pipeline.payloads, key=int) == [str(i).encode() for i in range(300)]
