"""Several pipeline processes, each storing the messages of its own topics.

One pipeline process (:mod:`core.ingest.pipeline_process`) uses one core at
most, and waits for the database between its statements. With
``ingest.pipeline_processes`` above 1, the ingestor hands its batches to a
:class:`PipelinePool`, which splits each batch by topic among that many
processes (:func:`partition`: a CRC of the topic). A device publishes on a
topic of its own, so its messages always go to the same process, which
stores them in the order received; the processes store their parts of a
batch at the same time. The batch is answered, and the ingestor acknowledges
it, once every part is committed.

When a part fails, the batch fails and is sent again, as with one process,
but the parts already committed are not: the pool remembers them until the
batch is answered whole. A process answers "skipped" to the parts sent to it
after its failed one until that one comes again (:mod:`core.ingest.handover`),
so no process stores a device's messages out of order.

What the processes share is in the database, which keeps it consistent:
PostgreSQL's row locks (device states, reference numbers) and an advisory
lock for opening a storm's incident (:mod:`core.ingest.storms`). SQLite has
one writer at a time: the processes take turns as every writer of the file
does (:mod:`core.db.write_turns`).
"""

from __future__ import annotations

import threading
import zlib
from dataclasses import dataclass, field
from typing import Any

from core.ingest.batch import BatchOutcome, RawMessage
from core.ingest.handover import BatchSkipped
from core.ingest.pipeline_process import PipelineProcess
from core.settings import Settings


def partition(topic: str, count: int) -> int:
    """The process (0 to ``count`` - 1) that stores the messages of ``topic``."""
    return zlib.crc32(topic.encode("utf-8", "surrogateescape")) % count


def split(messages: list[RawMessage], count: int) -> dict[int, list[RawMessage]]:
    """The batch's messages by process, each part in the batch's order."""
    parts: dict[int, list[RawMessage]] = {}
    for message in messages:
        parts.setdefault(partition(message.topic, count), []).append(message)
    return parts


@dataclass
class _Batch:
    """A batch in the pool's hands: its parts, and the outcome of each part committed."""

    messages: list[RawMessage]
    parts: dict[int, list[RawMessage]]
    committed: dict[int, BatchOutcome] = field(default_factory=dict)

    def to_send(self) -> dict[int, list[RawMessage]]:
        return {index: part for index, part in self.parts.items() if index not in self.committed}

    def outcome(self) -> BatchOutcome:
        total = BatchOutcome()
        for index in sorted(self.committed):
            total.add(self.committed[index])
        return total


@dataclass
class _Token:
    batch: _Batch
    # Per process: what its send gave (its token), or the error that stopped the send.
    sent: dict[int, Any]


class PipelinePool:
    """A :class:`core.ingest.handover.Handover` over ``count`` pipeline processes."""

    def __init__(self, settings: Settings, count: int) -> None:
        if count < 2:
            raise ValueError("a pool has at least 2 processes; use PipelineProcess for one")
        self.settings = settings
        self.count = count
        self.processes = [
            PipelineProcess(settings, name=f"vigie-ingest-pipeline-{n + 1}") for n in range(count)
        ]
        self._batches: dict[int, _Batch] = {}  # by id() of the ingestor's list of messages
        self._lock = threading.Lock()

    def process_batch(self, messages: list[RawMessage]) -> BatchOutcome:
        """Send one batch and wait for its answer (nothing else in flight)."""
        return self.receive(self.send(messages, again=True))

    def send(self, messages: list[RawMessage], again: bool = False) -> _Token:
        with self._lock:
            # Sent again (the ingestor resends the same list): only what is not committed.
            batch = self._batches.get(id(messages))
            if batch is None or batch.messages is not messages:
                batch = _Batch(messages, split(messages, self.count))
                self._batches[id(messages)] = batch
        sent: dict[int, Any] = {}
        for index, part in batch.to_send().items():
            try:
                sent[index] = self.processes[index].send(part, again=again)
            except Exception as exc:  # answered as failed, after the others' answers are read
                sent[index] = exc
        return _Token(batch, sent)

    def receive(self, token: _Token) -> BatchOutcome:
        error: BaseException | None = None
        for index, sent in token.sent.items():
            try:
                if isinstance(sent, BaseException):
                    raise sent
                token.batch.committed[index] = self.processes[index].receive(sent)
            except Exception as exc:
                # The failure itself says more than "skipped behind a failure".
                if error is None or isinstance(error, BatchSkipped):
                    error = exc
        if error is not None:
            raise error
        with self._lock:
            self._batches.pop(id(token.batch.messages), None)
        return token.batch.outcome()

    def start(self) -> None:
        """Start the processes now (side by side) rather than with the first batch."""
        errors: list[BaseException] = []

        def start(process: PipelineProcess) -> None:
            try:
                process.start()
            except Exception as exc:
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(p,)) for p in self.processes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]

    def close(self, timeout: float = 30.0) -> None:
        """Stop every process once it has finished its batches."""
        for process in self.processes:
            process.close(timeout)
        with self._lock:
            self._batches.clear()

    @property
    def pids(self) -> list[int | None]:
        return [process.pid for process in self.processes]


def pipeline_processes(settings: Settings) -> PipelineProcess | PipelinePool:
    """What ``ingest.pipeline_processes`` asks for: one process, or a pool."""
    count = settings.ingest.pipeline_processes
    return PipelineProcess(settings) if count == 1 else PipelinePool(settings, count)
