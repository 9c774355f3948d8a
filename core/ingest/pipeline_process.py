"""The ingest pipeline in a process of its own, beside the MQTT client.

One Python process runs one thread at a time: paho's network loop and the
pipeline (decoding, connectors, tickets, the database) would share a core.
With ``ingest.pipeline_process`` (the default), the ingestor keeps the MQTT
client and hands batches to a child process that runs
:class:`core.ingest.pipeline.IngestPipeline` and answers each once it is
committed; only then does the ingestor acknowledge it. The next batch is
sent before that answer comes (:mod:`core.ingest.handover`), so the child
goes from one batch to the next without waiting. Nothing changes for
the broker: a batch the child did not commit (a database error, the child
killed) is not acknowledged, and it is handed over again.

The child opens its own runtime from the same settings, so plugins (their
``ticket_created`` and other after-commit hooks, telemetry) run there.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import queue
import threading
import time
from typing import Any

from core.ingest.batch import BatchOutcome, RawMessage
from core.ingest.handover import BatchSkipped
from core.settings import Settings

log = logging.getLogger(__name__)

STARTUP_SECONDS = 120.0  # imports, plugins, configuration, database: a slow disk is slow


class PipelineProcessError(RuntimeError):
    """The child did not commit the batch; the ingestor will not acknowledge it."""


class PipelineProcess:
    """A :class:`core.ingest.handover.Handover` whose batches are processed and
    committed by a child process (started on first use, restarted if it dies).

    Several batches may be on their way at once: the child takes them in
    order and answers each after its commit. After a failed batch it answers
    the ones already sent :class:`core.ingest.handover.BatchSkipped` until the
    failed one comes again (``again=True``), so that none is stored out of
    order. A child that dies takes the batches sent to it along: each is
    answered with :class:`PipelineProcessError`, and the next ``send`` starts
    another child.
    """

    def __init__(self, settings: Settings, name: str = "vigie-ingest-pipeline") -> None:
        self.settings = settings
        self.name = name
        self._context = multiprocessing.get_context("spawn")  # never fork a threaded process
        self._process: Any = None
        self._conn: Any = None
        self._outbox: _Outbox | None = None
        self._generation = 0  # one per child: a token names the child its batch went to
        self._lock = threading.Lock()

    def process_batch(self, messages: list[RawMessage]) -> BatchOutcome:
        """Send one batch and wait for its answer (nothing else in flight)."""
        return self.receive(self.send(messages, again=True))

    def send(self, messages: list[RawMessage], again: bool = False) -> int:
        """Queue a batch for the child; return at once (see :class:`_Outbox`)."""
        with self._lock:
            self._ensure_started()
            assert self._outbox is not None
            try:
                self._outbox.put((again, messages))
            except OSError as exc:
                self._discard()
                raise PipelineProcessError(f"the pipeline process stopped: {exc}") from None
            return self._generation

    def receive(self, token: int) -> BatchOutcome:
        with self._lock:
            conn, process = self._conn, self._process
            if token != self._generation or conn is None:
                raise PipelineProcessError("the pipeline process stopped before this batch")
        try:
            kind, value = self._answer(conn, process)
        except (EOFError, OSError) as exc:
            reason = f"the pipeline process stopped: {exc or type(exc).__name__}"
        except PipelineProcessError as exc:
            reason = str(exc)
        else:
            if kind == "ok":
                return value
            if kind == "skipped":
                raise BatchSkipped()
            raise PipelineProcessError(value)
        with self._lock:
            if token == self._generation:
                self._discard()
        raise PipelineProcessError(reason)

    def start(self) -> None:
        """Start the child now rather than with the first batch."""
        with self._lock:
            self._ensure_started()

    def close(self, timeout: float = 30.0) -> None:
        """Stop the child once it has finished its batches (its telemetry is flushed)."""
        with self._lock:
            if self._process is None:
                return
            with contextlib.suppress(OSError):
                self._outbox.put(None)  # after the batches queued
                self._outbox.close(timeout)
            self._process.join(timeout)
            if self._process.is_alive():
                log.warning("the ingest pipeline process did not stop in %.0f s; killed", timeout)
                self._process.kill()
                self._process.join(5)
            self._discard()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    # --- The child's life -----------------------------------------------------------

    def _ensure_started(self):
        if self._process is not None and self._process.is_alive():
            return self._conn
        if self._process is not None:
            log.error(
                "the ingest pipeline process exited (code %s); starting another",
                self._process.exitcode,
            )
            self._discard()
        ours, theirs = self._context.Pipe()
        process = self._context.Process(
            target=_child_main,
            args=(self.settings, theirs),
            name=self.name,
            daemon=True,
        )
        process.start()
        theirs.close()
        self._process, self._conn = process, ours
        self._generation += 1
        try:
            kind, value = self._answer(ours, process, deadline=time.monotonic() + STARTUP_SECONDS)
        except (EOFError, OSError, PipelineProcessError) as exc:
            kind, value = "failed", str(exc)
        if kind != "ready":
            self._discard()
            raise PipelineProcessError(f"the pipeline process could not start: {value}")
        self._outbox = _Outbox(ours, self.name)
        log.info("ingest pipeline process %s started", process.pid)
        return ours

    @staticmethod
    def _answer(conn, process, deadline: float | None = None) -> tuple[str, Any]:
        # Wait for the answer, noticing a child that died without one.
        while not conn.poll(0.5):
            if not process.is_alive():
                raise PipelineProcessError(
                    f"the pipeline process died (exit code {process.exitcode})"
                )
            if deadline is not None and time.monotonic() > deadline:
                raise PipelineProcessError(
                    f"the pipeline process did not start within {STARTUP_SECONDS:.0f} s"
                )
        return conn.recv()

    def _discard(self) -> None:
        """Give up on the child: never two at once (a live one is killed)."""
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        if self._outbox is not None:
            self._outbox.stop()  # a write under way fails once the child is gone
        self._outbox = None
        if self._process is not None:
            if self._process.is_alive():
                self._process.kill()
            self._process.join(5)
        self._process = None
        self._generation += 1  # what was sent to it will not be answered


class _Outbox:
    """Batches on their way to one child, written to its pipe by a thread of
    their own.

    A child reads its next batch only once the one in hand is committed, and
    a batch is larger than the pipe holds: written from the ingestor's thread,
    it would keep that thread waiting until then. In a pool
    (:mod:`core.ingest.pipeline_pool`) the parts of a batch for the other
    children would wait behind it, and those children would stand idle."""

    _CLOSE = object()

    def __init__(self, conn: Any, name: str) -> None:
        self._conn = conn
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.error: OSError | None = None  # why writing stopped: the child is gone
        self._thread = threading.Thread(target=self._write, name=f"{name}-outbox", daemon=True)
        self._thread.start()

    def put(self, item: Any) -> None:
        """Queue ``item``; raise the OSError that stopped the writes, if any."""
        if self.error is not None:
            raise self.error
        self._queue.put(item)

    def close(self, timeout: float | None = None) -> None:
        """Wait until everything queued is written."""
        self.stop()
        self._thread.join(timeout)

    def stop(self) -> None:
        """Write nothing queued after this."""
        self._queue.put(self._CLOSE)

    def _write(self) -> None:
        while True:
            item = self._queue.get()
            if item is self._CLOSE:
                return
            try:
                self._conn.send(item)
            except OSError as exc:  # the child is gone
                self.error = exc
                return
            except Exception as exc:  # the pipe closed under the write (PipelineProcess._discard)
                self.error = OSError(f"the pipe to the pipeline process closed: {exc}")
                return


def _child_main(settings: Settings, conn) -> None:
    """The child: open a runtime, then process batches until told to stop."""
    from core.gc_tuning import tune_for_service
    from core.ingest.pipeline import IngestPipeline
    from core.runtime import open_runtime

    # As the vigie command logs (core.cli), with the child's name on each line.
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s",
    )
    try:
        runtime = open_runtime(settings, prepare_schema=False)
        pipeline = IngestPipeline(runtime)
    except Exception as exc:
        log.exception("the ingest pipeline process could not start")
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    tune_for_service()
    conn.send(("ready", None))
    try:
        serve_batches(pipeline, conn)
    finally:
        runtime.close()


def serve_batches(pipeline: Any, conn) -> None:
    """The child's loop: each batch ``(again, messages)`` from ``conn`` goes
    through ``pipeline.process_batch`` and is answered ``("ok", outcome)``,
    ``("error", reason)``, or ``("skipped", None)`` when an earlier batch
    failed and has not come again yet. Ends at ``None`` or a closed pipe."""
    failed = False
    while True:
        try:
            received = conn.recv()
        except EOFError:  # the ingestor is gone
            return
        if received is None:
            return
        again, messages = received
        if failed and not again:
            conn.send(("skipped", None))
            continue
        try:
            outcome = pipeline.process_batch(messages)
        except Exception as exc:  # database errors: rolled back, not acked
            log.exception("the ingest pipeline failed on a batch of %d messages", len(messages))
            failed = True
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
        else:
            failed = False
            conn.send(("ok", outcome))
