"""Plugin sms: a real HTTP server on loopback stands in for the SMS gateway.

Outbound messages must reach it with the right fields; inbound SMS come to the
webhook as the gateway would post them, and the replies go back out through it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import shutil
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import pytest
from sqlalchemy import func, select

from connectors.sms_models import SmsConversation, SmsInboundMessage
from core.db.models import OutboxMessage, SignalRecord, Ticket
from core.outbox import deliver_due
from core.settings import OutboxSettings

REPO = Path(__file__).resolve().parents[2]
OUR_SECTIONS = ("plugins.resident_messages", "plugins.email", "plugins.sms")
RESIDENT = "+33612345678"
CLERMONT_SECRET = "s3cret-webhook"
HMAC_KEY = "hmac-key-chamalieres"


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


class Gateway:
    """An HTTP server recording what is posted to it; answers 200 unless told otherwise."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.statuses: list[int] = []
        self.port = 0
        self.server: ThreadingHTTPServer | None = None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                gateway.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body}
                )
                status = gateway.statuses.pop(0) if gateway.statuses else 200
                answer = json.dumps({"ok": status < 300, "id": len(gateway.requests)}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args) -> None:
                pass

        return Handler

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Gateway:
        """Listen (again) on the same port."""
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def sms(self) -> list[dict]:
        """The messages received, decoded from JSON or form bodies."""
        out = []
        for request in self.requests:
            if "json" in request["headers"].get("Content-Type", ""):
                out.append(json.loads(request["body"]))
            else:
                out.append(dict(parse_qsl(request["body"].decode())))
        return out


@pytest.fixture(scope="module")
def gateway():
    server = Gateway().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _fresh_gateway(gateway):
    gateway.requests.clear()
    gateway.statuses.clear()


@pytest.fixture
def vigie_settings(vigie_settings):
    # Deliveries happen when the test calls deliver_due, not in the app's loop.
    return vigie_settings.model_copy(update={"outbox": OutboxSettings(poll_seconds=3600)})


@pytest.fixture
def vigie_config_dir(tmp_path: Path, gateway: Gateway) -> Path:
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    replace_sections(
        config,
        "clermont-ferrand",
        f"""
[plugins.resident_messages]
public_url = "https://signalement.clermont.example"
signature = "Clermont-Ferrand"

[plugins.sms]
api_url = "{gateway.url}/api/send"
username = "clermont"
password = "gw-pass"
sender = "CLERMONTFD"
inbound_secret = "{CLERMONT_SECRET}"
signature = "Clermont-Ferrand"
""",
    )
    # Chamalières: no resident_messages (the SMS plugin replies itself), a gateway
    # with its own field names, a form body, an API key and HMAC-signed webhooks.
    replace_sections(
        config,
        "chamalieres",
        f"""
[plugins.sms]
api_url = "{gateway.url}/v2/sms"
sender = "CHAMALIERE"
api_key = "k-123"
api_key_header = "X-Api-Key"
api_key_prefix = ""
body_format = "form"
extra_fields = {{ type = "text" }}
inbound_auth = "hmac"
inbound_secret = "{HMAC_KEY}"
per_sender = {{ per_minute = 1, burst = 3 }}

[plugins.sms.fields]
to = "destination"
sender = "originator"
text = "message"

[plugins.sms.inbound_fields]
sender = "msisdn"
text = "content"
message_id = "id"
""",
    )
    return config


@pytest.fixture
def texted(vigie_api):
    """Post an SMS to Clermont-Ferrand's webhook as the gateway would."""

    def post(text: str, message_id: str | None = None, sender: str = RESIDENT, **options):
        body = {"from": sender, "text": text}
        if message_id:
            body["message_id"] = message_id
        headers = options.pop("headers", {"X-Vigie-Secret": CLERMONT_SECRET})
        return vigie_api.client.post(
            "/sms/inbound/clermont-ferrand", json=body, headers=headers, **options
        )

    return post


def _count(runtime, model) -> int:
    with runtime.sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


def _stored(runtime) -> tuple[int, ...]:
    return tuple(
        _count(runtime, model)
        for model in (Ticket, SignalRecord, OutboxMessage, SmsConversation, SmsInboundMessage)
    )


# --- Out ----------------------------------------------------------------------------


def test_a_message_reaches_the_gateway(vigie_api, vigie_runtime, gateway):
    headers = vigie_api.headers("admin")
    ticket = vigie_api.client.post(
        "/api/v1/tickets",
        json={
            "commune": "clermont-ferrand", "category": "voirie", "channel": "phone",
            "description": "Trou dans la chaussée", "address": "12 rue Blatin",
            "answers": {"nature": "trou", "danger": True},
            "reporter": {"phone": "06 12 34 56 78", "notify_by": "sms"},
        },
        headers=headers,
    ).json()
    assert deliver_due(vigie_runtime) == (1, 0)
    (request,) = gateway.requests
    assert request["path"] == "/api/send"
    assert request["headers"]["Content-Type"] == "application/json"
    expected = "Basic " + base64.b64encode(b"clermont:gw-pass").decode()
    assert request["headers"]["Authorization"] == expected
    (sms,) = gateway.sms()
    assert sms == {
        "to": RESIDENT,
        "from": "CLERMONTFD",
        "text": f"Clermont-Ferrand : signalement bien reçu, référence {ticket['reference']}."
        f" Suivi : https://signalement.clermont.example/track/{ticket['reference']}",
    }


def test_field_names_form_body_and_api_key(vigie_runtime, gateway):
    from core.outbox import queue
    from core.signals import Notification

    with vigie_runtime.sessions() as session:
        queue(session, Notification("sms", "0033 6 98 76 54 32", "s", "Réparé ✓", "chamalieres"))
        session.commit()
    assert deliver_due(vigie_runtime) == (1, 0)
    (request,) = gateway.requests
    assert request["path"] == "/v2/sms"
    assert request["headers"]["X-Api-Key"] == "k-123"
    assert "Authorization" not in request["headers"]
    assert gateway.sms() == [
        {
            "type": "text", "destination": "+33698765432", "originator": "CHAMALIERE",
            "message": "Réparé ✓",
        }
    ]


def test_a_gateway_failure_is_retried(vigie_runtime, gateway):
    from core.outbox import queue
    from core.signals import Notification

    gateway.statuses = [500, 503]
    with vigie_runtime.sessions() as session:
        queue(session, Notification("sms", RESIDENT, "s", "Bonjour", "clermont-ferrand"))
        session.commit()
    assert deliver_due(vigie_runtime) == (0, 1)
    with vigie_runtime.sessions() as session:
        waiting = session.scalar(select(OutboxMessage))
        assert (waiting.status, waiting.attempts) == ("pending", 1)
        assert "SMS gateway answered 500" in waiting.last_error
        retry_at = waiting.next_attempt_at
    assert deliver_due(vigie_runtime, now=retry_at + timedelta(seconds=1)) == (0, 1)
    with vigie_runtime.sessions() as session:
        retry_at = session.scalar(select(OutboxMessage)).next_attempt_at
    assert deliver_due(vigie_runtime, now=retry_at + timedelta(seconds=1)) == (1, 0)
    assert len(gateway.requests) == 3
    with vigie_runtime.sessions() as session:
        assert session.scalar(select(OutboxMessage)).status == "sent"


def test_an_unreachable_gateway_is_retried(vigie_runtime, gateway):
    from core.outbox import queue
    from core.signals import Notification

    gateway.stop()
    try:
        with vigie_runtime.sessions() as session:
            queue(session, Notification("sms", RESIDENT, "s", "Bonjour", "clermont-ferrand"))
            session.commit()
        assert deliver_due(vigie_runtime) == (0, 1)
        with vigie_runtime.sessions() as session:
            waiting = session.scalar(select(OutboxMessage))
            assert (waiting.status, waiting.attempts) == ("pending", 1)
            assert "ConnectError" in waiting.last_error
            retry_at = waiting.next_attempt_at
    finally:
        gateway.start()
    assert deliver_due(vigie_runtime, now=retry_at + timedelta(seconds=1)) == (1, 0)
    assert gateway.sms() == [{"to": RESIDENT, "from": "CLERMONTFD", "text": "Bonjour"}]


# --- In: authentication ---------------------------------------------------------------


def test_the_webhook_needs_the_shared_secret(texted, vigie_runtime):
    before = _stored(vigie_runtime)
    missing = texted("Tag au 12 rue Blatin", headers={})
    assert missing.status_code == 401
    wrong = texted("Tag au 12 rue Blatin", headers={"X-Vigie-Secret": "guess"})
    assert wrong.status_code == 403
    assert _stored(vigie_runtime) == before, "nothing stored from a refused call"
    by_query = texted("Tag au 12 rue Blatin", headers={}, params={"secret": CLERMONT_SECRET})
    assert by_query.status_code == 200, by_query.text


def test_the_webhook_checks_the_hmac_signature(vigie_api, vigie_runtime):
    raw = urlencode({"msisdn": "0698765432", "content": "Tag au 3 avenue de Royat", "id": "g-1"})

    def post(signature: str | None):
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if signature is not None:
            headers["X-Signature"] = signature
        return vigie_api.client.post("/sms/inbound/chamalieres", content=raw, headers=headers)

    before = _stored(vigie_runtime)
    assert post(None).status_code == 401
    assert post("sha256=" + "0" * 64).status_code == 403
    other_body = hmac.new(HMAC_KEY.encode(), raw.encode() + b"x", hashlib.sha256).hexdigest()
    assert post(other_body).status_code == 403, "signed another body"
    assert _stored(vigie_runtime) == before
    good = hmac.new(HMAC_KEY.encode(), raw.encode(), hashlib.sha256)
    response = post(f"sha256={good.hexdigest()}")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "created"
    assert post(base64.b64encode(good.digest()).decode()).json() == {"status": "duplicate"}


def test_unknown_commune_and_bad_bodies(vigie_api, texted):
    headers = {"X-Vigie-Secret": CLERMONT_SECRET}
    assert vigie_api.client.post("/sms/inbound/paris", json={}, headers=headers).status_code == 404
    assert vigie_api.client.post(
        "/sms/inbound/royat", json={}, headers=headers
    ).status_code == 404, "royat has no SMS channel"
    no_text = vigie_api.client.post(
        "/sms/inbound/clermont-ferrand", json={"from": RESIDENT}, headers=headers
    )
    assert (no_text.status_code, no_text.json()) == (400, {"error": "missing field: text"})
    assert texted("Bonjour", sender="not a number").status_code == 400
    huge = texted("x" * 20_000)
    assert huge.status_code == 413


# --- In: conversations --------------------------------------------------------------


def test_a_complete_sms_creates_the_ticket_and_the_reply_carries_the_reference(
    texted, vigie_runtime, gateway
):
    response = texted("Tag injurieux sur le mur de l'école au 12 rue Blatin", "m-1")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "created"
    reference = body["reference"]
    with vigie_runtime.sessions() as session:
        ticket = session.scalar(select(Ticket))
        (report,) = ticket.reports
        assert (ticket.reference, ticket.channel, ticket.category) == (
            reference, "sms", "incivilites"
        )
        assert ticket.address == "12 rue Blatin, Clermont-Ferrand"
        assert ticket.answers == {"nature": "tag"}
        assert (report.reporter_phone, report.notify_by) == (RESIDENT, "sms")
        assert "Tag injurieux" in ticket.description
    assert deliver_due(vigie_runtime) == (1, 0), "one reply: the receipt"
    (reply,) = gateway.sms()
    assert reply["to"] == RESIDENT
    assert f"référence {reference}" in reply["text"]


def test_a_missing_address_is_asked_for(texted, vigie_runtime, gateway):
    first = texted("Un vieux matelas sur le trottoir", "m-1")
    assert first.json() == {"status": "asked"}
    assert _count(vigie_runtime, Ticket) == 0
    assert deliver_due(vigie_runtime) == (1, 0)
    (question,) = gateway.sms()
    assert question["to"] == RESIDENT
    assert question["text"] == (
        "Clermont-Ferrand : Où est-ce ? Répondez avec l'adresse (ex. : 12 rue Blatin)."
        " STOP pour annuler."
    )
    second = texted("au 45 avenue Jean Jaurès", "m-2")
    assert second.json()["status"] == "created"
    with vigie_runtime.sessions() as session:
        ticket = session.scalar(select(Ticket))
        assert ticket.category == "encombrants"
        assert ticket.answers == {"type_objet": "matelas"}
        assert ticket.address == "45 avenue Jean Jaurès, Clermont-Ferrand"
        assert ticket.description == "Un vieux matelas sur le trottoir"
    assert deliver_due(vigie_runtime) == (1, 0)
    assert second.json()["reference"] in gateway.sms()[-1]["text"]


def test_the_category_and_its_questions_are_asked_for(texted, vigie_runtime, gateway):
    assert texted("Bonjour, 12 rue Blatin", "m-1").json() == {"status": "asked"}
    assert texted("le lampadaire est éteint", "m-2").json() == {"status": "asked"}
    assert texted("deux", "m-3").json() == {"status": "asked"}
    done = texted("2", "m-4").json()
    assert done["status"] == "created"
    deliver_due(vigie_runtime)
    texts = [sms["text"] for sms in gateway.sms()]
    assert texts[0].startswith("Clermont-Ferrand : Quel est le problème ?")
    assert texts[1] == (
        "Clermont-Ferrand : Nombre de lampadaires concernés ? Répondez par un nombre."
        " STOP pour annuler."
    )
    assert texts[2].startswith("Clermont-Ferrand : Réponse non comprise. Nombre de lampadaires")
    assert done["reference"] in texts[3]
    with vigie_runtime.sessions() as session:
        ticket = session.scalar(select(Ticket))
        assert ticket.category == "eclairage"
        assert ticket.answers == {"nombre_points": 2, "etat": "eteint"}
        assert ticket.description == "Bonjour, 12 rue Blatin / le lampadaire est éteint"


def test_a_choice_is_asked_with_numbers(texted, vigie_runtime, gateway):
    assert texted("Fuite d'eau 8 place de Jaude", "m-1").json() == {"status": "asked"}
    deliver_due(vigie_runtime)
    assert gateway.sms()[0]["text"] == (
        "Clermont-Ferrand : Débit de la fuite ? Répondez par le numéro :"
        " 1 Suintement; 2 Écoulement continu; 3 Jaillissement. STOP pour annuler."
    )
    assert texted("3", "m-2").json()["status"] == "created"
    with vigie_runtime.sessions() as session:
        assert session.scalar(select(Ticket)).answers == {"debit": "jaillissement"}


def test_a_redelivered_message_is_one_ticket(texted, vigie_runtime):
    first = texted("Tag sur la façade, 3 rue Blatin", "gw-42")
    again = texted("Tag sur la façade, 3 rue Blatin", "gw-42")
    assert first.json()["status"] == "created"
    assert again.json() == {"status": "duplicate"}
    assert _count(vigie_runtime, Ticket) == 1
    assert _count(vigie_runtime, OutboxMessage) == 1, "one reply"
    asked = texted("Un matelas", "gw-43")
    assert texted("Un matelas", "gw-43").json() == {"status": "duplicate"}
    assert asked.json() == {"status": "asked"}
    assert _count(vigie_runtime, OutboxMessage) == 2


def test_stop_cancels_the_conversation(texted, vigie_runtime, gateway):
    texted("Un matelas", "m-1")
    assert texted("STOP", "m-2").json() == {"status": "cancelled"}
    assert texted("12 rue Blatin", "m-3").json() == {"status": "asked"}, "a new conversation"
    assert _count(vigie_runtime, Ticket) == 0
    deliver_due(vigie_runtime)
    assert gateway.sms()[1]["text"].startswith("Clermont-Ferrand : Signalement annulé.")


def test_without_resident_messages_the_channel_replies_itself(vigie_api, vigie_runtime, gateway):
    raw = urlencode({"msisdn": "06 98 76 54 32", "content": "Tag 3 avenue de Royat", "id": "c-1"})
    signature = hmac.new(HMAC_KEY.encode(), raw.encode(), hashlib.sha256).hexdigest()
    response = vigie_api.client.post(
        "/sms/inbound/chamalieres", content=raw,
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Signature": signature},
    )
    reference = response.json()["reference"]
    assert deliver_due(vigie_runtime) == (1, 0)
    (reply,) = gateway.sms()
    assert reply["destination"] == "+33698765432"
    assert reply["message"] == (
        f"Chamalières : Signalement enregistré, référence {reference}. Merci !"
    )


def test_each_sender_has_a_rate_limit(vigie_api, vigie_runtime):
    def post(sender: str, n: int):
        raw = urlencode({"msisdn": sender, "content": f"Un matelas n°{n}", "id": f"{sender}-{n}"})
        signature = hmac.new(HMAC_KEY.encode(), raw.encode(), hashlib.sha256).hexdigest()
        return vigie_api.client.post(
            "/sms/inbound/chamalieres", content=raw,
            headers={"Content-Type": "application/x-www-form-urlencoded", "X-Signature": signature},
        )

    assert [post("0611111111", n).status_code for n in range(3)] == [200, 200, 200]
    stored = _stored(vigie_runtime)
    refused = post("0611111111", 3)
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert _stored(vigie_runtime) == stored
    assert post("0622222222", 0).status_code == 200, "another number is not held back"


# --- Reading a text --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("Lampadaire éteint au 12 rue Blatin depuis hier", "12 rue Blatin"),
        ("AU 12 RUE BLATIN", "12 RUE BLATIN"),
        ("dépôt sauvage 3 bis bd Lavoisier", "3 bis bd Lavoisier"),
        ("nid de poule avenue des Paulines, merci", "avenue des Paulines"),
        ("Trou énorme place de Jaude devant la Fnac", "place de Jaude"),
        ("12, allée des Tilleuls", "12 allée des Tilleuls"),
        ("avenue du Parc lampadaire en panne", "avenue du Parc"),
        ("rond-point de la Pardieu feu en panne", "rond-point de la Pardieu"),
        ("il y a un trou sur la route", None),
        ("Fuite d'eau", None),
    ],
)
def test_addresses_are_read(text, address):
    from connectors.sms_text import find_address
    from core.config.loader import load_area
    from core.plugin_manager import get_plugin_manager

    commune = load_area(REPO / "config", get_plugin_manager()).commune("clermont-ferrand")
    assert find_address(text, commune) == address


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("NID DE POULE rue Blatin", "voirie-nid-de-poule"),
        ("les lampadaires sont éteints", "eclairage"),
        ("Fuite d'eau qui jaillit", "eau-fuite"),
        ("Dépot sauvage de pneus", "proprete-depot-sauvage"),
        ("Un vieux matelas sur le trottoir", "encombrants"),
        ("Voiture garée sur le trottoir", "stationnement"),
        ("Bonjour", None),
    ],
)
def test_categories_are_found_by_keywords_without_accents_or_case(text, category):
    from connectors.sms_text import find_category
    from core.config.loader import load_area
    from core.plugin_manager import get_plugin_manager

    commune = load_area(REPO / "config", get_plugin_manager()).commune("clermont-ferrand")
    found = find_category(text, commune)
    assert (found.code if found else None) == category
