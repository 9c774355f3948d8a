"""The pipeline in a child process (``ingest.pipeline_process``, the default
of ``vigie serve`` and ``vigie ingest``): batches are committed by the child
before the ingestor acknowledges them, a child that dies is replaced, and
messages published to the broker become tickets as with the in-process
pipeline."""

from __future__ import annotations

import os
import signal
import uuid
from datetime import UTC, datetime

import pytest

from core.ingest.batch import RawMessage
from core.ingest.mqtt import Ingestion
from core.ingest.pipeline_process import PipelineProcess, PipelineProcessError
from core.testing import sample_message


@pytest.fixture
def child_settings(vigie_runtime):
    """The test's settings, with the pipeline in one child process."""
    settings = vigie_runtime.settings
    ingest = settings.ingest.model_copy(update={"pipeline_process": True, "pipeline_processes": 1})
    return settings.model_copy(update={"ingest": ingest})


def raw(name: str) -> RawMessage:
    message = sample_message(name)
    return RawMessage(message.topic, message.payload, datetime.now(UTC))


def sensor_tickets(vigie_api, device_id: str) -> list[dict]:
    response = vigie_api.client.get(
        "/api/v1/tickets",
        params={"channel": "sensor", "device_id": device_id},
        headers=vigie_api.headers("admin"),
    )
    assert response.status_code == 200, response.text
    return response.json()["items"]


def test_a_batch_is_committed_by_the_child_before_it_answers(vigie_api, child_settings, registry):
    pipeline = PipelineProcess(child_settings)
    try:
        outcome = pipeline.process_batch(
            [raw("ttn-v3/water-leak.json"), raw("direct/izar-backflow.json")]
        )
        assert pipeline.pid is not None and pipeline.pid != os.getpid()
        assert outcome.alerts == 2 and len(outcome.tickets_created) == 2
        # Answered after the commit: the tickets are there for this process to read.
        [leak] = sensor_tickets(vigie_api, "wm-000451")
        assert leak["reference"] in outcome.tickets_created
        again = pipeline.process_batch([raw("ttn-v3/water-leak.json")])
        assert again.duplicates == 1 and again.tickets_created == []
    finally:
        pipeline.close()
    assert pipeline.pid is None


def test_handing_over_does_not_wait_for_a_busy_child(vigie_api, child_settings, registry):
    """The child reads its next batch only once the one in hand is committed,
    and a batch is more than the pipe holds: the ingestor's thread (in a pool,
    the other processes' parts) must not wait there until then."""
    pipeline = PipelineProcess(child_settings)
    try:
        pipeline.start()
        many = [raw("ttn-v3/water-reading.json") for _ in range(3000)]  # megabytes pickled
        tokens = [pipeline.send(many), pipeline.send(many)]
        tokens.append(pipeline.send([raw("direct/izar-backflow.json")]))
        # All three handed over, and the child still on the first.
        assert not pipeline._conn.poll()
        outcomes = [pipeline.receive(token) for token in tokens]
        assert [o.accepted for o in outcomes] == [3000, 3000, 1]
        assert outcomes[2].alerts == 1
    finally:
        pipeline.close()


def test_a_child_that_dies_is_replaced(vigie_api, child_settings, registry):
    pipeline = PipelineProcess(child_settings)
    try:
        pipeline.process_batch([raw("ttn-v3/water-reading.json")])
        first = pipeline.pid
        os.kill(first, signal.SIGKILL)
        # As the ingestor does: a batch the child did not answer is not acked, and tried again.
        for _attempt in range(3):
            try:
                outcome = pipeline.process_batch([raw("ttn-v3/water-leak.json")])
                break
            except PipelineProcessError as exc:
                assert "pipeline process" in str(exc)
        else:
            pytest.fail("no new pipeline process took the batch")
        assert pipeline.pid not in (None, first)
        assert len(outcome.tickets_created) == 1
        assert sensor_tickets(vigie_api, "wm-000451")
    finally:
        pipeline.close()


def test_messages_through_the_broker_are_acked_once_the_child_stored_them(
    vigie_api, vigie_runtime, child_settings, registry, mqtt_broker, publisher, wait_until
):
    vigie_runtime.settings = child_settings
    application = f"vigie-test-{uuid.uuid4().hex[:12]}@ttn"
    leak = sample_message("ttn-v3/water-leak.json")
    ingestion = Ingestion(
        vigie_runtime,
        url=mqtt_broker.url,
        topics=[f"v3/{application}/devices/+/up"],
        client_id=f"vigie-test-child-{uuid.uuid4().hex[:8]}",
        check_silent=False,
    )
    ingestor = ingestion.start()
    try:
        assert isinstance(ingestion.pipeline, PipelineProcess)
        assert ingestor.wait_ready(10)
        # Started with the ingestion, not by the first batch.
        assert wait_until(lambda: ingestion.pipeline.pid is not None, timeout=60)
        publisher.publish(f"v3/{application}/devices/wm-000451/up", leak.payload)
        assert wait_until(lambda: ingestor.counters.acked == 1, timeout=60), ingestor.counters
        [ticket] = sensor_tickets(vigie_api, "wm-000451")
        assert ticket["device_ids"] == ["wm-000451"]
    finally:
        ingestion.stop()


def test_batches_sent_ahead_are_answered_in_order_and_lost_with_a_dead_child(
    vigie_api, child_settings, registry
):
    pipeline = PipelineProcess(child_settings)
    try:
        # Two on their way at once, answered in the order sent.
        first = pipeline.send([raw("ttn-v3/water-leak.json")])
        second = pipeline.send([raw("ttn-v3/water-leak.json")])
        assert len(pipeline.receive(first).tickets_created) == 1
        assert pipeline.receive(second).duplicates == 1

        # A child killed with batches on their way (the first one long enough
        # to be still in hand): each is answered as failed, none by the next
        # child, which takes them when they are sent again.
        lost = [pipeline.send([raw("ttn-v3/water-reading.json")] * 3000)]
        lost += [pipeline.send([raw("direct/izar-backflow.json")]) for _ in range(2)]
        dead = pipeline.pid
        os.kill(dead, signal.SIGKILL)
        for token in lost:
            with pytest.raises(PipelineProcessError, match="pipeline process"):
                pipeline.receive(token)
        outcome = pipeline.receive(pipeline.send([raw("direct/izar-backflow.json")], again=True))
        assert pipeline.pid not in (None, dead)
        assert outcome.alerts == 1
    finally:
        pipeline.close()
