"""Several pipeline processes (``ingest.pipeline_processes``): each batch is
split by topic, every part is committed before the batch is answered, and a
part already committed is not stored twice when another part failed."""

from __future__ import annotations

import json
import os
import signal
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from core.devices import import_devices
from core.ingest.batch import RawMessage
from core.ingest.mqtt import Ingestion
from core.ingest.pipeline_pool import PipelinePool, partition, pipeline_processes, split
from core.ingest.pipeline_process import PipelineProcess, PipelineProcessError

NOW = datetime(2026, 11, 25, 21, 0, tzinfo=UTC)


def lamp_topic(device_id: str) -> str:
    return f"vigie/clermont-ferrand/lighting/{device_id}"


def lamp_event(device_id: str, at: datetime, event: str = "lampFailure") -> RawMessage:
    payload = {"event": event, "observedAt": at.isoformat()}
    return RawMessage(lamp_topic(device_id), json.dumps(payload).encode(), at)


@pytest.fixture
def pool_settings(vigie_runtime):
    settings = vigie_runtime.settings
    ingest = settings.ingest.model_copy(update={"pipeline_process": True, "pipeline_processes": 2})
    return settings.model_copy(update={"ingest": ingest})


@pytest.fixture
def lamps(vigie_runtime):
    """``lamps(n)``: n lamps registered, each behind a cabinet of its own (no storm)."""

    def register(count: int) -> list[str]:
        rows = ["device_id,dev_eui,kind,commune,latitude,longitude,address,asset,tags"]
        ids = [f"SL-P-{i:05d}" for i in range(count)]
        rows += [f"{d},,streetlight,clermont-ferrand,45.77,3.08,,ARM-{d}," for d in ids]
        with vigie_runtime.sessions() as session:
            import_devices(vigie_runtime, session, "pool.csv", "\n".join(rows))
            session.commit()
        return ids

    return register


def test_a_topic_always_goes_to_the_same_process_in_order():
    messages = [RawMessage(f"t/{n % 7}", str(n).encode(), NOW) for n in range(70)]
    parts = split(messages, 3)
    assert sorted(parts) == sorted({partition(f"t/{n}", 3) for n in range(7)})
    for index, part in parts.items():
        assert all(partition(m.topic, 3) == index for m in part)
        # The batch's order within each topic, hence within each device.
        for topic in {m.topic for m in part}:
            numbers = [int(m.payload) for m in part if m.topic == topic]
            assert numbers == sorted(numbers)
    assert sum(len(p) for p in parts.values()) == 70


def test_one_process_unless_asked_for_more(pool_settings):
    assert isinstance(pipeline_processes(pool_settings), PipelinePool)
    one = pool_settings.model_copy(
        update={"ingest": pool_settings.ingest.model_copy(update={"pipeline_processes": 1})}
    )
    assert isinstance(pipeline_processes(one), PipelineProcess)


def test_a_batch_is_answered_once_every_process_committed_its_part(vigie_api, pool_settings, lamps):
    ids = lamps(40)
    batch = [lamp_event(d, NOW + timedelta(seconds=n)) for n, d in enumerate(ids)]
    assert set(split(batch, 2)) == {0, 1}  # both processes have a part
    pool = PipelinePool(pool_settings, 2)
    try:
        outcome = pool.process_batch(batch)
        pids = pool.pids
        assert len(set(pids)) == 2 and os.getpid() not in pids
        assert outcome.alerts == 40 and len(outcome.tickets_created) == 40
        # Committed before the answer: this process reads every ticket.
        tickets = vigie_api.client.get(
            "/api/v1/tickets",
            params={"channel": "sensor", "page_size": 100},
            headers=vigie_api.headers("admin"),
        ).json()["items"]
        assert sorted(t["reference"] for t in tickets) == sorted(outcome.tickets_created)
        # The same messages again (a redelivery): counted once, whichever process.
        again = pool.process_batch(list(batch))
        assert again.duplicates == 40 and again.tickets_created == []
    finally:
        pool.close()
    assert pool.pids == [None, None]


def test_a_part_committed_is_not_stored_again_when_another_part_failed(
    vigie_api, pool_settings, lamps
):
    ids = lamps(1200)
    by_process = {0: [], 1: []}
    for d in ids:
        by_process[partition(lamp_topic(d), 2)].append(d)
    # Process 1 gets one alert; process 0 many, and is killed while storing them.
    slow = [lamp_event(d, NOW) for d in by_process[0]]
    quick = [lamp_event(by_process[1][0], NOW)]
    batch = slow + quick
    pool = PipelinePool(pool_settings, 2)
    try:
        pool.start()
        token = pool.send(batch)
        os.kill(pool.pids[0], signal.SIGKILL)
        with pytest.raises(PipelineProcessError, match="pipeline process"):
            pool.receive(token)
        # As the ingestor does: the same batch again. Only process 0's part goes;
        # process 1's alert, committed, would come back as a duplicate if sent twice.
        outcome = pool.receive(pool.send(batch, again=True))
        assert outcome.duplicates == 0
        assert outcome.alerts == len(batch)
        assert len(outcome.tickets_created) == len(batch)
    finally:
        pool.close()


def test_messages_through_the_broker_are_acked_once_every_process_stored_its_share(
    vigie_api, vigie_runtime, pool_settings, lamps, mqtt_broker, publisher, wait_until
):
    vigie_runtime.settings = pool_settings
    ids = lamps(30)
    prefix = f"vigie/clermont-ferrand/lighting-{uuid.uuid4().hex[:8]}"
    assert {partition(f"{prefix}/{d}", 2) for d in ids} == {0, 1}
    ingestion = Ingestion(
        vigie_runtime,
        url=mqtt_broker.url,
        topics=[f"{prefix}/+"],
        client_id=f"vigie-test-pool-{uuid.uuid4().hex[:8]}",
        check_silent=False,
    )
    ingestor = ingestion.start()
    try:
        assert isinstance(ingestion.pipeline, PipelinePool)
        assert ingestor.wait_ready(10)
        for n, device_id in enumerate(ids):
            payload = {
                "event": "lampFailure",
                "observedAt": (NOW + timedelta(seconds=n)).isoformat(),
            }
            publisher.publish(f"{prefix}/{device_id}", json.dumps(payload).encode())
        assert wait_until(lambda: ingestor.counters.acked == 30, timeout=90), ingestor.counters
        assert len(set(ingestion.pipeline.pids)) == 2
        tickets = vigie_api.client.get(
            "/api/v1/tickets",
            params={"channel": "sensor", "page_size": 100},
            headers=vigie_api.headers("admin"),
        ).json()["items"]
        assert sorted(d for t in tickets for d in t["device_ids"]) == ids
    finally:
        ingestion.stop()
    assert ingestion.pipeline.pids == [None, None]
