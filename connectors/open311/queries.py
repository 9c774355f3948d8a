"""The SQL behind ``GET requests``: only the columns a public answer shows.

Public GETs are the busiest calls of the service, so their statements are
built once per shape of filters (with bound parameters) and read as plain
rows through the session's connection: no ORM objects, no relationships, and
none of the columns the public never sees (answers, reporters, assets).

A listing is read in two steps: the ids of its page, each with its row's
mark (:func:`requests_statement`, :func:`request_statement`), then the rows
of those whose entry is not kept with that mark already
(:func:`rows_statement`; see ``routes._entries``). The mark is the ticket's
``updated_at`` as stored: every change to a ticket moves it, including those
to what its entry shows from other tables (a status comment comes with a
status change; a further report attached, or a merge, touches it too).

Lists of values (a jurisdiction's services, the page's ticket ids) are bound
one named parameter per value, ``IN (:services_0, :services_1, ...)``, with a
statement per length: SQLAlchemy's "expanding" parameters rewrite the SQL at
every execution, which cost more than SQLite took to run the comments query.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ARRAY,
    Integer,
    Select,
    String,
    any_,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    null,
    select,
    type_coerce,
    union_all,
)
from sqlalchemy.engine import Connection, Row
from sqlalchemy.types import NullType

from core.db.models import SignalRecord, Ticket, TicketEvent
from core.db.spatial import within_box
from core.db.types import UTCDateTime

from .service_requests import OPEN_VALUES, REQUEST_FIELDS, STATUS_ACTIONS

tickets = Ticket.__table__.c
signals = SignalRecord.__table__.c
events = TicketEvent.__table__.c

# The spec's updated_datetime: for a closed request the moment it was closed.
_UPDATED = type_coerce(
    case(
        (
            tickets.status.not_in(sorted(OPEN_VALUES)),
            func.coalesce(tickets.resolved_at, tickets.closed_at, tickets.updated_at),
        ),
        else_=tickets.updated_at,
    ),
    UTCDateTime(),
)
REQUEST_COLUMNS = tuple(
    _UPDATED.label("updated") if name == "updated" else tickets[name] for name in REQUEST_FIELDS
)
# A row's mark (see above), as the driver gives it: compared, never shown.
MARK = type_coerce(tickets.updated_at, NullType()).label("mark")


def slots(name: str, values: Sequence[Any]) -> dict[str, Any]:
    """The parameters of :func:`_among` for ``values``: ``{name_0: values[0], ...}``."""
    return {f"{name}_{i}": value for i, value in enumerate(values)}


def _among(column: Any, name: str, count: int) -> Any:
    """``column IN (:name_0, ... :name_{count-1})``, filled by :func:`slots`."""
    return column.in_([bindparam(f"{name}_{i}") for i in range(count)])


def _published(services: int) -> Select[Any]:
    return select(tickets.id, MARK).where(
        tickets.commune == bindparam("commune"), _among(tickets.category, "services", services)
    )


@lru_cache(maxsize=256)
def requests_statement(
    services: int, by_ids: bool, codes: int, statuses: int, by_bbox: bool, dialect: str
) -> Select:
    """The ids and marks of a ``GET requests`` page, newest first, for one shape of
    filters. Parameters:
    ``commune``, ``offset``, ``limit``, the :func:`slots` of ``services``
    (``services`` of them), and by shape ``ids`` (a list), or ``start``,
    ``end``, the slots of ``codes`` and ``statuses`` (none when 0),
    ``min_lon`` ... ``max_lat`` (found through the spatial index of
    ``dialect``'s database, see :mod:`core.db.spatial`)."""
    statement = _published(services)
    if by_ids:  # the spec: service_request_id overrides every other argument
        statement = statement.where(tickets.reference.in_(bindparam("ids", expanding=True)))
    else:
        statement = statement.where(
            tickets.created_at >= bindparam("start"), tickets.created_at <= bindparam("end")
        )
        if codes:
            statement = statement.where(_among(tickets.category, "codes", codes))
        if statuses:
            statement = statement.where(_among(tickets.status, "statuses", statuses))
        if by_bbox:
            box = (bindparam(name) for name in ("min_lon", "min_lat", "max_lon", "max_lat"))
            window = (
                bindparam("start", type_=UTCDateTime()),
                bindparam("end", type_=UTCDateTime()),
            )
            statement = statement.where(within_box(dialect, *box, created_between=window))
    return (
        statement.order_by(tickets.created_at.desc(), tickets.id.desc())
        .offset(bindparam("offset"))
        .limit(bindparam("limit"))
    )


@lru_cache(maxsize=64)
def request_statement(services: int) -> Select:
    """The id and mark of one published request by its reference (``commune``,
    ``reference`` and the :func:`slots` of ``services``)."""
    return _published(services).where(tickets.reference == bindparam("reference"))


@lru_cache(maxsize=256)
def _rows_statement(ids: int) -> Select:
    if not ids:  # PostgreSQL: one array parameter, one statement text (see _extras_statement)
        return select(*REQUEST_COLUMNS, MARK).where(
            tickets.id == any_(bindparam("ids", type_=ARRAY(Integer)))
        )
    return select(*REQUEST_COLUMNS, MARK).where(_among(tickets.id, "ids", ids))


def rows_statement(connection: Connection, ids: list[int]) -> tuple[Select, dict[str, Any]]:
    """The statement and parameters reading the :data:`REQUEST_FIELDS` of ``ids``,
    then each row's mark (in no particular order)."""
    if connection.dialect.name == "postgresql":
        return _rows_statement(0), {"ids": ids}
    return _rows_statement(len(ids)), slots("ids", ids)


@lru_cache(maxsize=256)
def _extras_statement(ids: int) -> Select:
    """Per ticket, the public status changes with a comment (``kind`` 1), then the
    reports that may carry a media_url (``kind`` 2, checked in Python: the LIKE
    only spares reading every report's details), each in id order.

    ``ids``: the number of the page's ticket ids, bound by :func:`slots`; 0
    (PostgreSQL) for all of them in one array parameter ``ids``, so that the
    statement's text is the same whatever the page's length, and PostgreSQL
    parses it once (see :mod:`core.db.lists`)."""
    if not ids:
        array = any_(bindparam("ids", type_=ARRAY(Integer)))
        in_ids = lambda column: column == array  # noqa: E731
    else:
        in_ids = lambda column: _among(column, "ids", ids)  # noqa: E731
    comments = select(
        events.ticket_id,
        literal_column("1").label("kind"),
        events.id,
        events.changes.label("data"),
        events.comment,
    ).where(
        in_ids(events.ticket_id),
        events.public.is_(True),
        events.action.in_(STATUS_ACTIONS),
        events.comment.is_not(None),
        events.comment != "",
    )
    media = select(
        signals.ticket_id, literal_column("2"), signals.id, signals.details, null()
    ).where(
        in_ids(signals.ticket_id),
        signals.kind == "report",
        cast(signals.details, String).like("%media_url%"),
    )
    return union_all(comments, media).order_by("kind", "id")


def comments_and_media(
    connection: Connection, rows: list[Row[Any]]
) -> tuple[dict[int, str], dict[int, str]]:
    """Per ticket, the public comment that came with its current status, and the
    first ``media_url`` an app sent with one of its reports (if any)."""
    comments: dict[int, str] = {}
    media: dict[int, str] = {}
    if not rows:
        return comments, media
    status_of = {row[0]: row[2] for row in rows}  # id, status (REQUEST_FIELDS)
    if connection.dialect.name == "postgresql":
        statement, params = _extras_statement(0), {"ids": list(status_of)}
    else:
        statement, params = _extras_statement(len(status_of)), slots("ids", list(status_of))
    for ticket_id, kind, _id, data, comment in connection.execute(statement, params):
        if kind == 1:  # in id order: the last one wins
            change = (data or {}).get("status")
            if comment and isinstance(change, list) and len(change) == 2:
                if change[1] == status_of.get(ticket_id):
                    comments[ticket_id] = comment
        elif ticket_id not in media:
            url = ((data or {}).get("open311") or {}).get("media_url")
            if url:
                media[ticket_id] = url
    return comments, media
