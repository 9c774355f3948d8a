"""The web form's pages.

``GET /`` walks a resident through three steps, each a plain GET form so the
back button and bookmarks work without JavaScript: the commune (chosen, or
found from a position), the category, then the category's questions with the
description, location, photo and contact details. ``POST /reports`` checks
everything, stores nothing when something is wrong (the form comes back with
each message by its field), else stores the report and sends the browser to
``/receipt/{reference}``. ``/track/{reference}`` shows the status and the
public history.

When open tickets of the same category are near (or a sensor ticket on the
equipment there), ``POST /reports`` first shows them: the resident follows one
(the report joins it, the receipt gives its reference) or reports anyway.
"""

from __future__ import annotations

import logging
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData, UploadFile
from starlette.requests import ClientDisconnect
from starlette.types import Message

from connectors.webform.following import FOLLOW, NEW, PendingPhotos, offers_shown
from connectors.webform.forms import (
    FormValues,
    check_submission,
    commune_at,
    first,
    read_coordinates,
)
from connectors.webform.i18n import translator
from connectors.webform.pages import STYLESHEET, Pages, question_fields, request_language
from connectors.webform.photos import Photo, PhotoRefused, clean_photo
from connectors.webform.tokens import MAX_AGE_SECONDS, FormTokens, load_key
from connectors.webform.tracking import public_ticket
from core.api.deps import RuntimeDep
from core.attachments import MAX_ATTACHMENT_BYTES, store_attachment
from core.config import Category, Commune
from core.db.models import SignalRecord, Ticket
from core.errors import Conflict, InvalidInput
from core.history import history_of
from core.intake import accept_signal
from core.matching import attach_report, similar_open_tickets
from core.ratelimit import RateLimit, TokenBuckets, client_address, retry_after
from core.references import REFERENCE_PATTERN
from core.runtime import Runtime
from core.settings import Settings

log = logging.getLogger(__name__)

PLUGIN = "webform"
ACTOR = f"plugin:{PLUGIN}"
# The photo plus the text fields and multipart framing.
MAX_BODY_BYTES = MAX_ATTACHMENT_BYTES + 1024 * 1024
# The three steps of GET /.
STEPS = 3
# Per client address and process: sending forms (a resident sends two or three
# for one report: errors, "already reported"), and reading receipts and
# tracking pages (references follow each other: this slows their enumeration).
SUBMIT_LIMIT = RateLimit(per_minute=20, burst=10)
LOOKUP_LIMIT = RateLimit(per_minute=60, burst=30)


class BodyTooLarge(Exception):
    pass


def served_communes(runtime: Runtime) -> dict[str, Commune]:
    """The communes that enable the web form, by slug, in name order."""
    communes = sorted(
        (c for c in runtime.area.communes.values() if c.enables(PLUGIN)), key=lambda c: c.name
    )
    return {c.slug: c for c in communes}


def public_categories(commune: Commune) -> list[Category]:
    return [c for c in commune.categories if c.public]


def grouped(categories: list[Category]) -> list[tuple[str, list[Category]]]:
    groups: dict[str, list[Category]] = {}
    for category in categories:
        groups.setdefault(category.group, []).append(category)
    return list(groups.items())


def is_same_origin(request: Request) -> bool:
    """False when the browser says the POST comes from another site."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return True  # the signed token still has to match
    hosts = {
        h.strip().lower()
        for h in (request.headers.get("host", ""), request.headers.get("x-forwarded-host", ""))
        if h.strip()
    }
    return urlsplit(origin).netloc.lower() in hosts


async def read_limited_form(request: Request, limit: int) -> FormData:
    """The multipart or urlencoded form, refusing (BodyTooLarge) a body over ``limit`` bytes,
    whether or not the client declared its length."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise BodyTooLarge
    received = 0

    async def receive() -> Message:
        nonlocal received
        message = await request.receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge
        return message

    limited = Request(request.scope, receive)
    return await limited.form(max_files=1, max_fields=200, max_part_size=64 * 1024)


def form_values(form: FormData) -> FormValues:
    values: FormValues = {}
    for key, value in form.multi_items():
        if isinstance(value, str):
            values.setdefault(key, []).append(value)
    return values


def find_public_ticket(session: Session, runtime: Runtime, reference: str) -> Ticket | None:
    """The ticket with this reference, if its commune has the web form; ids are not accepted."""
    text = reference.strip().upper()
    if not REFERENCE_PATTERN.match(text):
        return None
    ticket = session.scalar(select(Ticket).where(Ticket.reference == text))
    if ticket is None or ticket.commune not in served_communes(runtime):
        return None
    return ticket


def build_router(
    settings: Settings,
    submit_limit: RateLimit = SUBMIT_LIMIT,
    lookup_limit: RateLimit = LOOKUP_LIMIT,
) -> APIRouter:
    router = APIRouter(tags=["web form"], include_in_schema=False)
    buckets = TokenBuckets()
    pages = Pages(settings.area_name or "")
    tokens = FormTokens(load_key(settings.data_dir))
    pending_photos = PendingPhotos(settings.data_dir, MAX_AGE_SECONDS)

    def error_page(
        request: Request, language: str, status_code: int, kind: str, **values: object
    ) -> Response:
        _ = translator(language)
        return pages.render(
            request,
            "error.html",
            language,
            status_code=status_code,
            title=_(f"page.{kind}_title"),
            message=_(f"page.{kind}", **values),
        )

    def too_many(request: Request, language: str, kind: str, rule: RateLimit) -> Response | None:
        """The 429 page when this address has no token left for ``kind``, else None."""
        wait = buckets.take((kind, client_address(request)), rule)
        if wait <= 0:
            return None
        seconds = retry_after(wait)
        page = "too_many_sent" if kind == "submit" else "too_many"
        response = error_page(request, language, 429, page, seconds=seconds)
        response.headers["Retry-After"] = str(seconds)
        return response

    def not_found(request: Request, language: str, reference: str | None = None) -> Response:
        _ = translator(language)
        message = (
            _("page.not_found", reference=reference) if reference else _("page.not_found_generic")
        )
        return pages.render(
            request,
            "error.html",
            language,
            status_code=404,
            title=_("page.not_found_title"),
            message=message,
        )

    def details_page(
        request: Request,
        language: str,
        commune: Commune,
        category: Category,
        values: FormValues,
        problems: dict[str, str],
        token: str,
    ) -> Response:
        category = category.in_language(language)
        return pages.render(
            request,
            "details.html",
            language,
            status_code=422 if problems else 200,
            step=3,
            steps=STEPS,
            commune=commune,
            category=category,
            questions=question_fields(category, values, problems),
            values=values,
            problems=problems,
            token=token,
            single_commune=len(served_communes(request.app.state.runtime)) == 1,
        )

    def follow_page(
        request: Request,
        language: str,
        commune: Commune,
        category: Category,
        values: FormValues,
        offers: list,
        problems: dict[str, str],
    ) -> Response:
        hidden = [(name, items) for name, items in values.items() if name not in (FOLLOW, "photo")]
        category = category.in_language(language)
        return pages.render(
            request,
            "already_reported.html",
            language,
            commune=commune,
            category=category,
            offers=offers_shown(offers, commune, language),
            hidden=hidden,
            problems=problems,
        )

    @router.get("/static/webform/webform.css")
    def stylesheet() -> FileResponse:
        return FileResponse(
            STYLESHEET, media_type="text/css", headers={"Cache-Control": "public, max-age=3600"}
        )

    @router.get("/")
    def start(request: Request, runtime: RuntimeDep) -> Response:
        language = request_language(request)
        _ = translator(language)
        values: FormValues = {k: request.query_params.getlist(k) for k in request.query_params}
        communes = served_communes(runtime)
        problems: dict[str, str] = {}
        step_sent = first(values, "step")
        commune: Commune | None = None
        slug = first(values, "commune")
        if slug:
            commune = communes.get(slug)
            if commune is None:
                problems["commune"] = _("error.unknown_commune")
        else:
            latitude, longitude = read_coordinates(values, _, problems)
            if latitude is not None and longitude is not None:
                commune = commune_at(communes.values(), latitude, longitude)
                if commune is None:
                    problems["latitude"] = _("error.no_commune_here")
            elif len(communes) == 1:
                commune = next(iter(communes.values()))
            elif step_sent == "1" and not problems:
                problems["commune"] = _("error.commune_or_position")
        if commune is None:
            return pages.render(
                request,
                "start.html",
                language,
                status_code=422 if problems else 200,
                step=1,
                steps=STEPS,
                communes=list(communes.values()),
                values=values,
                problems=problems,
            )
        code = first(values, "category")
        category = commune.category(code) if code else None
        if category is None or not category.public:
            if code or step_sent == "2":
                problems["category"] = _("error.unknown_category")
            return pages.render(
                request,
                "category.html",
                language,
                status_code=422 if problems else 200,
                step=2,
                steps=STEPS,
                commune=commune,
                groups=grouped([c.in_language(language) for c in public_categories(commune)]),
                values=values,
                problems=problems,
                single_commune=len(communes) == 1,
            )
        return details_page(request, language, commune, category, values, {}, tokens.issue())

    @router.post("/reports")
    async def submit(request: Request, runtime: RuntimeDep) -> Response:
        language = request_language(request)
        # Refused before the body is read: nothing of it is kept.
        refused = too_many(request, language, "submit", submit_limit)
        if refused is not None:
            return refused
        if not is_same_origin(request):
            return error_page(request, language, 403, "forbidden")
        try:
            form = await read_limited_form(request, MAX_BODY_BYTES)
        except BodyTooLarge:
            return error_page(request, language, 413, "too_large", limit=MAX_BODY_BYTES // 2**20)
        except (HTTPException, ClientDisconnect):
            return error_page(request, language, 400, "bad_request")
        try:
            values = form_values(form)
            upload = form.get("photo")
            data = b""
            if isinstance(upload, UploadFile) and upload.filename:
                data = await upload.read(MAX_ATTACHMENT_BYTES + 1)
        finally:
            await form.close()
        language = request_language(request, first(values, "lang"))
        return await run_in_threadpool(accept_report, request, runtime, values, data, language)

    def accept_report(
        request: Request, runtime: Runtime, values: FormValues, photo_data: bytes, language: str
    ) -> Response:
        _ = translator(language)
        commune = served_communes(runtime).get(first(values, "commune"))
        category = commune.category(first(values, "category")) if commune else None
        if commune is None or category is None or not category.public:
            # Not something our own form sends: start again.
            return RedirectResponse(f"/?lang={language}", status_code=303)
        problems: dict[str, str] = {}
        token = first(values, "token")
        nonce = tokens.check(token)
        if nonce is None:
            problems["form"] = _("error.token_expired")
            token = tokens.issue()
        photo: Photo | None = None
        if photo_data:
            try:
                photo = clean_photo(photo_data)
            except PhotoRefused as refused:
                problems["photo"] = _(refused.reason)
        elif nonce:
            # Sent again from the "already reported" page: the photo sent first.
            photo = pending_photos.take(nonce)
        checked = check_submission(
            commune, category, values, photo, language, nonce or "", _, problems
        )
        if checked.report is None:
            return details_page(request, language, commune, category, values, problems, token)
        report = checked.report
        choice = first(values, FOLLOW)
        # Looking takes no write lock (SQLite): the answer may only be a page.
        offers = []
        with runtime.read_sessions() as session:
            done = session.scalar(
                select(SignalRecord).where(SignalRecord.idempotency_key == report.idempotency_key)
            )
            if done is not None and done.ticket is not None:  # sent twice: one report
                followed = done.ticket.signals[0].id != done.id
                return receipt_redirect(done.ticket.reference, language, followed)
            if choice != NEW:
                offers = similar_open_tickets(session, commune, category.code, report.location)
        chosen = next((o.ticket.id for o in offers if o.ticket.reference == choice), None)
        if offers and chosen is None:
            if choice:  # the ticket chosen was closed meanwhile
                problems["form"] = _("follow.gone")
            if photo is not None and nonce:
                pending_photos.keep(nonce, photo)
            return follow_page(request, language, commune, category, values, offers, problems)
        with runtime.sessions() as session:
            try:
                if chosen is not None:
                    followed_ticket = session.get(Ticket, chosen)
                    result = attach_report(runtime, session, followed_ticket, report, ACTOR)
                else:
                    result = accept_signal(runtime, session, report, ACTOR)
            except Conflict:
                session.rollback()
                problems["form"] = _("follow.gone")
                offers = similar_open_tickets(session, commune, category.code, report.location)
                return follow_page(request, language, commune, category, values, offers, problems)
            except InvalidInput as exc:
                session.rollback()
                # The form checks what intake checks; this is a plugin's stricter rule.
                log.warning("web form report refused by intake: %s", exc)
                problems["form"] = _("page.bad_request")
                return details_page(request, language, commune, category, values, problems, token)
            ticket = result.ticket
            if ticket is None:
                session.rollback()
                log.error("no plugin drafted a ticket for a web form report in %s", commune.slug)
                return error_page(request, language, 400, "bad_request")
            if photo is not None and not result.repeated:
                store_attachment(
                    session, runtime.settings.data_dir, ticket, photo.filename, photo.data, ACTOR
                )
            session.commit()
            reference = ticket.reference
        if nonce:
            pending_photos.discard(nonce)
        return receipt_redirect(reference, language, followed=chosen is not None)

    def receipt_redirect(reference: str, language: str, followed: bool = False) -> Response:
        extra = "&followed=1" if followed else ""
        return RedirectResponse(
            f"/receipt/{quote(reference)}?lang={language}{extra}", status_code=303
        )

    @router.get("/receipt/{reference}")
    def receipt(reference: str, request: Request, runtime: RuntimeDep) -> Response:
        language = request_language(request)
        refused = too_many(request, language, "lookup", lookup_limit)
        if refused is not None:
            return refused
        with runtime.read_sessions() as session:
            ticket = find_public_ticket(session, runtime, reference)
        if ticket is None:
            return not_found(request, language, reference)
        commune = runtime.commune(ticket.commune)
        category = commune.category(ticket.category)
        return pages.render(
            request,
            "receipt.html",
            language,
            reference=ticket.reference,
            commune=commune,
            category_name=category.in_language(language).name if category else ticket.category,
            followed=request.query_params.get("followed") == "1",
        )

    @router.get("/track")
    def track_lookup(request: Request) -> Response:
        language = request_language(request)
        reference = (request.query_params.get("reference") or "").strip().upper()
        if reference:
            return RedirectResponse(f"/track/{quote(reference)}?lang={language}", status_code=303)
        return pages.render(request, "track_lookup.html", language)

    @router.get("/track/{reference}")
    def track(reference: str, request: Request, runtime: RuntimeDep) -> Response:
        language = request_language(request)
        refused = too_many(request, language, "lookup", lookup_limit)
        if refused is not None:
            return refused
        with runtime.read_sessions() as session:
            ticket = find_public_ticket(session, runtime, reference)
            if ticket is None:
                return not_found(request, language, reference)
            commune = runtime.commune(ticket.commune)
            shown = public_ticket(
                ticket, history_of(session, ticket.id, public_only=True), commune, language
            )
        return pages.render(request, "track.html", language, cache="no-cache", ticket=shown)

    return router
