"""Tokens of the public write endpoints are looked up at most every few seconds:
a revoked one stops working within that time, in any process."""

from __future__ import annotations

import time

from sqlalchemy import event

from core.auth import RecentTokens, Role, create_token, revoke_token


def token_lookups(runtime) -> list[str]:
    """The statements reading the tokens table, from now on."""
    seen: list[str] = []

    def statement(_connection, _cursor, sql, *_rest) -> None:
        if "api_tokens" in sql:
            seen.append(sql)

    event.listen(runtime.engine, "before_cursor_execute", statement)
    return seen


def test_a_known_token_is_looked_up_once_then_a_revoked_one_stops_within_the_window(
    vigie_runtime,
):
    with vigie_runtime.sessions() as session:
        token = create_token(
            session, "integration", ["clermont-ferrand"], "app", list(vigie_runtime.area.communes)
        )
        session.commit()
    lookups = token_lookups(vigie_runtime)
    tokens = RecentTokens(vigie_runtime.read_sessions, seconds=0.5)
    for _ in range(5):
        actor = tokens.authenticate(token)
        assert actor is not None and actor.role is Role.INTEGRATION
        assert actor.sees("clermont-ferrand") and not actor.sees("royat")
    assert len(lookups) == 1
    with vigie_runtime.sessions() as session:  # as `vigie token revoke` does, elsewhere
        assert revoke_token(session, token[:10]) == 1
        session.commit()
    assert tokens.authenticate(token) is not None  # remembered, for the window only
    time.sleep(0.6)
    assert tokens.authenticate(token) is None
    assert tokens.authenticate(token) is None


def test_an_unknown_token_is_looked_up_every_time(vigie_runtime):
    tokens = RecentTokens(vigie_runtime.read_sessions)
    lookups = token_lookups(vigie_runtime)
    for _ in range(3):
        assert tokens.authenticate("vig_not-a-token") is None
    assert len(lookups) == 3
