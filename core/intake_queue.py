"""Reports from concurrent requests, stored together: one transaction, one flush.

A POST that opens a ticket costs a transaction of its own: the write lock
(SQLite has one writer at a time) or the commune's reference counter
(PostgreSQL locks its row until the commit), BEGIN and COMMIT, and a flush
of the ticket, its signal, its history and its messages, statement by
statement. Under load those costs are paid once per request while the other
requests wait for them.

An :class:`IntakeQueue` is the group commit databases use for their own log:
a request hands its signal over and waits. The queue's writing thread takes
what is waiting (up to ``batch_size``), stores it in one transaction with
one flush (SQLAlchemy then inserts the batch's tickets, signals and history
rows a table at a time), commits, and tells each request its own result;
what arrived meanwhile is the next batch. Alone, a request is a batch of
one and waits for nobody. The transaction begins before the batch is taken:
on SQLite, where a writer waits for its turn (:mod:`core.db.write_turns`),
what arrives while another process writes joins the batch that waits, not
a batch of its own that would wait for one more turn. A request on the
event loop waits without a thread (:meth:`IntakeQueue.accept_async`): the
hop to a worker thread and back is paid once per batch, not once per
request.

On PostgreSQL, where writers run side by side, the batch's reference
numbers are reserved first, each counter's in one statement committed on
its own (:func:`core.references.reserve_numbers`): the commune's counter
row is then locked for that moment only, not until the batch commits, and
two workers' batches are stored at the same time. There, each round trip
counts: the writing thread keeps its two connections (the batch's, and the
one that reserves numbers) from one batch to the next, instead of a pool
checkout and its ping each, and a batch's INSERTs are sent together,
without waiting for each other's answer (:func:`core.db.pipeline.sent_together`). On SQLite, where a batch has the file
to itself until its commit, it takes its numbers and its tickets' ids at
once, in its own transaction (a statement per commune and one for the ids,
not two per ticket), and gives back the numbers it did not use: references
stay gapless.

Nothing changes for the caller: the result is the one :func:`accept_signal`
gives, after the commit (stored before acknowledged); a report refused as
invalid raises :class:`InvalidInput` for its own request only; a retried
idempotency key finds the first signal, even in the same batch; plugins hear
of each ticket after the commit. If anything else goes wrong in a batch, it
is rolled back and each of its signals is stored alone, in a transaction of
its own, so that one signal's failure is its own request's error and never
another's.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.db.ids import take_ids_ahead
from core.db.lists import among
from core.db.models import OutboxMessage, SignalRecord, Ticket, TicketEvent
from core.db.new_rows import plan_new_rows
from core.db.pipeline import sent_together
from core.db.types import utcnow
from core.errors import InvalidInput
from core.intake import IntakeResult, accept_signal, key_is_drawn
from core.references import (
    give_back_unused,
    hold_reserved,
    reserve_numbers,
    reserving_connection,
    take_numbers,
)
from core.runtime import Runtime
from core.signals import Report, Signal

log = logging.getLogger(__name__)


# PostgreSQL: ids taken ahead per ticket a batch opens, for the rows the
# ticket brings with it: its history (created, routed or redirected, due
# date) and a receipt. Fewer than needed: the rest are taken in the
# batch's transaction, a round trip more; more: gaps in the sequences.
IDS_AHEAD = {TicketEvent.__table__: 3, OutboxMessage.__table__: 1}


@dataclass(eq=False)
class _Waiting:
    """One request's signal, and what becomes of it."""

    signal: Signal
    actor: str
    settle: Callable[[], None]  # tells the request its outcome is known
    result: IntakeResult | None = None
    error: BaseException | None = None

    def outcome(self) -> IntakeResult:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class IntakeQueue:
    """Group commit of signals for one runtime (one database); thread-safe.

    Batches are stored by a thread of the queue's own, started with the first
    signal and stopped by :meth:`close`: a request waits for its outcome
    (:meth:`accept` in a thread, :meth:`accept_async` on the event loop),
    without a thread of its own for the wait."""

    def __init__(self, runtime: Runtime, batch_size: int = 64) -> None:
        self.runtime = runtime
        self.batch_size = max(1, batch_size)
        self._arrived = threading.Condition()
        self._waiting: list[_Waiting] = []
        self._writer: threading.Thread | None = None
        self._closed = False
        # PostgreSQL: the writing thread's own connections, kept between batches.
        engine = runtime.engine
        one_writer = engine.dialect.name == "sqlite"
        self._writing = None if one_writer else _KeptConnection(engine.connect)
        self._reserving = (
            None if one_writer else _KeptConnection(lambda: reserving_connection(engine))
        )

    @property
    def waiting(self) -> int:
        """Signals handed over and not yet taken into a batch."""
        with self._arrived:
            return len(self._waiting)

    def accept(self, signal: Signal, actor: str) -> IntakeResult:
        """Store ``signal`` (with others that arrive at the same time) and return
        what :func:`accept_signal` returns, once committed. Raises what it raises
        for this signal (InvalidInput for a bad report)."""
        stored = threading.Event()
        waiting = _Waiting(signal, actor, stored.set)
        self._hand_over(waiting)
        stored.wait()
        return waiting.outcome()

    async def accept_async(self, signal: Signal, actor: str) -> IntakeResult:
        """:meth:`accept` for a coroutine: the event loop goes on meanwhile.
        A request cancelled while it waits (its client gone) is still stored."""
        loop = asyncio.get_running_loop()
        stored = loop.create_future()

        def settle() -> None:
            loop.call_soon_threadsafe(lambda: stored.done() or stored.set_result(None))

        waiting = _Waiting(signal, actor, settle)
        self._hand_over(waiting)
        await stored
        return waiting.outcome()

    def close(self, timeout: float = 30) -> None:
        """Store what was handed over, then stop the writing thread."""
        with self._arrived:
            self._closed = True
            self._arrived.notify()
            writer = self._writer
        if writer is not None:
            writer.join(timeout)

    def _hand_over(self, waiting: _Waiting) -> None:
        with self._arrived:
            if self._closed:
                raise RuntimeError("the intake queue is closed: the service is stopping")
            self._waiting.append(waiting)
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write, name="vigie-intake", daemon=True
                )
                self._writer.start()
            self._arrived.notify()

    def _write(self) -> None:
        """The writing thread: each time signals wait, begin a transaction, then
        store what waits by then (up to ``batch_size``)."""
        while True:
            with self._arrived:
                while not self._waiting and not self._closed:
                    self._arrived.wait()
                if not self._waiting:
                    self._drop_kept()
                    return  # closed, and nothing left
            session = self._begin()  # SQLite: once this process's turn to write has come
            with self._arrived:
                batch = self._waiting[: self.batch_size]
                del self._waiting[: self.batch_size]
            try:
                self._store(batch, session)
            except BaseException as exc:  # never leave a request waiting for ever
                self._drop_kept()
                for waiting in batch:
                    if waiting.result is None and waiting.error is None:
                        waiting.error = exc
                log.exception("intake: a batch of %d signals could not be stored", len(batch))
            finally:
                for waiting in batch:
                    try:
                        waiting.settle()
                    except RuntimeError:  # its event loop has closed: nobody to tell
                        log.debug("intake: a request's event loop closed before its answer")

    def _begin(self) -> Session | None:
        """A session for the next batch: on SQLite, its transaction begun with the
        write lock, after waiting for the turn; on PostgreSQL, on the writing
        thread's kept connection, its transaction begun by its first statement
        (after the batch's numbers are reserved, on the other kept connection).
        None if it could not begin, and the batch tries again in a session of
        its own."""
        try:
            if self._writing is not None:
                return self.runtime.sessions(bind=self._writing.get())
            session = self.runtime.sessions()
        except Exception:
            log.warning("intake: no connection for a batch", exc_info=True)
            self._drop_kept()
            return None
        try:
            session.connection()
        except Exception:
            session.close()
            log.warning("intake: a transaction could not begin", exc_info=True)
            return None
        return session

    def _drop_kept(self) -> None:
        """After a failure, the kept connections are given back: the next batch
        takes fresh ones (which the pool checks), in case these are broken."""
        for kept in (self._writing, self._reserving):
            if kept is not None:
                kept.drop()

    def _store(self, batch: list[_Waiting], session: Session | None) -> None:
        try:
            self._store_together(batch, session or self.runtime.sessions())
            return
        except Exception:
            self._drop_kept()
            if len(batch) > 1:
                log.warning(
                    "a batch of %d signals failed: storing each alone", len(batch), exc_info=True
                )
            for waiting in batch:
                waiting.result = waiting.error = None
        for waiting in batch:
            try:
                waiting.result = self._store_alone(waiting)
            except Exception as exc:
                waiting.error = exc

    def _store_together(self, batch: list[_Waiting], session: Session) -> None:
        """In ``session``'s transaction, one flush for the new reports; repeats
        after it; then the commit. The session is closed in any case."""
        with session:
            seen = _stored_keys(
                session,
                [w.signal.idempotency_key for w in batch if not key_is_drawn(w.signal)],
            )
            wanted = _tickets_to_open(batch, seen, set(self.runtime.area.communes))
            one_writer = session.get_bind().dialect.name == "sqlite"
            if one_writer:
                # The batch has the file to itself: its numbers and ticket ids are
                # taken at once, in its own transaction (the unused given back).
                hold_reserved(session, take_numbers(session, wanted))
                take_ids_ahead(session, {Ticket.__table__: sum(wanted.values())})
            else:
                # Writers run side by side: the batch must not hold its communes'
                # counters until its commit (see core.references.reserve_numbers).
                self._reserve(session, wanted, sum(isinstance(w.signal, Report) for w in batch))
            later: list[_Waiting] = []
            for waiting in batch:
                signal, key = waiting.signal, waiting.signal.idempotency_key
                if not isinstance(signal, Report) or (key and key in seen):
                    later.append(waiting)  # a repeat, or an alert: looked up one by one
                    continue
                try:
                    waiting.result = accept_signal(
                        self.runtime, session, signal, waiting.actor, checked=True
                    )
                except InvalidInput as invalid:  # refused before anything was added
                    waiting.error = invalid
                    continue
                if key:
                    seen.add(key)
            rows = plan_new_rows(session)  # plain INSERTs, a table at a time
            if later or rows is None:  # reads to come, or rows for the ORM's flush
                if rows is not None:
                    rows.insert()
                    rows = None
                session.flush()  # what they could not take
                for waiting in later:
                    try:
                        waiting.result = accept_signal(
                            self.runtime, session, waiting.signal, waiting.actor
                        )
                    except InvalidInput as invalid:
                        waiting.error = invalid
            if one_writer:
                give_back_unused(session)
            if rows is not None:
                with sent_together(session):  # PostgreSQL: the INSERTs in one round trip
                    rows.insert()
            session.commit()

    def _reserve(
        self, session: Session, wanted: Counter[tuple[str, int]], reports: int
    ) -> None:
        """PostgreSQL: the batch's reference numbers, then about as many ids as
        its rows will need (:data:`IDS_AHEAD`), on the connection that reserves,
        in autocommit: its transaction then begins with its INSERTs."""
        assert self._reserving is not None
        connection = self._reserving.get()
        hold_reserved(session, reserve_numbers(connection, wanted))
        tickets = sum(wanted.values())
        ahead = {Ticket.__table__: tickets, SignalRecord.__table__: reports}
        for table, per_ticket in IDS_AHEAD.items():
            ahead[table] = per_ticket * tickets
        take_ids_ahead(session, ahead, connection)
        connection.commit()  # SQLAlchemy's transaction object: nothing is sent

    def _store_alone(self, waiting: _Waiting) -> IntakeResult:
        with self.runtime.sessions() as session:
            try:
                result = accept_signal(self.runtime, session, waiting.signal, waiting.actor)
                session.commit()
            except IntegrityError:
                # The same idempotency key raced in from another process: its signal.
                session.rollback()
                result = accept_signal(self.runtime, session, waiting.signal, waiting.actor)
                if not result.repeated:
                    raise
            return result


class _KeptConnection:
    """A connection the writing thread keeps from one batch to the next
    (PostgreSQL), opened when first needed: a pool checkout a batch, with its
    ping (``pool_pre_ping``), was a round trip. A connection found broken
    (the server restarted, say) fails the batch, whose reports are then
    stored one by one in sessions of their own; the next batch opens a new
    connection, checked by the pool. Used by the writing thread only."""

    def __init__(self, connect: Callable[[], Connection]) -> None:
        self._connect = connect
        self._connection: Connection | None = None

    def get(self) -> Connection:
        if self._connection is not None and self._connection.invalidated:
            self.drop()
        if self._connection is None:
            self._connection = self._connect()
        return self._connection

    def drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:  # already broken: the pool discards it
                log.debug("intake: a kept connection did not close cleanly", exc_info=True)


def _tickets_to_open(
    batch: list[_Waiting], seen: set[str], communes: set[str]
) -> Counter[tuple[str, int]]:
    """How many new tickets the batch's reports will open, per commune and year
    (as :func:`core.intake.open_ticket` numbers them)."""
    year = utcnow().year
    wanted: Counter[tuple[str, int]] = Counter()
    keys: set[str] = set()
    for waiting in batch:
        signal, key = waiting.signal, waiting.signal.idempotency_key
        if not isinstance(signal, Report) or signal.commune not in communes:
            continue
        if key and (key in seen or key in keys):
            continue
        if key:
            keys.add(key)
        wanted[(signal.commune, year)] += 1
    return wanted


def _stored_keys(session: Session, keys: list[str | None]) -> set[str]:
    wanted = sorted({key for key in keys if key})
    if not wanted:
        return set()
    column = SignalRecord.__table__.c.idempotency_key  # a plain query: no ORM needed
    return set(
        session.connection().execute(select(column).where(among(session, column, wanted))).scalars()
    )
