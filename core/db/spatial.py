"""Tickets inside a box of longitudes and latitudes, found through a spatial index.

A map's listing (Open311's ``bbox``) asks for the requests in a few hundred
metres among a commune's tens of thousands. A B-tree on (commune, created_at,
latitude, longitude) makes the database read every entry of the date window
to find them; a spatial index reads only the points in the box.

- SQLite: the R*Tree table ``ticket_points`` (SQLite's own module), kept by
  triggers on ``tickets`` (migration 0007), in three dimensions: longitude,
  latitude and the moment the ticket was created (Unix seconds), so that a
  listing of the last 90 days reads only the points of those days. R*Tree
  stores 32-bit floats, rounded outwards (for the moment, a span of a few
  minutes around it): the test on it may keep a point just outside the box
  or the window, never drop one inside, so the exact test on the ticket's
  columns follows.
- PostgreSQL: a GiST index on ``point(longitude, latitude)`` and
  ``created_at`` (no PostGIS; ``btree_gist`` for the date, see migration
  0007), which ``<@ box(...)`` uses (an exact test, in double precision)
  with the caller's test of the window.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, column, func, literal, select, table, true

from core.db.models import Ticket

ticket_points = table(
    "ticket_points", column("id"), column("min_lon"), column("max_lon"), column("min_lat"),
    column("max_lat"), column("min_t"), column("max_t"),
)  # fmt: skip


def _unix_seconds(moment: Any) -> Any:
    """SQLite: a stored (or bound) UTC datetime as Unix seconds."""
    return (func.julianday(moment) - literal(2440587.5)) * literal(86400.0)


def within_box(
    dialect: str,
    min_lon: Any,
    min_lat: Any,
    max_lon: Any,
    max_lat: Any,
    created_between: tuple[Any, Any] | None = None,
) -> ColumnElement[bool]:
    """Tickets whose point lies in the box (bounds included), for ``dialect``
    ("sqlite", "postgresql"; anything else: the plain comparison).

    The bounds may be values or bind parameters. ``created_between`` (start
    and end, bind parameters of ``Ticket.created_at``'s type) narrows the
    index's search on SQLite; the caller tests the window on the rows too."""
    exact = and_(
        Ticket.longitude.between(min_lon, max_lon), Ticket.latitude.between(min_lat, max_lat)
    )
    if dialect == "sqlite":
        points = ticket_points.c
        window = true()
        if created_between is not None:
            start, end = created_between
            window = and_(points.min_t <= _unix_seconds(end), points.max_t >= _unix_seconds(start))
        inside = select(points.id).where(
            points.min_lon <= max_lon,
            points.max_lon >= min_lon,
            points.min_lat <= max_lat,
            points.max_lat >= min_lat,
            window,
        )
        return and_(Ticket.id.in_(inside), exact)
    if dialect == "postgresql":
        # Exact, edges included; with the comparison of the columns too, the planner
        # would also scan ix_tickets_location and intersect the two (twice the work).
        point = func.point(Ticket.longitude, Ticket.latitude)
        box = func.box(func.point(min_lon, min_lat), func.point(max_lon, max_lat))
        return point.op("<@")(box)
    return exact
