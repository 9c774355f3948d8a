"""Sensor readings to InfluxDB (or any server speaking its v2 write API:
VictoriaMetrics, InfluxDB 3...). Plugin ``influxdb``.

One measurement per device kind (``water_meter``, ``streetlight``...), tagged
``device_id`` and ``commune`` plus the reading's own tags; fields are the
reading's fields; the time is when the device observed it. Settings::

    [plugins.influxdb]
    url = "http://127.0.0.1:8086"
    org = "clermont"
    bucket = "capteurs"
    token = "..."                  # or VIGIE_INFLUXDB_TOKEN in the environment
    batch_size = 1000              # points per write
    flush_interval_ms = 1000       # a partial batch is written after this long
    max_buffered_points = 100000   # kept while the server is away; oldest dropped beyond

``store_telemetry`` only turns readings into line protocol and queues them:
it never waits for the server, so alerts are never held up. A feeder thread
hands the queue to influxdb-client's batching ``WriteApi`` in batches of
``batch_size`` lines (a partial one after ``flush_interval_ms``), two in
flight at most; each batch is one record for the ``WriteApi``, whose
reactive pipeline costs as much for a line as for a batch. A batch the server refused after the
client's own retries is put back at the front of the queue and tried again
after a pause that doubles up to a minute. While the server is away the
queue holds at most ``max_buffered_points``; beyond, the oldest points are
dropped, counted, and logged.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from core.config import Commune
from core.hookspecs import hookimpl
from core.signals import Reading

log = logging.getLogger(__name__)

TOKEN_ENV = "VIGIE_INFLUXDB_TOKEN"
# Devices report to the second at best: milliseconds keep lines short.
_PRECISION = "ms"
_MAX_PAUSE = 60.0
_QUIET_LOGGERS = {
    "influxdb_client.client.write.retry": logging.ERROR,
    "influxdb_client.client.write_api": logging.CRITICAL,
}


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    url: str = Field(default="http://127.0.0.1:8086", pattern=r"^https?://")
    # Secret: prefer VIGIE_INFLUXDB_TOKEN in the environment to writing it here.
    token: SecretStr | None = None
    org: str = "vigie"
    bucket: str = "vigie"
    batch_size: int = Field(default=1000, ge=1, le=100_000)
    flush_interval_ms: int = Field(default=1000, ge=10)
    max_buffered_points: int = Field(default=100_000, ge=1)
    # influxdb-client's own retries of one batch before Vigie takes it back.
    retry_interval_ms: int = Field(default=1000, ge=10)
    max_retries: int = Field(default=2, ge=0)
    timeout_ms: int = Field(default=10_000, ge=100)

    def resolved_token(self) -> str | None:
        if self.token is not None:
            return self.token.get_secret_value()
        return os.environ.get(TOKEN_ENV) or None


@dataclass
class WriterStats:
    queued: int = 0
    written: int = 0
    dropped: int = 0
    failed_batches: int = 0
    in_flight: int = 0
    buffered: int = 0


# Line protocol escapes, as influxdb-client's Point writes them.
_MEASUREMENT_ESCAPES = str.maketrans(
    {",": r"\,", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"}
)
_KEY_ESCAPES = str.maketrans(
    {",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"}
)
_STRING_ESCAPES = str.maketrans({'"': r"\"", "\\": r"\\"})
# Most names need no escape: looking for what would be escaped is cheaper than translating.
_MEASUREMENT_SPECIAL = re.compile(r"[, \n\t\r]")
_KEY_SPECIAL = re.compile(r"[,= \n\t\r]")
_STRING_SPECIAL = re.compile(r'["\\]')
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NS_PER_DAY = 86_400 * 10**9


def to_line(reading: Reading, commune: str) -> str:
    """A reading as one line of InfluxDB line protocol ("" when it has no usable field).

    Written here rather than through influxdb-client's ``Point`` (several times
    slower, once per reading): the same escapes, order (tags and fields by
    key), number formats and time. Values of other types than float, int,
    bool and str, and measurements the client warns about, still go through
    ``Point``.
    """
    measurement = str(reading.device_kind)
    if _MEASUREMENT_SPECIAL.search(measurement):
        measurement = measurement.translate(_MEASUREMENT_ESCAPES)
    observed_at = reading.observed_at
    if measurement.startswith("#") or not isinstance(observed_at, datetime):
        return _point_line(reading, commune)
    fields = []
    for key, value in sorted(reading.fields.items()):
        kind = type(value)
        if kind is float:
            if not math.isfinite(value):  # NaN, infinities: not storable
                continue
            text = repr(value)
            if text.endswith(".0"):
                text = text[:-2]
        elif kind is int:
            text = f"{value}i"
        elif kind is bool:
            text = "true" if value else "false"
        elif kind is str:
            if _STRING_SPECIAL.search(value):
                value = value.translate(_STRING_ESCAPES)
            text = f'"{value}"'
        elif value is None:
            continue
        else:
            return _point_line(reading, commune)
        fields.append(f"{_key(key)}={text}")
    if not fields:
        return ""
    tags = {"device_id": reading.device_id, "commune": commune}
    for key, value in reading.tags.items():
        if value not in (None, "") and key not in ("device_id", "commune"):
            tags[key] = value
    line = [measurement]
    for key, value in sorted(tags.items()):
        if value is None:
            continue
        key_text, value_text = _key(key), _key(value)
        if value_text.endswith("\\"):
            value_text += " "
        if key_text and value_text:
            line.append(f",{key_text}={value_text}")
    # Milliseconds (_PRECISION) computed as the client does, its rounding included.
    milliseconds = int(_nanoseconds(observed_at) / 1e6)
    line.append(f" {','.join(fields)} {milliseconds}")
    return "".join(line)


def _key(name: object) -> str:
    """A tag key or value, or a field key, escaped."""
    text = str(name)
    return text.translate(_KEY_ESCAPES) if _KEY_SPECIAL.search(text) else text


def _nanoseconds(moment: datetime) -> int:
    """Since the epoch; a naive datetime is taken as UTC."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return delta.days * _NS_PER_DAY + delta.seconds * 10**9 + delta.microseconds * 1000


def _point_line(reading: Reading, commune: str) -> str:
    """:func:`to_line` through influxdb-client's ``Point``."""
    from influxdb_client import Point

    point = Point(reading.device_kind).tag("device_id", reading.device_id).tag("commune", commune)
    for key, value in sorted(reading.tags.items()):
        if value not in (None, "") and key not in ("device_id", "commune"):
            point.tag(key, value)
    for key, value in reading.fields.items():
        if isinstance(value, float) and value != value:  # NaN: not storable
            continue
        point.field(key, value)
    point.time(reading.observed_at, _PRECISION)
    return point.to_line_protocol()


class Writer:
    """One destination (url, org, bucket): a bounded queue and a batching WriteApi."""

    def __init__(self, settings: Settings) -> None:
        from influxdb_client import InfluxDBClient, WriteOptions

        self.settings = settings
        self.stats = WriterStats()
        self._queue: deque[str] = deque()
        self._cond = threading.Condition()
        self._window = 2 * settings.batch_size
        self._pause_until = 0.0
        self._pause = 1.0
        self._closed = False
        self._last_drop_log = 0.0
        self._failing = False
        self._first_queued_at = 0.0  # when the oldest line still queued was queued
        self._flushing = False  # flush(): partial batches go at once
        self._client = InfluxDBClient(
            url=settings.url,
            token=settings.resolved_token(),
            org=settings.org,
            timeout=settings.timeout_ms,
        )
        # The client logs every failed try (and resets its loggers' levels when
        # created): this plugin says it once per outage.
        for name, level in _QUIET_LOGGERS.items():
            logging.getLogger(name).setLevel(level)
        self._options = WriteOptions(
            batch_size=1,  # each record is a batch of settings.batch_size lines (_feed)
            flush_interval=settings.flush_interval_ms,
            retry_interval=settings.retry_interval_ms,
            max_retries=settings.max_retries,
            max_retry_delay=max(settings.retry_interval_ms * 4, 1000),
            max_retry_time=max(settings.retry_interval_ms * (settings.max_retries + 2), 1000),
            max_close_wait=5_000,
        )
        self._api = self._client.write_api(
            write_options=self._options,
            success_callback=self._written,
            error_callback=self._refused,
        )
        self._feeder = threading.Thread(
            target=self._feed, name=f"vigie-influxdb-{settings.bucket}", daemon=True
        )
        self._feeder.start()

    # -- from store_telemetry (must not wait) --------------------------------------

    def add(self, lines: Iterable[str]) -> None:
        dropped = 0
        with self._cond:
            if not self._queue:
                self._first_queued_at = time.monotonic()
            for line in lines:
                if len(self._queue) >= self.settings.max_buffered_points:
                    self._queue.popleft()
                    dropped += 1
                self._queue.append(line)
                self.stats.queued += 1
            self._cond.notify()
        if dropped:
            self._dropped(dropped)

    # -- feeder thread ---------------------------------------------------------------

    def _feed(self) -> None:
        size, wait_for_more = self.settings.batch_size, self.settings.flush_interval_ms / 1000
        while True:
            with self._cond:
                while True:
                    if self._closed:
                        return
                    now = time.monotonic()
                    room = self._window - self.stats.in_flight
                    # A full batch at once; a partial one when it has waited flush_interval_ms.
                    due = self._first_queued_at + wait_for_more
                    if (
                        self._queue
                        and room > 0
                        and now >= self._pause_until
                        and (len(self._queue) >= size or now >= due or self._flushing)
                    ):
                        break
                    wake = 0.5
                    if self._queue:
                        wake = max(0.01, min(wake, self._pause_until - now, due - now))
                    self._cond.wait(wake)
                take = min(len(self._queue), room)
                lines = [self._queue.popleft() for _ in range(take)]
                self.stats.in_flight += take
            # A batch of lines is one record for the WriteApi (its batch_size is 1):
            # its reactive pipeline then handles a batch, not every line.
            for start in range(0, len(lines), size):
                self._api.write(
                    bucket=self.settings.bucket,
                    org=self.settings.org,
                    record="\n".join(lines[start : start + size]),
                    write_precision=_PRECISION,
                )

    # -- WriteApi callbacks (its threads) --------------------------------------------

    def _written(self, conf: tuple, data: str | bytes) -> None:
        count = len(_lines(data))
        with self._cond:
            self.stats.in_flight -= count
            self.stats.written += count
            self._pause = 1.0
            recovered, self._failing = self._failing, False
            self._cond.notify()
        if recovered:
            log.info("influxdb: %s answers again; writing the buffered points", self.settings.url)

    def _refused(self, conf: tuple, data: str | bytes, exception: Exception) -> None:
        lines = _lines(data)
        dropped = 0
        with self._cond:
            self.stats.in_flight -= len(lines)
            self.stats.failed_batches += 1
            # Back at the front: they are the oldest. Beyond the bound, drop them first.
            room = self.settings.max_buffered_points - len(self._queue)
            keep = lines[len(lines) - max(0, room) :] if room < len(lines) else lines
            dropped = len(lines) - len(keep)
            self._queue.extendleft(reversed(keep))
            self._pause_until = time.monotonic() + self._pause
            pause, self._pause = self._pause, min(self._pause * 2, _MAX_PAUSE)
            first, self._failing = not self._failing, True
            self._cond.notify()
        if first:
            log.warning(
                "influxdb: cannot write to %s (%s); keeping up to %d points and retrying",
                self.settings.url,
                exception,
                self.settings.max_buffered_points,
            )
        else:
            log.debug("influxdb: write failed again (%s); next try in %.0f s", exception, pause)
        if dropped:
            self._dropped(dropped)

    def _dropped(self, count: int) -> None:
        with self._cond:
            self.stats.dropped += count
            total = self.stats.dropped
        now = time.monotonic()
        if now - self._last_drop_log >= 10:
            self._last_drop_log = now
            log.warning(
                "influxdb: buffer full (%d points) while %s is away: "
                "%d oldest points dropped so far",
                self.settings.max_buffered_points,
                self.settings.url,
                total,
            )

    # -- status and shutdown --------------------------------------------------------

    def snapshot(self) -> WriterStats:
        with self._cond:
            self.stats.buffered = len(self._queue)
            return WriterStats(**vars(self.stats))

    def flush(self, timeout: float = 10.0, give_up_when_failing: bool = False) -> bool:
        """Wait until everything queued is written (True) or ``timeout`` passes
        (or, with ``give_up_when_failing``, the server is found away)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._flushing = True
            self._cond.notify()
        try:
            while time.monotonic() < deadline:
                with self._cond:
                    if not self._queue and self.stats.in_flight == 0:
                        return True
                    if give_up_when_failing and self._failing:
                        return False
                self._api.flush()
                time.sleep(0.05)
            return False
        finally:
            with self._cond:
                self._flushing = False

    def close(self, timeout: float = 5.0) -> None:
        # A server away at exit is not waited for (the flush gives up once the
        # client's own retries have failed, and so does the WriteApi's close):
        # what is buffered is lost, and said. One that refuses connections is
        # known away at once: waiting for the client's retries to fail first
        # kept a stopping service (the demo, with no server) 10 s and more.
        away = self._failing or not _accepts_connections(self.settings.url)
        if not self.flush(0 if away else timeout, give_up_when_failing=True):
            self._options.max_close_wait = 100  # read by WriteApi.close()
            left = self.snapshot()
            log.warning(
                "influxdb: closing with %d points not written to %s",
                left.buffered + left.in_flight,
                self.settings.url,
            )
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._feeder.join(2)
        try:
            self._api.close()
        finally:
            self._client.close()


def _accepts_connections(url: str, timeout: float = 1.0) -> bool:
    """Whether the server at ``url`` accepts a TCP connection within ``timeout``."""
    parsed = urlsplit(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname or "127.0.0.1", port), timeout).close()
    except OSError:
        return False
    return True


def _lines(data: str | bytes) -> list[str]:
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    return [line for line in text.split("\n") if line]


# --- Writers of this process, by destination ----------------------------------------

_writers: dict[tuple[str, str, str, str | None], Writer] = {}
_writers_lock = threading.Lock()


def writer_for(settings: Settings) -> Writer:
    key = (settings.url, settings.org, settings.bucket, settings.resolved_token())
    with _writers_lock:
        writer = _writers.get(key)
        if writer is None:
            writer = _writers[key] = Writer(settings)
            _close_before_thread_pools_stop()
        return writer


_closing_registered = False


def _close_before_thread_pools_stop() -> None:
    """At exit, write what is buffered while the client can still do it.

    influxdb-client sends through thread pools, which refuse new work once
    the interpreter's threading shutdown has run: a plain ``atexit`` handler
    runs after that, and every point still buffered would be lost. Handlers
    registered with ``threading._register_atexit`` run at that shutdown, the
    last registered first: registered after the pools' own (this module's
    Writer has imported them by now), ours runs before them.
    """
    global _closing_registered
    if _closing_registered:
        return
    register = getattr(threading, "_register_atexit", None)
    if register is None:  # another Python: the atexit handler below still tries
        return
    try:
        register(close_writers)
    except RuntimeError:  # the interpreter is already shutting down
        return
    _closing_registered = True


def writers() -> list[Writer]:
    with _writers_lock:
        return list(_writers.values())


@atexit.register  # a fallback: see _close_before_thread_pools_stop
def close_writers() -> None:
    """Write what is buffered (a few seconds at most) and close, e.g. at exit."""
    with _writers_lock:
        found = list(_writers.values())
        _writers.clear()
    for writer in found:
        try:
            writer.close()
        except Exception:  # the process is ending: report, do not raise
            log.exception("influxdb: closing the writer to %s failed", writer.settings.url)


@hookimpl
def store_telemetry(readings: list[Reading], commune: Commune) -> None:
    settings: Settings = commune.plugin_config("influxdb") or Settings()
    lines = [line for line in (to_line(r, commune.slug) for r in readings) if line]
    if lines:
        writer_for(settings).add(lines)
