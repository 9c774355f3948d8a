"""Plugin resident_messages: what residents are told, in their channel and language.

These tests read the outbox (what is queued with each change); the delivery by
SMTP and by the SMS gateway is tested in tests/connectors/.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from core.db.models import OutboxMessage, SignalRecord, Ticket
from core.settings import OutboxSettings

REPO = Path(__file__).resolve().parents[2]
OUR_SECTIONS = ("plugins.resident_messages", "plugins.email", "plugins.sms")
PUBLIC_URL = "https://signalement.clermont.example"


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


@pytest.fixture
def vigie_settings(vigie_settings):
    # The app's own delivery loop stays idle: these tests look at the queue.
    return vigie_settings.model_copy(update={"outbox": OutboxSettings(poll_seconds=3600)})


@pytest.fixture
def vigie_config_dir(tmp_path: Path) -> Path:
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    (config / "templates" / "fr").mkdir(parents=True)
    (config / "templates" / "fr" / "resolved.email.txt").write_text(
        "C'est réparé ({{ reference }})\nBonne nouvelle : {{ comment }}\n-- {{ signature }}\n",
        encoding="utf-8",
    )
    replace_sections(
        config,
        "clermont-ferrand",
        f"""
[plugins.resident_messages]
public_url = "{PUBLIC_URL}/"
signature = "Ville de Clermont-Ferrand"
""",
    )
    replace_sections(
        config,
        "chamalieres",
        """
[plugins.resident_messages]
templates_dir = "templates"
signature = "Mairie de Chamalières"

[plugins.resident_messages.templates]
"fr/receipt.sms" = "Chamalières a reçu votre signalement {{ reference }}."
""",
    )
    replace_sections(
        config, "royat", '[plugins.resident_messages]\nmessages = ["receipt"]\n'
    )
    return config


@pytest.fixture
def create(vigie_api):
    headers = vigie_api.headers("admin")

    def make(reporter: dict | None, commune: str = "clermont-ferrand", **fields) -> dict:
        body = {
            "commune": commune,
            "category": "voirie",
            "description": "Nid-de-poule devant l'école",
            "address": "12 rue Blatin",
            "channel": "phone",
            "answers": {"nature": "trou", "danger": True},
            **fields,
        }
        if reporter is not None:
            body["reporter"] = reporter
        response = vigie_api.client.post("/api/v1/tickets", json=body, headers=headers)
        assert response.status_code == 201, response.text
        return response.json()

    return make


@pytest.fixture
def act(vigie_api):
    headers = vigie_api.headers("admin")

    def post(ticket: dict, action: str, **body) -> dict:
        response = vigie_api.client.post(
            f"/api/v1/tickets/{ticket['id']}/{action}", json=body, headers=headers
        )
        assert response.status_code == 200, response.text
        return response.json()

    return post


@pytest.fixture
def queued(vigie_runtime):
    def read(ticket: dict | None = None) -> list[OutboxMessage]:
        with vigie_runtime.sessions() as session:
            query = select(OutboxMessage).order_by(OutboxMessage.id)
            if ticket is not None:
                query = query.where(OutboxMessage.ticket_id == ticket["id"])
            return list(session.scalars(query))

    return read


ELODIE = {"name": "Élodie", "email": "elodie@example.org", "notify_by": "email"}


def test_receipt_by_email_with_the_reference_and_a_tracking_link(create, queued):
    ticket = create(ELODIE)
    (receipt,) = queued(ticket)
    assert (receipt.channel, receipt.recipient) == ("email", ELODIE["email"])
    assert receipt.language == "fr"
    assert receipt.subject == f"Signalement {ticket['reference']} bien reçu"
    assert receipt.body.startswith("Bonjour Élodie,")
    assert f"Référence : {ticket['reference']}" in receipt.body
    assert f"{PUBLIC_URL}/track/{ticket['reference']}" in receipt.body
    assert "12 rue Blatin" in receipt.body
    assert "Ville de Clermont-Ferrand" in receipt.body
    assert receipt.status == "pending", "sent after commit, by the outbox"


def test_no_message_for_a_resident_who_did_not_ask(create, queued):
    create({"name": "Paul", "email": "paul@example.org"})  # no notify_by
    create(None)
    assert queued() == []


def test_sms_in_english_to_the_phone(create, queued):
    ticket = create({"phone": "+33 6 12 34 56 78", "notify_by": "sms", "language": "en"})
    (receipt,) = queued(ticket)
    assert (receipt.channel, receipt.recipient) == ("sms", "+33 6 12 34 56 78")
    assert receipt.language == "en"
    assert receipt.body == (
        f"Ville de Clermont-Ferrand: report received, reference {ticket['reference']}."
        f" Follow it: {PUBLIC_URL}/track/{ticket['reference']}"
    )


def test_assigned_once_naming_the_team(create, act, queued):
    ticket = create(ELODIE)
    act(ticket, "assign", team="voirie-nord")
    receipt, assigned = queued(ticket)
    assert assigned.subject == f"Signalement {ticket['reference']} pris en charge"
    assert "Régie voirie Pôle Nord (Montferrand)" in assigned.body
    act(ticket, "status", status="in_progress")
    act(ticket, "assign", team="voirie-centre")  # handed over while worked: no news for residents
    assert len(queued(ticket)) == 2


def test_redirected_when_opened_names_the_outside_body_and_the_reason(create, queued):
    ticket = create(
        ELODIE, category="reseau-electrique", description="Câble à terre",
        answers={"danger": True},
    )
    assert ticket["status"] == "redirected"
    receipt, redirected = queued(ticket)
    assert receipt.subject.endswith("bien reçu")
    assert redirected.subject == f"Signalement {ticket['reference']} transmis à Enedis"
    assert "nous l'avons transmis à Enedis" in redirected.body
    assert "exploité par Enedis (dépannage : 09 72 67 50 63)." in redirected.body


def test_redirected_by_staff(create, act, queued):
    ticket = create({"phone": "0612345678", "notify_by": "sms"})
    act(
        ticket, "status", status="redirected", outside_body="SNCF Réseau",
        comment="Le passage à niveau est entretenu par SNCF Réseau",
    )
    redirected = queued(ticket)[-1]
    assert redirected.body == (
        f"Ville de Clermont-Ferrand : votre signalement {ticket['reference']} a été transmis"
        " à SNCF Réseau, qui en a la charge. Le passage à niveau est entretenu par SNCF Réseau."
    )


def test_resolved_says_what_was_done(create, act, queued):
    ticket = create(ELODIE)
    act(ticket, "status", status="resolved", comment="Trou rebouché à l'enrobé à froid")
    resolved = queued(ticket)[-1]
    assert resolved.subject == f"Signalement {ticket['reference']} résolu"
    assert "Ce qui a été fait : Trou rebouché à l'enrobé à froid." in resolved.body


def test_an_internal_note_is_not_sent(create, act, queued):
    ticket = create(ELODIE)
    act(ticket, "status", status="resolved", comment="Voisin pénible, 3e appel", public=False)
    resolved = queued(ticket)[-1]
    assert resolved.subject.endswith("résolu")
    assert "pénible" not in resolved.body


def test_one_message_per_resident_who_reported_it(create, act, queued, vigie_runtime):
    ticket = create(ELODIE)
    with vigie_runtime.sessions() as session:
        stored = session.get(Ticket, ticket["id"])
        for email, notify_by in [
            ("ELODIE@example.org", "email"),  # the same resident again: told once
            ("marc@example.org", "email"),
            ("nobody@example.org", None),
        ]:
            session.add(
                SignalRecord(
                    kind="report", commune="clermont-ferrand", channel="web", ticket=stored,
                    reporter_email=email, notify_by=notify_by, language="en",
                )
            )
        session.commit()
    act(ticket, "status", status="resolved", comment="Done")
    resolved = [m for m in queued(ticket) if "résolu" in m.subject or "resolved" in m.subject]
    assert [(m.recipient, m.language) for m in resolved] == [
        ("elodie@example.org", "fr"),
        ("marc@example.org", "en"),
    ]
    assert resolved[1].subject == f"Report {ticket['reference']} resolved"


def test_templates_per_commune(create, act, queued):
    ticket = create(
        {"phone": "0612345678", "notify_by": "sms"}, commune="chamalieres",
        description="Trottoir défoncé",
    )
    (receipt,) = queued(ticket)
    assert receipt.body == f"Chamalières a reçu votre signalement {ticket['reference']}."
    other = create(ELODIE, commune="chamalieres")
    (receipt,) = queued(other)
    assert "Mairie de Chamalières" in receipt.body, "the shipped template, with the signature"
    assert "/track/" not in receipt.body, "no public_url: no tracking link"
    act(other, "status", status="resolved", comment="Trottoir refait")
    resolved = queued(other)[-1]
    assert resolved.subject == f"C'est réparé ({other['reference']})"
    assert resolved.body == "Bonne nouvelle : Trottoir refait\n-- Mairie de Chamalières"


def test_messages_can_be_turned_off(create, act, queued):
    ticket = create(ELODIE, commune="royat")  # royat sends receipts only
    act(ticket, "status", status="resolved", comment="Fait")
    (receipt,) = queued(ticket)
    assert receipt.subject.endswith("bien reçu")


def test_config_check_names_a_broken_template(vigie_config_dir):
    """Checked at start-up and by `vigie config check`, naming file, plugin and template."""
    from core.config.loader import check_config
    from core.plugin_manager import get_plugin_manager

    replace_sections(
        vigie_config_dir,
        "royat",
        """[plugins.resident_messages.templates]
"fr/receipt.sms" = "Reçu {{ reference "
"de/receipt.sms" = "Danke"
""",
    )
    replace_sections(
        vigie_config_dir,
        "beaumont",
        '[plugins.resident_messages.templates]\n"fr/merci.sms" = "x"\n',
    )
    _area, problems = check_config(vigie_config_dir, get_plugin_manager())
    text = "\n".join(str(p) for p in problems)
    assert 'communes/royat.toml: plugins.resident_messages: templates."fr/receipt.sms": ' in text
    assert 'royat does not speak "de"' in text
    assert "communes/beaumont.toml: plugins.resident_messages.templates" in text
    assert "name it <language>/<message>.<channel>" in text


def test_a_further_report_is_told_which_ticket_it_joined(create, queued, vigie_runtime):
    from core.matching import attach_report
    from core.signals import Report, Reporter

    ticket = create(ELODIE)

    def attach(reporter: Reporter) -> None:
        report = Report(
            commune="clermont-ferrand", category="voirie", description="Toujours ce trou",
            channel="web", reporter=reporter, answers={"nature": "trou", "danger": False},
        )
        with vigie_runtime.sessions() as session:
            attach_report(
                vigie_runtime, session, session.get(Ticket, ticket["id"]), report, "staff:test"
            )
            session.commit()

    attach(Reporter(email="marc@example.org", notify_by="email", language="en"))
    receipt, attached = queued(ticket)
    assert (receipt.recipient, attached.recipient) == ("elodie@example.org", "marc@example.org")
    assert attached.subject == f"Your report joins case {ticket['reference']}"
    assert f"{PUBLIC_URL}/track/{ticket['reference']}" in attached.body
    attach(Reporter())  # anonymous: nobody to tell, and Élodie is not told twice
    assert len(queued(ticket)) == 2


def test_an_english_receipt_names_the_category_in_english(create, queued, vigie_runtime):
    voirie = vigie_runtime.commune("clermont-ferrand").category("voirie")
    english = voirie.in_language("en").name
    assert english != voirie.name, "the example config gives voirie its English name"
    ticket = create({**ELODIE, "language": "en"})
    (receipt,) = queued(ticket)
    assert receipt.language == "en"
    assert f"Problem: {english}" in receipt.body
    (french,) = queued(create(ELODIE))
    assert voirie.name in french.body
