"""The MQTT broker of a demo or a single-machine install, and how to tell one answers.

``vigie serve`` with no ``VIGIE_MQTT_URL`` calls :func:`local_broker`: it
starts an embedded amqtt broker on 127.0.0.1 (``ingest.embedded_port``,
1883 by default) in its own thread and asyncio loop, uses a broker that
already answers on that port (a Mosquitto installed with the distribution),
or stops with a message saying what to set when something else holds it.

The embedded broker speaks MQTT 3.1.1 only, keeps sessions in memory (only
for clients that give a user name: Vigie connects as ``vigie``) and has no
shared subscriptions: it is for a demo or a small town, not for a city's
sensor network (use Mosquitto, EMQX or the network server's broker there).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import socket
import ssl
import threading
from dataclasses import dataclass

from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import Session

log = logging.getLogger(__name__)

EMBEDDED_HOST = "127.0.0.1"


class BrokerUnavailable(RuntimeError):
    """No broker can be used; the message says what to set."""


# --- Does an MQTT broker answer there? --------------------------------------


class Answer(enum.Enum):
    NOTHING = "nothing listens"
    NOT_MQTT = "something that is not an MQTT broker"
    MQTT = "an MQTT broker"


@dataclass(frozen=True)
class Probe:
    answer: Answer
    # CONNACK return code (3.1.1) or reason code (5); None without a CONNACK.
    code: int | None = None
    mqtt5: bool = False


def _connect_packet(level: int, client_id: str, keepalive: int = 10) -> bytes:
    variable = b"\x00\x04MQTT" + bytes([level, 0x02]) + keepalive.to_bytes(2, "big")
    if level == 5:
        variable += b"\x00"  # no properties
    body = variable + len(client_id).to_bytes(2, "big") + client_id.encode()
    return bytes([0x10, len(body)]) + body


def probe(
    host: str,
    port: int,
    level: int = 4,
    timeout: float = 2.0,
    tls: ssl.SSLContext | None = None,
) -> Probe:
    """Send a CONNECT (MQTT 3.1.1 with ``level`` 4, MQTT 5 with 5) and read the answer.

    A CONNACK, whatever its code (a broker that wants a password still is a
    broker), means MQTT; a 3.1.1-only broker answers an MQTT 5 CONNECT with
    return code 1 (unacceptable protocol version).
    """
    client_id = f"vigie-probe-{os.getpid()}-{threading.get_ident() % 100_000}"
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except OSError:
        return Probe(Answer.NOTHING)
    try:
        with contextlib.closing(raw):
            conn = tls.wrap_socket(raw, server_hostname=host) if tls else raw
            conn.settimeout(timeout)
            conn.sendall(_connect_packet(level, client_id))
            head = _read(conn, 2)
            if len(head) < 2 or head[0] != 0x20 or head[1] < 2:
                return Probe(Answer.NOT_MQTT)
            rest = _read(conn, head[1])
            if len(rest) < 2:
                return Probe(Answer.NOT_MQTT)
            code = rest[1]
            with contextlib.suppress(OSError):
                conn.sendall(b"\xe0\x00")  # DISCONNECT
            # An MQTT 5 CONNACK carries a properties length: more than 2 bytes.
            mqtt5 = level == 5 and code != 0x01 and head[1] > 2
            return Probe(Answer.MQTT, code, mqtt5)
    except (OSError, ssl.SSLError):
        return Probe(Answer.NOT_MQTT)


def _read(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def speaks_mqtt5(
    host: str, port: int, timeout: float = 2.0, tls: ssl.SSLContext | None = None
) -> bool | None:
    """True when the broker accepts MQTT 5, False when it answers 3.1.1 only,
    None when it cannot be reached (or does not answer MQTT)."""
    result = probe(host, port, level=5, timeout=timeout, tls=tls)
    if result.answer is not Answer.MQTT:
        return None
    return result.mqtt5


# --- The embedded broker ------------------------------------------------------


class OpenAuth(BaseAuthPlugin):
    """Lets everyone in, like amqtt's ``allow_anonymous``, but keeps the
    persistent session of a client that gives a user name (amqtt's own plugin
    marks every session anonymous, and drops it on disconnect)."""

    @dataclass
    class Config:
        pass

    async def authenticate(self, *, session: Session) -> bool:
        session.is_anonymous = not session.username
        return True


class EmbeddedBroker:
    """amqtt in a thread of its own, with its own asyncio loop, bound to 127.0.0.1."""

    def __init__(self, port: int, host: str = EMBEDDED_HOST) -> None:
        self.host = host
        self.port = port
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        """Bind and serve; raise :class:`OSError` when the port cannot be bound."""
        # amqtt logs every connection at INFO; its warnings and errors still show.
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger(name).level))
        self._thread = threading.Thread(target=self._run, name="vigie-embedded-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the embedded MQTT broker did not start within {timeout:.0f} s")
        if self._error is not None:
            error, self._error = self._error, None
            self._thread.join(5)
            raise error
        log.info("embedded MQTT broker on %s:%s", self.host, self.port)

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None or self._loop is None or self._stop is None:
            return
        with contextlib.suppress(RuntimeError):  # loop already closed
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start() when it happens before ready
            if not self._ready.is_set():
                self._error = exc
                self._ready.set()
            else:
                log.exception("the embedded MQTT broker stopped")
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self) -> None:
        from amqtt.broker import Broker

        self._stop = asyncio.Event()
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {f"{__name__}.{OpenAuth.__name__}": {}},
        }
        broker = Broker(config)
        try:
            await broker.start()
        except Exception as exc:
            # amqtt wraps the bind error; keep the OSError that says why.
            cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
            raise cause from None
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(broker.shutdown(), 5)


@dataclass
class LocalBroker:
    """The broker ``vigie serve`` uses when no ``VIGIE_MQTT_URL`` is set."""

    url: str
    embedded: EmbeddedBroker | None
    message: str

    def stop(self) -> None:
        if self.embedded is not None:
            self.embedded.stop()


def local_broker(port: int, host: str = EMBEDDED_HOST) -> LocalBroker:
    """Start the embedded broker on ``host:port``, or use the MQTT broker that
    already answers there. Raise :class:`BrokerUnavailable` (saying what to set)
    when something else holds the port."""
    found = probe(host, port)
    if found.answer is Answer.NOTHING:
        broker = EmbeddedBroker(port, host)
        try:
            broker.start()
        except OSError as exc:
            why = f"it cannot be bound ({exc.strerror or exc})"
            raise BrokerUnavailable(_port_taken(host, port, why)) from None
        return LocalBroker(broker.url, broker, f"embedded MQTT broker on {host}:{port}")
    if found.answer is Answer.MQTT:
        message = (
            f"an MQTT broker already answers on {host}:{port}: using it "
            "(set VIGIE_MQTT_URL to choose one)"
        )
        log.info(message)
        return LocalBroker(f"mqtt://{host}:{port}", None, message)
    why = "something that is not an MQTT broker holds it"
    raise BrokerUnavailable(_port_taken(host, port, why))


def refuse_foreign_port(port: int, host: str = EMBEDDED_HOST) -> None:
    """Raise :class:`BrokerUnavailable` when something that is not an MQTT
    broker holds ``host:port`` (a check before the HTTP server starts)."""
    if probe(host, port).answer is Answer.NOT_MQTT:
        why = "something that is not an MQTT broker holds it"
        raise BrokerUnavailable(_port_taken(host, port, why))


def _port_taken(host: str, port: int, why: str) -> str:
    return (
        f"cannot start the embedded MQTT broker on {host}:{port}: {why}. "
        "Set VIGIE_MQTT_URL=mqtt://host:port to use your MQTT broker, or "
        "VIGIE_INGEST__EMBEDDED_PORT to another free port for the embedded one."
    )
