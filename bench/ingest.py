"""Ingestion benchmark: MQTT in, database committing, tickets out.

    .venv/bin/python bench/ingest.py --database sqlite
    .venv/bin/python bench/ingest.py --database postgresql   # VIGIE_BENCH_POSTGRES_URL

One run, against Mosquitto on loopback (a private one on a free port unless
``--url`` names a broker), with the example area's configuration and
``vigie simulate``'s traffic (mostly readings; ``--alerts`` 2 % of messages
raise or clear a condition, and devices repeat an active condition in each
reading as their vocabularies do; 1 % junk; The Things Stack, ChirpStack and
wmbusmeters formats):

1. **ceiling**: a bare paho-mqtt subscriber (QoS 1, does nothing) drains
   ``--messages`` messages queued for its session: its receive rate;
2. **throughput**: Vigie's ingestor (MqttIngestor + IngestPipeline, each
   batch committed) drains the same messages queued for its session:
   messages stored per second, and the ratio to the ceiling;
3. **latency**: the publisher sends ``--rate`` messages/s for ``--seconds``
   while Vigie ingests: alert-to-ticket latency (publish -> batch committed)
   p50 / p99, and whether ingestion kept up;
4. **storm**: ``--storm`` lamps behind one cabinet lose power at once: time
   until the incident ticket exists and until every alert is stored.

The publisher runs in a process of its own: ``bench/lean_publisher.py``,
QoS 1 packets encoded before the run and written in bulk (about a tenth of a
core at 5,000 messages/s, where paho-mqtt took half a core from what is
measured); paho-mqtt for a TLS broker given with ``--url mqtts://``. ``--profile FILE`` writes a
cProfile of ``process_batch`` (the worker thread) in the throughput phase.

``--processes N`` (default 1) runs the throughput and latency phases with N
ingest processes, as N ``vigie ingest`` would: spawned, each with its own
runtime on the run's database (the same SQLite file, the same PostgreSQL
schema), its pipeline in itself (``ingest.pipeline_process`` off: the
processes are daemonic, and the cores are taken) and its own client id, all
in one shared subscription
(``$share/<group>/<filter>``, what ``ingest.shared_group`` sets). Reported
together: messages stored per second from the first process's start to the
last commit of any, batches, p50 batch time, the outcomes summed, and live,
every alert's latency whichever process stored it (the processes send their
commit times back over a pipe). The ceiling stays one bare subscriber (the
ratio is the processes' rate over it); ``--transport-only`` and the storm
stay in one process.

For the throughput phase each process connects, subscribes and disconnects
(its persistent session keeps the group's subscription), then the publisher
sends. Mosquitto 2.0.11 gives each message published to the next member of
the group in turn, online or not, and queues it in that member's session:
checked with 1,000 messages and two members, 500 each both when both were
offline and when one was online (the offline one got its 500 when it came
back). So the split is made at publish time, round robin, not by who is
free: a slower process is not relieved by the others, and one device's
messages go to every process in turn, so they may be stored out of order.

After each multi-process phase, ``exactly_once`` compares the multiset of
the messages' digests the processes committed with the publisher's (every
message stored once, by one process), and ``in_database`` the tickets and
dead letters in the database with what the processes reported. With any N,
``open_conditions`` counts the device conditions left raised, and those
raised twice at once: with the same messages, one process gave the same
figures run after run; a difference shows messages of a device handled out
of order, or two processes opening a ticket for one condition.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import cProfile
import dataclasses
import hashlib
import json
import logging
import multiprocessing
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqlalchemy import func, select  # noqa: E402

from bench.databases import bench_database  # noqa: E402
from bench.lean_publisher import LeanPublisher, paced  # noqa: E402
from core.gc_tuning import tune_for_service  # noqa: E402
from core.ingest.mqtt import BrokerUrl, MqttIngestor, new_client  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.simulate import Simulation  # noqa: E402
from core.testing import PrivateMosquitto, wait_until  # noqa: E402

log = logging.getLogger("bench")


def digest(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=12).digest()


# --- The broker ----------------------------------------------------------------------


def mosquitto_version() -> str:
    try:
        out = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True).stdout
        return out.splitlines()[0].strip()
    except (OSError, IndexError):
        return "unknown"


# --- The publisher (a process of its own) --------------------------------------------


def publisher_main(
    url: str,
    sim_args: dict[str, Any],
    messages: int,
    rate: float,
    storm: bool,
    out: Any,
    count_digests: bool = False,
) -> None:
    """Publish ``messages`` (``rate`` per second, 0: as fast as possible) or the
    storm; send back {digest: publish time} of the alerts and the elapsed time
    (and, with ``count_digests``, how often each payload was sent)."""
    simulation = Simulation(**sim_args)
    batch = simulation.storm_messages() if storm else list(simulation.messages(messages))
    digests = Counter(digest(m.payload) for m in batch) if count_digests else None
    sent_at: dict[bytes, float] = {}
    if BrokerUrl.parse(url).tls:
        elapsed = _publish_with_paho(url, batch, rate, sent_at)
    else:
        # Not paho: its ~100 µs of CPU a message would be taken from what is measured.
        publisher = LeanPublisher(url, f"bench-pub-{uuid.uuid4().hex[:6]}")
        packets = publisher.packets((m.topic, m.payload) for m in batch)
        alerts = [
            (n, digest(m.payload)) for n, m in enumerate(batch) if m.purpose in ("alert", "storm")
        ]
        position = 0

        def note_sent(start: int, end: int, when: float) -> None:
            nonlocal position
            while position < len(alerts) and alerts[position][0] < end:
                sent_at[alerts[position][1]] = when
                position += 1

        started = time.monotonic()
        paced(publisher, packets, rate, note_sent)
        if not publisher.wait_acked(len(packets), 120):
            log.warning("publisher: %d of %d acknowledged", publisher.acked, len(packets))
        elapsed = time.monotonic() - started
        publisher.close()
    out.send(
        {
            "sent_at": sent_at,
            "elapsed": elapsed,
            "count": len(batch),
            "digests": digests,
            "purposes": dict(simulation.counts),
        }
    )
    out.close()


def _publish_with_paho(url: str, batch: list, rate: float, sent_at: dict[bytes, float]) -> float:
    """TLS brokers (--url mqtts://...): paho-mqtt, with no in-flight limit (with
    2,000 in flight, paho's scan of them at each PUBACK held it to ~2,600 msg/s)."""
    broker = BrokerUrl.parse(url)
    client = new_client(f"bench-pub-{uuid.uuid4().hex[:6]}")
    broker.configure(client)
    client.max_inflight_messages_set(0)
    client.max_queued_messages_set(0)
    client.connect(broker.host, broker.port, keepalive=60)
    client.loop_start()
    infos = []
    started = time.monotonic()
    for n, message in enumerate(batch):
        if rate > 0:
            ahead = n / rate - (time.monotonic() - started)
            if ahead > 0.001:
                time.sleep(ahead)
        infos.append(client.publish(message.topic, message.payload, qos=1))
        if message.purpose in ("alert", "storm"):
            sent_at[digest(message.payload)] = time.time()
    for info in infos:
        info.wait_for_publish(120)
    elapsed = time.monotonic() - started
    client.disconnect()
    client.loop_stop()
    return elapsed


def publish(
    url: str,
    sim_args: dict[str, Any],
    messages: int,
    rate: float,
    storm: bool = False,
    count_digests: bool = False,
):
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(
        target=publisher_main,
        args=(url, sim_args, messages, rate, storm, send, count_digests),
        daemon=True,
    )
    process.start()
    send.close()
    return process, receive


def finish(process, receive) -> dict[str, Any]:
    result = receive.recv()
    process.join(30)
    return result


# --- The bare subscriber (the ceiling) ------------------------------------------------


def bare_subscriber_rate(url: str, topics: list[str], sim_args: dict, messages: int) -> dict:
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    from paho.mqtt.subscribeoptions import SubscribeOptions

    broker = BrokerUrl.parse(url)
    client_id = f"bench-bare-{uuid.uuid4().hex[:6]}"
    received = 0
    first = last = 0.0
    done = threading.Event()

    def on_message(client, userdata, message) -> None:
        nonlocal received, first, last
        received += 1
        if received == 1:
            first = time.monotonic()
        if received >= messages:
            last = time.monotonic()
            done.set()

    def connect(client) -> None:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 600
        properties.ReceiveMaximum = 2000
        client.connect(broker.host, broker.port, clean_start=False, properties=properties)

    client = new_client(client_id, mqtt.MQTTv5)
    connect(client)
    client.subscribe([(t, SubscribeOptions(qos=1)) for t in topics])
    client.loop_start()
    time.sleep(0.5)
    client.disconnect()
    client.loop_stop()
    process, receive = publish(url, sim_args, messages, rate=0)
    published = finish(process, receive)
    client = new_client(client_id, mqtt.MQTTv5)
    client.on_message = on_message
    connected = time.monotonic()
    connect(client)
    client.loop_start()
    done.wait(300)
    client.disconnect()
    client.loop_stop()
    seconds = last - connected
    return {
        "messages": received,
        "seconds": round(seconds, 3),
        "rate": round(received / seconds) if seconds else 0,
        "publish_rate": round(published["count"] / published["elapsed"]),
    }


# --- Vigie -----------------------------------------------------------------------------


_pipelines: dict[int, Any] = {}


def pipeline_of(runtime):
    """The runtime's pipeline as `vigie ingest` runs it: with ingest.pipeline_process
    (the default), one child process for the whole run, started at once so that
    its start-up is not timed; else in this process (--in-process)."""
    pipeline = _pipelines.get(id(runtime))
    if pipeline is None:
        if runtime.settings.ingest.pipeline_process:
            from core.ingest.pipeline_pool import pipeline_processes

            pipeline = pipeline_processes(runtime.settings)
            pipeline.start()
        else:
            from core.ingest.pipeline import IngestPipeline

            pipeline = IngestPipeline(runtime)
        _pipelines[id(runtime)] = pipeline
    return pipeline


def close_pipeline(runtime) -> None:
    pipeline = _pipelines.pop(id(runtime), None)
    if pipeline is not None and hasattr(pipeline, "close"):
        pipeline.close()


class TimedPipeline:
    """The real pipeline, batches handed over as the ingestor does
    (:mod:`core.ingest.handover`); notes when each message's batch was committed."""

    def __init__(
        self, runtime, profiler: cProfile.Profile | None = None, count_digests: bool = False
    ) -> None:
        from core.ingest.handover import handover_for

        self.pipeline = pipeline_of(runtime)
        self.handover = handover_for(self.pipeline)
        self.profiler = profiler
        # Each message's digest, as often as it was stored (payloads may repeat).
        self.digests: Counter[bytes] | None = Counter() if count_digests else None
        self.committed_at: dict[bytes, float] = {}
        self.processed = 0
        self.first_batch = 0.0
        self.last_commit = 0.0
        self.batch_seconds: list[float] = []
        self.outcome = None
        self._sent: collections.deque = collections.deque()

    def send(self, messages, again: bool = False):
        started = time.monotonic()
        if not self.first_batch:
            self.first_batch = started
        if self.profiler is not None:  # cProfile sees one thread: the worker's
            self.profiler.enable()
        try:
            token = self.handover.send(messages, again=again)
        finally:
            if self.profiler is not None:
                self.profiler.disable()
        self._sent.append((messages, started))
        return token

    def receive(self, token):
        from core.ingest.batch import BatchOutcome

        messages, started = self._sent.popleft()
        outcome = self.handover.receive(token)
        now = time.time()
        self.last_commit = time.monotonic()
        self.batch_seconds.append(self.last_commit - started)
        for message in messages:
            self.committed_at[digest(message.payload)] = now
        if self.digests is not None:
            self.digests.update(digest(message.payload) for message in messages)
        self.processed += len(messages)
        if self.outcome is None:
            self.outcome = BatchOutcome()
        self.outcome.add(outcome)
        return outcome


def open_bench_runtime(
    database_url: str,
    workdir: Path,
    batch_size: int | None = None,
    in_process: bool = False,
    pipeline_processes: int | None = None,
):
    from core.plugin_manager import get_plugin_manager
    from core.runtime import open_runtime

    settings = Settings(
        database_url=database_url, config_dir=REPO / "config", data_dir=workdir / "data"
    )
    if batch_size:
        settings.ingest = settings.ingest.model_copy(update={"batch_size": batch_size})
    if in_process:
        settings.ingest = settings.ingest.model_copy(update={"pipeline_process": False})
    if pipeline_processes:
        settings.ingest = settings.ingest.model_copy(
            update={"pipeline_processes": pipeline_processes}
        )
    runtime = open_runtime(settings, get_plugin_manager(settings))
    # As `vigie ingest` and `vigie serve` do once started (see core/gc_tuning.py).
    tune_for_service()
    return runtime


class Telemetry:
    """The example area writes readings to 127.0.0.1:8428: VictoriaMetrics, started
    for the run when installed and nothing answers there."""

    def __init__(self, workdir: Path) -> None:
        self.process: subprocess.Popen | None = None
        self.workdir = workdir

    def start(self) -> str:
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", 8428), timeout=0.5).close()
            return "influxdb plugin -> the server already on :8428"
        binary = shutil.which("victoria-metrics")
        if binary is None:
            return "influxdb plugin -> nothing on :8428 (points buffered, then dropped)"
        self.process = subprocess.Popen(
            [binary, "-httpListenAddr=127.0.0.1:8428", f"-storageDataPath={self.workdir / 'vm'}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: _answers(8428), timeout=20, step=0.1)
        return "influxdb plugin -> victoria-metrics started on :8428 for the run"

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    return False


def import_registry(runtime, simulation: Simulation) -> float:
    import io

    from core.devices import import_devices

    registry = io.StringIO()
    simulation.write_registry(registry)
    started = time.monotonic()
    with runtime.sessions() as session:
        import_devices(runtime, session, "bench-devices.csv", registry.getvalue())
        session.commit()
    return time.monotonic() - started


def make_ingestor(
    runtime, pipeline, url: str, topics: list[str], client_id: str, shared_group: str | None = None
) -> MqttIngestor:
    return MqttIngestor(
        runtime,
        pipeline,
        url,
        topics,
        client_id,
        shared_group,
        options=runtime.settings.ingest.model_copy(update={"session_expiry_seconds": 600}),
    )


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


class StackSampler:
    """Where the ingest worker thread spends its time: its stack sampled every
    ``interval`` seconds (cheap, unlike cProfile, so the shares are true).
    ``top()`` gives each function's inclusive share of the samples."""

    def __init__(self, thread_name: str = "vigie-ingest-worker", interval: float = 0.002) -> None:
        self.thread_name = thread_name
        self.interval = interval
        self.samples = 0
        self.inclusive: dict[str, int] = {}
        self.lines: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            target = next(
                (t.ident for t in threading.enumerate() if t.name == self.thread_name), None
            )
            frame = sys._current_frames().get(target) if target else None
            seen: set[str] = set()
            innermost: str | None = None  # the deepest line of Vigie's own code
            while frame is not None:
                code = frame.f_code
                short = _short(code.co_filename)
                seen.add(f"{short}:{code.co_name}")
                if innermost is None and short.startswith(("core/", "connectors/", "plugins/")):
                    innermost = f"{short}:{frame.f_lineno} {code.co_name}"
                frame = frame.f_back
            if not seen or not any("process_batch" in n for n in seen):
                continue  # idle: waiting for messages
            self.samples += 1
            for name in seen:
                self.inclusive[name] = self.inclusive.get(name, 0) + 1
            if innermost:
                self.lines[innermost] = self.lines.get(innermost, 0) + 1

    def top(self, count: int = 30) -> list[tuple[str, float]]:
        """Vigie's functions by inclusive share of the busy samples."""
        ranked = sorted(
            (
                item
                for item in self.inclusive.items()
                if item[0].startswith(("core/", "connectors/", "plugins/"))
            ),
            key=lambda item: -item[1],
        )[:count]
        return [(name, round(100 * n / max(1, self.samples), 1)) for name, n in ranked]

    def top_lines(self, count: int = 25) -> list[tuple[str, float]]:
        """Vigie's deepest lines (what they call included) by share of the busy samples."""
        ranked = sorted(self.lines.items(), key=lambda item: -item[1])[:count]
        return [(name, round(100 * n / max(1, self.samples), 1)) for name, n in ranked]


def _short(filename: str) -> str:
    for marker in ("site-packages/", str(REPO) + "/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


class NoopPipeline:
    """Stores nothing: the transport alone (manual acks, batches)."""

    def __init__(self) -> None:
        self.processed = 0
        self.committed_at: dict[bytes, float] = {}
        self.batch_seconds: list[float] = []
        self.last_commit = 0.0
        self.outcome = None

    def process_batch(self, messages):
        self.processed += len(messages)
        self.last_commit = time.monotonic()
        self.batch_seconds.append(0.0)
        return None


def vigie_throughput(
    runtime,
    url,
    topics,
    sim_args,
    messages,
    profile: str | None,
    sample: bool = False,
    noop: bool = False,
) -> dict:
    client_id = f"bench-vigie-{uuid.uuid4().hex[:6]}"
    pipeline = TimedPipeline(runtime)
    ingestor = make_ingestor(runtime, pipeline, url, topics, client_id)
    ingestor.start()
    ingestor.wait_ready(10)
    ingestor.stop()
    process, receive = publish(url, sim_args, messages, rate=0)
    finish(process, receive)
    profiler = cProfile.Profile() if profile else None
    pipeline = NoopPipeline() if noop else TimedPipeline(runtime, profiler)
    ingestor = make_ingestor(runtime, pipeline, url, topics, client_id)
    sampler = StackSampler() if sample else None
    if sampler:
        sampler.start()
    started = time.monotonic()
    ingestor.start()
    finished = wait_until(lambda: pipeline.processed >= messages, timeout=600, step=0.01)
    seconds = pipeline.last_commit - started
    if sampler:
        sampler.stop()
    if profiler:
        profiler.dump_stats(profile)
    ingestor.stop()
    outcome = pipeline.outcome
    extra = (
        {"where_functions": sampler.top(), "where_lines": sampler.top_lines()} if sampler else {}
    )
    return {
        "pipeline": "noop (transport only)" if noop else type(pipeline.pipeline).__name__,
        "messages": pipeline.processed,
        "complete": finished,
        "seconds": round(seconds, 3),
        "rate": round(pipeline.processed / seconds) if seconds else 0,
        "batches": len(pipeline.batch_seconds),
        "batch_ms_p50": round(statistics.median(pipeline.batch_seconds or [0]) * 1000, 1),
        "accepted": outcome.accepted if outcome else 0,
        "alerts": outcome.alerts if outcome else 0,
        "readings": outcome.readings if outcome else 0,
        "dead_letters": outcome.dead_letters if outcome else 0,
        "tickets_created": len(outcome.tickets_created) if outcome else 0,
        **extra,
    }


def vigie_latency(runtime, url, topics, sim_args, rate: float, seconds: float) -> dict:
    pipeline = TimedPipeline(runtime)
    ingestor = make_ingestor(runtime, pipeline, url, topics, f"bench-live-{uuid.uuid4().hex[:6]}")
    ingestor.start()
    ingestor.wait_ready(10)
    messages = int(rate * seconds)
    started = time.monotonic()
    process, receive = publish(url, sim_args, messages, rate=rate)
    published = finish(process, receive)
    publish_end = time.monotonic()
    kept_up = wait_until(lambda: pipeline.processed >= messages, timeout=120, step=0.01)
    tail = time.monotonic() - publish_end
    ingestor.stop()
    counters = ingestor.counters
    latencies = [
        pipeline.committed_at[key] - sent
        for key, sent in published["sent_at"].items()
        if key in pipeline.committed_at
    ]
    return {
        "target_rate": rate,
        "published": published["count"],
        "publish_rate": round(published["count"] / published["elapsed"]),
        "processed": pipeline.processed,
        "complete": kept_up,
        "seconds": round(publish_end - started, 2),
        "drain_after_publisher_s": round(tail, 3),
        "alerts": len(published["sent_at"]),
        "latency_p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "latency_p99_ms": round(percentile(latencies, 99) * 1000, 1),
        "latency_max_ms": round(max(latencies) * 1000, 1) if latencies else None,
        "received": counters.received,
        "acked": counters.acked,
        "not_acked": counters.not_acked,
        "connects": counters.connects,
        "failed_batches": counters.failed_batches,
        "last_error": counters.last_error,
    }


def vigie_storm(runtime, url, topics, sim_args) -> dict:
    from core.db.models import SignalRecord, Ticket

    pipeline = TimedPipeline(runtime)
    ingestor = make_ingestor(runtime, pipeline, url, topics, f"bench-storm-{uuid.uuid4().hex[:6]}")
    ingestor.start()
    ingestor.wait_ready(10)
    lamps = sim_args["storm"]

    def stored() -> int:
        with runtime.sessions() as session:
            return session.scalar(
                select(func.count())
                .select_from(SignalRecord)
                .where(SignalRecord.kind == "alert", SignalRecord.device_id.like("SL-STORM-%"))
            )

    storm_incidents = select(Ticket).where(
        Ticket.is_incident.is_(True), Ticket.asset.like("ARM-SIM-STORM%")
    )

    def incident_at() -> bool:
        with runtime.sessions() as session:
            return session.scalars(storm_incidents).first() is not None

    started = time.monotonic()
    process, receive = publish(url, sim_args, 0, rate=0, storm=True)
    incident_seen = None
    while time.monotonic() - started < 120:
        if incident_seen is None and incident_at():
            incident_seen = time.monotonic() - started
        if stored() >= lamps:
            break
        time.sleep(0.05)
    all_stored = time.monotonic() - started
    published = finish(process, receive)
    count = stored()
    with runtime.sessions() as session:
        incidents = session.scalars(storm_incidents).all()
        storm_tickets = session.scalar(
            select(func.count(func.distinct(SignalRecord.ticket_id))).where(
                SignalRecord.device_id.like("SL-STORM-%")
            )
        )
    ingestor.stop()
    return {
        "lamps": lamps,
        "published_in_s": round(published["elapsed"], 3),
        "incidents": len(incidents),
        "tickets_holding_storm_alerts": storm_tickets,
        "incident_after_s": round(incident_seen, 3) if incident_seen is not None else None,
        "alerts_stored": count,
        "all_stored_after_s": round(all_stored, 3),
    }


# --- Several ingest processes (--processes N) ------------------------------------------


def ingest_process_main(conn, spec: dict[str, Any]) -> None:
    """One ingest process, as ``vigie ingest`` runs it: a runtime of its own on the
    bench database, an MqttIngestor in the shared-subscription group. Driven by
    the parent over ``conn``: "prime" (subscribe, then go offline, leaving the
    session subscribed), "run" (ingest; progress sent while running), "stop"
    (stop, send back what was measured)."""
    logging.basicConfig(
        level=logging.WARNING,
        format=f"%(levelname)s {spec['client_id']} %(name)s: %(message)s",
    )
    # The pipeline in this process: a daemonic process may not start another, and
    # with N ingest processes the cores are taken already.
    runtime = open_bench_runtime(
        spec["database_url"], Path(spec["workdir"]), spec["batch_size"], in_process=True
    )
    pipeline_of(runtime)  # started before it is timed

    def ingestor_for(pipeline) -> MqttIngestor:
        return make_ingestor(
            runtime, pipeline, spec["url"], spec["topics"], spec["client_id"], spec["group"]
        )

    try:
        conn.send(("opened", None))
        while True:
            command = conn.recv()
            if command == "prime":
                primer = ingestor_for(TimedPipeline(runtime))
                primer.start()
                subscribed = primer.wait_ready(10)
                primer.stop()
                conn.send(("primed", subscribed and primer.counters.subscribe_failures == 0))
            elif command == "run":
                pipeline = TimedPipeline(runtime, count_digests=True)
                ingestor = ingestor_for(pipeline)
                started = time.monotonic()  # system-wide on Linux: comparable across processes
                ingestor.start()
                conn.send(("ready", ingestor.wait_ready(10)))
                reported = -1
                while not conn.poll(0.05):
                    if pipeline.processed != reported:
                        reported = pipeline.processed
                        conn.send(("progress", reported))
                conn.recv()  # "stop"
                ingestor.stop()
                close_telemetry()
                outcome = pipeline.outcome
                counts = {name: getattr(outcome, name, 0) for name in OUTCOME_COUNTS}
                conn.send(
                    (
                        "result",
                        {
                            "client_id": spec["client_id"],
                            "started": started,
                            "last_commit": pipeline.last_commit,
                            "processed": pipeline.processed,
                            "batch_seconds": pipeline.batch_seconds,
                            "committed_at": pipeline.committed_at,
                            "digests": pipeline.digests,
                            "tickets_created": len(outcome.tickets_created) if outcome else 0,
                            **counts,
                            "counters": dataclasses.asdict(ingestor.counters),
                        },
                    )
                )
                return
    finally:
        close_pipeline(runtime)
        runtime.close()
        conn.close()


def close_telemetry() -> None:
    """Write the readings the influxdb plugin still buffers while the process is
    whole (its exit hook runs after the HTTP client's thread pool is shut down)."""
    influxdb = sys.modules.get("plugins.influxdb")
    if influxdb is not None:
        influxdb.close_writers()


OUTCOME_COUNTS = ("accepted", "alerts", "readings", "dead_letters", "duplicates")


class IngestProcesses:
    """``count`` ingest processes (spawned) in one shared-subscription group."""

    def __init__(self, count: int, spec: dict[str, Any], role: str) -> None:
        context = multiprocessing.get_context("spawn")
        self.group = f"bench-{role}-{uuid.uuid4().hex[:6]}"
        self.names: list[str] = []
        self.conns = []
        self.processes = []
        self.progress = [0] * count
        for n in range(count):
            name = f"{self.group}-{n}"
            parent, child = context.Pipe()
            process = context.Process(
                target=ingest_process_main,
                args=(child, {**spec, "client_id": name, "group": self.group}),
                name=name,
                daemon=True,
            )
            process.start()
            child.close()
            self.names.append(name)
            self.conns.append(parent)
            self.processes.append(process)

    def _receive(self, n: int, kind: str, timeout: float) -> Any:
        """The next ``kind`` message of process ``n`` (progress noted on the way)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.conns[n].poll(remaining):
                raise RuntimeError(f"ingest process {self.names[n]}: no {kind!r} in {timeout} s")
            try:
                got, value = self.conns[n].recv()
            except EOFError:
                code = self.processes[n].exitcode
                raise RuntimeError(f"ingest process {self.names[n]} ended (exit {code})") from None
            if got == "progress":
                self.progress[n] = value
            elif got == kind:
                return value

    def _all(self, command: str | None, kind: str, timeout: float) -> list[Any]:
        if command is not None:
            for conn in self.conns:  # all first: the processes start together
                conn.send(command)
        return [self._receive(n, kind, timeout) for n in range(len(self.conns))]

    def opened(self) -> None:
        self._all(None, "opened", 120)

    def prime(self) -> bool:
        return all(self._all("prime", "primed", 30))

    def run(self) -> bool:
        return all(self._all("run", "ready", 30))

    def processed(self) -> int:
        for n, conn in enumerate(self.conns):
            while conn.poll():
                kind, value = conn.recv()
                if kind == "progress":
                    self.progress[n] = value
        return sum(self.progress)

    def stop(self) -> list[dict[str, Any]]:
        results = self._all("stop", "result", 120)
        for process in self.processes:
            process.join(30)
        return results

    def close(self) -> None:
        for process in self.processes:
            if process.is_alive():
                process.terminate()
                process.join(10)


def spawn_ingest_processes(count: int, spec: dict[str, Any], role: str) -> IngestProcesses:
    processes = IngestProcesses(count, spec, role)
    try:
        processes.opened()
    except BaseException:
        processes.close()
        raise
    return processes


def stored_rows(runtime) -> dict[str, int]:
    """Tickets and dead letters in the database: what the processes say they
    stored must be there."""
    from core.db.models import Ticket
    from core.db.sensor_models import DeadLetter

    with runtime.sessions() as session:
        return {
            "tickets_created": session.scalar(select(func.count()).select_from(Ticket)),
            "dead_letters": session.scalar(select(func.count()).select_from(DeadLetter)),
        }


def open_conditions(runtime) -> dict[str, int]:
    """Device conditions still raised (alert signals not recovered) after a
    phase, and those raised twice at once. The same messages give the same
    figures in one process; several processes that see one device's messages
    out of order (a raise stored after the recovery that followed it), or
    decide at the same time that a condition is new, give others."""
    from core.db.models import SignalRecord

    unrecovered = (
        select(SignalRecord.device_id, SignalRecord.condition)
        .where(SignalRecord.kind == "alert", SignalRecord.recovered_at.is_(None))
        .group_by(SignalRecord.device_id, SignalRecord.condition)
    )
    twice = unrecovered.having(func.count() > 1)
    with runtime.sessions() as session:
        return {
            "unrecovered": session.scalar(select(func.count()).select_from(unrecovered.subquery())),
            "unrecovered_twice": session.scalar(select(func.count()).select_from(twice.subquery())),
        }


def exactly_once(results: list[dict[str, Any]], published: dict[str, Any]) -> dict[str, Any]:
    """Every message published stored once, by one process or another: the
    digests of the messages the processes committed against those the publisher
    sent, as multisets (a few payloads repeat: junk, identical readings)."""
    stored: Counter[bytes] = Counter()
    for result in results:
        stored.update(result["digests"])
    sent: Counter[bytes] = published["digests"]
    missing = sum((sent - stored).values())
    extra = sum((stored - sent).values())
    return {
        "published": published["count"],
        "stored": stored.total(),
        "missing": missing,
        "stored_twice": extra,
        "redelivered": sum(r["counters"]["redelivered"] for r in results),
        "ok": missing == 0 and extra == 0 and stored.total() == published["count"],
    }


def aggregate(results: list[dict[str, Any]], before: dict, after: dict) -> dict[str, Any]:
    """What the processes did together."""
    started = min(r["started"] for r in results)
    last_commit = max(r["last_commit"] for r in results)
    processed = sum(r["processed"] for r in results)
    batch_seconds = [s for r in results for s in r["batch_seconds"]]
    seconds = last_commit - started
    counts = {name: sum(r[name] for r in results) for name in OUTCOME_COUNTS}
    return {
        "processes": len(results),
        "messages": processed,
        "per_process": [r["processed"] for r in results],
        "seconds": round(seconds, 3),
        "rate": round(processed / seconds) if seconds > 0 else 0,
        "batches": len(batch_seconds),
        "batch_ms_p50": round(statistics.median(batch_seconds or [0]) * 1000, 1),
        **counts,
        "tickets_created": sum(r["tickets_created"] for r in results),
        "in_database": {name: after[name] - before[name] for name in after},
        "failed_batches": sum(r["counters"]["failed_batches"] for r in results),
        "last_errors": [e for r in results if (e := r["counters"]["last_error"])],
    }


def vigie_throughput_processes(
    runtime, count: int, spec: dict[str, Any], sim_args, messages: int
) -> dict:
    """``vigie_throughput`` with ``count`` processes in one shared-subscription
    group: each subscribes and goes offline, the messages are queued for the
    group (Mosquitto spreads them over the members' sessions as they are
    published), then all start at once."""
    processes = spawn_ingest_processes(count, spec, "vigie")
    try:
        if not processes.prime():
            raise RuntimeError("an ingest process could not subscribe")
        process, receive = publish(spec["url"], sim_args, messages, rate=0, count_digests=True)
        published = finish(process, receive)
        before = stored_rows(runtime)
        processes.run()
        finished = wait_until(lambda: processes.processed() >= messages, timeout=600, step=0.02)
        results = processes.stop()
    finally:
        processes.close()
    return {
        "pipeline": "IngestPipeline",
        **aggregate(results, before, stored_rows(runtime)),
        "complete": finished,
        "exactly_once": exactly_once(results, published),
    }


def vigie_latency_processes(
    runtime, count: int, spec: dict[str, Any], sim_args, rate: float, seconds: float
) -> dict:
    """``vigie_latency`` with ``count`` processes in one shared-subscription group."""
    processes = spawn_ingest_processes(count, spec, "live")
    try:
        before = stored_rows(runtime)
        if not processes.run():
            raise RuntimeError("an ingest process could not subscribe")
        messages = int(rate * seconds)
        started = time.monotonic()
        process, receive = publish(spec["url"], sim_args, messages, rate=rate, count_digests=True)
        published = finish(process, receive)
        publish_end = time.monotonic()
        kept_up = wait_until(lambda: processes.processed() >= messages, timeout=120, step=0.02)
        tail = time.monotonic() - publish_end
        results = processes.stop()
    finally:
        processes.close()
    committed_at: dict[bytes, float] = {}
    for result in results:
        committed_at.update(result["committed_at"])
    latencies = [
        committed_at[key] - sent
        for key, sent in published["sent_at"].items()
        if key in committed_at
    ]
    together = aggregate(results, before, stored_rows(runtime))
    return {
        "processes": count,
        "target_rate": rate,
        "published": published["count"],
        "publish_rate": round(published["count"] / published["elapsed"]),
        "processed": together["messages"],
        "per_process": together["per_process"],
        "complete": kept_up,
        "seconds": round(publish_end - started, 2),
        "drain_after_publisher_s": round(tail, 3),
        "alerts": len(published["sent_at"]),
        "latency_p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "latency_p99_ms": round(percentile(latencies, 99) * 1000, 1),
        "latency_max_ms": round(max(latencies) * 1000, 1) if latencies else None,
        "batches": together["batches"],
        "batch_ms_p50": together["batch_ms_p50"],
        "alerts_stored": together["alerts"],
        "duplicates": together["duplicates"],
        "tickets_created": together["tickets_created"],
        "dead_letters": together["dead_letters"],
        "in_database": together["in_database"],
        "exactly_once": exactly_once(results, published),
        **{
            name: sum(r["counters"][name] for r in results)
            for name in ("received", "acked", "not_acked", "connects", "failed_batches")
        },
        "last_errors": together["last_errors"],
    }


# --- Main ------------------------------------------------------------------------------


def machine() -> dict:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "mosquitto": mosquitto_version(),
        "system": platform.platform(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--url", help="an MQTT broker to use [default: a private Mosquitto]")
    parser.add_argument("--messages", type=int, default=60_000, help="for ceiling and throughput")
    parser.add_argument("--rate", type=float, default=5000, help="messages/s in the latency phase")
    parser.add_argument("--seconds", type=float, default=20, help="length of the latency phase")
    parser.add_argument("--devices", type=int, default=1000, help="of each kind")
    parser.add_argument("--storm", type=int, default=5000, help="lamps behind one cabinet")
    parser.add_argument("--alerts", type=float, default=0.02, help="share of alerts/recoveries")
    parser.add_argument("--batch-size", type=int, default=None, help="ingest.batch_size")
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="ingest processes sharing the throughput and live phases ($share/<group>/...)",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="the pipeline in the ingesting process (ingest.pipeline_process = false)",
    )
    parser.add_argument(
        "--pipeline-processes",
        type=int,
        default=None,
        help="ingest.pipeline_processes: pipeline processes splitting each batch by topic",
    )
    parser.add_argument("--profile", help="write a cProfile of the throughput phase here")
    parser.add_argument(
        "--sample", action="store_true", help="sample the worker's stack: where the time goes"
    )
    parser.add_argument(
        "--transport-only", action="store_true", help="also drain with a pipeline doing nothing"
    )
    parser.add_argument("--json", help="write the results here too")
    parser.add_argument("--skip", nargs="*", default=[], choices=["ceiling", "latency", "storm"])
    args = parser.parse_args(argv)
    if args.processes < 1:
        parser.error("--processes: at least 1")
    if (args.processes > 1 or not args.in_process) and (args.profile or args.sample):
        parser.error(
            "--profile and --sample watch one process: use them with --processes 1 --in-process"
        )
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    workdir = Path(tempfile.mkdtemp(prefix="vigie-bench-"))
    broker = None
    if args.url:
        url = args.url
    else:
        if shutil.which("mosquitto") is None:
            parser.error("mosquitto is not installed: apt-get install mosquitto, or give --url")
        # As a city would run it for ingestion: persistence on (always, here), and
        # a queue per persistent session large enough to hold a backlog (the
        # default 1000 drops what comes beyond while an ingestor is away or behind).
        broker = PrivateMosquitto(
            workdir / "mosquitto",
            "allow_anonymous true\nmax_queued_messages 1000000\nmax_queued_bytes 0\n",
        )
        broker.directory.mkdir()
        broker.start()
        url = broker.url
    run = uuid.uuid4().hex[:6]
    sim_args = {
        "devices": args.devices,
        "seed": 1,
        "format": "mixed",
        "alert_ratio": args.alerts,
        "junk": 0.01,
        "storm": args.storm,
        "run_id": f"b{run}",
    }
    simulation = Simulation(**sim_args)
    topics = simulation.topic_filters()
    results: dict[str, Any] = {
        "machine": machine(),
        "database": args.database,
        "broker": url,
        "processes": args.processes,
    }
    runtime = cleanup = None
    telemetry = Telemetry(workdir)
    try:
        results["telemetry"] = telemetry.start()
        database_url, cleanup = bench_database(args.database, workdir)
        runtime = open_bench_runtime(
            database_url, workdir, args.batch_size, args.in_process, args.pipeline_processes
        )
        results["pipeline_processes"] = (
            0 if args.in_process else runtime.settings.ingest.pipeline_processes
        )
        pipeline_of(runtime)  # started before it is timed
        results["registry_import_s"] = round(import_registry(runtime, simulation), 2)
        print(f"Vigie ingestion benchmark: {args.database}, broker {url}", flush=True)
        if "ceiling" not in args.skip:
            results["ceiling"] = bare_subscriber_rate(url, topics, sim_args, args.messages)
            print(f"  bare subscriber:  {results['ceiling']}", flush=True)
        if args.transport_only:
            results["transport_only"] = vigie_throughput(
                runtime, url, topics, sim_args, args.messages, None, noop=True
            )
            print(f"  transport only:   {results['transport_only']}", flush=True)
        spec = {
            "database_url": database_url,
            "workdir": str(workdir),
            "batch_size": args.batch_size,
            "url": url,
            "topics": topics,
        }
        if args.processes > 1:
            results["throughput"] = vigie_throughput_processes(
                runtime, args.processes, spec, sim_args, args.messages
            )
        else:
            results["throughput"] = vigie_throughput(
                runtime, url, topics, sim_args, args.messages, args.profile, sample=args.sample
            )
        results["throughput"]["open_conditions"] = open_conditions(runtime)
        print(f"  vigie throughput: {results['throughput']}", flush=True)
        if "ceiling" in results and results["ceiling"]["rate"]:
            results["ratio_to_ceiling"] = round(
                results["throughput"]["rate"] / results["ceiling"]["rate"], 3
            )
            print(f"  ratio to ceiling: {results['ratio_to_ceiling']:.1%}", flush=True)
        if "latency" not in args.skip:
            live_args = {**sim_args, "traffic_seed": 2}
            if args.processes > 1:
                results["latency"] = vigie_latency_processes(
                    runtime, args.processes, spec, live_args, args.rate, args.seconds
                )
            else:
                results["latency"] = vigie_latency(
                    runtime, url, topics, live_args, args.rate, args.seconds
                )
            results["latency"]["open_conditions"] = open_conditions(runtime)
            print(f"  vigie live:       {results['latency']}", flush=True)
        if "storm" not in args.skip and args.storm:
            results["storm"] = vigie_storm(runtime, url, topics, sim_args)
            print(f"  storm:            {results['storm']}", flush=True)
    finally:
        if runtime is not None:
            close_pipeline(runtime)
            runtime.close()
        if cleanup is not None:
            cleanup()
        if broker is not None:
            broker.stop()
        telemetry.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    print(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
