"""The ingestor's paho client (``core/ingest/paho_client.py``) reads packets
from a buffer and acknowledges a batch in one write: what arrives, and what
the broker considers acknowledged, must be exactly as with plain paho."""

from __future__ import annotations

import socket
import threading
import uuid

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench.lean_publisher import LeanPublisher, paced
from core.ingest.mqtt import BrokerUrl
from core.ingest.paho_client import READ_SIZE, BufferedSocket, IngestClient, ingest_client

# --- The buffer -------------------------------------------------------------------------


@pytest.fixture
def socket_pair():
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    yield BufferedSocket(ours), theirs
    ours.close()
    theirs.close()


def test_small_reads_are_served_from_one_receive(socket_pair):
    buffered, peer = socket_pair
    peer.sendall(b"\x30\x05hello\x30\x03abc")
    assert buffered.recv(1) == b"\x30"
    assert buffered.pending() == 11  # paho then skips select()
    assert buffered.recv(1) == b"\x05"
    assert buffered.recv(5) == b"hello"
    assert buffered.recv(1) == b"\x30"
    assert buffered.recv(100) == b"\x03abc"  # what is there, as a socket gives
    assert buffered.pending() == 0
    with pytest.raises(BlockingIOError):  # nothing more yet: as the non-blocking socket says
        buffered.recv(1)
    peer.sendall(b"more")
    assert buffered.recv(2) == b"mo"
    assert buffered.recv(2) == b"re"
    peer.close()
    assert buffered.recv(1) == b""  # end of stream


def test_a_read_larger_than_the_buffer_gets_what_the_socket_has(socket_pair):
    buffered, peer = socket_pair
    sender = threading.Thread(target=peer.sendall, args=(b"x" * (3 * READ_SIZE),))
    sender.start()
    got = b""
    while len(got) < 3 * READ_SIZE:
        try:
            got += buffered.recv(3 * READ_SIZE - len(got))
        except BlockingIOError:
            continue
    sender.join()
    assert got == b"x" * (3 * READ_SIZE)
    assert buffered.fileno() == buffered._sock.fileno()  # everything else is the socket's


# --- Against a broker -------------------------------------------------------------------


class Subscriber:
    """An IngestClient on a persistent session, acknowledging by hand."""

    def __init__(self, broker, client_id: str, topic: str) -> None:
        self.url = BrokerUrl.parse(broker.url)
        self.protocol = mqtt.MQTTv5 if broker.mqtt5 else mqtt.MQTTv311
        self.client_id = client_id
        self.topic = topic
        self.received: list[mqtt.MQTTMessage] = []
        self.subscribed = threading.Event()
        self.client: IngestClient | None = None

    def start(self) -> IngestClient:
        client = ingest_client(self.client_id, self.protocol)
        self.url.configure(client)
        client.on_message = lambda c, u, m: self.received.append(m)
        client.on_subscribe = lambda *args: self.subscribed.set()
        client.on_connect = lambda c, *args: c.subscribe(self.topic, qos=1)
        if self.protocol == mqtt.MQTTv5:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = 600
            properties.ReceiveMaximum = 4000  # unacknowledged messages the broker may send
            client.connect(self.url.host, self.url.port, clean_start=False, properties=properties)
        else:
            client.connect(self.url.host, self.url.port)
        client.loop_start()
        assert self.subscribed.wait(10)
        self.client = client
        return client

    def stop(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
            self.client = None
            self.subscribed.clear()


def publish_all(url: str, messages: list[tuple[str, bytes]]) -> None:
    publisher = LeanPublisher(url, f"vigie-test-lean-{uuid.uuid4().hex[:8]}")
    try:
        paced(publisher, publisher.packets(messages), rate=0)
        assert publisher.wait_acked(len(messages), 30), publisher.acked
    finally:
        publisher.close()


def test_a_burst_arrives_whole_and_in_order(mqtt_broker, wait_until, unique_id):
    prefix = f"vigie-test/paho-{uuid.uuid4().hex[:8]}"
    subscriber = Subscriber(mqtt_broker, unique_id("paho-burst"), f"{prefix}/#")
    subscriber.start()
    try:
        # Small packets many to a receive, one split across receives (a
        # 3-byte remaining length), and small ones again after it.
        messages = [(f"{prefix}/d{n % 5}", f'{{"n": {n}, "é": 1}}'.encode()) for n in range(1500)]
        messages.insert(700, (f"{prefix}/large", b"L" * 300_000))
        publish_all(mqtt_broker.url, messages)
        assert wait_until(lambda: len(subscriber.received) == len(messages), 30), len(
            subscriber.received
        )
        assert [(m.topic, m.payload) for m in subscriber.received] == messages
    finally:
        subscriber.client.ack_many(m.mid for m in subscriber.received)
        subscriber.stop()


def test_one_write_acknowledges_each_message_of_a_batch(mqtt_broker, wait_until, unique_id):
    """What ack_many acknowledged is not delivered again to the session; the rest is."""
    mqtt_broker.require_redelivery()
    prefix = f"vigie-test/paho-{uuid.uuid4().hex[:8]}"
    subscriber = Subscriber(mqtt_broker, unique_id("paho-ack"), f"{prefix}/#")
    subscriber.start()
    subscriber.stop()  # the session holds the subscription: messages wait for it
    messages = [(f"{prefix}/d{n % 3}", f"m{n}".encode()) for n in range(300)]
    publish_all(mqtt_broker.url, messages)
    client = subscriber.start()
    try:
        assert wait_until(lambda: len(subscriber.received) == 300, 30), len(subscriber.received)
        assert client.ack_many(m.mid for m in subscriber.received[:200]) == 200
        # A PINGREQ answered means everything written before it reached the broker.
        pinged = threading.Event()
        client.on_log = lambda c, u, level, text: "PINGRESP" in text and pinged.set()
        client._send_pingreq()
        assert pinged.wait(10)
    finally:
        subscriber.stop()
    subscriber.received.clear()
    subscriber.start()
    try:
        assert wait_until(lambda: len(subscriber.received) >= 100, 30), len(subscriber.received)
        assert not wait_until(lambda: len(subscriber.received) > 100, 1.0)
        assert [m.payload for m in subscriber.received] == [p for _, p in messages[200:]]
        assert all(m.dup for m in subscriber.received)
    finally:
        subscriber.client.ack_many(m.mid for m in subscriber.received)
        subscriber.stop()
