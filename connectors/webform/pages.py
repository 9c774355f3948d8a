"""Rendering the web form's pages: templates, language, security headers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape

from connectors.webform.forms import FormValues, answer_field
from connectors.webform.i18n import LANGUAGE_NAMES, MESSAGES, pick_language, translator
from core.config import Category

HERE = Path(__file__).resolve().parent
STYLESHEET = HERE / "static" / "webform.css"
STYLESHEET_URL = "/static/webform/webform.css"

# No script, no inline style, nothing from elsewhere; forms post only here.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    # Tracking URLs hold a reference: keep them from other sites' logs.
    "Referrer-Policy": "same-origin",
    "Vary": "Accept-Language",
}


def request_language(request: Request, form_language: str | None = None) -> str:
    requested = form_language or request.query_params.get("lang")
    return pick_language(requested, request.headers.get("accept-language"))


def field_id(name: str) -> str:
    return name.replace(".", "-").replace("_", "-")


def described(field: str, help: object = None, error: object = None, extra: str = "") -> Markup:
    """``aria-describedby`` (help, then error) and ``aria-invalid`` for an input."""
    ids = [extra] if extra else []
    if help:
        ids.append(f"{field}-help")
    if error:
        ids.append(f"{field}-error")
    attributes = f' aria-describedby="{escape(" ".join(ids))}"' if ids else ""
    if error:
        attributes += ' aria-invalid="true"'
    return Markup(attributes)


@dataclass
class QuestionField:
    """A category's question as the template draws it."""

    name: str
    id: str
    label: str
    type: str
    required: bool
    help: str | None
    values: list[str]
    error: str | None
    choices: list[tuple[str, str]] = field(default_factory=list)

    @property
    def value(self) -> str:
        return self.values[0] if self.values else ""


def question_fields(
    category: Category, values: FormValues, problems: dict[str, str]
) -> list[QuestionField]:
    fields = []
    for question in category.questions:
        name = answer_field(question)
        fields.append(
            QuestionField(
                name=name,
                id=field_id(name),
                label=question.label,
                type=question.type,
                required=question.required,
                help=question.help,
                values=[v for v in values.get(name, []) if v],
                error=problems.get(name),
                choices=[(choice.key, choice.name) for choice in question.choices],
            )
        )
    return fields


class Pages:
    def __init__(self, area_name: str) -> None:
        self.area_name = area_name
        self.environment = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.environment.globals.update(
            field_id=field_id, described=described, stylesheet=STYLESHEET_URL
        )

    def render(
        self,
        request: Request,
        template: str,
        language: str,
        status_code: int = 200,
        cache: str = "no-store",
        **context: Any,
    ) -> HTMLResponse:
        _ = translator(language)

        def url(path: str, **params: Any) -> str:
            query = {k: v for k, v in params.items() if v not in (None, "")}
            query["lang"] = language
            return f"{path}?{urlencode(query)}"

        switch = []
        for code in MESSAGES:
            query = dict(request.query_params) if request.method == "GET" else {}
            query["lang"] = code
            switch.append((code, LANGUAGE_NAMES[code], f"{request.url.path}?{urlencode(query)}"))
        values: FormValues = context.get("values") or {}

        def value(name: str) -> str:
            return (values.get(name) or [""])[0]

        html = self.environment.get_template(template).render(
            {"problems": {}, **context},
            values=values,
            value=value,
            _=_,
            lang=language,
            languages=switch,
            area_name=self.area_name,
            url=url,
        )
        headers = {**SECURITY_HEADERS, "Cache-Control": cache, "Content-Language": language}
        return HTMLResponse(html, status_code=status_code, headers=headers)
