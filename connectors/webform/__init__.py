"""Web form for residents (plugin ``webform``): report a problem, get a reference, follow it.

Enable it for a commune with an empty section in its file::

    [plugins.webform]

Pages (French by default, English with ``?lang=en`` or the browser's
Accept-Language; no JavaScript needed):

- ``GET /``: the form, in three steps (commune, category, details)
- ``POST /reports``: checks and stores the report (channel ``web``)
- ``GET /receipt/{reference}``: the reference to keep
- ``GET /track`` and ``GET /track/{reference}``: status and public history

See ``docs/webform.md``.
"""

from __future__ import annotations

from fastapi import APIRouter

from core import hookimpl
from core.settings import Settings


@hookimpl
def register_routes(settings: Settings) -> list[APIRouter]:
    from connectors.webform.routes import build_router

    return [build_router(settings)]
