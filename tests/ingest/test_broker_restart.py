"""The broker restarts in the middle of a stream of alerts: none is lost.

A private Mosquitto with persistence (as a city runs it) carries 600 water
meter alerts from a publisher to the ingestor, both with persistent
sessions; after a third of them the broker is stopped (SIGTERM: a service
restart, which saves its sessions) and started again on the same port. Every
alert ends up stored once, through the real pipeline and database.

With a shared subscription (``$share/vigie/...``), Mosquitto 2.0.11 (Debian
12) does not restore the subscription from its persistence file: what is
published between its restart and the ingestor's resubscription is dropped
by the broker. That case is run too, and reported as an expected failure
when it happens.
"""

from __future__ import annotations

import io
import threading
import time
import uuid

import pytest
from sqlalchemy import func, select

from core.db.models import SignalRecord
from core.devices import import_devices
from core.ingest.mqtt import BrokerUrl, MqttIngestor, new_client
from core.ingest.pipeline import IngestPipeline
from core.settings import IngestSettings
from core.simulate import Simulation

ALERTS = 600


def stored_alerts(runtime, device_ids: set[str]) -> int:
    with runtime.sessions() as session:
        return session.scalar(
            select(func.count())
            .select_from(SignalRecord)
            .where(SignalRecord.kind == "alert", SignalRecord.device_id.in_(device_ids))
        )


@pytest.mark.parametrize("group", ["", "vigie"], ids=["plain", "shared"])
def test_no_alert_is_lost_when_the_broker_restarts_mid_stream(
    vigie_runtime, private_mosquitto, wait_until, group: str
) -> None:
    broker = private_mosquitto()
    run = uuid.uuid4().hex[:8]
    simulation = Simulation(devices=ALERTS, format="mixed", seed=7, junk=0, run_id=run)
    registry = io.StringIO()
    simulation.write_registry(registry)
    with vigie_runtime.sessions() as session:
        import_devices(vigie_runtime, session, "devices.csv", registry.getvalue())
        session.commit()
    alerts = simulation.raise_all("water_meter")
    assert len(alerts) == ALERTS
    meters = {m.device_id for m in alerts}

    ingestor = MqttIngestor(
        vigie_runtime,
        IngestPipeline(vigie_runtime),
        broker.url,
        simulation.topic_filters(),
        f"vigie-test-restart-{run}",
        group,
        options=IngestSettings(
            batch_size=50, batch_ms=20, reconnect_min_seconds=1, reconnect_max_seconds=2
        ),
    )
    ingestor.start()
    assert ingestor.wait_ready(10)

    # The publisher keeps its own session too, as a network server's bridge does:
    # what the broker had not acknowledged is sent again after it restarts.
    publisher = new_client(f"vigie-test-pub-{run}", clean=False)
    publisher.reconnect_delay_set(1, 2)
    publisher.max_inflight_messages_set(100)
    publisher.max_queued_messages_set(0)
    # Counted by PUBACK: MQTTMessageInfo.wait_for_publish and is_published raise
    # for messages published while disconnected, though paho sends them later.
    acknowledged: set[int] = set()
    publisher.on_publish = lambda client, userdata, mid, reason, properties: acknowledged.add(mid)
    target = BrokerUrl.parse(broker.url)
    publisher.connect(target.host, target.port)
    publisher.loop_start()
    infos = []
    restarted = threading.Event()

    def restart_broker() -> None:
        broker.stop()  # SIGTERM: Mosquitto saves its sessions and queued messages
        time.sleep(1.0)
        broker.start()
        restarted.set()

    try:
        for n, message in enumerate(alerts):
            if n == ALERTS // 3:
                threading.Thread(target=restart_broker, daemon=True).start()
            infos.append(publisher.publish(message.topic, message.payload, qos=1))
            time.sleep(0.004)
        assert restarted.wait(30), "the broker did not come back"
        sent = {info.mid for info in infos}
        assert wait_until(lambda: sent <= acknowledged, timeout=60)

        settle = 10 if group else 30
        all_stored = wait_until(
            lambda: stored_alerts(vigie_runtime, meters) == ALERTS, timeout=settle
        )
        counters = ingestor.counters
        if not all_stored and group and counters.received - counters.redelivered < ALERTS:
            pytest.xfail(
                f"{ALERTS - stored_alerts(vigie_runtime, meters)} alerts never reached the "
                "ingestor: this Mosquitto does not restore $share subscriptions after a restart"
            )
        assert all_stored, (
            f"{stored_alerts(vigie_runtime, meters)} of {ALERTS} alerts stored; "
            f"ingestor: {ingestor.status()}"
        )
        assert ingestor.counters.connects >= 2  # it did reconnect
        time.sleep(1.0)  # redeliveries of what was stored but not acked: counted once
        assert stored_alerts(vigie_runtime, meters) == ALERTS
        with vigie_runtime.sessions() as session:
            occurrences = session.scalar(
                select(func.sum(SignalRecord.occurrences)).where(
                    SignalRecord.kind == "alert", SignalRecord.device_id.in_(meters)
                )
            )
        assert occurrences == ALERTS
    finally:
        publisher.disconnect()
        publisher.loop_stop()
        ingestor.stop()
