"""Sensor ingestion: MQTT messages become signals, tickets and telemetry.

- :mod:`core.ingest.mqtt`, :mod:`core.ingest.broker`: the transport (paho
  client, shared subscriptions, embedded broker), which batches messages,
  calls :meth:`~core.ingest.pipeline.IngestPipeline.process_batch` and
  acknowledges them once it returns, and runs
  :func:`~core.ingest.silent.check_silent_meters` periodically;
- :mod:`core.ingest.pipeline`: a batch in one transaction (envelope, device,
  connector, alerts), with :mod:`core.ingest.alerts`, :mod:`core.ingest.storms`,
  :mod:`core.ingest.recovery` and :mod:`core.ingest.records`.
"""
