"""API benchmark: Open311 ``POST requests`` and ``GET requests`` against ``vigie serve``.

    .venv/bin/python bench/api.py --database sqlite
    .venv/bin/python bench/api.py --database postgresql   # VIGIE_BENCH_POSTGRES_URL

One run, everything on 127.0.0.1, bounded in requests and in time:

1. **seed**: a fresh database (a SQLite file, or a new schema on the
   PostgreSQL server) gets ``--tickets`` tickets of the example area (100,000
   by default) in bulk (SQLAlchemy core, explicit ids): a year of references
   per commune, statuses by age, addresses and points inside each commune,
   the reports (and sensor alerts) they hold, and their history (created,
   routed, due date, status changes), then ANALYZE;
2. **serve**: ``vigie serve`` in a process of its own (one uvicorn process,
   uvloop and httptools, log level WARNING so there is no access log, sensor
   ingestion off, the outbox worker idle during the run), and a bare FastAPI
   app served by uvicorn the same way, the **ceiling**: what one process of
   this machine serves when the handler does nothing;
3. **load**: ``--concurrency`` keep-alive connections (a lean asyncio HTTP/1.1
   client in this process: httpx costs more CPU per request than the bare
   endpoint, and would be what is measured) send
   - ``POST /ping`` and ``GET /ping`` to the bare app,
   - Open311 ``POST requests.json`` (form-encoded, an integration api_key,
     a category with its required attributes, a point, half with an email),
   - Open311 ``GET requests.json``: an app's usual calls (the newest 20, open
     requests of one service, a bbox around a point, one request by id),
   - Open311 ``GET requests.json`` with the spec's defaults (90 days, up to
     1,000 results), fewer of them;
   then, sent on a schedule (latency from each request's due time), the app
   mix at ``--get-rate``, again while POSTs arrive at ``--posts-during-gets``
   (each commit drops the answers the server keeps, see
   ``core.answer_cache``), and POSTs at ``--post-rate``;
   and report throughput, p50 and p99 latency, errors, and the CPU used by
   the server process and by the whole machine.

The rate limits of the example area's Open311 sections are raised for the run
(every request comes from 127.0.0.1) but still counted. ``--profile`` runs
the server under py-spy (if installed) and writes its samples per phase, as
collapsed stacks (``flamegraph.pl`` or speedscope draw them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.databases import bench_database  # noqa: E402

HOST = "127.0.0.1"
STREETS = (
    "rue Blatin", "avenue des États-Unis", "rue Ballainvilliers", "boulevard Lafayette",
    "rue du Port", "place de Jaude", "rue Fontgiève", "avenue Julien", "rue de l'Oradou",
    "boulevard Gergovia", "rue Montlosier", "avenue de Royat", "rue du Bois de Cros",
    "rue de la Treille", "avenue Jean Jaurès", "chemin des Vignes", "rue Pasteur",
)  # fmt: skip
WHAT = (
    "depuis ce matin", "depuis plusieurs jours", "devant le numéro {n}", "au coin de la rue",
    "près de l'arrêt de bus", "en face de l'école", "le long du trottoir", "sur la chaussée",
)  # fmt: skip
# Age in days -> (status, weight): recent tickets are open, old ones closed.
STATUS_BY_AGE = (
    (7, (("new", 40), ("acknowledged", 25), ("assigned", 20), ("in_progress", 10),
         ("resolved", 5))),
    (60, (("new", 5), ("acknowledged", 10), ("assigned", 20), ("in_progress", 20),
          ("resolved", 30), ("closed", 10), ("rejected", 3), ("redirected", 2))),
    (10_000, (("assigned", 3), ("in_progress", 2), ("resolved", 15), ("closed", 70),
              ("rejected", 5), ("duplicate", 3), ("redirected", 2))),
)  # fmt: skip
CHANNELS = (("web", 35), ("app", 20), ("phone", 25), ("counter", 5), ("email", 5), ("sensor", 10))
COMMUNE_WEIGHTS = {"clermont-ferrand": 55, "chamalieres": 10, "royat": 5, "aubiere": 10,
                   "beaumont": 8, "cournon-d-auvergne": 12}  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def weighted(rng: random.Random, pairs) -> Any:
    values, weights = zip(*pairs, strict=True)
    return rng.choices(values, weights)[0]


def sample_answers(category, rng: random.Random) -> dict[str, Any]:
    """An answer to every required question (and some optional ones), of the right type."""
    answers: dict[str, Any] = {}
    for question in category.questions:
        if not question.required and rng.random() < 0.6:
            continue
        kind = question.type
        if kind == "choice":
            answers[question.code] = rng.choice(question.choices).key
        elif kind == "multichoice":
            answers[question.code] = [rng.choice(question.choices).key]
        elif kind == "integer":
            answers[question.code] = rng.randint(1, 4)
        elif kind == "number":
            answers[question.code] = round(rng.uniform(0.5, 3), 1)
        elif kind == "boolean":
            answers[question.code] = rng.random() < 0.3
        elif kind == "date":
            answers[question.code] = "2026-11-20"
        else:
            answers[question.code] = "vu en passant"
    return answers


# --- Database ----------------------------------------------------------------------------


def bench_config(workdir: Path) -> Path:
    """The example area, with Open311's per-address and per-key limits raised: every
    request of the run comes from 127.0.0.1 (the buckets are still taken)."""
    config = workdir / "config"
    shutil.copytree(REPO / "config", config)
    raised = (
        "read_per_address = { per_minute = 100000000, burst = 10000000 }\n"
        "write_per_address = { per_minute = 100000000, burst = 10000000 }\n"
        "write_per_api_key = { per_minute = 100000000, burst = 10000000 }\n"
    )
    for path in (config / "communes").glob("*.toml"):
        source = path.read_text(encoding="utf-8")
        if "[plugins.open311]" in source:
            path.write_text(source.replace("[plugins.open311]\n", "[plugins.open311]\n" + raised))
    return config


@dataclass
class Seeded:
    tickets: int
    seconds: float
    references: dict[str, list[str]] = field(default_factory=dict)  # per commune, a sample


def seed(runtime, count: int, rng: random.Random) -> Seeded:
    """``count`` tickets with their signals and history, inserted in bulk."""
    from sqlalchemy import insert, text

    from core.db.models import ReferenceCounter, SignalRecord, Ticket, TicketEvent
    from core.references import format_reference

    started = time.perf_counter()
    now = datetime.now(UTC).replace(microsecond=0)
    communes = [runtime.area.communes[s] for s in COMMUNE_WEIGHTS if s in runtime.area.communes]
    weights = [COMMUNE_WEIGHTS[c.slug] for c in communes]
    ages = sorted((rng.uniform(0, 365) for _ in range(count)), reverse=True)
    numbers: Counter[tuple[str, int]] = Counter()
    references: dict[str, list[str]] = {c.slug: [] for c in communes}
    tickets, signals, events = [], [], []
    signal_id = event_id = 0
    engine = runtime.engine
    # executemany wants every row to name the same columns.
    blank_signal = {column.name: None for column in SignalRecord.__table__.columns}

    def flush() -> None:
        with engine.begin() as connection:
            if tickets:
                connection.execute(insert(Ticket), tickets)
            if signals:
                connection.execute(insert(SignalRecord), signals)
            if events:
                connection.execute(insert(TicketEvent), events)
        tickets.clear()
        signals.clear()
        events.clear()

    def event(ticket_id: int, at: datetime, actor: str, action: str, changes: dict,
              comment: str | None = None, public: bool = True) -> None:  # fmt: skip
        nonlocal event_id
        event_id += 1
        events.append(dict(
            id=event_id, ticket_id=ticket_id, at=at, actor=actor, action=action,
            changes=changes, comment=comment, public=public,
        ))  # fmt: skip

    for ticket_id, age in enumerate(ages, start=1):
        commune = rng.choices(communes, weights)[0]
        created = now - timedelta(days=age, seconds=rng.randint(0, 3600))
        key = (commune.slug, created.year)
        numbers[key] += 1
        reference = format_reference(commune.reference_prefix, created.year, numbers[key])
        if age < 90 and rng.random() < 0.05:
            references[commune.slug].append(reference)
        channel = weighted(rng, CHANNELS)
        public = [c for c in commune.categories if c.public] or list(commune.categories)
        category = rng.choice(public)
        status = weighted(rng, next(table for limit, table in STATUS_BY_AGE if age < limit))
        team = category.team if category.team and commune.team(category.team) else (
            rng.choice(commune.teams).code if commune.teams else None
        )
        min_lon, min_lat, max_lon, max_lat = commune.bbox or (3.05, 45.74, 3.17, 45.81)
        latitude = round(rng.uniform(min_lat, max_lat), 6)
        longitude = round(rng.uniform(min_lon, max_lon), 6)
        address = f"{rng.randint(1, 120)} {rng.choice(STREETS)}, {commune.name}"
        description = (
            f"{category.name} {rng.choice(WHAT).format(n=rng.randint(1, 80))}. "
            + ("Merci d'intervenir rapidement." if rng.random() < 0.3 else "")
        ).strip()
        answers = sample_answers(category, rng)
        due = created + timedelta(hours=(category.resolution_hours or 72))
        closed_at = resolved_at = None
        if status in ("resolved", "closed"):
            resolved_at = min(now, created + timedelta(hours=rng.uniform(2, 200)))
        if status == "closed":
            closed_at = min(now, resolved_at + timedelta(days=7))  # type: ignore[operator]
        touched = min(now, created + timedelta(hours=rng.uniform(0, 48)))
        updated = closed_at or resolved_at or touched
        asset = f"ARM-{commune.reference_prefix}-{rng.randint(1, 400):03d}/C{rng.randint(1, 4)}"
        tickets.append(dict(
            id=ticket_id, reference=reference, commune=commune.slug, year=created.year,
            number=numbers[key], category=category.code, description=description,
            channel=channel, status=status, priority=category.priority, team=team,
            outside_body="Enedis" if status == "redirected" else None, due_at=due,
            latitude=latitude, longitude=longitude, address=address,
            asset=asset if channel == "sensor" else None, answers=answers, is_incident=False,
            created_at=created, updated_at=updated, resolved_at=resolved_at, closed_at=closed_at,
        ))  # fmt: skip
        signal_id += 1
        common = dict(
            blank_signal,
            id=signal_id, ticket_id=ticket_id, commune=commune.slug, channel=channel,
            received_at=created, latitude=latitude, longitude=longitude, address=address,
            language="fr", details={}, answers={}, occurrences=1,
        )  # fmt: skip
        if channel == "sensor":
            signals.append(dict(
                common, kind="alert", device_id=f"SL-{commune.reference_prefix}-{ticket_id:06d}",
                device_kind="streetlight", connector="lighting", condition="lamp_failure",
                severity="normal", asset=asset, first_seen_at=created, last_seen_at=created,
                recovered_at=resolved_at,
            ))  # fmt: skip
        else:
            named = rng.random() < 0.6
            signals.append(dict(
                common, kind="report", category=category.code, description=description,
                answers=answers,
                reporter_name=f"Habitant {ticket_id}" if named else None,
                reporter_email=f"habitant{ticket_id}@example.org" if named else None,
                notify_by="email" if named else None,
                details={"open311": {"api_key": "bench"}} if channel == "app" else {},
            ))  # fmt: skip
        actor = {"web": "plugin:webform", "app": "integration:app", "sensor": "sensor:lighting"}
        event(ticket_id, created, actor.get(channel, "agent:accueil"), "created",
              {"category": category.code, "priority": category.priority, "channel": channel,
               "status": "new"})  # fmt: skip
        if team:
            event(ticket_id, created, "plugin:routing", "routed", {"team": [None, team]},
                  f"catégorie {category.code}")  # fmt: skip
        event(ticket_id, created, "plugin:sla", "due_date_set",
              {"due_at": [None, due.isoformat()]})  # fmt: skip
        if status != "new":
            at = min(now, created + timedelta(hours=rng.uniform(1, 100)))
            comment = "Intervention effectuée." if status in ("resolved", "closed") else None
            if status == "redirected":
                comment = "Réseau Enedis."
            event(ticket_id, at, "agent:accueil", "status_changed", {"status": ["new", status]},
                  comment)  # fmt: skip
        if len(tickets) >= 5000:
            flush()
    flush()
    with engine.begin() as connection:
        connection.execute(
            insert(ReferenceCounter),
            [dict(commune=c, year=y, last_number=n) for (c, y), n in numbers.items()],
        )
        if engine.dialect.name == "postgresql":
            for table in ("tickets", "signals", "ticket_events"):
                connection.execute(text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"
                ))  # fmt: skip
    with engine.begin() as connection:  # planner statistics, as autovacuum would gather
        connection.execute(text("ANALYZE"))
    return Seeded(count, time.perf_counter() - started, references)


# --- Servers ------------------------------------------------------------------------------


def bare_app():
    """The ceiling: FastAPI with handlers that do nothing."""
    app = FastAPI()

    @app.get("/ping")
    def ping() -> dict:
        return {"ok": True}

    @app.post("/ping", status_code=201)
    async def ping_post(request: Request) -> dict:
        await request.body()
        return {"ok": True}

    return app


class Server:
    """A server process on a free port, its output in a log file, stopped at the end."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.command, self.env, self.log = name, command, env, log
        self.process: subprocess.Popen | None = None
        self.port = free_port()
        self.profiler: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, ready_path: str) -> None:
        import httpx

        command = [part.replace("{port}", str(self.port)) for part in self.command]
        self.process = subprocess.Popen(
            command, env=self.env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: see {self.log}\n{self.log.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + ready_path, timeout=1).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer on {self.url}{ready_path}")

    def cpu_seconds(self) -> float:
        """User + system CPU time so far of the server's processes (its process
        group: the workers too), Linux only."""
        if self.process is None:
            return 0.0
        ticks = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == self.process.pid:  # the process group
                ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def profile(self, output: Path) -> None:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if self.process is None or not Path(spy).exists():
            return
        self.profiler = subprocess.Popen(
            [spy, "record", "--pid", str(self.process.pid), "--output", str(output),
             "--rate", "250", "--nonblocking", "--subprocesses", "--format", "raw"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def stop_profile(self) -> None:
        if self.profiler is not None:
            self.profiler.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.profiler.wait(30)
            self.profiler = None

    def stop(self) -> None:
        self.stop_profile()
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)


def machine_busy() -> tuple[float, float, float]:
    """(busy, total, stolen) jiffies of all CPUs since boot (Linux). Stolen: the
    time a virtual machine's CPUs were ready to run and the hypervisor ran
    something else (counted in busy too); a run with much of it measured a
    slower machine."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return math.nan, math.nan, math.nan
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    stolen = values[7] if len(values) > 7 else 0
    return sum(values) - idle, sum(values), stolen


# --- Load --------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    server: Server
    make_request: Any  # (i) -> (method, path, kwargs)
    requests: int
    seconds: float
    expect: tuple[int, ...] = (200,)
    # Requests a second, sent on a schedule whatever the answers (an open loop):
    # latency is then counted from each request's due time, so that a server
    # falling behind shows it. None: each connection sends its next request as
    # soon as its last one is answered (a closed loop, the most it can serve).
    rate: float | None = None
    # Another phase sent at the same time, on connections of its own (its row follows).
    alongside: Phase | None = None


async def gather(*coroutines: Any) -> list[Any]:
    return list(await asyncio.gather(*coroutines))


def run_loop(coroutine: Any) -> Any:
    """Run on uvloop when installed (uvicorn uses it too), else asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    index = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[index]


class Connection:
    """One keep-alive HTTP/1.1 connection: a request, then its whole response.

    A client of a few lines on asyncio streams: httpx spends more CPU per
    request than a bare FastAPI endpoint does, and on two cores the load
    generator must not be what is measured.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, target: str, body: bytes | None) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        assert self.reader is not None
        head = f"{method} {target} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\nAccept: */*\r\n"
        if body is not None:
            head += (
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {len(body)}\r\n"
            )
        self.writer.write(head.encode("ascii") + b"\r\n" + (body or b""))
        header = await self.reader.readuntil(b"\r\n\r\n")
        lines = header.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        fields = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:] if line)
        }
        if "content-length" in fields:
            await self.reader.readexactly(int(fields["content-length"]))
        elif fields.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        if fields.get("connection", "").lower() == "close":
            await self.close()
        return status

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None


def encoded(kwargs: dict[str, Any], path: str) -> tuple[str, bytes | None]:
    """The request target (with ``params``) and the form body (``data``)."""
    target = path
    if kwargs.get("params"):
        target += "?" + urlencode(kwargs["params"], doseq=True)
    data = kwargs.get("data")
    return target, (urlencode(data, doseq=True).encode() if data is not None else None)


async def drive(phase: Phase, concurrency: int, warmup: int) -> dict[str, Any]:
    """Send ``phase.requests`` requests (at most ``phase.seconds``) over ``concurrency``
    keep-alive connections; the first ``warmup`` are not counted."""
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    failures: Counter[str] = Counter()
    issued = 0
    connections = [Connection(phase.server.port) for _ in range(concurrency)]

    async def one(connection: Connection, i: int, record: bool, due: float | None = None) -> None:
        method, path, kwargs = phase.make_request(i)
        target, body = encoded(kwargs, path)
        started = time.perf_counter() if due is None else due
        try:
            status = await connection.request(method, target, body)
        except (OSError, asyncio.IncompleteReadError, ValueError) as error:
            failures[type(error).__name__] += 1
            await connection.close()
            return
        if record:
            latencies.append(time.perf_counter() - started)
            statuses[status] += 1

    # Connections opened one after the other: opened at once, they would all be
    # accepted by the first worker process to wake (asyncio accepts a whole backlog).
    for n, connection in enumerate(connections):
        await one(connection, n, False)
        await asyncio.sleep(0.01)
    for start in range(concurrency, warmup, concurrency):
        await asyncio.gather(
            *(one(c, start + n, False) for n, c in enumerate(connections[: warmup - start]))
        )
    stop_at = time.monotonic() + phase.seconds

    async def worker(connection: Connection) -> None:
        nonlocal issued
        while issued < phase.requests and time.monotonic() < stop_at:
            issued += 1
            await one(connection, warmup + issued, True)

    async def on_schedule(rate: float) -> None:
        """Request i is due ``i / rate`` s after the start, and goes on the first
        free connection (it waits for one, the wait counted, if all are busy)."""
        nonlocal issued
        free: asyncio.Queue[Connection] = asyncio.Queue()
        for connection in connections:
            free.put_nowait(connection)

        async def send(i: int, due: float) -> None:
            connection = await free.get()
            try:
                await one(connection, warmup + i, True, due)
            finally:
                free.put_nowait(connection)

        sending = []
        begin = time.perf_counter()
        while issued < phase.requests and time.monotonic() < stop_at:
            due = begin + issued / rate
            if due > time.perf_counter():
                await asyncio.sleep(due - time.perf_counter())
            issued += 1
            sending.append(asyncio.create_task(send(issued, due)))
        await asyncio.gather(*sending)

    cpu_before, busy_before = phase.server.cpu_seconds(), machine_busy()
    started = time.perf_counter()
    load = (
        on_schedule(phase.rate)
        if phase.rate
        else asyncio.gather(*(worker(c) for c in connections))
    )
    # Bounded even if the server stops answering: a minute past the phase's time.
    try:
        await asyncio.wait_for(load, phase.seconds + 60)
    except TimeoutError:
        failures["TimeoutError"] += 1
    elapsed = time.perf_counter() - started
    cpu_after, busy_after = phase.server.cpu_seconds(), machine_busy()
    for connection in connections:
        await connection.close()
    latencies.sort()
    done = len(latencies)
    unexpected = sum(n for code, n in statuses.items() if code not in phase.expect)
    total_jiffies = busy_after[1] - busy_before[1]
    return {
        "phase": phase.name,
        "requests": done,
        "seconds": round(elapsed, 2),
        "per_second": round(done / elapsed, 1) if elapsed else math.nan,
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 1),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
        "max_ms": round(latencies[-1] * 1000, 1) if latencies else math.nan,
        "statuses": dict(sorted(statuses.items())),
        "errors": unexpected + sum(failures.values()),
        "failures": dict(failures),
        "server_cpu": round((cpu_after - cpu_before) / elapsed, 2) if elapsed else math.nan,
        "machine_cpu": round(
            (busy_after[0] - busy_before[0]) / total_jiffies * (os.cpu_count() or 1), 2
        ) if total_jiffies else math.nan,
        "machine_stolen": round(
            (busy_after[2] - busy_before[2]) / total_jiffies * (os.cpu_count() or 1), 2
        ) if total_jiffies else math.nan,
    }  # fmt: skip


def open311_requests(runtime, api_key: str, seeded: Seeded, rng: random.Random):
    """Request makers for the Open311 phases."""
    commune = runtime.area.communes["clermont-ferrand"]
    services = [c for c in commune.categories if c.public]
    min_lon, min_lat, max_lon, max_lat = commune.bbox
    references = seeded.references["clermont-ferrand"] or ["CLF-2026-000001"]
    api = "/open311/v2"
    jurisdiction = {"jurisdiction_id": commune.slug}

    def post(i: int):
        category = services[i % len(services)]
        form: dict[str, Any] = {
            "api_key": api_key,
            **jurisdiction,
            "service_code": category.code,
            "lat": f"{rng.uniform(min_lat, max_lat):.6f}",
            "long": f"{rng.uniform(min_lon, max_lon):.6f}",
            "address_string": f"{rng.randint(1, 120)} {rng.choice(STREETS)}, Clermont-Ferrand",
            "description": f"{category.name} {rng.choice(WHAT).format(n=i % 80)} (bench {i})",
        }
        if i % 2:
            form |= {"email": f"app{i}@example.org", "first_name": "Camille", "last_name": "B"}
        for code, value in sample_answers(category, rng).items():
            if isinstance(value, list):
                form[f"attribute[{code}][]"] = value
            elif isinstance(value, bool):
                form[f"attribute[{code}]"] = "true" if value else "false"
            else:
                form[f"attribute[{code}]"] = str(value)
        return "POST", f"{api}/requests.json", {"data": form}

    def get_mix(i: int):
        kind = i % 4
        if kind == 0:  # the newest requests, a page of 20
            params = {**jurisdiction, "page_size": 20}
        elif kind == 1:  # open requests of one service
            params = {**jurisdiction, "status": "open", "page_size": 20,
                      "service_code": services[i % len(services)].code}  # fmt: skip
        elif kind == 2:  # around a point, as a map does (about 600 m x 600 m)
            lat, lon = rng.uniform(min_lat, max_lat), rng.uniform(min_lon, max_lon)
            params = {**jurisdiction, "page_size": 50,
                      "bbox": f"{lon - 0.004:.5f},{lat - 0.0027:.5f},{lon + 0.004:.5f},"
                              f"{lat + 0.0027:.5f}"}  # fmt: skip
        else:  # one request by id
            return "GET", f"{api}/requests/{rng.choice(references)}.json", {"params": jurisdiction}
        return "GET", f"{api}/requests.json", {"params": params}

    def get_default(_i: int):
        return "GET", f"{api}/requests.json", {"params": jurisdiction}

    return post, get_mix, get_default


# --- Main ----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with contextlib.suppress(OSError):
        kib = int(Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1])
        memory = f"{kib / 2**20:.0f} GiB"
    return {"cpus": os.cpu_count(), "cpu": cpu, "memory": memory,
            "python": platform.python_version(), "system": platform.platform()}  # fmt: skip


def show(results: list[dict[str, Any]]) -> str:
    lines = [
        f"{'phase':<58} {'req':>6} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'err':>4} "
        f"{'srv cpu':>7} {'all cpu':>7} {'stolen':>6}",
    ]
    for r in results:
        lines.append(
            f"{r['phase']:<58} {r['requests']:>6} {r['per_second']:>8} {r['p50_ms']:>7} "
            f"{r['p99_ms']:>7} {r['errors']:>4} {r['server_cpu']:>7} {r['machine_cpu']:>7} "
            f"{r['machine_stolen']:>6}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--posts", type=int, default=4000, help="POST requests to send")
    parser.add_argument("--gets", type=int, default=10_000, help="GET requests (the app mix)")
    parser.add_argument("--heavy-gets", type=int, default=200, help="GETs with spec defaults")
    parser.add_argument("--seconds", type=float, default=30, help="time limit of each phase")
    parser.add_argument("--workers", type=int, default=1, help="vigie serve --workers")
    parser.add_argument("--post-rate", type=float, default=300,
                        help="requests/s of the scheduled POST phase (the target rate)")
    parser.add_argument("--get-rate", type=float, default=1000,
                        help="requests/s of the scheduled GET phase (the target rate)")
    parser.add_argument("--scheduled-seconds", type=float, default=10,
                        help="length of each scheduled phase (0: none)")
    parser.add_argument("--posts-during-gets", type=float, default=5,
                        help="POSTs/s sent during a last scheduled GET phase: each commit "
                             "drops the answers the server keeps (0: no such phase)")
    parser.add_argument("--no-answer-cache", action="store_true",
                        help="serve with the answer and entry caches off")
    parser.add_argument("--profile", help="write py-spy samples (collapsed stacks) here")
    parser.add_argument("--json", help="write the results here too")
    parser.add_argument("--bare-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.bare_server:
        import uvicorn

        uvicorn.run(bare_app(), host=HOST, port=args.bare_server, log_level="warning")
        return 0

    from core.auth import create_token
    from core.settings import Settings

    rng = random.Random(20261125)
    workdir = Path(tempfile.mkdtemp(prefix="vigie-bench-api-"))
    url, cleanup = bench_database(args.database, workdir, prefix="bench_api")
    servers: list[Server] = []
    try:
        config = bench_config(workdir)
        settings = Settings(database_url=url, config_dir=config, data_dir=workdir / "data")
        from core.runtime import open_runtime

        runtime = open_runtime(settings)
        print(f"seeding {args.tickets:,} tickets ({args.database}) ...", flush=True)
        seeded = seed(runtime, args.tickets, rng)
        print(f"seeded in {seeded.seconds:.1f} s", flush=True)
        with runtime.sessions() as session:
            api_key = create_token(
                session, "integration", ["all"], "bench-app", list(runtime.area.communes)
            )
            session.commit()

        env = {
            **os.environ,
            "VIGIE_DATABASE_URL": url,
            "VIGIE_CONFIG_DIR": str(config),
            "VIGIE_DATA_DIR": str(workdir / "data"),
            "VIGIE_LOG_LEVEL": "WARNING",
            "VIGIE_INGEST__ENABLED": "false",
            # Messages queued by the POSTs stay queued: delivery is not the API's cost.
            "VIGIE_OUTBOX__POLL_SECONDS": "3600",
        }
        if args.no_answer_cache:
            env |= {"VIGIE_API__ANSWER_CACHE_MEGABYTES": "0",
                    "VIGIE_API__ENTRY_CACHE_MEGABYTES": "0"}  # fmt: skip
        vigie = str(Path(sys.executable).parent / "vigie")
        serve = [vigie, "serve", "--host", HOST, "--port", "{port}"]
        if args.workers > 1:
            serve += ["--workers", str(args.workers)]
        bare = Server("bare FastAPI", [sys.executable, __file__, "--bare-server", "{port}"], env,
                      workdir / "bare.log")  # fmt: skip
        app = Server("vigie serve", serve, env, workdir / "vigie.log")
        servers += [bare, app]
        bare.start("/ping")
        app.start("/healthz")

        post, get_mix, get_default = open311_requests(runtime, api_key, seeded, rng)
        phases = [
            Phase("ceiling: bare FastAPI GET /ping", bare, lambda i: ("GET", "/ping", {}),
                  args.gets, args.seconds),
            Phase("ceiling: bare FastAPI POST /ping (form body)", bare,
                  lambda i: ("POST", "/ping", {"data": {"description": "x" * 200, "i": i}}),
                  args.posts, args.seconds, (201,)),
            Phase("Open311 POST requests.json", app, post, args.posts, args.seconds, (201,)),
            Phase("Open311 GET requests.json (app mix, 20-50 results or 1)", app, get_mix,
                  args.gets, args.seconds),
            Phase("Open311 GET requests.json (spec defaults: 90 days, <=1000)", app,
                  get_default, args.heavy_gets, args.seconds),
        ]  # fmt: skip
        if args.scheduled_seconds > 0:
            # GETs first, as a server that has been answering for a while (its kept
            # answers warm), then GETs while a few POSTs a second drop them, then POSTs.
            gets, seconds = int(args.get_rate * args.scheduled_seconds), args.scheduled_seconds + 5
            phases.append(
                Phase(f"Open311 GET requests.json (app mix), {args.get_rate:g}/s on schedule",
                      app, get_mix, gets, seconds, rate=args.get_rate))  # fmt: skip
            if args.posts_during_gets > 0:
                rate = args.posts_during_gets
                phases.append(
                    Phase(f"  ... again, while POSTs arrive at {rate:g}/s", app, get_mix, gets,
                          seconds, rate=args.get_rate,
                          alongside=Phase(f"  ... those POSTs, {rate:g}/s on schedule", app,
                                          lambda i: post(2 * args.posts + i),
                                          int(rate * args.scheduled_seconds), seconds, (201,),
                                          rate=rate)))  # fmt: skip
            phases.append(
                Phase(f"Open311 POST requests.json, {args.post_rate:g}/s on schedule", app,
                      lambda i: post(args.posts + i), int(args.post_rate * args.scheduled_seconds),
                      seconds, (201,), rate=args.post_rate))  # fmt: skip
        results = []
        for index, phase in enumerate(phases):
            if args.profile and phase.server is app:
                Path(args.profile).mkdir(parents=True, exist_ok=True)
                app.profile(Path(args.profile) / f"{args.database}-{index}.txt")
            if phase.alongside is None:
                rows = [run_loop(drive(phase, args.concurrency, warmup=100))]
            else:
                rows = run_loop(gather(drive(phase, args.concurrency, warmup=100),
                                       drive(phase.alongside, 4, warmup=0)))  # fmt: skip
            app.stop_profile()
            results += rows
            print(show(rows).split("\n", 1)[1], flush=True)
        report = {
            "database": args.database,
            "tickets": args.tickets,
            "seed_seconds": round(seeded.seconds, 1),
            "concurrency": args.concurrency,
            "workers": args.workers,
            "machine": machine(),
            "results": results,
        }
        print()
        print(f"{args.database}, {args.tickets:,} tickets, {args.concurrency} concurrent clients, "
              f"{args.workers} server process(es); {report['machine']['cpus']} CPUs "
              f"({report['machine']['cpu']})")  # fmt: skip
        print(show(results))
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2))
        runtime.close()
        return 0 if all(r["errors"] == 0 for r in results) else 1
    finally:
        for server in servers:
            server.stop()
        if cleanup is not None:
            cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
