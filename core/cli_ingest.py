"""``vigie ingest`` and ``vigie simulate``; ingestion in ``vigie serve`` and ``vigie demo``.

:func:`register` adds the two commands to the ``vigie`` group and makes
``serve`` and ``demo`` ingest sensor messages: unless ``ingest.enabled`` is
set to false, the app they serve starts the MQTT subscriber in its lifespan
(see :mod:`core.api.app`), with the embedded broker when no
``VIGIE_MQTT_URL`` is set. ``vigie demo`` also publishes a short simulated
burst once ingestion runs (``--sensor-burst``), so the demo shows sensor
tickets, an incident and dead letters.
"""

from __future__ import annotations

import functools
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from core.cli import Context
    from core.runtime import Runtime

# core.cli imports this module at its end: take nothing from it at import time
# (``python -m core.cli`` would import it twice). ``ctx.obj`` is its Context.
pass_context = click.pass_obj


def fail(message: str) -> None:
    raise click.ClickException(message)


def _open(context: Context) -> Runtime:
    from core.config.loader import ConfigError
    from core.db.migrate import SchemaOutOfDate

    try:
        return context.runtime()
    except ConfigError as exc:
        raise click.ClickException(
            f"the configuration in {context.settings.config_dir} has problems:\n{exc}"
        ) from None
    except SchemaOutOfDate as exc:
        raise click.ClickException(str(exc)) from None

DEMO_BURST = 600


def register(cli: click.Group) -> None:
    cli.add_command(ingest)
    cli.add_command(simulate)
    if "serve" in cli.commands:
        _ingest_when_serving(cli.commands["serve"])
    if "demo" in cli.commands:
        demo = cli.commands["demo"]
        demo.params.append(
            click.Option(
                ["--sensor-burst"],
                type=click.IntRange(min=0),
                default=DEMO_BURST,
                show_default=True,
                help="simulated sensor messages published once ingestion runs (0: none)",
            )
        )
        _ingest_when_serving(demo, burst_option="sensor_burst")


def _ingest_when_serving(command: click.Command, burst_option: str | None = None) -> None:
    """Make the app ``command`` serves ingest (unless ``ingest.enabled`` is false),
    and turn a broker problem into a plain error message."""
    original = command.callback
    assert original is not None

    @functools.wraps(original)
    def callback(*args, **kwargs):
        from core.ingest.broker import BrokerUnavailable

        burst = kwargs.pop(burst_option, 0) if burst_option else 0
        context: Any = click.get_current_context().obj
        if context is not None:
            options = context.settings.ingest
            update: dict = {}
            if options.enabled is None:
                update["enabled"] = True
            if burst and not kwargs.get("no_serve"):
                update["demo_burst"] = burst
            if update:
                context.settings.ingest = options.model_copy(update=update)
        try:
            return original(*args, **kwargs)
        except BrokerUnavailable as exc:
            fail(str(exc))

    command.callback = callback


# --- vigie ingest -------------------------------------------------------------------


@click.command()
@click.option(
    "--url",
    default=None,
    help="MQTT broker, mqtt://user:password@host:1883 or mqtts://... "
    "[default: VIGIE_MQTT_URL, else mqtt://127.0.0.1:<ingest.embedded_port>]",
)
@click.option(
    "--topic",
    "topics",
    multiple=True,
    help="subscribe to this filter instead of the communes' mqtt_topics (repeat)",
)
@click.option(
    "--client-id",
    default=None,
    help="stable MQTT client id of this process [default: VIGIE_INGEST__CLIENT_ID, "
    "else vigie-ingest-<hostname>]; give each process on one host its own",
)
@pass_context
def ingest(
    context: Context, url: str | None, topics: tuple[str, ...], client_id: str | None
) -> None:
    """Ingest sensor messages from MQTT, without the API (scale out: run several).

    Processes share the load through the shared subscription
    $share/<ingest.shared_group>/<filter> (MQTT 5 brokers: Mosquitto >= 1.6,
    EMQX...). SIGTERM or Ctrl-C stops cleanly: what was received is stored
    and acknowledged; the broker keeps the rest for the next start.
    """
    from core.gc_tuning import tune_for_service
    from core.ingest.mqtt import Ingestion

    runtime = _open(context)
    try:
        ingestion = Ingestion(
            runtime, url=url, topics=list(topics) or None, client_id=client_id, role="ingest"
        )
        ingestor = ingestion.start()
    except ValueError as exc:
        fail(str(exc))
    tune_for_service()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    topics = ", ".join(ingestor.subscriptions)
    click.echo(f"Ingesting from {ingestor.broker} as {ingestor.client_id}: {topics}")
    click.echo("SIGTERM or Ctrl-C to stop.")
    while not stop.wait(1.0):
        pass
    click.echo("Stopping: storing and acknowledging what was received...")
    ingestion.stop()
    counters = ingestor.counters
    click.echo(
        f"Stopped: {counters.processed} messages stored in {counters.batches} batches, "
        f"{counters.acked} acknowledged."
    )


# --- vigie simulate -----------------------------------------------------------------


@click.command()
@click.option(
    "--url",
    default=None,
    help="MQTT broker [default: VIGIE_MQTT_URL, else mqtt://127.0.0.1:<ingest.embedded_port>]",
)
@click.option(
    "--devices", default=50, show_default=True, type=click.IntRange(min=1), help="of each kind"
)
@click.option(
    "--rate", default=500.0, show_default=True, type=click.FloatRange(min=0.1), help="messages/s"
)
@click.option(
    "--duration", default=10.0, show_default=True, type=click.FloatRange(min=0), help="seconds"
)
@click.option(
    "--format",
    "fmt",
    default="mixed",
    show_default=True,
    type=click.Choice(["ttn", "chirpstack", "mixed"]),
)
@click.option(
    "--storm",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="lamps behind one cabinet losing power at once, half-way",
)
@click.option(
    "--junk",
    default=0.01,
    show_default=True,
    type=click.FloatRange(0, 0.99),
    help="fraction of malformed messages",
)
@click.option(
    "--alerts",
    "alert_ratio",
    default=0.05,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="fraction of alerts and recoveries",
)
@click.option(
    "--seed", default=0, show_default=True, type=int, help="same seed, same devices and messages"
)
@click.option(
    "--commune",
    "communes",
    multiple=True,
    help="put the devices in this commune (repeat) "
    "[default: the communes enabling each kind's connector]",
)
@click.option(
    "--registry-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="write the devices as CSV for `vigie devices import`",
)
@click.option(
    "--run-id",
    default="sim",
    show_default=True,
    help="part of the application ids and topics of this run",
)
@pass_context
def simulate(
    context: Context,
    url: str | None,
    devices: int,
    rate: float,
    duration: float,
    fmt: str,
    storm: int,
    junk: float,
    alert_ratio: float,
    seed: int,
    communes: tuple[str, ...],
    registry_out: Path | None,
    run_id: str,
) -> None:
    """Publish realistic sensor traffic: readings, alerts, recoveries, junk, a storm.

    Water meters, street lights and parking bays in The Things Stack v3 and
    ChirpStack envelopes (or wmbusmeters JSON), speaking the vocabularies the
    connectors read. Import the registry first so that their messages match
    devices: vigie simulate --registry-out devices.csv --duration 0 && vigie
    devices import devices.csv.
    """
    from core.simulate import Simulation, publish, simulation_communes

    url = (
        url
        or context.settings.mqtt_url
        or f"mqtt://127.0.0.1:{context.settings.ingest.embedded_port}"
    )
    by_kind, centers = simulation_communes(context.settings, context.pm, communes)
    try:
        simulation = Simulation(
            devices=devices,
            format=fmt,
            seed=seed,
            communes=by_kind,
            centers=centers,
            alert_ratio=alert_ratio,
            junk=junk,
            storm=storm,
            run_id=run_id,
        )
    except ValueError as exc:
        fail(str(exc))
    if registry_out is not None:
        count = simulation.write_registry(registry_out)
        click.echo(
            f"Wrote {count} devices to {registry_out} (import: vigie devices import {registry_out})"
        )
    if duration == 0 and not storm:
        return
    click.echo(
        f"Publishing to {url}: {devices} devices of each kind, "
        f"{rate:g} messages/s for {duration:g} s" + (f", a {storm}-lamp storm" if storm else "")
    )
    started = time.monotonic()
    try:
        report = publish(simulation, url, rate, duration)
    except (OSError, ValueError) as exc:
        fail(f"cannot publish to {url}: {exc}")
    click.echo(report.summary() + f" (in {time.monotonic() - started:.1f} s)")
