"""Batches handed over a few at a time keep their order when one fails: the
ones sent after it are skipped until it comes again (core.ingest.handover),
both in this process and in the pipeline's child process's loop."""

from __future__ import annotations

import multiprocessing
import threading

import pytest

from core.ingest.batch import BatchOutcome
from core.ingest.handover import BatchSkipped, InlineHandover, handover_for
from core.ingest.pipeline_process import serve_batches


class Store:
    """A pipeline stand-in whose database is down for the batches named in ``down``."""

    def __init__(self, down: set[str]) -> None:
        self.down = down
        self.stored: list[str] = []

    def process_batch(self, messages: list[str]) -> BatchOutcome:
        name = messages[0]
        if name in self.down:
            self.down.discard(name)  # back for the next try
            raise RuntimeError(f"database unavailable while storing {name}")
        self.stored.append(name)
        return BatchOutcome(accepted=len(messages))


def test_inline_handover_skips_the_batches_behind_a_failed_one_until_it_comes_again():
    store = Store(down={"b"})
    handover = handover_for(store)
    assert isinstance(handover, InlineHandover)
    for name in "abc":
        handover.send([name])
    assert handover.receive(None).accepted == 1
    with pytest.raises(RuntimeError, match="storing b"):
        handover.receive(None)
    with pytest.raises(BatchSkipped):
        handover.receive(None)
    assert store.stored == ["a"]  # c was not stored before b

    handover.send(["c"])  # not the failed one: still skipped
    with pytest.raises(BatchSkipped):
        handover.receive(None)
    handover.send(["b"], again=True)
    handover.send(["c"])
    assert [handover.receive(None).accepted for _ in range(2)] == [1, 1]
    assert store.stored == ["a", "b", "c"]


def test_the_child_loop_answers_in_order_and_skips_behind_a_failure():
    store = Store(down={"b"})
    ours, theirs = multiprocessing.Pipe()
    child = threading.Thread(target=serve_batches, args=(store, theirs))
    child.start()
    for name in "abc":
        ours.send((False, [name]))
    answers = [ours.recv() for _ in range(3)]
    assert [kind for kind, _ in answers] == ["ok", "error", "skipped"]
    assert "storing b" in answers[1][1]
    ours.send((True, ["b"]))
    ours.send((False, ["c"]))
    assert [ours.recv()[0] for _ in range(2)] == ["ok", "ok"]
    ours.send(None)
    child.join(5)
    assert not child.is_alive()
    assert store.stored == ["a", "b", "c"]
