"""``vigie devices ...`` and ``vigie deadletters``: the sensor registry and
the messages ingestion could not read. Registered on the ``vigie`` group by
:func:`register` (called at the end of :mod:`core.cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from core.cli import Context

# core.cli imports this module at its end: take its Context from click's
# context object (what core.cli's pass_context finds) rather than importing it.
pass_context = click.pass_obj


def fail(message: str) -> None:
    from core.cli import fail as cli_fail

    cli_fail(message)


def _runtime(context: Context):
    from core.config.loader import ConfigError
    from core.db.migrate import SchemaOutOfDate

    try:
        return context.runtime()
    except ConfigError as exc:
        fail(f"the configuration in {context.settings.config_dir} has problems:\n{exc}")
    except SchemaOutOfDate as exc:
        fail(str(exc))


@click.group()
def devices() -> None:
    """The sensor registry: which device is where, of what kind, in which commune."""


@devices.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@pass_context
def devices_import(context: Context, file: Path) -> None:
    """Add or update devices from a CSV or GeoJSON FILE (nothing is stored if a row is wrong).

    CSV columns (GeoJSON properties): device_id, dev_eui, kind, commune,
    latitude, longitude, address, asset, tags (k=v;k=v or JSON). A GeoJSON
    Point gives the coordinates.
    """
    from core.devices import DeviceImportError, import_devices

    runtime = _runtime(context)
    with runtime.sessions() as session:
        try:
            result = import_devices(runtime, session, file.name, file.read_bytes())
        except DeviceImportError as exc:
            for problem in exc.problems:
                click.echo(problem, err=True)
            fail(f"{len(exc.problems)} problem(s) in {file}; nothing imported")
        session.commit()
    click.echo(f"{file}: {result.created} device(s) added, {result.updated} updated")


@devices.command("list")
@click.option("--commune", "communes", multiple=True, help="commune slug (repeat)")
@click.option("--kind", "kinds", multiple=True, help="water_meter, streetlight... (repeat)")
@pass_context
def devices_list(context: Context, communes: tuple[str, ...], kinds: tuple[str, ...]) -> None:
    """List registered devices: id, kind, commune, asset, address, last heard."""
    from sqlalchemy import select

    from core.db.sensor_models import Device

    runtime = _runtime(context)
    query = select(Device).order_by(Device.commune, Device.kind, Device.device_id)
    if communes:
        query = query.where(Device.commune.in_(communes))
    if kinds:
        query = query.where(Device.kind.in_(kinds))
    count = 0
    with runtime.sessions() as session:
        for device in session.scalars(query):
            heard = (
                device.last_seen_at.isoformat(timespec="seconds") if device.last_seen_at else "-"
            )
            click.echo(
                f"{device.device_id:<20} {device.kind:<13} {device.commune:<20} "
                f"{device.asset or '-':<18} {heard:<26} {device.address or ''}"
            )
            count += 1
    click.echo(f"{count} device(s)", err=True)


@devices.command("unregistered")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@pass_context
def devices_unregistered(context: Context, limit: int) -> None:
    """Devices that send messages but are not in the registry (newest first)."""
    from sqlalchemy import select

    from core.db.sensor_models import UnregisteredDevice

    runtime = _runtime(context)
    with runtime.sessions() as session:
        rows = session.scalars(
            select(UnregisteredDevice).order_by(UnregisteredDevice.last_seen_at.desc()).limit(limit)
        )
        for row in rows:
            click.echo(
                f"{row.device_id:<24} {row.dev_eui or '-':<17} {row.message_count:>6} message(s), "
                f"last {row.last_seen_at.isoformat(timespec='seconds')} on {row.topic}"
            )


def _excerpt(payload: bytes, width: int = 120) -> str:
    from core.api.deadletters import shown_payload

    text, encoding = shown_payload(payload)
    text = " ".join(text.split())
    if len(text) > width:
        text = text[: width - 1] + "…"
    return text if encoding == "utf-8" else f"base64:{text}"


@click.command("deadletters")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--stage", type=click.Choice(["envelope", "device", "connector", "ticket"]), default=None
)
@pass_context
def deadletters(context: Context, limit: int, stage: str | None) -> None:
    """Messages that could not be read, newest first: time, stage, topic, reason, payload."""
    from sqlalchemy import select

    from core.db.sensor_models import DeadLetter

    runtime = _runtime(context)
    query = select(DeadLetter).order_by(DeadLetter.received_at.desc(), DeadLetter.id.desc())
    if stage:
        query = query.where(DeadLetter.stage == stage)
    count = 0
    with runtime.sessions() as session:
        for letter in session.scalars(query.limit(limit)):
            when = letter.received_at.isoformat(timespec="seconds")
            click.echo(f"{when}  {letter.stage:<9} {letter.topic}")
            click.echo(f"    reason: {letter.reason}")
            if letter.repeats:
                last = letter.last_received_at.isoformat(timespec="seconds")
                click.echo(f"    came again: {letter.repeats} time(s), last {last}")
            click.echo(f"    payload: {_excerpt(letter.payload)}")
            count += 1
    if not count:
        click.echo("no dead letters", err=True)


def register(cli: click.Group) -> None:
    cli.add_command(devices)
    cli.add_command(deadletters)
