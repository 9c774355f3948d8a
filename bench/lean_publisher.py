"""A load generator's MQTT publisher: QoS 1 PUBLISH packets, encoded up front,
written to one socket in bulk.

The benchmark's publisher shares the machine's two cores with what it
measures. paho-mqtt spends about 100 µs of CPU on each message it publishes
(its packet queue, locks and message-info objects): at 5,000 messages/s, half a
core taken from the broker and Vigie, which no city's sensors would take.
This publisher does only what a LoRaWAN network server's link does: MQTT
3.1.1, a clean session, QoS 1 PUBLISH packets with their packet ids, and the
broker's PUBACKs counted by a reading thread. It is for ``bench/`` only; Vigie
itself receives with paho-mqtt.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable

from core.ingest.mqtt import BrokerUrl


def _remaining_length(length: int) -> bytes:
    encoded = bytearray()
    while True:
        digit, length = length % 128, length // 128
        encoded.append(digit | (0x80 if length else 0))
        if not length:
            return bytes(encoded)


def _string(value: str) -> bytes:
    data = value.encode()
    return struct.pack("!H", len(data)) + data


def connect_packet(client_id: str, username: str | None, password: str | None) -> bytes:
    flags = 0x02  # clean session
    payload = _string(client_id)
    if username is not None:
        flags |= 0x80
        payload += _string(username)
        if password is not None:
            flags |= 0x40
            payload += _string(password)
    # Keep-alive 60 s: a run sends all along (amqtt mishandles 0, "none").
    variable = _string("MQTT") + bytes([4, flags]) + struct.pack("!H", 60)
    body = variable + payload
    return bytes([0x10]) + _remaining_length(len(body)) + body


def publish_packet(topic: str, payload: bytes, packet_id: int) -> bytes:
    """A QoS 1 PUBLISH."""
    body = _string(topic) + struct.pack("!H", packet_id) + payload
    return bytes([0x32]) + _remaining_length(len(body)) + body


class LeanPublisher:
    """Connect, publish QoS 1 messages in bulk, wait for every PUBACK."""

    def __init__(self, url: str, client_id: str) -> None:
        broker = BrokerUrl.parse(url)
        if broker.tls:
            raise ValueError("the lean publisher speaks plain MQTT only")
        self.sock = socket.create_connection((broker.host, broker.port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(connect_packet(client_id, broker.username, broker.password))
        connack = self._read_exactly(4)
        if connack[0] != 0x20 or connack[3] != 0:
            raise ConnectionError(f"the broker refused the connection (CONNACK {connack.hex()})")
        self.acked = 0
        self._acked_cond = threading.Condition()
        self._reader = threading.Thread(target=self._read_acks, daemon=True)
        self._reader.start()
        self._next_id = 0

    def _read_exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("the broker closed the connection")
            data += chunk
        return data

    def _read_acks(self) -> None:
        pending = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            pending += chunk
            # PUBACKs only (0x40 0x02 id id): nothing else comes to a publisher.
            count, rest = divmod(len(pending), 4)
            if count:
                pending = pending[count * 4 :] if rest else b""
                with self._acked_cond:
                    self.acked += count
                    self._acked_cond.notify_all()

    def packets(self, messages: Iterable[tuple[str, bytes]]) -> list[bytes]:
        """Encode (before any timing) each message's PUBLISH packet."""
        out = []
        for topic, payload in messages:
            self._next_id = self._next_id % 65535 + 1
            out.append(publish_packet(topic, payload, self._next_id))
        return out

    def send(self, packets: list[bytes]) -> None:
        self.sock.sendall(b"".join(packets))

    def wait_acked(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._acked_cond:
            while self.acked < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._acked_cond.wait(remaining)
        return True

    def close(self) -> None:
        try:
            self.sock.sendall(b"\xe0\x00")  # DISCONNECT
        finally:
            self.sock.close()


def paced(
    publisher: LeanPublisher,
    packets: list[bytes],
    rate: float,
    on_sent: Callable[[int, int, float], None] | None = None,
    tick: float = 0.005,
) -> float:
    """Send ``packets`` at ``rate`` per second (0: as fast as the broker
    acknowledges), every ``tick`` seconds those due; ``on_sent(start, end,
    when)`` after each write. Returns the seconds it took."""
    started = time.monotonic()
    sent, total = 0, len(packets)
    window = 30_000  # in flight at most: packet ids (1 to 65535) stay unique
    while sent < total:
        due = total if rate <= 0 else int((time.monotonic() - started) * rate) + 1
        due = min(total, due, publisher.acked + window)
        if due > sent:
            publisher.send(packets[sent:due])
            if on_sent is not None:
                on_sent(sent, due, time.time())
            sent = due
        elif rate <= 0:
            time.sleep(0.001)  # the window is full: wait for PUBACKs
        if rate > 0 and sent < total:
            time.sleep(tick)
    return time.monotonic() - started
