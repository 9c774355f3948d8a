"""The Open311 GeoReport v2 endpoints, mounted at ``/open311/v2``.

Every answer is XML or JSON as the path's suffix asks (``services.xml``,
``requests/CLF-2026-000001.json``); every refusal is the spec's ``errors``
list with 400, 403, 404, 413 or 429. Query parameters are read as strings
and checked here, so that a bad one gets an Open311 error, never FastAPI's.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session, raiseload
from starlette.concurrency import run_in_threadpool

from core.answer_cache import Answer
from core.auth import Role
from core.db.models import SignalRecord, Ticket, TicketEvent
from core.db.types import utcnow
from core.errors import InvalidInput
from core.history import history_of
from core.intake import IntakeResult
from core.runtime import Runtime
from core.signals import Report

from .formats import Open311Error, error_response, pick_format, render
from .jurisdictions import Jurisdiction, Jurisdictions
from .queries import (
    comments_and_media,
    request_statement,
    requests_statement,
    rows_statement,
    slots,
)
from .ratelimit import TokenBuckets, client_address, read_capped_body, refuse_if_limited
from .service_requests import (
    UPDATE_ACTIONS,
    RequestEntries,
    service_notice,
    statuses_for,
    update_entries,
)
from .services import service_definition, service_entry
from .settings import RateLimit, Settings
from .submissions import (
    IDEMPOTENCY_HEADER,
    KEY_PREFIX,
    MAX_FIELDS,
    PostForm,
    build_report,
    form_of,
    idempotency_key,
    media_type_of,
    parse_form,
    query_pairs,
)
from .texts import language_for

log = logging.getLogger(__name__)

API = "/open311/v2"
SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"
MAX_DAYS = 90  # the spec's default span, and the widest one may ask
MAX_RESULTS = 1000  # the spec's default volume, and the largest page
MAX_PAGE = 1_000_000
INLINE_RESULTS = 50  # the largest page read on the event loop (see _small_page)
INVALID_KEY = "Invalid api_key received -- can't proceed with create_request"
INTERNAL = "internal error; the server log has the details"
DEFAULTS = Settings()  # the limits of a call whose jurisdiction is unknown
_TOKEN = re.compile(r"^[0-9a-f]{64}$")
_W3_SPACE_OFFSET = re.compile(r" (\d{2}:?\d{2})$")  # a "+" the client forgot to encode


class _State:
    """What the routes of one app share: the rate-limit buckets, the served communes."""

    def __init__(self) -> None:
        self.buckets = TokenBuckets()
        self._area: Any = None
        self._jurisdictions: Jurisdictions | None = None

    def jurisdictions(self, runtime: Runtime) -> Jurisdictions:
        if self._jurisdictions is None or self._area is not runtime.area:
            self._jurisdictions = Jurisdictions(runtime.area)
            self._area = runtime.area
        return self._jurisdictions


class _Checked(NamedTuple):
    """A POST requests found acceptable, ready to be stored."""

    report: Report
    actor: str  # who stores it: the api_key's integration
    jurisdiction: Jurisdiction
    language: str
    key: str  # its idempotency key, which also names its token


def _respond_errors(fn: Callable[..., Response]) -> Callable[..., Response]:
    """Render Open311Error (and any failure) as the spec's errors, in the asked format."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Response:
        fmt = str(kwargs.get("fmt", "xml")).lower()
        try:
            return fn(*args, **kwargs)
        except Open311Error as error:
            return error_response(fmt, error)
        except Exception:
            log.exception("open311: %s failed", fn.__name__)
            return error_response(fmt, Open311Error(500, INTERNAL))

    return wrapper


def _comma_list(request: Request, name: str) -> list[str]:
    """A parameter that may be repeated and comma delimited, as the spec allows."""
    values = []
    for raw in request.query_params.getlist(name):
        values += [part.strip() for part in raw.split(",") if part.strip()]
    return values


def _w3_datetime(raw: str, name: str, zone: ZoneInfo, problems: list[str]) -> datetime | None:
    text = raw.strip()
    if not text:
        return None
    text = _W3_SPACE_OFFSET.sub(r"+\1", text).replace("Z", "+00:00").replace("z", "+00:00")
    try:
        if len(text) == 10:  # a date alone: its midnight where the commune is
            return datetime.combine(date.fromisoformat(text), time(), zone)
        moment = datetime.fromisoformat(text)
    except ValueError:
        problems.append(f"{name}: {raw[:40]!r} is not a W3C date-time like 2010-01-01T00:00:00Z")
        return None
    if moment.tzinfo is None:
        problems.append(f"{name}: give a time zone, e.g. 2010-01-01T00:00:00Z or +01:00")
        return None
    return moment


def _window(request: Request, zone: ZoneInfo, problems: list[str]) -> tuple[datetime, datetime]:
    """start_date/end_date with the spec's rules: 90 days by default, never wider."""
    start = _w3_datetime(request.query_params.get("start_date", ""), "start_date", zone, problems)
    end = _w3_datetime(request.query_params.get("end_date", ""), "end_date", zone, problems)
    span = timedelta(days=MAX_DAYS)
    if start is None and end is None:
        end = utcnow()
        start = end - span
    elif start is None:
        start = end - span
    elif end is None:
        end = start + span
    if end < start:
        problems.append("end_date: is before start_date")
    elif end - start > span:
        problems.append(f"start_date and end_date: may not span more than {MAX_DAYS} days")
    return start, end


def _paging(request: Request, problems: list[str]) -> tuple[int, int]:
    """The paging extension: ``page`` from 1, ``page_size`` up to the spec's 1,000."""
    values = {}
    for name, default, highest in (("page", 1, MAX_PAGE), ("page_size", MAX_RESULTS, MAX_RESULTS)):
        raw = request.query_params.get(name, "").strip()
        if not raw:
            values[name] = default
        elif not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= highest:
            problems.append(f"{name}: a whole number from 1 to {highest}")
            values[name] = default
        else:
            values[name] = int(raw)
    return values["page"], values["page_size"]


def _bbox(request: Request, problems: list[str]) -> tuple[float, float, float, float] | None:
    raw = request.query_params.get("bbox", "").strip()
    if not raw:
        return None
    try:
        min_lon, min_lat, max_lon, max_lat = (float(part) for part in raw.split(","))
    except ValueError:
        problems.append("bbox: expected min_long,min_lat,max_long,max_lat in WGS84 degrees")
        return None
    if min_lon > max_lon or min_lat > max_lat:
        problems.append("bbox: the minimum values must not exceed the maximum ones")
        return None
    return min_lon, min_lat, max_lon, max_lat


def _small_page(request: Request) -> bool:
    """Whether ``GET requests`` asks for a page small enough to be read on the
    event loop: its work (one to a few milliseconds, mostly CPU) costs less
    than the hop to a worker thread and back, which was a quarter of an app's
    GET. Larger pages, up to the spec's default of 1,000 requests, go to a
    thread, so that they do not hold up the process's other requests."""
    raw = request.query_params.get("page_size", "").strip()
    return raw.isascii() and raw.isdigit() and int(raw) <= INLINE_RESULTS


def _path_parameters(*names: str) -> dict[str, Any]:
    """The OpenAPI declaration of path parameters that a route reads itself from
    ``request.path_params``: on the busiest routes, FastAPI's checking of two
    plain strings was a fifth of a kept GET's CPU."""
    return {
        "parameters": [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in names
        ]
    }


def _query(request: Request) -> str:
    """The request's query string as sent (without building ``request.url``)."""
    return request.scope.get("query_string", b"").decode("latin-1")


def _refuse(problems: list[str]) -> None:
    if problems:
        raise Open311Error(400, [(400, problem) for problem in problems])


def _published(query: Any, jurisdiction: Jurisdiction) -> Any:
    return query.where(
        Ticket.commune == jurisdiction.slug, Ticket.category.in_(list(jurisdiction.services))
    )


def _lean(query: Any) -> Any:
    # The public view needs none of these: skip their extra queries.
    return query.options(
        raiseload(Ticket.signals),
        raiseload(Ticket.attachments),
        raiseload(Ticket.duplicate_of),
        raiseload(Ticket.incident),
    )


ENTRY_BYTES = 2500  # what a request's entry (a dict of 17 fields) takes in memory


def _entries(
    runtime: Runtime,
    session: Session,
    statement: Any,
    params: dict[str, Any],
    jurisdiction: Jurisdiction,
    language: str,
) -> list[dict[str, Any]]:
    """The ``request`` entries of the ids ``statement`` selects, in its order.

    An entry built once is kept (:class:`core.answer_cache.EntryCache`) with its
    row's mark, and shown again by every listing that holds it while the row
    bears the same mark, commits or not: so a map's listings cost the ids of
    their page, and the rows (and, in one more query, status comments and
    media URLs) of the requests new or changed since they were last shown.
    """
    connection = session.connection()
    marked = list(
        connection.execute(
            statement,
            {
                "commune": jurisdiction.slug,
                **slots("services", list(jurisdiction.services)),
                **params,
            },  # fmt: skip
        )
    )
    cache = runtime.entry_cache
    prefix = (id(runtime.area), jurisdiction.slug, language)
    found: dict[int, dict[str, Any]] = {}
    for ticket_id, mark in marked:
        entry = cache.get((*prefix, ticket_id), mark)
        if entry is not None:
            found[ticket_id] = entry
    missing = [ticket_id for ticket_id, _mark in marked if ticket_id not in found]
    if missing:
        marked_rows = list(connection.execute(*rows_statement(connection, missing)))
        marks = {row[0]: row[-1] for row in marked_rows}
        rows = [row[:-1] for row in marked_rows]
        comments, media = comments_and_media(connection, rows)
        entries = RequestEntries(jurisdiction, language)
        for row in rows:
            ticket_id = row[0]
            entry = entries.entry(row, comments.get(ticket_id), media.get(ticket_id))
            found[ticket_id] = entry
            cache.keep((*prefix, ticket_id), marks[ticket_id], entry, ENTRY_BYTES)
    return [found[ticket_id] for ticket_id, _mark in marked if ticket_id in found]


def _find_request(session: Session, jurisdiction: Jurisdiction, service_request_id: str) -> Ticket:
    ticket = session.scalar(
        _lean(_published(select(Ticket), jurisdiction)).where(
            Ticket.reference == service_request_id.strip().upper()
        )
    )
    if ticket is None:
        raise Open311Error(404, f"service_request_id {service_request_id[:40]!r} not found")
    return ticket


def _answered(
    runtime: Runtime, key: tuple[Any, ...], build: Callable[[], Response]
) -> Response:
    """The answer kept for ``key`` while no commit came since it was built
    (:mod:`core.answer_cache`), else ``build()``'s, kept if it is a 200."""
    cache = runtime.answer_cache
    key = (id(runtime.area), *key)  # a reloaded configuration asks anew
    kept, stamp = cache.lookup(key)
    if kept is not None:
        return Response(kept.body, kept.status, headers={"content-type": kept.content_type})
    response = build()  # after the lookup: a commit meanwhile, and it is not kept
    if response.status_code == 200:
        answer = Answer(200, response.headers["content-type"], bytes(response.body))
        cache.keep(key, stamp, answer)
    return response


def _file_changed(runtime: Runtime, jurisdictions: Jurisdictions) -> str:
    """When the configuration behind the service list last changed (sortable)."""
    stamps = []
    for jurisdiction in jurisdictions.served:
        source = jurisdiction.commune.source
        if source:
            path = Path(runtime.settings.config_dir) / source
            if path.exists():
                stamps.append(path.stat().st_mtime)
    moment = datetime.fromtimestamp(max(stamps), UTC) if stamps else utcnow()
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def build_router() -> APIRouter:
    """The Open311 router of one application, with its own rate-limit buckets."""
    router = APIRouter(tags=["open311"])
    state = _State()

    def runtime_of(request: Request) -> Runtime:
        return request.app.state.runtime

    def limit(request: Request, kind: str, scope: str, rule: RateLimit, settings: Settings) -> None:
        address = client_address(request)
        if address not in settings.exempt_addresses:
            refuse_if_limited(state.buckets, (kind, scope, address), rule, "from this address")

    def reading(request: Request, fmt: str) -> tuple[str, Runtime, Jurisdiction, str]:
        """Format, runtime, jurisdiction and language of a GET, once its limit is checked."""
        fmt = pick_format(fmt)
        runtime = runtime_of(request)
        jurisdictions = state.jurisdictions(runtime)
        wanted = request.query_params.get("jurisdiction_id")
        found = jurisdictions.find(wanted)
        settings = found.settings if found else DEFAULTS
        limit(request, "read", found.slug if found else "*", settings.read_per_address, settings)
        jurisdiction = jurisdictions.resolve(wanted)
        language = language_for(request.headers.get("accept-language"), jurisdiction.commune)
        return fmt, runtime, jurisdiction, language

    # --- Discovery ----------------------------------------------------------

    @_respond_errors
    def discovery(request: Request, fmt: str) -> Response:
        fmt = pick_format(fmt)
        runtime = runtime_of(request)
        jurisdictions = state.jurisdictions(runtime)
        limit(request, "read", "*", DEFAULTS.read_per_address, DEFAULTS)
        served = [j.settings for j in jurisdictions.served]
        contacts = list(dict.fromkeys(s.contact for s in served if s.contact))
        key_services = list(dict.fromkeys(s.key_service for s in served if s.key_service))
        changeset = _file_changed(runtime, jurisdictions)
        body = {
            "changeset": changeset,
            "contact": "; ".join(contacts) or f"{runtime.area.name}: Allô Mairie",
            "key_service": "; ".join(key_services)
            or (
                "An api_key is an integration token issued by the city's Vigie administrators "
                "(vigie token create --role integration --commune <jurisdiction_id>)."
            ),
            "endpoints": [
                {
                    "specification": SPECIFICATION,
                    "url": str(request.base_url).rstrip("/") + API,
                    "changeset": changeset,
                    "type": "test" if runtime.settings.demo else "production",
                    "formats": ["text/xml", "application/json"],
                }
            ],
        }
        return render(fmt, "discovery", body)

    router.add_api_route(
        "/open311/discovery.{fmt}", discovery, methods=["GET"], summary="Open311 service discovery"
    )
    router.add_api_route(
        API + "/discovery.{fmt}", discovery, methods=["GET"], include_in_schema=False
    )

    # --- Services -----------------------------------------------------------

    @router.get(API + "/services.{fmt}", summary="GET Service List")
    @_respond_errors
    def list_services(request: Request, fmt: str) -> Response:
        fmt, _runtime, jurisdiction, _language = reading(request, fmt)
        services = [service_entry(c, jurisdiction) for c in jurisdiction.services.values()]
        return render(fmt, "services", services)

    @router.get(API + "/services/{service_code}.{fmt}", summary="GET Service Definition")
    @_respond_errors
    def define_service(request: Request, service_code: str, fmt: str) -> Response:
        fmt, _runtime, jurisdiction, language = reading(request, fmt)
        category = jurisdiction.services.get(service_code)
        if category is None:
            raise Open311Error(404, f"service_code {service_code[:64]!r} not found")
        return render(fmt, "service_definition", service_definition(category, language))

    # --- Service requests -----------------------------------------------------

    @router.post(
        API + "/requests.{fmt}",
        summary="POST Service Request",
        openapi_extra=_path_parameters("fmt"),
    )
    async def create_request(request: Request) -> Response:
        fmt = request.path_params["fmt"]
        wanted_format = fmt.lower()
        try:
            fmt = pick_format(fmt)
            body = await read_capped_body(request)
            content_type = request.headers.get("content-type", "")
            if media_type_of(content_type) == "multipart/form-data":
                form = await multipart_form(request, body)
            else:
                form = parse_form(body, content_type, _query(request))
            checked = check_request(request, form)
            try:
                # Stored with the reports of other requests arriving meanwhile, in one
                # transaction; the event loop serves other requests while it waits.
                intake = runtime_of(request).intake_queue
                result = await intake.accept_async(checked.report, checked.actor)
            except InvalidInput as invalid:  # a check of core's that ours did not make
                problems = [(400, str(problem)) for problem in invalid.problems]
                raise Open311Error(400, problems) from None
            return answer_request(checked, result, fmt)
        except Open311Error as error:
            return error_response(wanted_format, error)
        except Exception:
            log.exception("open311: POST requests failed")
            return error_response(wanted_format, Open311Error(500, INTERNAL))

    async def multipart_form(request: Request, body: bytes) -> PostForm:
        """Some apps post ``multipart/form-data`` (to attach a photo): its text
        fields are read like a form's; files are not kept (send media_url)."""
        request._body = body  # Starlette parses the form from the body already read
        try:
            data = await request.form(max_files=10, max_fields=MAX_FIELDS)
        except Exception as exc:  # Starlette's parser refuses a malformed body
            raise Open311Error(400, f"unreadable multipart/form-data body: {exc}") from None
        fields = [(name, value) for name, value in data.multi_items() if isinstance(value, str)]
        if len(fields) < len(data.multi_items()):
            log.info("open311: files of a multipart POST ignored (media_url is kept)")
        return form_of([query_pairs(_query(request)), fields])

    def check_request(request: Request, form: PostForm) -> _Checked:
        """Limits, api_key and the form, before anything is stored (on the event
        loop: a little CPU, and the api_key looked up at most every few seconds)."""
        runtime = runtime_of(request)
        jurisdictions = state.jurisdictions(runtime)
        wanted = form.get("jurisdiction_id")
        found = jurisdictions.find(wanted)
        settings = found.settings if found else DEFAULTS
        limit(request, "write", found.slug if found else "*", settings.write_per_address, settings)
        api_key = form.get("api_key")
        if api_key:
            key_id = hashlib.sha256(api_key.encode()).hexdigest()[:32]
            refuse_if_limited(
                state.buckets, ("key", key_id), settings.write_per_api_key, "for this api_key"
            )
        jurisdiction = jurisdictions.resolve(wanted)
        if not api_key:
            raise Open311Error(403, "api_key was not provided -- can't proceed with create_request")
        client_key = request.headers.get(IDEMPOTENCY_HEADER)
        if client_key is not None and not 1 <= len(client_key) <= 200:
            raise Open311Error(400, f"{IDEMPOTENCY_HEADER}: from 1 to 200 characters")
        language = language_for(request.headers.get("accept-language"), jurisdiction.commune)
        actor = runtime.recent_tokens.authenticate(api_key)
        if actor is None or actor.role is not Role.INTEGRATION:
            raise Open311Error(403, INVALID_KEY)
        if not actor.sees(jurisdiction.slug):
            raise Open311Error(403, f"this api_key does not cover jurisdiction {jurisdiction.slug}")
        service_code = form.get("service_code")
        if not service_code:
            raise Open311Error(400, "service_code was not provided")
        category = jurisdiction.services.get(service_code)
        if category is None:
            raise Open311Error(404, f"service_code {service_code[:64]!r} not found")
        key = idempotency_key(api_key, jurisdiction, client_key)
        report = build_report(
            form, jurisdiction, category, language, key, actor.name, key_drawn=not client_key
        )
        return _Checked(report, actor.label, jurisdiction, language, key)

    def answer_request(checked: _Checked, result: IntakeResult, fmt: str) -> Response:
        jurisdiction, language, key = checked.jurisdiction, checked.language, checked.key
        ticket = result.ticket
        notice = service_notice(ticket.category, ticket.outside_body, jurisdiction, language)
        reference = ticket.reference
        if jurisdiction.settings.service_type == "batch":
            entry: dict[str, Any] = {"token": key.removeprefix(KEY_PREFIX)}
        else:
            entry = {"service_request_id": reference}
        entry |= {"service_notice": notice, "account_id": None}
        headers = {"Location": f"{API}/requests/{reference}.{fmt}"}
        status = 200 if result.repeated else 201
        return render(fmt, "service_requests", [entry], status, headers)

    @router.get(
        API + "/requests.{fmt}",
        summary="GET Service Requests",
        openapi_extra=_path_parameters("fmt"),
    )
    async def list_requests(request: Request) -> Response:
        fmt = request.path_params["fmt"]
        if _small_page(request):
            return find_requests(request=request, fmt=fmt)
        return await run_in_threadpool(find_requests, request=request, fmt=fmt)

    @_respond_errors
    def find_requests(request: Request, fmt: str) -> Response:
        fmt, runtime, jurisdiction, language = reading(request, fmt)
        key = ("requests", fmt, language, _query(request))
        return _answered(
            runtime,
            key,
            lambda: build_requests(request, fmt, runtime, jurisdiction, language),
        )

    def build_requests(
        request: Request,
        fmt: str,
        runtime: Runtime,
        jurisdiction: Jurisdiction,
        language: str,
    ) -> Response:
        problems: list[str] = []
        zone = ZoneInfo(jurisdiction.commune.business_hours.timezone)
        ids = [value.upper() for value in _comma_list(request, "service_request_id")]
        codes = _comma_list(request, "service_code")
        statuses = _comma_list(request, "status")
        bad_statuses = [s for s in statuses if s not in ("open", "closed")]
        if bad_statuses:
            problems.append(f"status: {', '.join(bad_statuses)[:80]} is not open or closed")
        start, end = _window(request, zone, problems)
        page, page_size = _paging(request, problems)
        bbox = _bbox(request, problems)
        if len(ids) > MAX_RESULTS:
            problems.append(f"service_request_id: at most {MAX_RESULTS} at once")
        _refuse(problems)
        unknown = [code for code in codes if code not in jurisdiction.services]
        if unknown:
            raise Open311Error(404, [(404, f"service_code {c[:64]!r} not found") for c in unknown])
        params: dict[str, Any] = {"offset": (page - 1) * page_size, "limit": page_size}
        codes = list(dict.fromkeys(codes))  # one statement per number of codes: no repeats
        status_values = statuses_for(statuses) if statuses else []
        if ids:  # the spec: service_request_id overrides every other argument
            params["ids"] = ids
            codes, status_values, bbox = [], [], None
        else:
            params |= {"start": start, "end": end}
            params |= slots("codes", codes) | slots("statuses", status_values)
            if bbox:
                min_lon, min_lat, max_lon, max_lat = bbox
                params |= {"min_lon": min_lon, "min_lat": min_lat,
                           "max_lon": max_lon, "max_lat": max_lat}  # fmt: skip
        statement = requests_statement(
            len(jurisdiction.services),
            bool(ids),
            len(codes),
            len(status_values),
            bool(bbox),
            runtime.engine.dialect.name,
        )
        entries = runtime.public_read(
            lambda session: _entries(runtime, session, statement, params, jurisdiction, language)
        )
        return render(fmt, "service_requests", entries)

    @router.get(
        API + "/requests/{service_request_id}.{fmt}",
        summary="GET Service Request",
        openapi_extra=_path_parameters("service_request_id", "fmt"),
    )
    async def get_request(request: Request) -> Response:
        # One request: on the event loop, as a small page (see _small_page).
        path = request.path_params
        return find_request(
            request=request, service_request_id=path["service_request_id"], fmt=path["fmt"]
        )

    @_respond_errors
    def find_request(request: Request, service_request_id: str, fmt: str) -> Response:
        fmt, runtime, jurisdiction, language = reading(request, fmt)
        reference = service_request_id.strip().upper()
        key = ("request", fmt, language, reference, _query(request))
        return _answered(
            runtime,
            key,
            lambda: build_request(runtime, jurisdiction, language, reference, fmt),
        )

    def build_request(
        runtime: Runtime,
        jurisdiction: Jurisdiction,
        language: str,
        reference: str,
        fmt: str,
    ) -> Response:
        statement = request_statement(len(jurisdiction.services))
        entries = runtime.public_read(
            lambda session: _entries(
                runtime, session, statement, {"reference": reference}, jurisdiction, language
            )
        )
        if not entries:
            raise Open311Error(404, f"service_request_id {reference[:40]!r} not found")
        return render(fmt, "service_requests", entries)

    # --- Updates (FixMyStreet's extension) -------------------------------------

    @router.get(
        API + "/requests/{service_request_id}/updates.{fmt}",
        summary="The public updates of one service request",
    )
    @_respond_errors
    def get_request_updates(request: Request, service_request_id: str, fmt: str) -> Response:
        fmt, runtime, jurisdiction, language = reading(request, fmt)
        with runtime.read_sessions() as session:
            ticket = _find_request(session, jurisdiction, service_request_id)
            events = history_of(session, ticket.id)
            entries = update_entries(ticket, events, jurisdiction, language)
        return render(fmt, "service_request_updates", entries)

    @router.get(API + "/servicerequestupdates.{fmt}", summary="GET Service Request Updates")
    @_respond_errors
    def list_updates(request: Request, fmt: str) -> Response:
        fmt, runtime, jurisdiction, language = reading(request, fmt)
        problems: list[str] = []
        zone = ZoneInfo(jurisdiction.commune.business_hours.timezone)
        start, end = _window(request, zone, problems)
        page, page_size = _paging(request, problems)
        _refuse(problems)
        with runtime.read_sessions() as session:
            chosen = session.scalars(
                select(TicketEvent.id)
                .join(Ticket, TicketEvent.ticket_id == Ticket.id)
                .where(
                    Ticket.commune == jurisdiction.slug,
                    Ticket.category.in_(list(jurisdiction.services)),
                    TicketEvent.public.is_(True),
                    TicketEvent.action.in_(UPDATE_ACTIONS),
                    TicketEvent.at >= start,
                    TicketEvent.at <= end,
                )
                .order_by(TicketEvent.at, TicketEvent.id)
                .offset((page - 1) * page_size)
                .limit(page_size)
            ).all()
            wanted = {str(event_id) for event_id in chosen}
            ticket_ids = session.scalars(
                select(TicketEvent.ticket_id).where(TicketEvent.id.in_(list(chosen))).distinct()
            ).all()
            tickets = session.scalars(
                _lean(select(Ticket)).where(Ticket.id.in_(list(ticket_ids)))
            ).all()
            events = session.scalars(
                select(TicketEvent)
                .where(TicketEvent.ticket_id.in_(list(ticket_ids)))
                .order_by(TicketEvent.id)
            ).all()
            by_ticket: dict[int, list[TicketEvent]] = {}
            for event in events:
                by_ticket.setdefault(event.ticket_id, []).append(event)
            found: dict[str, dict[str, Any]] = {}
            for ticket in tickets:
                history = by_ticket.get(ticket.id, [])
                for entry in update_entries(ticket, history, jurisdiction, language):
                    if entry["update_id"] in wanted:
                        found[entry["update_id"]] = entry
        entries = [found[str(event_id)] for event_id in chosen if str(event_id) in found]
        return render(fmt, "service_request_updates", entries)

    # --- Tokens ----------------------------------------------------------------

    @router.get(API + "/tokens/{token}.{fmt}", summary="GET service_request_id from a token")
    @_respond_errors
    def get_token(request: Request, token: str, fmt: str) -> Response:
        fmt, runtime, jurisdiction, _language = reading(request, fmt)
        reference = None
        if _TOKEN.match(token):
            with runtime.read_sessions() as session:
                reference = session.scalar(
                    select(Ticket.reference)
                    .join(SignalRecord, SignalRecord.ticket_id == Ticket.id)
                    .where(
                        SignalRecord.idempotency_key == KEY_PREFIX + token,
                        SignalRecord.commune == jurisdiction.slug,
                    )
                )
        if reference is None:
            raise Open311Error(404, f"token {token[:80]!r} not found")
        return render(fmt, "service_requests", [{"service_request_id": reference, "token": token}])

    # --- Anything else under /open311 -------------------------------------------

    @router.api_route(
        "/open311/{rest:path}",
        methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        include_in_schema=False,
    )
    def unknown(request: Request, rest: str) -> Response:
        suffix = rest.rsplit(".", 1)[-1].lower() if "." in rest else "xml"
        return error_response(
            suffix, Open311Error(404, f"no Open311 resource {request.method} /open311/{rest[:100]}")
        )

    return router
