"""POST requests: the form body read as the spec writes it, checked, made a Report.

Every problem found is reported at once, one Open311 error each; nothing is
stored unless there is none.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from core.answers import validate_answers
from core.config import Category
from core.errors import InvalidInput
from core.signals import Location, Report, Reporter

from .formats import Open311Error
from .jurisdictions import Jurisdiction
from .services import answers_from_attributes

CHANNEL = "app"  # what the ticket says it came through: a resident's app
MAX_FIELDS = 300
MAX_DESCRIPTION = 4000  # the spec's limit
IDEMPOTENCY_HEADER = "Idempotency-Key"
KEY_PREFIX = "open311:"

_ATTRIBUTE = re.compile(r"^attribute\[([^\[\]]+)\](\[[^\[\]]*\])?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_LIMITS = {
    "address_string": 300,
    "address_id": 100,
    "email": 320,
    "first_name": 100,
    "last_name": 100,
    "phone": 40,
    "device_id": 200,
    "account_id": 200,
    "media_url": 2000,
}


@dataclass
class PostForm:
    """The fields of a POST requests body: plain fields (last value wins) and attributes."""

    fields: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, list[str]] = field(default_factory=dict)

    def get(self, name: str) -> str:
        return self.fields.get(name, "").strip()


def media_type_of(content_type: str) -> str:
    return content_type.split(";")[0].strip().lower()


def query_pairs(query: str) -> list[tuple[str, str]]:
    try:
        return parse_qsl(query, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError:
        raise Open311Error(400, f"too many fields: at most {MAX_FIELDS}") from None


def parse_form(body: bytes, content_type: str, query: str = "") -> PostForm:
    """Read an ``application/x-www-form-urlencoded`` body; query parameters count too
    (some clients send everything in the URL), the body winning."""
    media_type = media_type_of(content_type)
    if body and media_type not in ("", "application/x-www-form-urlencoded"):
        raise Open311Error(
            400, f"send the request as application/x-www-form-urlencoded, not {media_type}"
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Open311Error(400, "the request body is not UTF-8") from None
    return form_of([query_pairs(query), query_pairs(text)])


def form_of(sources: list[list[tuple[str, str]]]) -> PostForm:
    """The fields of several sources of name/value pairs, later sources winning."""
    if sum(len(pairs) for pairs in sources) > MAX_FIELDS:
        raise Open311Error(400, f"too many fields: at most {MAX_FIELDS}")
    form = PostForm()
    for pairs in sources:
        seen: set[str] = set()
        for name, value in pairs:
            match = _ATTRIBUTE.match(name)
            if match is None:
                form.fields[name] = value
                continue
            code = match.group(1)
            if code not in seen:  # a later source's values replace an earlier one's
                seen.add(code)
                form.attributes[code] = []
            form.attributes[code].append(value)
    return form


def idempotency_key(api_key: str, jurisdiction: Jurisdiction, client_key: str | None) -> str:
    """The stored key of this POST, which also names its token.

    With the client's ``Idempotency-Key`` header it is derived from the api_key,
    the jurisdiction and that value, so a retried POST finds the first one;
    without, it is random. The api_key cannot be recovered from it.
    """
    if client_key:
        material = f"{api_key}\0{jurisdiction.slug}\0{client_key}".encode()
        return KEY_PREFIX + hashlib.sha256(material).hexdigest()
    return KEY_PREFIX + secrets.token_hex(32)


def token_of(key: str) -> str:
    return key.removeprefix(KEY_PREFIX)


def _field_problems(form: PostForm) -> list[str]:
    problems = []
    for name, limit in _LIMITS.items():
        if len(form.get(name)) > limit:
            problems.append(f"{name}: at most {limit} characters")
    description = form.get("description")
    if len(description) > MAX_DESCRIPTION:
        problems.append(f"description: at most {MAX_DESCRIPTION} characters")
    email = form.get("email")
    if email and not _EMAIL.match(email):
        problems.append(f"email: {email[:80]!r} is not an email address")
    media_url = form.get("media_url")
    if media_url and not media_url.lower().startswith(("http://", "https://")):
        problems.append("media_url: give an http:// or https:// URL")
    return problems


def _coordinate(form: PostForm, name: str, bound: float, problems: list[str]) -> float | None:
    raw = form.get(name)
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        problems.append(f"{name}: {raw[:40]!r} is not a number (WGS84 degrees)")
        return None
    if not math.isfinite(value) or not -bound <= value <= bound:
        problems.append(f"{name}: must be between -{bound:g} and {bound:g}")
        return None
    return value


def _location(form: PostForm, jurisdiction: Jurisdiction, problems: list[str]) -> Location:
    lat = _coordinate(form, "lat", 90, problems)
    long = _coordinate(form, "long", 180, problems)
    address = _clean(form.get("address_string")) or None
    address_id = form.get("address_id")
    if bool(form.get("lat")) != bool(form.get("long")):
        problems.append("lat and long: send both, or neither")
    elif not (form.get("lat") or address or address_id):
        problems.append(
            "location: send lat and long, or address_string, or address_id"
        )
    bbox = jurisdiction.commune.bbox
    if lat is not None and long is not None and bbox is not None:
        min_lon, min_lat, max_lon, max_lat = bbox
        if not (min_lon <= long <= max_lon and min_lat <= lat <= max_lat):
            problems.append(f"lat/long: {lat}, {long} is outside {jurisdiction.commune.name}")
    if address is None and address_id:
        # No address repository to look it up in: keep it readable for staff.
        address = f"address_id {address_id}"
    return Location(lat, long, address)


def _clean(text: str) -> str:
    """Free text as the spec allows it: line breaks yes, control characters no."""
    return _CONTROL.sub("", text).strip()


def _answer_problems(category: Category, answers: dict) -> tuple[dict, list[str]]:
    try:
        return validate_answers(category, answers, prefix="answers"), []
    except InvalidInput as exc:
        problems = []
        for problem in exc.problems:
            code = problem.field.removeprefix("answers.")
            problems.append(f"attribute[{code}]: {problem.reason}")
        return {}, problems


def build_report(
    form: PostForm,
    jurisdiction: Jurisdiction,
    category: Category,
    language: str,
    key: str,
    client_name: str,
    key_drawn: bool = False,
) -> Report:
    """The report this form describes; Open311Error 400 listing every problem.
    ``key_drawn``: ``key`` was drawn at random (the client sent no
    ``Idempotency-Key``), see :func:`idempotency_key`."""
    problems = _field_problems(form)
    location = _location(form, jurisdiction, problems)
    answers, answer_problems = _answer_problems(
        category, answers_from_attributes(category, form.attributes)
    )
    problems += answer_problems
    if problems:
        raise Open311Error(400, [(400, problem) for problem in problems])
    email = form.get("email") or None
    name = " ".join(part for part in (form.get("first_name"), form.get("last_name")) if part)
    details = {
        name: form.get(name)
        for name in ("device_id", "account_id", "media_url", "address_id")
        if form.get(name)
    }
    return Report(
        commune=jurisdiction.slug,
        category=category.code,
        description=_clean(form.get("description")) or category.name,
        channel=CHANNEL,
        location=location,
        reporter=Reporter(
            name=name or None,
            email=email,
            phone=form.get("phone") or None,
            notify_by="email" if email else None,
            language=language,
        ),
        answers=answers,
        idempotency_key=key,
        extra={"open311": {**details, "client": client_name, "token": token_of(key)}},
        key_drawn=key_drawn,
    )
