"""Every hook a Vigie plugin may implement.

A plugin is a module or object with functions marked ``@hookimpl``
(``from core import hookimpl``); it takes any subset of a spec's arguments.

Conventions, the same for every hook:

- ``commune`` is the :class:`core.config.Commune` the call is about. Per-commune
  hooks are called only on plugins that commune enables; a plugin reads its own
  validated settings with ``commune.plugin_config("<plugin name>")``.
- ``settings`` is the platform's :class:`core.settings.Settings`.
- ``ticket`` is a read-only :class:`core.snapshots.TicketSnapshot`.
- The host catches an exception raised by one implementation, logs it with the
  plugin's name and goes on with the next implementation: a failing plugin
  never loses a ticket or a message. Hook wrappers are not supported.
- Collected hooks return a list with every non-None result, most recently
  registered plugin first; ``firstresult`` hooks stop at the first non-None.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pluggy import HookimplMarker, HookspecMarker

if TYPE_CHECKING:
    import click
    from fastapi import APIRouter

    from core.config import Category, Commune
    from core.connectors import Connector
    from core.settings import Settings
    from core.signals import Notification, Reading, RoutingDecision, Signal, TicketDraft
    from core.snapshots import HistoryEvent, TicketSnapshot

hookspec = HookspecMarker("vigie")
hookimpl = HookimplMarker("vigie")


# --- Start-up: what plugins contribute -----------------------------------


@hookspec
def register_categories(commune: Commune) -> Iterable[Category] | None:
    """Categories (Open311 services) this plugin adds to ``commune``.

    Called once per commune that enables the plugin, when the configuration
    is loaded, after the commune's own categories are read from its TOML
    file. A category whose code the commune already defines is ignored (the
    commune's file wins). Collected. Return None to add nothing. An exception
    is logged with the plugin's name, and that plugin adds nothing.
    """


@hookspec
def check_commune(commune: Commune) -> Iterable[str] | None:
    """Problems in this plugin's settings that only show against the whole
    commune (a team or category it names that the commune does not define).

    Called once per commune that enables the plugin, when the configuration
    is loaded or checked (``vigie config check``), after its categories are
    complete. Collected: return reasons as plain sentences; each is reported
    as ``<file>: plugins.<plugin name>: <reason>`` and stops start-up. Return
    None or an empty list when all is well. Raising is logged.
    """


@hookspec
def register_connectors() -> Iterable[Connector] | None:
    """Connectors this plugin provides (see :mod:`core.connectors`).

    Called once per process, when the connector registry is built. Collected;
    connector names must be unique across all plugins. Not per commune: a
    commune uses a connector by enabling the plugin that provides it.
    """


@hookspec
def register_routes(settings: Settings) -> Iterable[APIRouter] | None:
    """FastAPI routers to mount on the application.

    Called once when the app is built. Collected. Paths are used as given, so
    a plugin chooses its own prefix (``/api/v1/...`` for staff, anything else
    for public pages). Use the dependencies in :mod:`core.api.deps` for
    authentication and database sessions.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add sub-commands to the ``vigie`` command line.

    Called once when the CLI starts; add commands with ``cli.add_command`` or
    the ``@cli.command()`` decorator. Collected; return value ignored.
    """


# --- Intake: a signal becomes a ticket ------------------------------------


@hookspec(firstresult=True)
def draft_ticket(signal: Signal, commune: Commune, settings: Settings) -> TicketDraft | None:
    """Turn an incoming signal (sensor :class:`Alert` or citizen :class:`Report`)
    into a :class:`TicketDraft`: category, description, priority, location.

    Called for each new signal that does not join an existing ticket, before
    anything is stored. ``firstresult``: the first plugin that returns a draft
    decides; return None to let another plugin (or core's fallback, which
    takes a report as it is) decide. If no plugin returns a draft for an
    alert, the alert is kept without a ticket. Raising is logged and treated
    as None.
    """


# --- Decisions: who and by when -------------------------------------------


@hookspec(firstresult=True)
def route_ticket(ticket: TicketSnapshot, commune: Commune) -> RoutingDecision | None:
    """Decide who handles a new ticket: a team of the commune, or an outside
    body the city redirects it to (with a reason).

    Called once, just after the ticket is created and before it is committed.
    ``firstresult``. Return None to leave the decision to the next plugin; if
    none decides, the ticket stays unassigned in the commune's queue. Raising
    is logged and treated as None: the ticket is stored all the same.
    """


@hookspec(firstresult=True)
def compute_due_date(ticket: TicketSnapshot, commune: Commune) -> datetime | None:
    """The time-zone aware date by which ``ticket`` should be resolved.

    Called once after routing, before commit, and again when the priority or
    category changes. ``firstresult``. Return None for no due date (or to let
    another plugin decide). Raising is logged and treated as None.
    """


# --- Events, after commit --------------------------------------------------


@hookspec
def ticket_created(ticket: TicketSnapshot, commune: Commune) -> None:
    """A ticket was stored (and committed). Called once per ticket, after
    commit: acknowledge the resident, page the on-call crew, post a webhook.
    Collected; return value ignored. Raising is logged; the ticket stays.
    """


@hookspec
def ticket_status_changed(
    ticket: TicketSnapshot, old_status: str, new_status: str, event: HistoryEvent, commune: Commune
) -> None:
    """A ticket's status changed (and was committed). ``event`` is the history
    entry: who, when, and the comment. Called once per change, after commit.
    Collected; return value ignored. Raising is logged; the change stays.
    """


@hookspec
def signal_attached(ticket: TicketSnapshot, signal: Signal, commune: Commune) -> None:
    """A further report or alert joined an existing ticket.

    Called once per joining signal, after commit: a repeated sensor alert, a
    second resident reporting the same problem. ``signal`` is the incoming
    :class:`Alert` or :class:`Report`. Collected; return value ignored.
    Raising is logged.
    """


# --- Out: messages and telemetry --------------------------------------------


@hookspec
def compose_notifications(
    ticket: TicketSnapshot, event: HistoryEvent, commune: Commune, settings: Settings
) -> Iterable[Notification] | None:
    """Messages to send because of ``event``, a new entry in ``ticket``'s
    history: a receipt when it was created, a word when it was assigned,
    redirected to an outside body or resolved...

    Called inside the transaction that records the event, once per event
    (``created``, ``redirected``, ``routed``, ``status_changed``,
    ``assigned``...), with ``ticket`` as it is after the change, its
    ``reporters`` included (``settings`` to find files relative to the
    configuration directory). The messages are queued in the outbox in that same
    transaction and delivered after commit by ``send_notification``: none is
    lost if the process dies after the commit, none is sent for a change that
    is rolled back. Compose only; never send from here. Collected: return
    :class:`Notification` objects (an empty list or None for nothing).
    Raising is logged with the plugin's name and that plugin's messages are
    dropped; the change is stored all the same.
    """


@hookspec(firstresult=True)
def send_notification(notification: Notification, commune: Commune) -> bool | None:
    """Deliver one queued message (email, SMS...) now.

    Called by the outbox worker after the change that queued it was
    committed. ``firstresult``: return True once delivered, None if this
    plugin does not handle ``notification.channel``. Raise to report a failed
    delivery: the outbox retries later with back-off, and the message is never
    lost.
    """


@hookspec
def store_telemetry(readings: list[Reading], commune: Commune, settings: Settings) -> None:
    """Store sensor readings in a time-series store.

    Called with batches of readings of one commune, off the ticket database's
    transaction; should return quickly (buffer and write in the background).
    Collected; return value ignored. Raising is logged and the batch dropped
    for this plugin only.
    """


# Names of hooks that are called per commune (only plugins it enables run).
PER_COMMUNE_HOOKS: frozenset[str] = frozenset(
    {
        "register_categories",
        "check_commune",
        "draft_ticket",
        "route_ticket",
        "compute_due_date",
        "ticket_created",
        "ticket_status_changed",
        "signal_attached",
        "compose_notifications",
        "send_notification",
        "store_telemetry",
    }
)

__all__: list[Any] = ["hookimpl", "hookspec", "PER_COMMUNE_HOOKS"]
