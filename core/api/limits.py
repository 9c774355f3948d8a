"""A cap on request bodies of the staff API: 413 with a JSON message.

JSON bodies are small (a description is at most 5,000 characters); only
attachment uploads may carry a file. The cap holds whether or not the client
declares a Content-Length: a chunked body is counted as it arrives. Paths
outside ``/api/`` (the web form, Open311) keep their own limits.
"""

from __future__ import annotations

import json
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.attachments import MAX_ATTACHMENT_BYTES

API_PREFIX = "/api/"
MAX_JSON_BYTES = 256 * 1024
# The file plus multipart framing and a file name.
MAX_UPLOAD_BYTES = MAX_ATTACHMENT_BYTES + 64 * 1024
_UPLOAD_PATH = re.compile(r"^/api/v1/tickets/[^/]+/attachments/?$")


class BodyTooLarge(Exception):
    pass


def body_limit(path: str) -> int:
    return MAX_UPLOAD_BYTES if _UPLOAD_PATH.match(path) else MAX_JSON_BYTES


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        limit = body_limit(scope["path"])
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _refuse(send, limit)
            return
        received = 0
        exceeded = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                # The framework turned the interrupted read into its own error
                # (400 "error parsing the body"): answer what happened instead.
                if not started:
                    started = True
                    await _refuse(send, limit)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except BodyTooLarge:
            if not started:
                await _refuse(send, limit)


async def _refuse(send: Send, limit: int) -> None:
    body = json.dumps(
        {"detail": f"request body too large: at most {limit} bytes", "errors": [
            {"field": "body", "reason": f"at most {limit} bytes"}
        ]}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
