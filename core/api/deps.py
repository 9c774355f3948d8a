"""Dependencies for route functions: the runtime, a database session, the caller.

Plugins' routers use the same ones::

    from core.api.deps import ActorDep, SessionDep, require
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from core.auth import Actor, Permission, authenticate
from core.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_session(runtime: RuntimeDep) -> Iterator[Session]:
    """One session per request; the route commits what it wants kept."""
    with runtime.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]

_bearer = HTTPBearer(auto_error=False, description="A token from `vigie token create`")


def get_actor(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Actor:
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "send a bearer token: Authorization: Bearer <token> (create one with `vigie token create`)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    actor = authenticate(session, credentials.credentials)
    if actor is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "unknown or revoked token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return actor


ActorDep = Annotated[Actor, Depends(get_actor)]


def require(permission: Permission) -> Callable[[Actor], Actor]:
    """A dependency that lets the caller through only with ``permission``."""

    def _check(actor: ActorDep) -> Actor:
        if not actor.can(permission):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"role {actor.role.value} may not {permission.value.replace('_', ' ')}",
            )
        return actor

    return _check
