"""Messages to send (emails, SMS...): queued in the ticket's transaction, sent after.

A message is stored with the change that caused it, so it is never lost; the
delivery loop hands it to the ``send_notification`` hook and retries with
exponential back-off until ``outbox.max_attempts``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db.models import OutboxMessage
from core.db.types import utcnow
from core.runtime import Runtime
from core.signals import Notification

log = logging.getLogger(__name__)


def queue(
    session: Session, notification: Notification, ticket_id: int | None = None
) -> OutboxMessage:
    message = OutboxMessage(
        ticket_id=ticket_id,
        commune=notification.commune,
        channel=notification.channel,
        recipient=notification.recipient,
        subject=notification.subject,
        body=notification.body,
        language=notification.language,
        next_attempt_at=utcnow(),
    )
    session.add(message)
    return message


def _notification(message: OutboxMessage, reference: str | None) -> Notification:
    return Notification(
        channel=message.channel,
        recipient=message.recipient,
        subject=message.subject,
        body=message.body,
        commune=message.commune,
        ticket_reference=reference,
        language=message.language,
    )


def deliver_due(runtime: Runtime, now: datetime | None = None, limit: int = 50) -> tuple[int, int]:
    """Send the messages that are due; return (sent, failed this round)."""
    now = now or utcnow()
    sent = failed = 0
    with runtime.sessions() as session:
        due = list(
            session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now)
                .order_by(OutboxMessage.id)
                .limit(limit)
            )
        )
        for message in due:
            reference = None
            if message.ticket_id is not None:
                from core.db.models import Ticket

                ticket = session.get(Ticket, message.ticket_id)
                reference = ticket.reference if ticket else None
            commune = runtime.area.commune(message.commune)
            message.attempts += 1
            error = None
            delivered = None
            if commune is None:
                error = f"commune {message.commune} is no longer configured"
            else:
                try:
                    delivered = _send(runtime, _notification(message, reference), commune)
                except Exception as exc:  # a plugin's failure: retry later
                    error = f"{type(exc).__name__}: {exc}"
            if delivered:
                message.status, message.sent_at, message.last_error = "sent", utcnow(), None
                sent += 1
                continue
            failed += 1
            message.last_error = error or f"no plugin of {message.commune} sends {message.channel}"
            if message.attempts >= runtime.settings.outbox.max_attempts:
                message.status = "failed"
                log.error(
                    "giving up on message %s to %s: %s",
                    message.id,
                    message.channel,
                    message.last_error,
                )
            else:
                delay = runtime.settings.outbox.retry_base_seconds * 2 ** (message.attempts - 1)
                message.next_attempt_at = now + timedelta(seconds=delay)
        session.commit()
    return sent, failed


def _send(runtime: Runtime, notification: Notification, commune) -> bool | None:
    """Call the plugins one by one, letting an exception through so we retry."""
    hook = runtime.pm.hook.send_notification
    for impl in reversed(hook.get_hookimpls()):
        if not runtime.pm.is_enabled(impl.plugin_name, commune):
            continue
        args = {"notification": notification, "commune": commune}
        result = impl.function(**{name: args[name] for name in impl.argnames if name in args})
        if result is not None:
            return bool(result)
    return None
