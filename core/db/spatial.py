"""Tickets inside a box of longitudes and latitudes, found through a spatial index.

A map's listing (Open311's ``bbox``) asks for the requests in a few hundred
metres among a commune's tens of thousands. A B-tree on (commune, created_at,
latitude, longitude) makes the database read every entry of the date window
to find them; a spatial index reads only the points in the box.

- SQLite: the R*Tree table ``ticket_points`` (SQLite's own module), kept by
  triggers on ``tickets`` (migration 0007). R*Tree stores 32-bit floats,
  rounded outwards: the box test on it may keep a point just outside the box,
  never drop one inside, so the exact test on the ticket's columns follows.
- PostgreSQL: a GiST index on ``point(longitude, latitude)`` (no PostGIS
  needed), which ``<@ box(...)`` uses.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, column, func, select, table

from core.db.models import Ticket

ticket_points = table(
    "ticket_points", column("id"), column("min_lon"), column("max_lon"), column("min_lat"),
    column("max_lat"),
)  # fmt: skip


def within_box(
    dialect: str, min_lon: Any, min_lat: Any, max_lon: Any, max_lat: Any
) -> ColumnElement[bool]:
    """Tickets whose point lies in the box (bounds included), for ``dialect``
    ("sqlite", "postgresql"; anything else: the plain comparison).

    The bounds may be values or bind parameters."""
    exact = and_(
        Ticket.longitude.between(min_lon, max_lon), Ticket.latitude.between(min_lat, max_lat)
    )
    if dialect == "sqlite":
        points = ticket_points.c
        inside = select(points.id).where(
            points.min_lon <= max_lon,
            points.max_lon >= min_lon,
            points.min_lat <= max_lat,
            points.max_lat >= min_lat,
        )
        return and_(Ticket.id.in_(inside), exact)
    if dialect == "postgresql":
        point = func.point(Ticket.longitude, Ticket.latitude)
        box = func.box(func.point(min_lon, min_lat), func.point(max_lon, max_lat))
        return and_(point.op("<@")(box), exact)
    return exact
