"""The ``vigie`` command line. Plugins add commands with the ``register_commands`` hook."""

from __future__ import annotations

import json
import logging
import os
import sys

import click
from pydantic import ValidationError

from core.config.loader import ConfigError, check_config
from core.db.migrate import SchemaOutOfDate
from core.plugin_manager import PluginLoadError, VigiePluginManager, get_plugin_manager
from core.settings import Settings


class Context:
    """What every command may need, built lazily so ``vigie --help`` needs no database."""

    def __init__(self, settings: Settings, pm: VigiePluginManager) -> None:
        self.settings = settings
        self.pm = pm
        self._runtime = None

    def runtime(self, prepare_schema: bool = True):
        if self._runtime is None:
            from core.runtime import open_runtime

            self._runtime = open_runtime(self.settings, self.pm, prepare_schema=prepare_schema)
        return self._runtime


pass_context = click.make_pass_decorator(Context)


def fail(message: str) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Vigie: residents' reports and sensor alerts become the city's tickets."""
    if ctx.obj is None:  # when invoked without main(), e.g. by click's test runner
        ctx.obj = _build_context()


# --- serve ----------------------------------------------------------------


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="API processes sharing the port; with more than one they do not ingest "
    "(run `vigie ingest` beside them)",
)
@pass_context
def serve(context: Context, host: str, port: int, workers: int) -> None:
    """Serve the configured area (upgrades an empty database itself)."""
    _serve(context, host, port, workers=workers)


def _serve(
    context: Context, host: str, port: int, banner: list[str] | None = None, workers: int = 1
) -> None:
    import uvicorn

    from core.api.app import create_app
    from core.gc_tuning import tune_for_service

    runtime = _open(context)  # configuration and schema checked once, here
    app = create_app(runtime=runtime) if workers == 1 else None
    click.echo(f"Vigie serving {runtime.area.name} ({len(runtime.area.communes)} communes)")
    click.echo(f"Database: {runtime.engine.url.render_as_string(hide_password=True)} ({runtime.schema})")
    for line in banner or []:
        click.echo(line)
    click.echo(f"Open http://{host}:{port}/docs  (API at http://{host}:{port}/api/v1)")
    log_level = context.settings.log_level.lower()
    if app is not None:
        tune_for_service()
        uvicorn.run(app, host=host, port=port, log_level=log_level)
        return
    # Each process builds its app from the same environment; ingestion (an
    # embedded broker on one port) stays out of them.
    runtime.close()
    click.echo(f"{workers} API processes; sensor ingestion: run `vigie ingest` beside them")
    os.environ["VIGIE_INGEST__ENABLED"] = "false"
    uvicorn.run(
        "core.api.app:create_worker_app", factory=True, workers=workers,
        host=host, port=port, log_level=log_level,
    )  # fmt: skip


def _open(context: Context, prepare_schema: bool = True):
    try:
        return context.runtime(prepare_schema)
    except ConfigError as exc:
        fail(f"the configuration in {context.settings.config_dir} has problems:\n{exc}")
    except SchemaOutOfDate as exc:
        fail(str(exc))


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--tickets", default=300, show_default=True, help="demo tickets to create if none exist")
@click.option("--no-serve", is_flag=True, help="load the demo data and exit")
@pass_context
def demo(context: Context, host: str, port: int, tickets: int, no_serve: bool) -> None:
    """Load the example area with demo tickets, print an admin token, and serve."""
    from core.auth import create_token
    from core.demo import load_demo_tickets

    runtime = _open(context)
    created = load_demo_tickets(runtime, tickets)
    with runtime.sessions() as session:
        token = create_token(session, "admin", ["all"], "demo-admin", list(runtime.area.communes))
        session.commit()
    banner = [
        f"Demo tickets: {created} created" if created else "Demo tickets: already loaded",
        f"Admin token: {token}",
        f"Try: curl -H 'Authorization: Bearer {token}' http://{host}:{port}/api/v1/tickets",
    ]
    if no_serve:
        click.echo("\n".join(banner))
        return
    _serve(context, host, port, banner)


# --- db -------------------------------------------------------------------


@cli.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@pass_context
def db_upgrade(context: Context, revision: str) -> None:
    """Migrate the database to the current schema."""
    from core.db.engine import make_engine
    from core.db.migrate import current_revision, upgrade

    engine = make_engine(context.settings.database_url)
    before = current_revision(engine)
    upgrade(engine, revision)
    after = current_revision(engine)
    click.echo(f"database at revision {after}" + ("" if before == after else f" (was {before or 'empty'})"))


@db.command("current")
@pass_context
def db_current(context: Context) -> None:
    """Show the database's schema revision and the one this code needs."""
    from core.db.engine import make_engine
    from core.db.migrate import current_revision, head_revision

    engine = make_engine(context.settings.database_url)
    click.echo(f"database: {current_revision(engine) or 'empty'}; code: {head_revision()}")


# --- config and plugins ---------------------------------------------------


@cli.group()
def config() -> None:
    """Communes' configuration."""


@config.command("check")
@pass_context
def config_check(context: Context) -> None:
    """Validate every file under the config dir; print every problem as file: key: reason."""
    area, problems = check_config(context.settings.config_dir, context.pm, context.settings.area_name)
    if problems:
        for problem in problems:
            click.echo(str(problem))
        click.echo(f"{len(problems)} problem(s) in {context.settings.config_dir}", err=True)
        sys.exit(1)
    communes = ", ".join(area.communes)
    click.echo(f"{context.settings.config_dir}: OK, {len(area.communes)} communes ({communes})")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@pass_context
def plugins(context: Context, as_json: bool) -> None:
    """List installed plugins: version, hooks implemented, communes enabling each."""
    from core.plugin_manager import ALWAYS_ENABLED

    area, _problems = check_config(context.settings.config_dir, context.pm, context.settings.area_name)
    rows = []
    for info in context.pm.describe():
        if info.name in ALWAYS_ENABLED:
            enabled = ["(all)"]
        else:
            enabled = [c.slug for c in (area.communes.values() if area else []) if c.enables(info.name)]
        rows.append(
            {
                "name": info.name,
                "version": info.version,
                "hooks": list(info.hooks),
                "communes": enabled,
                "builtin": info.builtin,
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['name']} {row['version'] or ''}".rstrip())
        click.echo(f"  hooks: {', '.join(row['hooks']) or '-'}")
        click.echo(f"  communes: {', '.join(row['communes']) or '-'}")


# --- tokens ---------------------------------------------------------------


@cli.group()
def token() -> None:
    """API bearer tokens."""


@token.command("create")
@click.option("--role", required=True, type=click.Choice(["agent", "supervisor", "admin", "integration"]))
@click.option("--commune", "communes", multiple=True, required=True, help="a commune slug (repeat), or all")
@click.option("--name", default=None, help="who or what uses it (shown in the history)")
@pass_context
def token_create(context: Context, role: str, communes: tuple[str, ...], name: str | None) -> None:
    """Create a token; it is printed once, on the last line."""
    from core.auth import create_token
    from core.errors import InvalidInput

    runtime = _open(context)
    with runtime.sessions() as session:
        try:
            plaintext = create_token(
                session, role, list(communes), name or f"{role}-{'-'.join(communes)}", list(runtime.area.communes)
            )
        except InvalidInput as exc:
            fail(str(exc))
        session.commit()
    click.echo(f"Token for role {role} on {', '.join(communes)} (keep it secret, it is not shown again):")
    click.echo(plaintext)


@token.command("list")
@pass_context
def token_list(context: Context) -> None:
    """List tokens (their first characters only)."""
    from sqlalchemy import select

    from core.db.models import ApiToken

    runtime = _open(context)
    with runtime.sessions() as session:
        for row in session.scalars(select(ApiToken).order_by(ApiToken.id)):
            state = "revoked" if row.revoked_at else "active"
            click.echo(f"{row.prefix}…  {row.role:<12} {','.join(row.communes):<30} {row.name}  {state}")


@token.command("revoke")
@click.argument("prefix")
@pass_context
def token_revoke(context: Context, prefix: str) -> None:
    """Revoke the tokens starting with PREFIX (as shown by `vigie token list`)."""
    from core.auth import revoke_token

    runtime = _open(context)
    with runtime.sessions() as session:
        count = revoke_token(session, prefix.rstrip("…"))
        session.commit()
    if not count:
        fail(f"no active token starts with {prefix}")
    click.echo(f"revoked {count} token(s)")


# --- entry point ----------------------------------------------------------


def _build_context() -> Context:
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "\n".join(
            f"VIGIE_{'__'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
        )
        fail(f"settings are not valid:\n{problems}")
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        pm = get_plugin_manager(settings)
    except PluginLoadError as exc:
        fail(str(exc))
    return Context(settings, pm)


def main(argv: list[str] | None = None) -> None:
    context = _build_context()
    context.pm.call_all("register_commands", cli=cli)
    cli.main(args=argv, obj=context, prog_name="vigie")


from core.cli_ingest import register as _register_ingest_commands; _register_ingest_commands(cli)  # noqa: E402, E702, I001


# Sensor commands (``vigie devices``, ``vigie deadletters``) live in their own module.
from core.cli_sensors import register as _register_sensor_commands  # noqa: E402

_register_sensor_commands(cli)


if __name__ == "__main__":
    main()
