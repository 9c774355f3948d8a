"""Email out by SMTP (plugin ``email``): delivers the outbox's ``email`` messages.

Enable with ``[plugins.email]`` in a commune's file::

    [plugins.email]
    host = "smtp.clermont-ferrand.example"
    port = 587
    security = "starttls"            # "none", "starttls" or "ssl" (port 465)
    username = "vigie"               # password: VIGIE_SMTP_PASSWORD
    sender = "Ville de Clermont-Ferrand <ne-pas-repondre@clermont-ferrand.example>"

One SMTP session per message, opened by the outbox worker after commit. A
refused connection, a timeout or a refusal by the server raises, and the
outbox tries again later with back-off: the message stays queued.
"""

from __future__ import annotations

import base64
import functools
import logging
import os
import smtplib
import ssl
import uuid
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, parseaddr
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from core.config import Commune
from core.hookspecs import hookimpl
from core.signals import Notification

log = logging.getLogger(__name__)

CHANNEL = "email"
PASSWORD_ENV = "VIGIE_SMTP_PASSWORD"


class Settings(BaseModel):
    """The SMTP server a commune's emails leave through, and who they are from."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    host: str = "127.0.0.1"
    port: int = Field(default=25, ge=1, le=65535)
    # "starttls" upgrades a plain connection (port 587); "ssl" is TLS from
    # the start (port 465); "none" only for a relay on the same host.
    security: Literal["none", "starttls", "ssl"] = "none"
    verify_certificate: bool = True
    # A CA bundle to trust instead of the system's (a relay with a private CA).
    ca_file: str | None = None
    username: str | None = None
    # Better from the environment: VIGIE_SMTP_PASSWORD.
    password: SecretStr | None = None
    sender: str
    reply_to: str | None = None
    timeout: float = Field(default=10.0, gt=0, le=300)

    @field_validator("sender", "reply_to")
    @classmethod
    def _an_address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        _name, address = parseaddr(value)
        if "@" not in address or address.startswith("@") or address.endswith("@"):
            raise ValueError(
                f"{value!r} is not an email address like "
                '"Ville de Clermont-Ferrand <ne-pas-repondre@clermont-ferrand.fr>"'
            )
        return value

    def secret(self) -> str | None:
        if self.password is not None:
            return self.password.get_secret_value()
        return os.environ.get(PASSWORD_ENV) or None


@hookimpl
def check_commune(commune: Commune) -> list[str]:
    settings: Settings | None = commune.plugin_config("email")
    if settings is None:
        return []
    if settings.username and settings.secret() is None:
        return [f"username is set but no password: set password or {PASSWORD_ENV}"]
    return []


@hookimpl
def send_notification(notification: Notification, commune: Commune) -> bool | None:
    if notification.channel != CHANNEL:
        return None
    settings: Settings = commune.plugin_config("email")
    message = build_message(notification, settings)
    with _connect(settings) as smtp:
        if settings.username:
            _login(smtp, settings.username, settings.secret() or "")
        refused = smtp.send_message(message)
    if refused:  # some recipients refused, others accepted: ours is the only one
        raise smtplib.SMTPRecipientsRefused(refused)
    log.info("email %s sent to %s", message["Message-ID"], _masked(notification.recipient))
    return True


def build_message(notification: Notification, settings: Settings) -> EmailMessage:
    """A plain-text UTF-8 message with the headers mail systems expect."""
    message = EmailMessage(policy=SMTP)
    message["From"] = settings.sender
    message["To"] = notification.recipient
    if settings.reply_to:
        message["Reply-To"] = settings.reply_to
    message["Subject"] = notification.subject
    message["Date"] = formatdate(localtime=True)
    # Short enough not to be folded (make_msgid's ids are, by some parsers' reckoning).
    message["Message-ID"] = f"<{uuid.uuid4().hex}@{_domain(settings.sender)}>"
    # RFC 3834: an automatic message; out-of-office replies should not answer it.
    message["Auto-Submitted"] = "auto-generated"
    message["Content-Language"] = notification.language
    if notification.ticket_reference:
        message["X-Vigie-Reference"] = notification.ticket_reference
    # Quoted-printable keeps the message 7-bit clean for any relay (no 8BITMIME
    # needed) and the French text readable in the raw source.
    message.set_content(notification.body, charset="utf-8", cte="quoted-printable")
    return message


def _connect(settings: Settings) -> smtplib.SMTP:
    if settings.security == "ssl":
        return smtplib.SMTP_SSL(
            settings.host,
            settings.port,
            timeout=settings.timeout,
            context=_tls_context(settings.ca_file, settings.verify_certificate),
        )
    smtp = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
    try:
        if settings.security == "starttls":
            smtp.starttls(context=_tls_context(settings.ca_file, settings.verify_certificate))
    except BaseException:
        smtp.close()
        raise
    return smtp


@functools.lru_cache(maxsize=8)
def _tls_context(ca_file: str | None, verify_certificate: bool) -> ssl.SSLContext:
    """The TLS settings of the SMTP connections, made once and only for TLS. Made
    at every connection, even a plain one, loading the system's certificate
    authorities was 55 % of the outbox thread's samples (py-spy, receipts of
    2,000 Open311 POSTs sent to a local relay). A context is safe to share
    between connections and threads; a changed ``ca_file`` is read at the
    next start."""
    context = ssl.create_default_context(cafile=ca_file)
    if not verify_certificate:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _login(smtp: smtplib.SMTP, username: str, password: str) -> None:
    if (username + password).isascii():
        smtp.login(username, password)
        return
    # smtplib encodes credentials as ASCII; RFC 4616 PLAIN is UTF-8.
    smtp.ehlo_or_helo_if_needed()
    if not smtp.has_extn("auth"):
        raise smtplib.SMTPNotSupportedError("the server does not offer AUTH")
    credentials = base64.b64encode(f"\0{username}\0{password}".encode()).decode("ascii")
    code, answer = smtp.docmd("AUTH", f"PLAIN {credentials}")
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, answer)


def _domain(sender: str) -> str:
    address = parseaddr(sender)[1]
    try:
        return Address(addr_spec=address).domain or "vigie.invalid"
    except (ValueError, IndexError):
        return address.rsplit("@", 1)[-1] or "vigie.invalid"


def _masked(address: str) -> str:
    """Enough of an address to follow a delivery in the log, not a resident's identity."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"
