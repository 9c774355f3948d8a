"""The ingestor's paho-mqtt client: reads through a buffer, acknowledges a
batch in one write.

paho-mqtt 2.x reads each packet with three or four ``recv()`` calls (its
first byte, each byte of its length, then the rest) and goes through
``select()`` and its housekeeping between two packets. It sends each
PUBACK as a packet of its own: a byte written to wake its network thread,
then a ``send()`` of four bytes. At thousands of messages a second those
system calls were most of the MQTT thread's time. :class:`IngestClient`
changes only how bytes move, never what is sent or when a message counts
as acknowledged:

- its socket (:class:`BufferedSocket`) fills a buffer with one ``recv()``
  and hands paho its bytes from there; it reports what it holds through
  ``pending()``, the method paho already asks of TLS sockets, so that
  ``select()`` never waits while a packet is buffered;
- :meth:`IngestClient.loop_read` goes on reading while whole packets are
  buffered, instead of one packet per pass of paho's loop;
- :meth:`IngestClient.ack_many` queues the PUBACKs of a whole batch as one
  write: the same bytes on the wire as one ``ack()`` each;
- ``hold_reading``, when it says so, leaves what the broker sends in the
  socket (TCP then holds the broker back). A broker is to send no more
  unacknowledged messages than the Receive Maximum asked for, but Mosquitto
  2.0.11 (Debian 12's) goes past it once acknowledgements flow: with 30,000
  messages queued for the session and a Receive Maximum of 8,000, it had
  22,000 unacknowledged messages in the client at once. After a long outage
  the whole backlog would come into memory. A hold lasts half the
  keep-alive at most, then one read lets the broker's PINGRESP (and what
  came before it) in: held longer, paho would take the connection for dead.

They rely on three of paho's internals (``_create_socket``,
``_packet_queue``, ``_sock``), checked by ``tests/ingest/test_paho_client.py``
against a real broker; ``paho-mqtt`` is pinned below the next major version
in ``pyproject.toml``.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

READ_SIZE = 65536  # bytes a recv() may bring: about a hundred sensor messages
HOLD_SECONDS = 0.005  # between two looks while reading is held
_PUBACK = struct.Struct("!BBH")  # fixed header 0x40, remaining length 2, packet id
_PUBACK_COMMAND = 0x40
# Packets read in one call of loop_read at most, so that writes (the acks)
# and paho's keep-alive are never held up for long.
_READ_BURST = 1000


class BufferedSocket:
    """A socket whose ``recv()`` is served from a buffer filled ``READ_SIZE``
    bytes at a time. Everything else goes to the socket it wraps."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buffer = b""
        self._pos = 0

    def recv(self, size: int) -> bytes:
        buffer, pos = self._buffer, self._pos
        if pos >= len(buffer):
            # May raise BlockingIOError (or, over TLS, SSLWantReadError): paho handles both.
            buffer = self._sock.recv(max(size, READ_SIZE))
            if len(buffer) <= size:
                return buffer  # b"" at end of stream, as a socket says it
            self._buffer, pos = buffer, 0
        end = pos + size
        self._pos = end
        return buffer[pos:end]

    def buffered(self) -> int:
        """Bytes received and not yet read."""
        return max(len(self._buffer) - self._pos, 0)

    def pending(self) -> int:
        """What paho asks before ``select()``: bytes that are ready without it."""
        inner = getattr(self._sock, "pending", None)
        return self.buffered() + (inner() if inner is not None else 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class IngestClient(mqtt.Client):
    """A paho ``Client`` (callback API version 2) for the ingestor: see the module."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(CallbackAPIVersion.VERSION2, **kwargs)
        # Asked before each read: True leaves incoming packets unread for a while.
        self.hold_reading: Callable[[], bool] | None = None
        self._held_since: float | None = None

    def _create_socket(self) -> Any:
        return BufferedSocket(super()._create_socket())

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        if self._holding():
            # paho's loop comes straight back while bytes wait: pace it. Writes
            # (the acknowledgements that end the hold) and keep-alive go on.
            time.sleep(HOLD_SECONDS)
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        rc = super().loop_read(max_packets)
        for _ in range(_READ_BURST):
            sock = self._sock
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or not isinstance(sock, BufferedSocket):
                break
            if not sock.buffered() or self._holding():
                break
            rc = super().loop_read(1)
        return rc

    def _holding(self) -> bool:
        hold = self.hold_reading
        if hold is None or not hold():
            self._held_since = None
            return False
        now = time.monotonic()
        if self._held_since is None:
            self._held_since = now
        elif now - self._held_since >= max(1.0, self._keepalive / 2):
            self._held_since = now  # one read now, then the hold again
            return False
        return True

    def ack_many(self, mids: Iterable[int]) -> int:
        """Acknowledge the QoS 1 messages ``mids`` (``manual_ack`` clients) in
        one write; return how many."""
        packet = b"".join([_PUBACK.pack(_PUBACK_COMMAND, 2, mid) for mid in mids])
        if packet:
            self._packet_queue(_PUBACK_COMMAND, packet, 0, 0)
        return len(packet) // _PUBACK.size


def ingest_client(client_id: str, protocol: int) -> IngestClient:
    """The ingestor's client: a persistent session, acknowledged by hand after commit."""
    if protocol == mqtt.MQTTv5:
        return IngestClient(client_id=client_id, protocol=protocol, manual_ack=True)
    return IngestClient(
        client_id=client_id, clean_session=False, protocol=protocol, manual_ack=True
    )
