"""The benchmark's load generator (``bench/lean_publisher.py``) publishes what
a paho-mqtt subscriber receives: every message, its topic and payload, at
QoS 1, in order, each acknowledged by the broker; and paced at the rate asked."""

from __future__ import annotations

import threading
import time
import uuid

from bench.lean_publisher import LeanPublisher, paced
from core.ingest.mqtt import BrokerUrl, new_client


def test_every_message_arrives_as_published(mqtt_broker, wait_until):
    prefix = f"vigie-test/lean-{uuid.uuid4().hex[:8]}"
    received: list[tuple[str, bytes, int]] = []
    subscribed = threading.Event()
    broker = BrokerUrl.parse(mqtt_broker.url)
    subscriber = new_client(f"vigie-test-sub-{uuid.uuid4().hex[:8]}")
    broker.configure(subscriber)
    subscriber.on_message = lambda c, u, m: received.append((m.topic, m.payload, m.qos))
    subscriber.on_subscribe = lambda *args: subscribed.set()
    subscriber.on_connect = lambda c, *args: c.subscribe(f"{prefix}/#", qos=1)
    subscriber.connect(broker.host, broker.port)
    subscriber.loop_start()
    try:
        assert subscribed.wait(10)
        messages = [(f"{prefix}/device-{n % 7}", f"payload {n} é".encode()) for n in range(700)]
        messages.append((f"{prefix}/large", b"x" * 300_000))  # a 3-byte remaining length
        publisher = LeanPublisher(mqtt_broker.url, f"vigie-test-lean-{uuid.uuid4().hex[:8]}")
        sent = []
        try:
            packets = publisher.packets(messages)
            paced(publisher, packets, rate=0, on_sent=lambda a, b, when: sent.append((a, b)))
            assert publisher.wait_acked(len(messages), 30), publisher.acked
        finally:
            publisher.close()
        assert sent[0][0] == 0 and sent[-1][1] == len(messages)
        assert wait_until(lambda: len(received) == len(messages), timeout=30), len(received)
        assert [(t, p) for t, p, _ in received] == messages
        assert {q for _, _, q in received} == {1}
    finally:
        subscriber.disconnect()
        subscriber.loop_stop()


def test_a_rate_spreads_the_messages_over_time(mqtt_broker):
    publisher = LeanPublisher(mqtt_broker.url, f"vigie-test-lean-{uuid.uuid4().hex[:8]}")
    try:
        packets = publisher.packets([("vigie-test/paced", b"{}")] * 400)
        writes: list[tuple[int, int, float]] = []
        started = time.time()
        seconds = paced(
            publisher, packets, rate=1000, on_sent=lambda a, b, w: writes.append((a, b, w))
        )
        assert publisher.wait_acked(400, 30)
    finally:
        publisher.close()
    # 400 messages at 1,000/s: about 0.4 s, in several writes, not one.
    assert 0.35 <= seconds < 5
    assert len(writes) >= 5
    assert writes[-1][2] - started >= 0.35
