"""Messages to residents, queued with the change that causes them.

Domain code calls :func:`queue_notifications` right after it records a history
event; the ``compose_notifications`` plugins say what to send and the
messages go into the outbox in the caller's transaction, to be delivered after
commit (see :mod:`core.outbox`). A ticket change and its messages are stored
together or not at all.
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from core import outbox
from core.db.models import OutboxMessage, Ticket, TicketEvent
from core.history import recorded_in_transaction
from core.runtime import Runtime
from core.signals import Notification
from core.snapshots import TicketSnapshot

log = logging.getLogger(__name__)

HOOK = "compose_notifications"


def queue_notifications(
    runtime: Runtime,
    session: Session,
    ticket: Ticket,
    event: TicketEvent,
    snapshot: TicketSnapshot | None = None,
) -> list[OutboxMessage]:
    """Ask the commune's plugins what ``event`` should tell whom; queue it.

    A plugin that raises, or returns something that is not a
    :class:`Notification`, is logged with its name; the others still queue.
    """
    commune = runtime.area.commune(ticket.commune)
    if commune is None or not _anyone_composes(runtime, commune):
        return []
    snapshot, event_snapshot = snapshot or ticket.snapshot(), event.snapshot()
    queued = []
    for plugin, results in runtime.pm.call_each(
        HOOK, ticket=snapshot, event=event_snapshot, commune=commune, settings=runtime.settings
    ):
        try:
            notifications = list(results)
        except TypeError:
            log.error('plugin "%s" returned %r from %s, not a list', plugin, results, HOOK)
            continue
        for notification in notifications:
            if not isinstance(notification, Notification):
                log.error(
                    'plugin "%s" gave %r from %s, not a Notification', plugin, notification, HOOK
                )
                continue
            if notification.commune != ticket.commune:
                log.error(
                    'plugin "%s" composed a message of commune %s for ticket %s of %s; dropped',
                    plugin,
                    notification.commune,
                    ticket.reference,
                    ticket.commune,
                )
                continue
            queued.append(outbox.queue(session, notification, ticket.id))
    return queued


def queue_for_new_ticket(
    runtime: Runtime, session: Session, ticket: Ticket, snapshot: TicketSnapshot | None = None
) -> list[OutboxMessage]:
    """The messages about a ticket just opened: one call per event of its
    history so far (created, then routed or redirected, due date set).

    Called once its first signal is attached, so that its reporter is known;
    ``snapshot``: the ticket as it now is, if the caller has it.
    """
    if not _anyone_composes(runtime, runtime.area.commune(ticket.commune)):
        return []
    snapshot = snapshot or ticket.snapshot()  # the same for each event: taken once
    queued = []
    for event in recorded_in_transaction(session, ticket.id):
        queued += queue_notifications(runtime, session, ticket, event, snapshot)
    return queued


def _anyone_composes(runtime: Runtime, commune) -> bool:
    # Skip the snapshots on the hot intake path when no plugin would read them.
    return commune is not None and runtime.pm.implemented_for(HOOK, commune)
