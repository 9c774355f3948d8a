"""Bearer tokens: a role and the communes it may see. Only a hash is stored."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.db.models import ApiToken
from core.db.types import utcnow
from core.errors import InvalidInput

ALL_COMMUNES = "*"


class Role(StrEnum):
    AGENT = "agent"  # call centre: read, take calls, comment, move along the workflow
    SUPERVISOR = "supervisor"  # + assign, prioritise, link duplicates
    ADMIN = "admin"  # + everything, tokens
    INTEGRATION = "integration"  # another system: create and read tickets


class Permission(StrEnum):
    READ = "read"
    CREATE = "create"
    COMMENT = "comment"
    CHANGE_STATUS = "change_status"
    ASSIGN = "assign"
    PRIORITISE = "prioritise"
    LINK = "link"
    READ_PERSONAL_DATA = "read_personal_data"
    ADMINISTER = "administer"


P = Permission
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.AGENT: frozenset({P.READ, P.CREATE, P.COMMENT, P.CHANGE_STATUS, P.READ_PERSONAL_DATA}),
    Role.SUPERVISOR: frozenset(
        {
            P.READ,
            P.CREATE,
            P.COMMENT,
            P.CHANGE_STATUS,
            P.ASSIGN,
            P.PRIORITISE,
            P.LINK,
            P.READ_PERSONAL_DATA,
        }
    ),
    Role.ADMIN: frozenset(Permission),
    Role.INTEGRATION: frozenset({P.READ, P.CREATE, P.COMMENT}),
}


@dataclass(frozen=True)
class Actor:
    """Who is calling: named in every history event they cause."""

    name: str
    role: Role
    communes: frozenset[str] | None  # None: every commune

    def can(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]

    def sees(self, commune: str) -> bool:
        return self.communes is None or commune in self.communes

    @property
    def label(self) -> str:
        return f"{self.role.value}:{self.name}"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    session: Session, role: str, communes: list[str], name: str, known_communes: list[str]
) -> str:
    """Store a new token and return its only plaintext copy."""
    try:
        role_value = Role(role)
    except ValueError:
        raise InvalidInput.one(
            "role", f"must be one of {', '.join(r.value for r in Role)}"
        ) from None
    if not communes:
        raise InvalidInput.one("commune", "give at least one commune slug, or 'all'")
    if "all" in communes or ALL_COMMUNES in communes:
        scope = [ALL_COMMUNES]
    else:
        unknown = [c for c in communes if c not in known_communes]
        if unknown:
            raise InvalidInput.one(
                "commune", f"unknown {', '.join(unknown)}; communes: {', '.join(known_communes)}"
            )
        scope = sorted(set(communes))
    plaintext = "vig_" + secrets.token_urlsafe(32)
    session.add(
        ApiToken(
            name=name,
            token_hash=_hash(plaintext),
            prefix=plaintext[:10],
            role=role_value.value,
            communes=scope,
            created_at=utcnow(),
        )
    )
    return plaintext


def authenticate(session: Session, plaintext: str) -> Actor | None:
    row = session.scalar(
        select(ApiToken).where(
            ApiToken.token_hash == _hash(plaintext), ApiToken.revoked_at.is_(None)
        )
    )
    if row is None:
        return None
    communes = None if ALL_COMMUNES in row.communes else frozenset(row.communes)
    return Actor(name=row.name, role=Role(row.role), communes=communes)


class RecentTokens:
    """Who the tokens seen in the last few seconds are, without asking the
    database each time: for the public write endpoints (Open311's api_key),
    where looking the token up cost about as much as a third of storing the
    report. A token revoked in any process stops working here within
    ``seconds``; an unknown or revoked one is looked up at every call."""

    def __init__(self, sessions: sessionmaker[Session], seconds: float = 5.0,
                 size: int = 4096) -> None:  # fmt: skip
        self.sessions, self.seconds, self.size = sessions, seconds, size
        self._seen: dict[str, tuple[float, Actor]] = {}  # token hash: (until, actor)

    def authenticate(self, plaintext: str) -> Actor | None:
        key = _hash(plaintext)
        now = time.monotonic()
        seen = self._seen.get(key)
        if seen is not None and seen[0] > now:
            return seen[1]
        with self.sessions() as session:
            actor = authenticate(session, plaintext)
        if actor is None:
            self._seen.pop(key, None)
            return None
        if len(self._seen) >= self.size:  # tokens are few; this bounds a flood of them
            self._seen.clear()
        self._seen[key] = (now + self.seconds, actor)
        return actor


def revoke_token(session: Session, prefix: str) -> int:
    rows = session.scalars(
        select(ApiToken).where(ApiToken.prefix == prefix, ApiToken.revoked_at.is_(None))
    )
    count = 0
    for row in rows:
        row.revoked_at = utcnow()
        count += 1
    return count
