"""A signal comes in: store it, join it to an open ticket or open a new one.

The caller owns the session and commits; plugins hear of the ticket after
the commit (see :mod:`core.events`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import events, history, notify
from core.answers import validate_answers
from core.config import Commune
from core.config.models import PRIORITIES
from core.db.ids import take_id
from core.db.models import SignalRecord, Ticket
from core.db.types import utcnow
from core.errors import InvalidInput
from core.references import format_reference, next_number
from core.runtime import Runtime
from core.signals import Alert, Report, RoutingDecision, Signal, TicketDraft
from core.workflow import OPEN_STATUSES, Status

log = logging.getLogger(__name__)


@dataclass
class IntakeResult:
    signal: SignalRecord
    ticket: Ticket | None
    created: bool  # a new ticket was opened for this signal
    repeated: bool = False  # the same idempotency key was seen before: nothing new stored


def accept_signal(
    runtime: Runtime, session: Session, signal: Signal, actor: str, checked: bool = False
) -> IntakeResult:
    """Store ``signal`` and open or join a ticket. Raises InvalidInput for a bad report.

    ``checked``: the caller has already made sure that the idempotency key is
    new and that no open ticket holds this device's condition (the alert
    desk does, for a whole batch at once); the two lookups are skipped, and
    nothing is flushed: the caller's next flush or commit writes it all.
    Otherwise the ticket and its signal are flushed before this returns (a
    caller's own rows may then refer to them).
    """
    if signal.idempotency_key and not checked and not key_is_drawn(signal):
        seen = session.scalar(
            select(SignalRecord).where(SignalRecord.idempotency_key == signal.idempotency_key)
        )
        if seen is not None:
            return IntakeResult(seen, seen.ticket, created=False, repeated=True)
    commune = runtime.commune(signal.commune) if signal.commune else None
    if commune is None:
        raise InvalidInput.one("commune", "required")
    if isinstance(signal, Report):
        signal = _checked_report(signal, commune)
    elif not checked:
        joined = _join_open_alert(session, signal)
        if joined is not None:
            session.flush()
            events.after_commit(
                session, "signal_attached", ticket=joined.ticket.snapshot(), signal=signal, commune=commune
            )
            return IntakeResult(joined, joined.ticket, created=False)
    record = _signal_record(signal, commune)
    draft, drafted_by = runtime.pm.call_first(
        "draft_ticket", signal=signal, commune=commune, settings=runtime.settings
    )
    if draft is None:
        # An alert no connector of this commune turns into a ticket: kept, not lost.
        session.add(record)
        if not checked:
            session.flush()
        return IntakeResult(record, None, created=False)
    ticket = open_ticket(runtime, session, draft, commune, actor, drafted_by=drafted_by)
    # Added with its ticket (back-populates ticket.signals): one INSERT, no UPDATE after.
    record.ticket = ticket
    session.add(record)
    snapshot = ticket.snapshot()  # with its first signal: its reporter is known
    notify.queue_for_new_ticket(runtime, session, ticket, snapshot)
    events.after_commit(session, "ticket_created", ticket=snapshot, commune=commune)
    if not checked:
        session.flush()
    return IntakeResult(record, ticket, created=True)


def key_is_drawn(signal: Signal) -> bool:
    """Whether ``signal``'s idempotency key was drawn at random for it, so that no
    stored signal can hold it (see :attr:`core.signals.Report.key_drawn`)."""
    return isinstance(signal, Report) and signal.key_drawn


def open_ticket(
    runtime: Runtime,
    session: Session,
    draft: TicketDraft,
    commune: Commune,
    actor: str,
    drafted_by: str | None = None,
) -> Ticket:
    """Create a ticket from a draft, route it and give it a due date, with history.

    The ticket has its id and reference at once but is not flushed: it is
    written at the caller's next flush or commit, with whatever else is
    pending (a batch's tickets go together)."""
    now = utcnow()
    year = now.year
    number = next_number(session, commune.slug, year)
    priority = draft.priority if draft.priority in PRIORITIES else "normal"
    ticket = Ticket(
        # Its id now, not at a flush: the batch's new tickets are written together.
        id=take_id(session, Ticket.__table__),
        reference=format_reference(commune.reference_prefix, year, number),
        commune=commune.slug,
        year=year,
        number=number,
        category=draft.category,
        description=draft.description,
        channel=draft.channel,
        status=Status.NEW.value,
        priority=priority,
        latitude=draft.location.latitude,
        longitude=draft.location.longitude,
        address=draft.location.address,
        asset=draft.asset,
        answers=draft.answers,
        created_at=now,
        updated_at=now,
        # A new ticket holds no signal yet: said so, its snapshots need no query.
        signals=[],
    )
    session.add(ticket)
    created_fields = {
        "category": draft.category,
        "priority": priority,
        "channel": draft.channel,
        "status": Status.NEW.value,
    }
    if drafted_by and drafted_by != "defaults":
        created_fields["drafted_by"] = drafted_by
    history.record(session, ticket, actor, "created", created_fields)
    _apply_routing(runtime, session, ticket, commune)
    refresh_due_date(runtime, session, ticket, commune)
    return ticket


def _apply_routing(runtime: Runtime, session: Session, ticket: Ticket, commune: Commune) -> None:
    decision, plugin = runtime.pm.call_first(
        "route_ticket", ticket=ticket.snapshot(), commune=commune
    )
    if not isinstance(decision, RoutingDecision):
        return
    actor = f"plugin:{plugin}"
    if decision.outside_body:
        ticket.outside_body = decision.outside_body
        ticket.status = Status.REDIRECTED.value
        history.record(
            session,
            ticket,
            actor,
            "redirected",
            {"status": [Status.NEW.value, Status.REDIRECTED.value], "outside_body": [None, decision.outside_body]},
            comment=decision.reason,
        )
    elif decision.team:
        if commune.team(decision.team) is None:
            log.warning(
                'plugin "%s" routed %s to team %r, which %s does not define; left unassigned',
                plugin, ticket.reference, decision.team, commune.slug,
            )
            return
        ticket.team = decision.team
        history.record(
            session, ticket, actor, "routed", {"team": [None, decision.team]}, comment=decision.reason
        )


def refresh_due_date(runtime: Runtime, session: Session, ticket: Ticket, commune: Commune) -> None:
    """Ask the plugins for the due date again; record it if it changed."""
    due, plugin = runtime.pm.call_first("compute_due_date", ticket=ticket.snapshot(), commune=commune)
    if due is not None and due.tzinfo is None:
        log.warning('plugin "%s" gave a naive due date; ignored', plugin)
        return
    if due == ticket.due_at:
        return
    old = ticket.due_at
    ticket.due_at = due
    history.record(
        session,
        ticket,
        f"plugin:{plugin}" if plugin else "system",
        "due_date_set",
        {"due_at": [old.isoformat() if old else None, due.isoformat() if due else None]},
    )


def _checked_report(report: Report, commune: Commune) -> Report:
    category = commune.category(report.category)
    if category is None:
        known = ", ".join(c.code for c in commune.categories)
        raise InvalidInput.one("category", f"{report.category!r} is not a category of {commune.slug}; known: {known}")
    if report.priority is not None and report.priority not in PRIORITIES:
        raise InvalidInput.one("priority", f"must be one of {', '.join(PRIORITIES)}")
    answers = validate_answers(category, report.answers)
    if answers == report.answers:
        return report
    from dataclasses import replace

    return replace(report, answers=answers)


def _signal_record(signal: Signal, commune: Commune) -> SignalRecord:
    location = signal.location
    common = dict(
        commune=commune.slug,
        channel=signal.channel,
        idempotency_key=signal.idempotency_key,
        latitude=location.latitude,
        longitude=location.longitude,
        address=location.address,
    )
    if isinstance(signal, Report):
        reporter = signal.reporter
        return SignalRecord(
            kind="report",
            received_at=signal.received_at or utcnow(),
            category=signal.category,
            description=signal.description,
            answers=signal.answers,
            reporter_name=reporter.name,
            reporter_email=reporter.email,
            reporter_phone=reporter.phone,
            notify_by=reporter.notify_by,
            language=reporter.language,
            details=signal.extra,
            **common,
        )
    return SignalRecord(
        kind="alert",
        received_at=utcnow(),
        device_id=signal.device_id,
        device_kind=signal.device_kind,
        connector=signal.connector,
        condition=signal.condition,
        severity=signal.severity,
        asset=signal.asset,
        occurrences=1,
        first_seen_at=signal.observed_at,
        last_seen_at=signal.observed_at,
        details=signal.details,
        **common,
    )


def _join_open_alert(session: Session, alert: Alert) -> SignalRecord | None:
    """One open ticket per device and condition: a repeat adds an occurrence."""
    if alert.recovered:
        return None
    existing = session.scalar(
        select(SignalRecord)
        .join(Ticket, SignalRecord.ticket_id == Ticket.id)
        .where(
            SignalRecord.device_id == alert.device_id,
            SignalRecord.condition == alert.condition,
            SignalRecord.recovered_at.is_(None),
            Ticket.status.in_([s.value for s in OPEN_STATUSES]),
        )
        .order_by(SignalRecord.id.desc())
        .limit(1)
    )
    if existing is None:
        return None
    existing.occurrences += 1
    if existing.last_seen_at is None or alert.observed_at > existing.last_seen_at:
        existing.last_seen_at = alert.observed_at
    return existing
