"""Statements sent without waiting for each other's answer: one round trip for many.

Each statement psycopg runs outside a pipeline is a round trip: send it, wait
for PostgreSQL's answer. A batch of reports (:mod:`core.intake_queue`) ends
with writes whose answers nobody reads, a table's INSERT after another's:
four round trips for a batch whose reports asked for a receipt. In psycopg's
pipeline mode (libpq's) they are queued and sent together, and the block's
end waits once for all their answers. An error in any of them is raised
there, and the transaction is then failed: the caller rolls it back.

The COMMIT is better left after the block: psycopg would send it in the
pipeline too, but what runs after a commit outside a transaction (the data
version's advance, :mod:`core.db.data_version`) would then cost more round
trips, not fewer, as psycopg synchronises the pipeline around each change
of ``autocommit``.

Only statements whose result SQLAlchemy does not read may run in the block:
plain INSERT, UPDATE or DELETE without RETURNING. A SELECT's rows would not
have arrived when SQLAlchemy looks for them. On SQLite, which has no round
trips, and on a driver without pipelines, the block changes nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy.orm import Session


@contextlib.contextmanager
def sent_together(session: Session) -> Iterator[None]:
    """Within the block, the session's statements are sent without waiting for
    their answers; the block's end waits for them all."""
    connection = session.connection()
    driver_connection = connection.connection.driver_connection
    pipeline = getattr(driver_connection, "pipeline", None)
    if connection.dialect.name != "postgresql" or pipeline is None:
        yield
        return
    with pipeline():
        yield
