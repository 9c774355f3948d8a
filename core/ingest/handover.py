"""Batches handed to the pipeline a few at a time, answered in the order sent.

The ingestor (:mod:`core.ingest.mqtt`) does not wait for a batch's answer
before handing over the next one: while the pipeline stores batch N, batch
N+1 is already on its way, and the ingestor acknowledges N when its answer
comes. With the pipeline in a child process
(:class:`core.ingest.pipeline_process.PipelineProcess`) the child never
waits for the ingestor between two batches.

A :class:`Handover` keeps the order of the messages whatever fails: once a
batch fails, the batches sent after it are answered :class:`BatchSkipped`
without being processed, until the failed one is sent again with
``again=True``; the ingestor then sends the skipped ones again, in order.
So batch N+1 is never stored before batch N.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Protocol

from core.ingest.batch import BatchOutcome, RawMessage


class BatchSkipped(Exception):
    """Not processed: an earlier batch failed and was not sent again yet."""

    def __init__(self) -> None:
        super().__init__("not processed: an earlier batch failed")


class Handover(Protocol):
    """What the ingestor hands batches to."""

    def send(self, messages: list[RawMessage], again: bool = False) -> Any:
        """Hand a batch over; return a token for :meth:`receive`. ``again``:
        the first batch sent after a failure (the failed one, once more).
        May raise when the batch cannot be handed over at all."""
        ...

    def receive(self, token: Any) -> BatchOutcome:
        """The answer for the oldest batch not yet answered (``token`` is what
        :meth:`send` gave for it): its outcome once committed, or the
        exception that stopped it (:class:`BatchSkipped` for a batch sent
        after a failed one)."""
        ...


class InlineHandover:
    """A pipeline in this process (anything with ``process_batch``): each
    batch is processed when it is sent, and its answer kept until received."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline
        self._answers: deque[BatchOutcome | BaseException] = deque()
        self._failed = False

    def send(self, messages: list[RawMessage], again: bool = False) -> None:
        if self._failed and not again:
            self._answers.append(BatchSkipped())
            return
        try:
            outcome = self.pipeline.process_batch(messages)
        except Exception as exc:
            self._failed = True
            self._answers.append(exc)
        else:
            self._failed = False
            self._answers.append(outcome)

    def receive(self, token: Any = None) -> BatchOutcome:
        answer = self._answers.popleft()
        if isinstance(answer, BaseException):
            raise answer
        return answer


def handover_for(pipeline: Any) -> Handover:
    """``pipeline`` itself when it takes batches a few at a time (``send`` and
    ``receive``), else an :class:`InlineHandover` around its ``process_batch``."""
    if callable(getattr(pipeline, "send", None)) and callable(getattr(pipeline, "receive", None)):
        return pipeline
    return InlineHandover(pipeline)
