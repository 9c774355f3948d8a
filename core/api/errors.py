"""Turn errors into JSON a caller can act on; never send a stack trace."""

from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from core.errors import Conflict, InvalidInput, NotFound
from core.workflow import IllegalTransition

log = logging.getLogger(__name__)


def _field_name(location: tuple) -> str:
    parts = [str(p) for p in location if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def _reason(error: dict) -> str:
    # Our validators' messages are written for the caller; pydantic prefixes them.
    message = str(error.get("msg", "invalid"))
    return message.removeprefix("Value error, ")


def _problems_response(code: int, message: str, problems: list[dict]) -> JSONResponse:
    return JSONResponse({"detail": message, "errors": problems}, status_code=code)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"field": _field_name(tuple(err.get("loc", ()))), "reason": _reason(err)}
            for err in exc.errors()
        ]
        summary = "; ".join(f"{p['field']}: {p['reason']}" for p in problems)
        return _problems_response(422, summary, problems)

    @app.exception_handler(InvalidInput)
    async def _invalid(_request: Request, exc: InvalidInput) -> JSONResponse:
        problems = [{"field": p.field, "reason": p.reason} for p in exc.problems]
        return _problems_response(422, str(exc), problems)

    @app.exception_handler(IllegalTransition)
    async def _transition(_request: Request, exc: IllegalTransition) -> JSONResponse:
        return JSONResponse(
            {
                "detail": str(exc),
                "errors": [{"field": "status", "reason": str(exc)}],
                "allowed": [s.value for s in exc.allowed],
            },
            status_code=status.HTTP_409_CONFLICT,
        )

    @app.exception_handler(Conflict)
    async def _conflict(_request: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_409_CONFLICT)

    @app.exception_handler(NotFound)
    async def _not_found(_request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_404_NOT_FOUND)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        incident = uuid.uuid4().hex[:12]
        log.exception("error %s on %s %s", incident, request.method, request.url.path)
        return JSONResponse(
            {"detail": f"internal error; the server log has the details under id {incident}"},
            status_code=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
