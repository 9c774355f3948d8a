"""Plugin email: residents' messages leave through a real SMTP server on loopback (aiosmtpd)."""

from __future__ import annotations

import email
import email.policy
import re
import shutil
import socket
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy import select

from core.db.models import OutboxMessage, Ticket
from core.outbox import deliver_due
from core.settings import OutboxSettings

REPO = Path(__file__).resolve().parents[2]
OUR_SECTIONS = ("plugins.resident_messages", "plugins.email", "plugins.sms")
SENDER = "Ville de Clermont-Ferrand <ne-pas-repondre@clermont-ferrand.example>"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def replace_sections(config_dir: Path, commune: str, sections: str) -> None:
    """Drop the commune file's own sections of our plugins; append ``sections``."""
    path = config_dir / "communes" / f"{commune}.toml"
    kept, skipping = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        header = re.match(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$", line)
        if header:
            name = header.group(1)
            skipping = any(name == s or name.startswith(f"{s}.") for s in OUR_SECTIONS)
        if not skipping:
            kept.append(line)
    path.write_text("\n".join(kept) + "\n\n" + sections, encoding="utf-8")


class Inbox:
    """An aiosmtpd handler keeping what it receives (and the logins it accepted)."""

    def __init__(self) -> None:
        self.envelopes: list = []
        self.logins: list[str] = []

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's name)
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        if isinstance(auth_data, LoginPassword) and auth_data.password == b"s3cret-\xc3\xa9":
            self.logins.append(auth_data.login.decode())
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    @property
    def messages(self) -> list[email.message.EmailMessage]:
        return [
            email.message_from_bytes(e.original_content, policy=email.policy.default)
            for e in self.envelopes
        ]


class SmtpServer:
    def __init__(self, port: int, **options) -> None:
        self.port = port
        self.inbox = Inbox()
        self.options = options
        self.controller: Controller | None = None

    def start(self) -> SmtpServer:
        self.controller = Controller(
            self.inbox, hostname="127.0.0.1", port=self.port, **self.options
        )
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp_port() -> int:
    return free_port()


@pytest.fixture
def smtp(smtp_port):
    server = SmtpServer(smtp_port).start()
    yield server
    server.stop()


@pytest.fixture
def vigie_settings(vigie_settings):
    # Deliveries happen when the test calls deliver_due, not in the app's loop.
    return vigie_settings.model_copy(update={"outbox": OutboxSettings(poll_seconds=3600)})


@pytest.fixture
def vigie_config_dir(tmp_path: Path, smtp_port: int) -> Path:
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    replace_sections(
        config,
        "clermont-ferrand",
        f"""
[plugins.resident_messages]
public_url = "https://signalement.clermont.example"
signature = "Ville de Clermont-Ferrand"

[plugins.email]
host = "127.0.0.1"
port = {smtp_port}
sender = "{SENDER}"
reply_to = "proximcite@clermont-metropole.example"
timeout = 5
""",
    )
    return config


@pytest.fixture
def staff(vigie_api):
    headers = vigie_api.headers("admin")

    def call(path: str, body: dict, expected: int = 200) -> dict:
        response = vigie_api.client.post(f"/api/v1/tickets{path}", json=body, headers=headers)
        assert response.status_code == expected, response.text
        return response.json()

    return call


def _ticket(staff, **fields) -> dict:
    body = {
        "commune": "clermont-ferrand",
        "category": "voirie",
        "description": "Nid-de-poule devant l'école",
        "address": "12 rue Blatin",
        "channel": "phone",
        "answers": {"nature": "trou", "danger": True},
        "reporter": {"name": "Élodie Brun", "email": "elodie@example.org", "notify_by": "email"},
        **fields,
    }
    return staff("", body, expected=201)


def test_receipt_through_smtp(staff, smtp, vigie_runtime):
    ticket = _ticket(staff)
    assert deliver_due(vigie_runtime) == (1, 0)
    (envelope,) = smtp.inbox.envelopes
    assert envelope.mail_from == "ne-pas-repondre@clermont-ferrand.example"
    assert envelope.rcpt_tos == ["elodie@example.org"]
    raw = envelope.original_content.decode("ascii")  # 8-bit clean: all encoded
    assert re.search(r"^Subject: .*=\?utf-8\?[qb]\?", raw, re.M), "UTF-8, encoded per RFC 2047"
    (message,) = smtp.inbox.messages
    assert message["Subject"] == f"Signalement {ticket['reference']} bien reçu"
    assert message["From"] == SENDER
    assert message["To"] == "elodie@example.org"
    assert message["Reply-To"] == "proximcite@clermont-metropole.example"
    assert re.fullmatch(r"<[^@>]+@clermont-ferrand\.example>", message["Message-ID"])
    assert message["Date"].datetime.tzinfo is not None
    assert message["Auto-Submitted"] == "auto-generated"
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    body = message.get_content()
    assert body.startswith("Bonjour Élodie Brun,")
    assert ticket["reference"] in body
    assert f"https://signalement.clermont.example/track/{ticket['reference']}" in body
    with vigie_runtime.sessions() as session:
        stored = session.scalar(select(OutboxMessage))
        assert (stored.status, stored.attempts) == ("sent", 1)
        assert stored.sent_at is not None
    assert deliver_due(vigie_runtime) == (0, 0), "sent once"


def test_assigned_redirected_and_resolved(staff, smtp, vigie_runtime):
    ticket = _ticket(staff)
    staff(f"/{ticket['id']}/assign", {"team": "voirie-nord"})
    staff(f"/{ticket['id']}/status", {"status": "in_progress"})
    staff(f"/{ticket['id']}/status", {"status": "resolved", "comment": "Trou rebouché à l'enrobé"})
    english = _ticket(
        staff,
        reporter={"email": "sam@example.org", "notify_by": "email", "language": "en"},
    )
    staff(
        f"/{english['id']}/status",
        {"status": "redirected", "outside_body": "SNCF Réseau", "comment": "Voie ferrée"},
    )
    assert deliver_due(vigie_runtime) == (5, 0)
    subjects = [(m["To"], m["Subject"]) for m in smtp.inbox.messages]
    assert subjects == [
        ("elodie@example.org", f"Signalement {ticket['reference']} bien reçu"),
        ("elodie@example.org", f"Signalement {ticket['reference']} pris en charge"),
        ("elodie@example.org", f"Signalement {ticket['reference']} résolu"),
        ("sam@example.org", f"Report {english['reference']} received"),
        ("sam@example.org", f"Report {english['reference']} passed on to SNCF Réseau"),
    ]
    bodies = [m.get_content() for m in smtp.inbox.messages]
    assert "Régie voirie Pôle Nord (Montferrand)" in bodies[1]
    assert "Ce qui a été fait : Trou rebouché à l'enrobé." in bodies[2]
    assert "we passed it on to SNCF Réseau" in bodies[4]
    assert "Voie ferrée." in bodies[4]


def test_redirected_on_arrival(staff, smtp, vigie_runtime):
    ticket = _ticket(
        staff, category="reseau-electrique", description="Câble à terre", answers={"danger": True}
    )
    assert deliver_due(vigie_runtime) == (2, 0)
    receipt, redirected = smtp.inbox.messages
    assert redirected["Subject"] == f"Signalement {ticket['reference']} transmis à Enedis"
    assert "Enedis (dépannage : 09 72 67 50 63)" in redirected.get_content()


def test_smtp_down_the_ticket_is_kept_and_the_mail_waits(staff, smtp_port, vigie_runtime):
    ticket = _ticket(staff)  # nothing listens on smtp_port yet
    with vigie_runtime.sessions() as session:
        assert session.get(Ticket, ticket["id"]) is not None, "stored regardless"
    assert deliver_due(vigie_runtime) == (0, 1)
    with vigie_runtime.sessions() as session:
        waiting = session.scalar(select(OutboxMessage))
        assert (waiting.status, waiting.attempts) == ("pending", 1)
        assert "Connection refused" in waiting.last_error or "Errno" in waiting.last_error
        retry_at = waiting.next_attempt_at
    assert deliver_due(vigie_runtime, now=retry_at + timedelta(seconds=1)) == (0, 1)
    with vigie_runtime.sessions() as session:
        waiting = session.scalar(select(OutboxMessage))
        assert waiting.attempts == 2
        assert waiting.next_attempt_at - retry_at >= timedelta(seconds=55), "backs off"
        retry_at = waiting.next_attempt_at
    server = SmtpServer(smtp_port).start()
    try:
        assert deliver_due(vigie_runtime, now=retry_at + timedelta(seconds=1)) == (1, 0)
    finally:
        server.stop()
    (message,) = server.inbox.messages
    assert ticket["reference"] in message["Subject"]
    with vigie_runtime.sessions() as session:
        sent = session.scalar(select(OutboxMessage))
        assert (sent.status, sent.attempts, sent.last_error) == ("sent", 3, None)


def _self_signed(directory: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True, capture_output=True,
    )
    return cert, key


def test_starttls_and_login(tmp_path, monkeypatch):
    """Direct to the plugin: STARTTLS with the certificate checked, then AUTH LOGIN."""
    import ssl

    from connectors import email as email_plugin
    from core.config import Commune
    from core.signals import Notification

    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = SmtpServer(
        free_port(), tls_context=context, require_starttls=True, auth_require_tls=True,
        authenticator=None,
    )
    server.options["authenticator"] = server.inbox.authenticate
    server.start()
    monkeypatch.setenv("VIGIE_SMTP_PASSWORD", "s3cret-é")
    settings = email_plugin.Settings(
        host="127.0.0.1", port=server.port, security="starttls", ca_file=str(cert),
        username="vigie", sender=SENDER,
    )
    commune = Commune(
        slug="clermont-ferrand", name="Clermont-Ferrand", reference_prefix="CLF",
        plugins={"email": settings},
    )
    notification = Notification(
        channel="email", recipient="zoé@example.org", subject="Réparé ✓", body="Merci 👍",
        commune="clermont-ferrand", ticket_reference="CLF-2026-000001",
    )
    try:
        assert email_plugin.send_notification(notification, commune) is True
        # A second connection, with the TLS settings the first one made.
        assert email_plugin.send_notification(notification, commune) is True
        assert email_plugin.send_notification(
            Notification(channel="sms", recipient="x", subject="s", body="b", commune="x"), commune
        ) is None, "not its channel"
    finally:
        server.stop()
    assert server.inbox.logins == ["vigie", "vigie"]
    message, _again = server.inbox.messages
    assert message["Subject"] == "Réparé ✓"
    assert message["X-Vigie-Reference"] == "CLF-2026-000001"
    assert message.get_content().strip() == "Merci 👍"


def test_a_wrong_password_is_retried_not_lost(tmp_path, monkeypatch):
    from connectors import email as email_plugin
    from core.config import Commune
    from core.signals import Notification

    server = SmtpServer(free_port(), auth_require_tls=False)
    server.options["authenticator"] = server.inbox.authenticate
    server.start()
    monkeypatch.setenv("VIGIE_SMTP_PASSWORD", "wrong")
    settings = email_plugin.Settings(
        host="127.0.0.1", port=server.port, username="vigie", sender=SENDER
    )
    commune = Commune(
        slug="clermont-ferrand", name="Clermont-Ferrand", reference_prefix="CLF",
        plugins={"email": settings},
    )
    notification = Notification(
        channel="email", recipient="a@example.org", subject="s", body="b",
        commune="clermont-ferrand",
    )
    try:
        with pytest.raises(Exception, match="535|uthentication"):
            email_plugin.send_notification(notification, commune)
    finally:
        server.stop()
    assert server.inbox.envelopes == []


def test_settings_are_checked():
    from pydantic import ValidationError

    from connectors import email as email_plugin

    with pytest.raises(ValidationError, match="not an email address"):
        email_plugin.Settings(sender="mairie")
    with pytest.raises(ValidationError, match="sender"):
        email_plugin.Settings()
