"""SMS (plugin ``sms``): residents report by text message, and hear back by SMS.

Enable it in a commune's file::

    [plugins.sms]
    api_url = "https://sms-gateway.example/api/messages"   # the gateway's send API
    username = "clermont"                                  # password: VIGIE_SMS_PASSWORD
    sender = "CLERMONTFD"
    inbound_secret = "..."                                 # or VIGIE_SMS_INBOUND_SECRET

Out: ``send_notification`` for the ``sms`` channel POSTs ``{"to", "from",
"text"}`` (field names configurable, JSON or form) to ``api_url``; an answer
other than 2xx raises, and the outbox tries again later.

In: the gateway POSTs each received SMS to ``/sms/inbound/{commune}``,
authenticated by a shared secret (header ``X-Vigie-Secret`` or query
``?secret=``) or an HMAC-SHA256 of the raw body (header ``X-Signature``). The
text is read for a category (the commune's keywords) and an address; what is
missing, and the category's required questions, are asked for by reply, the
conversation being kept for ``conversation_minutes``. Once complete, the
ticket is created (channel ``sms``, the sender told by SMS) and the reply
carries its reference. A redelivered ``message_id`` is handled once; each
sender number has a rate limit. See ``docs/notifications.md``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from connectors.sms_models import SmsConversation, SmsInboundMessage
from connectors.sms_text import (
    choice_in_text,
    find_address,
    find_category,
    normalise,
    plausible_address,
    read_answer,
)
from core.config import Commune, Question
from core.connectors import ChannelConnector, Connector
from core.db.models import OutboxMessage
from core.db.types import utcnow
from core.errors import InvalidInput
from core.hookspecs import hookimpl
from core.intake import accept_signal
from core.outbox import queue
from core.ratelimit import RateLimit, TokenBuckets, client_address, retry_after
from core.runtime import Runtime
from core.settings import Settings as PlatformSettings
from core.signals import Location, Notification, Report, Reporter

log = logging.getLogger(__name__)

PLUGIN = "sms"
CHANNEL = "sms"
ACTOR = f"plugin:{PLUGIN}"
PASSWORD_ENV = "VIGIE_SMS_PASSWORD"
API_KEY_ENV = "VIGIE_SMS_API_KEY"
SECRET_ENV = "VIGIE_SMS_INBOUND_SECRET"
MAX_BODY_BYTES = 16 * 1024
MAX_TEXT = 1600  # ten concatenated SMS
_STRICT = ConfigDict(extra="forbid", frozen=True)


# --- Settings -----------------------------------------------------------------------


class OutboundFields(BaseModel):
    """Names of the fields of the gateway's send API."""

    model_config = _STRICT
    to: str = "to"
    sender: str = "from"
    text: str = "text"


class InboundFields(BaseModel):
    """Names of the fields the gateway posts to the webhook ("data.from" for nested JSON)."""

    model_config = _STRICT
    sender: str = "from"
    text: str = "text"
    message_id: str = "message_id"


class Settings(BaseModel):
    """One commune's SMS gateway: where to send, and how to trust what it posts."""

    model_config = _STRICT
    # Out
    api_url: str
    sender: str = Field(min_length=1, max_length=20)
    username: str | None = None
    password: SecretStr | None = None  # or VIGIE_SMS_PASSWORD (HTTP basic auth)
    api_key: SecretStr | None = None  # or VIGIE_SMS_API_KEY, sent in api_key_header
    api_key_header: str = "Authorization"
    api_key_prefix: str = "Bearer "
    body_format: Literal["json", "form"] = "json"
    fields: OutboundFields = OutboundFields()
    extra_fields: dict[str, str] = {}
    timeout: float = Field(default=10.0, gt=0, le=120)
    # Numbers written nationally ("06 12 34 56 78") get this country code.
    country_code: str = Field(default="33", pattern=r"^[1-9][0-9]{0,3}$")
    # In
    inbound_auth: Literal["secret", "hmac"] = "secret"
    inbound_secret: SecretStr | None = None  # or VIGIE_SMS_INBOUND_SECRET
    secret_header: str = "X-Vigie-Secret"
    secret_param: str = "secret"
    signature_header: str = "X-Signature"
    inbound_fields: InboundFields = InboundFields()
    language: Literal["fr", "en"] = "fr"
    signature: str | None = Field(default=None, max_length=60)
    # A category to use when two replies in a row name none (None: keep asking).
    default_category: str | None = None
    conversation_minutes: int = Field(default=120, ge=5, le=7 * 24 * 60)
    # Conversations and message ids (phone numbers: personal data) kept this long.
    retention_days: int = Field(default=30, ge=1, le=3650)
    per_sender: RateLimit = RateLimit(per_minute=4, burst=8)
    # Requests per client address, checked before the body is read: the gateway
    # sends from a few addresses, far below this; a flood from elsewhere is not.
    per_address: RateLimit = RateLimit(per_minute=1200, burst=300)

    @field_validator("api_url")
    @classmethod
    def _web_address(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"{value!r} is not a web address like https://gateway.example/send")
        return value

    def secret(self, value: SecretStr | None, env: str) -> str | None:
        if value is not None:
            return value.get_secret_value()
        return os.environ.get(env) or None


class SmsChannel(ChannelConnector):
    name: ClassVar[str] = "sms"
    channel: ClassVar[str] = CHANNEL
    description: ClassVar[str] = "SMS: gateway webhook at /sms/inbound/{commune}, replies by SMS"


# --- Hooks ----------------------------------------------------------------------------


@hookimpl
def register_connectors() -> Iterable[Connector]:
    return [SmsChannel()]


@hookimpl
def register_routes(settings: PlatformSettings) -> Iterable[APIRouter]:
    return [build_router()]


@hookimpl
def check_commune(commune: Commune) -> list[str]:
    settings: Settings | None = commune.plugin_config(PLUGIN)
    if settings is None:
        return []
    problems = []
    if settings.secret(settings.inbound_secret, SECRET_ENV) is None:
        problems.append(
            f"inbound_secret is not set (nor {SECRET_ENV}): the webhook would refuse every SMS"
        )
    if settings.username and settings.secret(settings.password, PASSWORD_ENV) is None:
        problems.append(f"username is set but no password: set password or {PASSWORD_ENV}")
    if settings.default_category and commune.category(settings.default_category) is None:
        problems.append(
            f'default_category "{settings.default_category}" is not a category of {commune.slug}'
        )
    if not any(c.keywords for c in commune.categories if c.public):
        problems.append("no category has keywords: an SMS could never name one")
    return problems


@hookimpl
def send_notification(notification: Notification, commune: Commune) -> bool | None:
    if notification.channel != CHANNEL:
        return None
    settings: Settings = commune.plugin_config(PLUGIN)
    fields = settings.fields
    payload = {
        **settings.extra_fields,
        fields.to: international(notification.recipient, settings.country_code),
        fields.sender: settings.sender,
        fields.text: notification.body,
    }
    headers = {}
    api_key = settings.secret(settings.api_key, API_KEY_ENV)
    if api_key:
        headers[settings.api_key_header] = f"{settings.api_key_prefix}{api_key}"
    auth = None
    if settings.username:
        auth = (settings.username, settings.secret(settings.password, PASSWORD_ENV) or "")
    body = {"json": payload} if settings.body_format == "json" else {"data": payload}
    response = httpx.post(
        settings.api_url, headers=headers, auth=auth, timeout=settings.timeout, **body
    )
    if not response.is_success:
        raise SmsGatewayError(
            f"SMS gateway answered {response.status_code}: {response.text[:200]!r}"
        )
    log.info("sms sent to %s (%s)", _masked(notification.recipient), commune.slug)
    return True


class SmsGatewayError(RuntimeError):
    """The gateway did not take the message; the outbox will try again."""


def international(number: str, country_code: str) -> str:
    """"06 12 34 56 78" → "+33612345678"; "+33 6…" and "0033 6…" alike."""
    digits = re.sub(r"[\s.()\-/]", "", number)
    if digits.startswith("+"):
        return digits
    if digits.startswith("00"):
        return f"+{digits[2:]}"
    if digits.startswith("0"):
        return f"+{country_code}{digits[1:]}"
    return digits


def _masked(number: str) -> str:
    return f"{number[:4]}…{number[-2:]}" if len(number) > 6 else "…"


# --- Webhook ------------------------------------------------------------------------


class Refused(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


@dataclass(frozen=True)
class InboundSms:
    sender: str
    text: str
    message_id: str | None


@dataclass(frozen=True)
class Outcome:
    status: str  # "created", "asked", "cancelled", "duplicate", "failed"
    reference: str | None = None
    reply: str | None = None


def build_router() -> APIRouter:
    router = APIRouter(tags=["sms"])
    buckets = TokenBuckets()
    pruned = {"at": 0.0}

    @router.post("/sms/inbound/{commune}", summary="An SMS received by the gateway")
    async def inbound(commune: str, request: Request) -> JSONResponse:
        runtime: Runtime = request.app.state.runtime
        try:
            found = runtime.area.commune(commune)
            if found is None or not found.enables(PLUGIN):
                raise Refused(404, f"no SMS channel for commune {commune!r}")
            settings: Settings = found.plugin_config(PLUGIN)
            _limit(
                buckets, ("address", found.slug, client_address(request)), settings.per_address,
                "requests from this address",
            )  # fmt: skip
            raw = await _read_body(request)
            _authenticate(request, raw, settings)
            sms = _parse(raw, request.headers.get("content-type", ""), settings)
            _limit(buckets, (found.slug, sms.sender), settings.per_sender)
        except Refused as refusal:
            return JSONResponse(
                {"error": refusal.message}, status_code=refusal.status, headers=refusal.headers
            )
        prune = time.monotonic() - pruned["at"] > 3600
        if prune:
            pruned["at"] = time.monotonic()
        outcome = await run_in_threadpool(_handle, runtime, found, settings, sms, prune)
        body = {"status": outcome.status}
        if outcome.reference:
            body["reference"] = outcome.reference
        return JSONResponse(body, status_code=200)

    return router


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise Refused(413, f"body too large: at most {MAX_BODY_BYTES} bytes")
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > MAX_BODY_BYTES:
            raise Refused(413, f"body too large: at most {MAX_BODY_BYTES} bytes")
    return bytes(received)


def _authenticate(request: Request, raw: bytes, settings: Settings) -> None:
    secret = settings.secret(settings.inbound_secret, SECRET_ENV)
    if secret is None:
        raise Refused(403, "this commune's SMS webhook has no secret configured")
    if settings.inbound_auth == "hmac":
        given = request.headers.get(settings.signature_header)
        if not given:
            raise Refused(401, f"sign the body: {settings.signature_header} (HMAC-SHA256)")
        expected = hmac.new(secret.encode(), raw, hashlib.sha256).digest()
        if not any(hmac.compare_digest(expected, candidate) for candidate in _digests(given)):
            raise Refused(403, "bad signature")
        return
    given = request.headers.get(settings.secret_header) or request.query_params.get(
        settings.secret_param
    )
    if not given:
        raise Refused(401, f"send the shared secret in {settings.secret_header}")
    if not hmac.compare_digest(given.encode(), secret.encode()):
        raise Refused(403, "bad secret")


def _digests(signature: str) -> list[bytes]:
    """The signature as bytes, whether sent as hex ("sha256=ab12…") or base64."""
    value = signature.strip()
    if "=" in value[:10] and value.split("=", 1)[0].lower() in ("sha256", "hmac-sha256"):
        value = value.split("=", 1)[1]
    candidates = []
    try:
        candidates.append(bytes.fromhex(value))
    except ValueError:
        pass
    try:
        candidates.append(base64.b64decode(value, validate=True))
    except ValueError:
        pass
    return candidates or [b""]


def _parse(raw: bytes, content_type: str, settings: Settings) -> InboundSms:
    fields = settings.inbound_fields
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(400, "the body is not UTF-8") from None
    if "json" in content_type:
        try:
            data = json.loads(text or "null")
        except json.JSONDecodeError:
            raise Refused(400, "the body is not JSON") from None
        if not isinstance(data, dict):
            raise Refused(400, "the body is not a JSON object")
    elif "x-www-form-urlencoded" in content_type or not content_type:
        data = dict(parse_qsl(text, keep_blank_values=True))
    else:
        raise Refused(415, "send application/json or application/x-www-form-urlencoded")
    sender = _field(data, fields.sender)
    message = _field(data, fields.text)
    message_id = _field(data, fields.message_id)
    pairs = ((fields.sender, sender), (fields.text, message))
    missing = [name for name, value in pairs if not value]
    if missing:
        raise Refused(400, f"missing field: {', '.join(missing)}")
    number = international(sender, settings.country_code)
    if not re.fullmatch(r"\+?[0-9]{3,20}", number):
        raise Refused(400, f"{fields.sender} is not a phone number")
    return InboundSms(number, message.strip()[:MAX_TEXT], (message_id or None) and message_id[:200])


def _field(data: dict[str, Any], path: str) -> str | None:
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    if value is None or isinstance(value, dict | list):
        return None
    return str(value).strip()


def _limit(
    buckets: TokenBuckets,
    key: tuple[str, ...],
    limit: RateLimit,
    what: str = "SMS from this number",
) -> None:
    wait = buckets.take(key, limit)
    if wait > 0:
        seconds = retry_after(wait)
        raise Refused(
            429, f"too many {what}; try again in {seconds} s",
            headers={"Retry-After": str(seconds)},
        )


# --- The conversation -------------------------------------------------------------

PROMPTS: dict[str, dict[str, str]] = {
    "fr": {
        "category": "Quel est le problème ? Décrivez-le en quelques mots (ex. : {examples}).",
        "address": "Où est-ce ? Répondez avec l'adresse (ex. : 12 rue Blatin).",
        "choice": "{label} ? Répondez par le numéro : {choices}.",
        "multichoice": "{label} ? Répondez par un ou plusieurs numéros : {choices}.",
        "boolean": "{label} Répondez OUI ou NON.",
        "integer": "{label} ? Répondez par un nombre.",
        "number": "{label} ? Répondez par un nombre.",
        "date": "{label} ? Répondez par une date (JJ/MM/AAAA).",
        "string": "{label} ?",
        "again": "Réponse non comprise. ",
        "thanks": "Merci. ",
        "created": "Signalement enregistré, référence {reference}. Merci !",
        "cancelled": "Signalement annulé. Écrivez-nous à nouveau pour en faire un autre.",
        "nothing": "Aucun signalement en cours. Décrivez le problème et son adresse.",
        "failed": "Désolé, votre signalement n'a pas pu être enregistré. Merci de nous appeler.",
        "stop": "STOP pour annuler.",
    },
    "en": {
        "category": "What is the problem? Describe it in a few words (e.g. {examples}).",
        "address": "Where is it? Reply with the address (e.g. 12 rue Blatin).",
        "choice": "{label}? Reply with the number: {choices}.",
        "multichoice": "{label}? Reply with one or more numbers: {choices}.",
        "boolean": "{label} Reply YES or NO.",
        "integer": "{label}? Reply with a number.",
        "number": "{label}? Reply with a number.",
        "date": "{label}? Reply with a date (DD/MM/YYYY).",
        "string": "{label}?",
        "again": "Sorry, we did not understand. ",
        "thanks": "Thank you. ",
        "created": "Report recorded, reference {reference}. Thank you!",
        "cancelled": "Report cancelled. Text us again to make another one.",
        "nothing": "No report in progress. Describe the problem and its address.",
        "failed": "Sorry, your report could not be recorded. Please call us.",
        "stop": "STOP to cancel.",
    },
}
_CANCEL = {"stop", "annuler", "annule", "cancel", "arret", "arreter"}


def _handle(
    runtime: Runtime, commune: Commune, settings: Settings, sms: InboundSms, prune: bool
) -> Outcome:
    with runtime.sessions() as session:
        if prune:
            _prune(session, commune, settings)
        try:
            outcome = converse(runtime, session, commune, settings, sms)
            session.commit()
        except IntegrityError:  # the same message_id, handled meanwhile by another worker
            session.rollback()
            return Outcome("duplicate")
    return outcome


def converse(
    runtime: Runtime, session: Session, commune: Commune, settings: Settings, sms: InboundSms
) -> Outcome:
    """Take one SMS into the sender's conversation; reply, or create the ticket."""
    now = utcnow()
    if sms.message_id:
        seen = session.scalar(
            select(SmsInboundMessage.id).where(
                SmsInboundMessage.commune == commune.slug,
                SmsInboundMessage.message_id == sms.message_id,
            )
        )
        if seen is not None:
            return Outcome("duplicate")
    conversation = session.scalar(
        select(SmsConversation)
        .where(
            SmsConversation.commune == commune.slug,
            SmsConversation.phone == sms.sender,
            SmsConversation.status == "open",
            SmsConversation.expires_at > now,
        )
        .order_by(SmsConversation.id.desc())
        .limit(1)
    )
    if normalise(sms.text) in _CANCEL:
        if conversation is None:
            return _reply(session, commune, settings, sms, None, "cancelled", "nothing")
        conversation.status = "cancelled"
        return _reply(session, commune, settings, sms, conversation, "cancelled", "cancelled")
    if conversation is None:
        conversation = SmsConversation(
            commune=commune.slug, phone=sms.sender, language=settings.language,
            description="", answers={}, asked_times=0, created_at=now,
        )
        session.add(conversation)
    conversation.updated_at = now
    conversation.expires_at = now + timedelta(minutes=settings.conversation_minutes)
    understood = _take(conversation, sms.text, commune, settings, now)
    missing = _missing(conversation, commune)
    if missing is not None:
        if missing == conversation.awaiting:
            conversation.asked_times += 1
        else:
            conversation.awaiting, conversation.asked_times = missing, 1
        if missing == "category" and conversation.asked_times > 2 and settings.default_category:
            conversation.category = settings.default_category
            _fill_text_answers(conversation, commune)
            missing = _missing(conversation, commune)
    if missing is not None:
        conversation.awaiting = missing
        prompt = _prompt(missing, conversation, commune)
        if not understood:
            prompt = _say(conversation.language, "again") + prompt
        return _reply(session, commune, settings, sms, conversation, "asked", text=prompt)
    return _create(runtime, session, commune, settings, sms, conversation)


def _take(
    conversation: SmsConversation, text: str, commune: Commune, settings: Settings, now
) -> bool:
    """Read ``text`` into the conversation; False when it answered nothing that was asked."""
    awaiting = conversation.awaiting
    understood = awaiting is None
    if awaiting and awaiting.startswith("answer:"):
        category = commune.category(conversation.category or "")
        question = category.question(awaiting.split(":", 1)[1]) if category else None
        if question is not None:
            try:
                value = read_answer(question, text, now.astimezone(_zone(commune)).date())
            except ValueError:
                return False
            conversation.answers = {**(conversation.answers or {}), question.code: value}
            return True
    if awaiting in (None, "category"):
        _describe(conversation, text)
    if conversation.category is None:
        found = find_category(text, commune)
        if found is not None:
            conversation.category = found.code
            understood = understood or awaiting == "category"
    if conversation.address is None:
        address = find_address(text, commune)
        if address is None and awaiting == "address":
            address = plausible_address(text)
        if address is not None:
            conversation.address = address[:300]
            understood = understood or awaiting == "address"
    _fill_text_answers(conversation, commune)
    return understood


def _describe(conversation: SmsConversation, text: str) -> None:
    parts = [conversation.description] if conversation.description else []
    conversation.description = " / ".join([*parts, " ".join(text.split())])[:5000]


def _fill_text_answers(conversation: SmsConversation, commune: Commune) -> None:
    """What the SMS already says: a required free-text question ("describe the
    problem") is the text itself; a required choice its words name unambiguously
    ("lampadaire éteint": état ``eteint``)."""
    category = commune.category(conversation.category or "")
    if category is None:
        return
    answers = dict(conversation.answers or {})
    for question in category.questions:
        if not question.required or question.code in answers:
            continue
        if question.type == "text":
            answers[question.code] = conversation.description
        elif question.type == "choice":
            key = choice_in_text(question, conversation.description)
            if key is not None:
                answers[question.code] = key
    conversation.answers = answers


def _missing(conversation: SmsConversation, commune: Commune) -> str | None:
    if conversation.category is None:
        return "category"
    if conversation.address is None:
        return "address"
    category = commune.category(conversation.category)
    for question in category.questions if category else ():
        if question.required and question.code not in (conversation.answers or {}):
            return f"answer:{question.code}"
    return None


def _prompt(missing: str, conversation: SmsConversation, commune: Commune) -> str:
    language = conversation.language
    if missing == "category":
        examples = [c.keywords[0] for c in commune.categories if c.public and c.keywords][:4]
        return _say(language, "category", examples=", ".join(examples))
    if missing == "address":
        return _say(language, "address")
    category = commune.category(conversation.category or "")
    question = category.question(missing.split(":", 1)[1]) if category else None
    if question is None:  # the configuration changed under the conversation
        return _say(language, "address")
    return _question_prompt(question, language)


def _question_prompt(question: Question, language: str) -> str:
    label = question.label.rstrip(" ?")
    if question.type == "boolean":
        label = f"{label} ?" if language == "fr" else f"{label}?"
    choices = "; ".join(f"{n} {c.name}" for n, c in enumerate(question.choices, start=1))
    return _say(language, question.type if question.type in PROMPTS["fr"] else "string",
                label=label, choices=choices)


def _create(
    runtime: Runtime,
    session: Session,
    commune: Commune,
    settings: Settings,
    sms: InboundSms,
    conversation: SmsConversation,
) -> Outcome:
    session.flush()  # the conversation's id names the report
    report = Report(
        commune=commune.slug,
        category=conversation.category or "",
        description=conversation.description or sms.text,
        channel=CHANNEL,
        location=Location(address=_with_town(conversation.address or "", commune)),
        reporter=Reporter(phone=sms.sender, notify_by="sms", language=conversation.language),
        answers=dict(conversation.answers or {}),
        idempotency_key=f"sms:{commune.slug}:{conversation.id}",
    )
    try:
        # Intake checks a report before it writes anything: a refusal leaves no trace.
        result = accept_signal(runtime, session, report, ACTOR)
    except InvalidInput as refusal:
        log.warning("SMS report for %s refused by intake: %s", commune.slug, refusal)
        conversation.status = "cancelled"
        return _reply(session, commune, settings, sms, conversation, "failed", "failed")
    ticket = result.ticket
    conversation.status, conversation.awaiting = "done", None
    conversation.ticket_id = ticket.id if ticket else None
    reference = ticket.reference if ticket else None
    session.flush()
    receipt = ticket is not None and session.scalar(
        select(OutboxMessage.id).where(
            OutboxMessage.ticket_id == ticket.id,
            OutboxMessage.channel == CHANNEL,
            OutboxMessage.recipient == sms.sender,
        )
    )
    if receipt:  # resident_messages sent the receipt, reference included
        _record(session, commune, sms, conversation)
        return Outcome("created", reference)
    outcome = _reply(
        session, commune, settings, sms, conversation, "created", "created", reference=reference
    )
    return Outcome("created", reference, outcome.reply)


def _reply(
    session: Session,
    commune: Commune,
    settings: Settings,
    sms: InboundSms,
    conversation: SmsConversation | None,
    status: str,
    key: str | None = None,
    text: str | None = None,
    **values: Any,
) -> Outcome:
    language = conversation.language if conversation is not None else settings.language
    body = text if text is not None else _say(language, key or status, **values)
    signature = settings.signature or commune.name
    body = f"{signature} : {body}" if language == "fr" else f"{signature}: {body}"
    if status == "asked":
        body = f"{body} {_say(language, 'stop')}"
    ticket_id = conversation.ticket_id if conversation is not None else None
    queue(
        session,
        Notification(
            channel=CHANNEL, recipient=sms.sender, subject=f"SMS {status}", body=body,
            commune=commune.slug, language=language,
        ),
        ticket_id,
    )
    _record(session, commune, sms, conversation)
    return Outcome(status, values.get("reference"), body)


def _record(
    session: Session, commune: Commune, sms: InboundSms, conversation: SmsConversation | None
) -> None:
    if not sms.message_id:
        return
    session.flush()
    session.add(
        SmsInboundMessage(
            commune=commune.slug, message_id=sms.message_id,
            conversation_id=conversation.id if conversation is not None else None,
            received_at=utcnow(),
        )
    )
    session.flush()


def _say(language: str, key: str, **values: Any) -> str:
    return PROMPTS.get(language, PROMPTS["fr"])[key].format(**values)


def _with_town(address: str, commune: Commune) -> str:
    if commune.name.lower() in address.lower():
        return address
    return f"{address}, {commune.name}"


def _zone(commune: Commune) -> ZoneInfo:
    return ZoneInfo(commune.business_hours.timezone)


def _prune(session: Session, commune: Commune, settings: Settings) -> None:
    """Forget the commune's conversations and message ids older than ``retention_days``."""
    cutoff = utcnow() - timedelta(days=settings.retention_days)
    old = select(SmsConversation.id).where(
        SmsConversation.commune == commune.slug, SmsConversation.updated_at < cutoff
    )
    session.execute(
        delete(SmsInboundMessage).where(
            SmsInboundMessage.commune == commune.slug,
            (SmsInboundMessage.received_at < cutoff) | SmsInboundMessage.conversation_id.in_(old),
        )
    )
    session.execute(
        delete(SmsConversation).where(
            SmsConversation.commune == commune.slug, SmsConversation.updated_at < cutoff
        )
    )
