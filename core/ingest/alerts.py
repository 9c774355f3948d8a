"""The alert desk: a batch's alerts become signals on tickets.

For each alert, in the order the messages came:

1. an idempotency key already stored (a redelivered message): counted as a
   duplicate, nothing else;
2. a recovery: see :mod:`core.ingest.recovery`;
3. the device already has an unrecovered signal for the condition on an
   open ticket: one more occurrence;
4. a storm (see :mod:`core.ingest.storms`): joins the open incident, or
   opens it when this alert brings the count to the threshold;
5. otherwise :func:`core.intake.accept_signal` opens a ticket (or stores the
   alert alone when the commune turns it into none).

Plugins hear of it after the commit: ``ticket_created`` for new tickets,
``signal_attached`` for alerts that joined one.

Two modes. The fast one, for every batch first, opens tickets without a
savepoint or a flush each: they are written together at the end. If
anything fails there for a reason other than the database (a bug, a bad
value no validation caught), it raises :class:`RetryCarefully` and the
caller rolls the whole batch back and runs it again in the careful mode:
each new ticket in a savepoint of its own, and an alert that cannot be
stored goes to the dead letters while the rest of the batch is kept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from sqlalchemy import insert, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, lazyload
from sqlalchemy.orm.attributes import set_committed_value

from core import events
from core.config import Commune
from core.connectors import Connector
from core.db.lists import among
from core.db.models import SignalRecord, Ticket
from core.ingest.recovery import (
    PendingResolution,
    recovered_event,
    resolve_if_all_recovered,
    resolves_on_recovery,
    still_active,
)
from core.ingest.signals_index import (
    OPEN,
    SignalIndex,
    alert_record,
    existing_keys,
    signal_row,
)
from core.ingest.storms import Incident, StormWatch, emit_created, is_area_key, storm_key
from core.intake import accept_signal
from core.runtime import Runtime
from core.signals import Alert, DeviceInfo

log = logging.getLogger(__name__)

T = TypeVar("T")

# In an alert signal's details: the idempotency keys of its latest repeats
# (bookkeeping, left out of SignalRecord.shown_details).
REPEAT_KEYS = "_repeat_keys"
REPEAT_KEYS_KEPT = 16
# Where core.events holds a session's after-commit calls: a savepoint rolled
# back must drop the calls made inside it.
_EVENTS_KEY = events._KEY


class RetryCarefully(Exception):
    """The fast mode failed on an alert: roll the batch back, run it carefully."""


@dataclass
class IncomingAlert:
    """An alert to handle, with where it came from."""

    alert: Alert
    commune: Commune
    device: DeviceInfo | None
    connector: Connector | None
    # The message it was read from (to dead-letter it if storing fails); None
    # for alerts raised by Vigie itself (silent meters).
    source: Any = None


class AlertDesk:
    """One batch's alerts, in one session; :meth:`finish` before the commit."""

    def __init__(
        self,
        runtime: Runtime,
        session: Session,
        outcome: Any,
        on_failure: Callable[[IncomingAlert, str], None],
        careful: bool = False,
    ) -> None:
        self.runtime = runtime
        self.careful = careful
        self.session = session
        self.outcome = outcome
        self.on_failure = on_failure
        self.index = SignalIndex(session)
        self.storms = StormWatch(runtime, session)
        self._attached: dict[int, tuple[Ticket, Commune, list[Alert]]] = {}
        self._resolutions: dict[int, PendingResolution] = {}
        self._created: set[int] = set()
        self._bulk: list[SignalRecord] = []  # transient: inserted in one statement by finish()
        self._tickets: dict[int, Ticket] = {}

    def handle(self, items: list[IncomingAlert]) -> None:
        if not items:
            return
        seen = existing_keys(
            self.session, (i.alert.idempotency_key for i in items if i.alert.idempotency_key)
        )
        self.index.load({item.alert.device_id for item in items})
        self._prefetch_tickets(self.index.ticket_ids())
        self.storms.prepare(
            [
                (item.commune, item.alert, key)
                for item in items
                if not item.alert.recovered
                and item.alert.idempotency_key not in seen
                and self.index.open_for(item.alert.device_id, item.alert.condition) is None
                and (key := storm_key(item.alert, item.device)) is not None
            ]
        )
        for item in items:
            key = item.alert.idempotency_key
            if key is not None:
                if key in seen:
                    self.outcome.duplicates += 1
                    continue
                seen.add(key)
            try:
                stored = self._recover(item) if item.alert.recovered else self._raise(item)
            except SQLAlchemyError:
                raise
            except Exception as exc:
                if not self.careful:
                    raise RetryCarefully(f"{type(exc).__name__}: {exc}") from exc
                log.exception(
                    "alert %s of %s could not be stored", item.alert.condition, item.alert.device_id
                )
                self.on_failure(item, f"storing the alert failed: {type(exc).__name__}: {exc}")
                continue
            if stored:
                self.outcome.alerts += 1
            else:
                self.outcome.duplicates += 1

    # --- Raised -------------------------------------------------------------------

    def _raise(self, item: IncomingAlert) -> bool:
        alert, commune = item.alert, item.commune
        record = self.index.open_for(alert.device_id, alert.condition)
        if record is not None:
            if alert.idempotency_key in (record.details or {}).get(REPEAT_KEYS, ()):
                return False  # this repeat again (redelivered): counted once
            self._repeat(record, alert, commune)
            return True
        key = storm_key(alert, item.device)
        if key is not None:
            if is_area_key(key):
                alert = replace(alert, details={**alert.details, "storm_key": key})
            incident = self.storms.incident(commune, alert.condition, key)
            if incident is None and self.storms.count(commune, alert, key) >= self.storms.threshold:
                incident = self.storms.opened_elsewhere(commune, alert, key)
                if incident is None:
                    incident = self._guarded(lambda: self.storms.open(commune, alert, key))
                    if incident is not None:
                        self.outcome.tickets_created.append(incident.ticket.reference)
                        self._created.add(incident.ticket.id)
            if incident is not None:
                self._attach(incident, alert, commune)
                return True
        # Checked already: the key is new (handle) and no open signal holds the condition.
        result = self._guarded(
            lambda: accept_signal(
                self.runtime, self.session, alert, f"sensor:{alert.device_id}", checked=True
            )
        )
        if result.repeated:
            return False
        self.index.add(result.signal)
        if result.created and result.ticket is not None:
            self.outcome.tickets_created.append(result.ticket.reference)
            self._created.add(result.ticket.id)
        return True

    def _repeat(self, record: SignalRecord, alert: Alert, commune: Commune) -> None:
        record.occurrences += 1
        if alert.idempotency_key:
            # A repeat has no signal of its own to hold its key: the signal keeps
            # the last few, enough for what a broker redelivers after a disconnect.
            details = record.details or {}
            keys = [*details.get(REPEAT_KEYS, ()), alert.idempotency_key]
            record.details = {**details, REPEAT_KEYS: keys[-REPEAT_KEYS_KEPT:]}
        if record.last_seen_at is None or alert.observed_at > record.last_seen_at:
            record.last_seen_at = alert.observed_at
        ticket = self._ticket_of(record)
        if ticket is not None:
            self._note_attached(ticket, commune, alert)

    def _attach(self, incident: Incident, alert: Alert, commune: Commune) -> None:
        # Storms bring thousands: kept out of the unit of work, inserted in bulk at the end.
        record = alert_record(alert, commune)
        record.ticket_id = incident.ticket.id
        self._bulk.append(record)
        self.index.add(record)
        self.index.note_status(incident.ticket.id, incident.ticket.status)
        self._tickets[incident.ticket.id] = incident.ticket
        self.storms.note_attached(incident)
        self._note_attached(incident.ticket, commune, alert)

    def _ticket_of(self, record: SignalRecord) -> Ticket | None:
        ticket = record.__dict__.get("ticket")
        if ticket is not None or record.ticket_id is None:
            return ticket
        ticket = self._tickets.get(record.ticket_id)
        if ticket is None:
            # Not its signals: an incident's are thousands, loaded only if needed.
            ticket = self.session.get(Ticket, record.ticket_id, options=[lazyload(Ticket.signals)])
            self._tickets[record.ticket_id] = ticket
        return ticket

    def _prefetch_tickets(self, ticket_ids: set[int]) -> None:
        # One query for the batch's tickets instead of one per repeated alert;
        # not their signals (an incident's are thousands).
        wanted = sorted(ticket_ids - self._tickets.keys())
        for start in range(0, len(wanted), 500):
            query = (
                select(Ticket)
                .where(among(self.session, Ticket.id, wanted[start : start + 500]))
                .options(lazyload(Ticket.signals))
            )
            for ticket in self.session.scalars(query):
                self._tickets[ticket.id] = ticket

    def _load_signals(self, tickets: list[Ticket]) -> None:
        """The signals of tickets about to be resolved, in one query: the
        snapshot each change of status hands to plugins lists the ticket's
        devices and reporters, and would otherwise load them ticket by ticket."""
        held: dict[int, list[SignalRecord]] = {ticket.id: [] for ticket in tickets}
        wanted = sorted(held)
        for start in range(0, len(wanted), 500):
            query = (
                select(SignalRecord)
                .where(among(self.session, SignalRecord.ticket_id, wanted[start : start + 500]))
                .order_by(SignalRecord.id)
            )
            for record in self.session.scalars(query):
                held[record.ticket_id].append(record)
        for ticket in tickets:
            set_committed_value(ticket, "signals", held[ticket.id])

    def _note_attached(self, ticket: Ticket, commune: Commune, alert: Alert) -> None:
        entry = self._attached.setdefault(id(ticket), (ticket, commune, []))
        entry[2].append(alert)

    # --- Recovered ------------------------------------------------------------------

    def _recover(self, item: IncomingAlert) -> bool:
        alert, commune = item.alert, item.commune
        records = self.index.take_unrecovered(alert.device_id, alert.condition)
        kept = alert_record(alert, commune)
        kept.recovered_at = alert.observed_at
        self._bulk.append(kept)
        resolves = resolves_on_recovery(item.connector, alert.connector, commune)
        for record in records:
            record.recovered_at = alert.observed_at
            ticket = self._ticket_of(record)
            if ticket is None:
                continue
            self.session.add(recovered_event(ticket, alert))
            if resolves and ticket.status in OPEN:
                self._resolutions.setdefault(
                    id(ticket), PendingResolution(ticket, f"sensor:{alert.device_id}")
                )
        return True

    # --- Savepoints -----------------------------------------------------------------

    def _guarded(self, work: Callable[[], T]) -> T:
        """Careful mode: run ``work`` in a savepoint; if it fails for a reason
        other than the database, only its changes and its plugin events are
        undone. Fast mode: just run it (a failure retries the whole batch)."""
        if not self.careful:
            return work()
        held = self.session.info.get(_EVENTS_KEY, [])
        before = len(held)
        try:
            with self.session.begin_nested():
                return work()
        except SQLAlchemyError:
            raise
        except Exception:
            del self.session.info.get(_EVENTS_KEY, [])[before:]
            raise

    # --- End of batch ---------------------------------------------------------------

    def finish(self) -> None:
        """Store the bulk signals, resolve recovered tickets, update incidents,
        hold the plugin events."""
        self.session.flush()
        if self._bulk:
            self.session.execute(insert(SignalRecord), [signal_row(r) for r in self._bulk])
            for ticket in self._tickets.values():
                self.session.expire(ticket, ["signals"])
        active = still_active(self.session, sorted(p.ticket.id for p in self._resolutions.values()))
        self._load_signals(
            [
                p.ticket
                for p in self._resolutions.values()
                if p.ticket.status in OPEN and p.ticket.id not in active
            ]
        )
        for pending in self._resolutions.values():
            if pending.ticket.status not in OPEN:
                continue
            try:
                self._guarded(
                    lambda p=pending: resolve_if_all_recovered(
                        self.runtime, self.session, p, active=p.ticket.id in active
                    )
                )
            except SQLAlchemyError:
                raise
            except Exception as exc:
                if not self.careful:
                    raise RetryCarefully(f"{type(exc).__name__}: {exc}") from exc
                log.exception("could not resolve %s after its recovery", pending.ticket.reference)
        self.storms.finish()
        self.session.flush()
        emit_created(self.session, self.storms.created_incidents())
        for ticket, commune, alerts in self._attached.values():
            if ticket.id in self._created:
                continue  # its ticket_created event tells of every alert it holds
            if not self.runtime.pm.implemented_for("signal_attached", commune):
                continue  # the snapshot would load every signal of the ticket for nobody
            snapshot = ticket.snapshot()
            for alert in alerts:
                events.after_commit(
                    self.session, "signal_attached", ticket=snapshot, signal=alert, commune=commune
                )
