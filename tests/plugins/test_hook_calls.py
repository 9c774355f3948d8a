"""Every hook spec is called by the host, only for communes that enable the plugin,
and a plugin that raises never loses the ticket."""

from __future__ import annotations

import logging
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest
from fastapi import APIRouter

from core import hookimpl, hookspecs
from core.config import Category
from core.connectors import SensorConnector
from core.db.models import OutboxMessage, Ticket
from core.intake import accept_signal
from core.outbox import deliver_due, queue
from core.signals import Alert, Notification, Reading, RoutingDecision, TicketDraft
from core.telemetry import store_readings

REPO = Path(__file__).resolve().parents[2]
TICKET = {
    "commune": "clermont-ferrand",
    "category": "voirie",
    "description": "Nid-de-poule devant l'école",
    "address": "12 rue Blatin, Clermont-Ferrand",
    "channel": "phone",
    "answers": {"nature": "trou", "danger": True},
}


class Recorder:
    """A plugin implementing every hook and writing down each call."""

    name = "recorder"

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.raising: set[str] = set()
        self.config_problems: list[str] = []

    def _seen(self, hook: str, **kwargs) -> None:
        self.calls.append((hook, kwargs))
        if hook in self.raising:
            raise RuntimeError(f"recorder broke in {hook}")

    def called(self, hook: str) -> list[dict]:
        return [kwargs for name, kwargs in self.calls if name == hook]

    @hookimpl
    def register_categories(self, commune):
        self._seen("register_categories", commune=commune)
        return [Category(code="recorder-test", name="Catégorie du plugin", group="Autre")]

    @hookimpl
    def check_commune(self, commune):
        self._seen("check_commune", commune=commune)
        return self.config_problems

    @hookimpl
    def register_connectors(self):
        self._seen("register_connectors")

        class Thermometer(SensorConnector):
            name = "thermometer"
            device_kind = "thermometer"

        return [Thermometer()]

    @hookimpl
    def register_routes(self, settings):
        self._seen("register_routes", settings=settings)
        router = APIRouter(prefix="/api/v1/recorder")

        @router.get("/ping")
        def ping() -> dict:
            return {"pong": True}

        return [router]

    @hookimpl
    def register_commands(self, cli):
        self._seen("register_commands", cli=cli)

        @cli.command("recorder-hello")
        def hello() -> None:
            click.echo("hello from recorder")

    @hookimpl
    def draft_ticket(self, signal, commune):
        self._seen("draft_ticket", signal=signal, commune=commune)
        if isinstance(signal, Alert) and signal.device_kind == "thermometer":
            return TicketDraft(
                commune=commune.slug, category="autre", description=f"Gel: {signal.device_id}",
                channel="sensor", priority="high", asset=signal.asset,
            )
        return None

    @hookimpl
    def route_ticket(self, ticket, commune):
        self._seen("route_ticket", ticket=ticket, commune=commune)
        if ticket.category == "autre" and ticket.channel == "sensor":
            return RoutingDecision(outside_body="Enedis", reason="réseau électrique")
        return None

    @hookimpl
    def compute_due_date(self, ticket, commune):
        self._seen("compute_due_date", ticket=ticket, commune=commune)
        return datetime(2030, 1, 1, tzinfo=UTC)

    @hookimpl
    def ticket_created(self, ticket, commune):
        self._seen("ticket_created", ticket=ticket, commune=commune)

    @hookimpl
    def ticket_status_changed(self, ticket, old_status, new_status, event, commune):
        self._seen(
            "ticket_status_changed", ticket=ticket, old_status=old_status,
            new_status=new_status, event=event, commune=commune,
        )

    @hookimpl
    def signal_attached(self, ticket, signal, commune):
        self._seen("signal_attached", ticket=ticket, signal=signal, commune=commune)

    @hookimpl
    def compose_notifications(self, ticket, event, commune):
        self._seen("compose_notifications", ticket=ticket, event=event, commune=commune)
        if event.action != "created":
            return None
        return [
            Notification(
                channel="pigeon", recipient=contact.email, subject=f"Reçu {ticket.reference}",
                body="Merci", commune=commune.slug,
            )
            for contact in ticket.reporters
            if contact.email
        ]

    @hookimpl
    def send_notification(self, notification, commune):
        self._seen("send_notification", notification=notification, commune=commune)
        return True if notification.channel == "pigeon" else None

    @hookimpl
    def store_telemetry(self, readings, commune, settings):
        self._seen("store_telemetry", readings=readings, commune=commune)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def vigie_plugins(recorder):
    return (recorder,)


@pytest.fixture
def vigie_config_dir(tmp_path: Path) -> Path:
    """The example area, with clermont-ferrand (only) enabling the recorder."""
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    with (config / "communes" / "clermont-ferrand.toml").open("a") as file:
        file.write("\n[plugins.recorder]\n")
    return config


def _alert(device_id: str = "TH-1", commune: str = "clermont-ferrand") -> Alert:
    return Alert(
        device_id=device_id, condition="frost", observed_at=datetime.now(UTC),
        commune=commune, device_kind="thermometer", asset="ARM-1",
    )


def test_hook_specs_are_documented():
    for name in hookspecs.__dict__:
        spec = getattr(hookspecs, name)
        if not callable(spec) or not hasattr(spec, "vigie_spec"):
            continue
        doc = spec.__doc__ or ""
        assert "Called" in doc, f"{name}: say when it is called"
        firstresult = spec.vigie_spec.get("firstresult")
        assert ("firstresult" in doc) == bool(firstresult), f"{name}: say whether it is firstresult"
        assert firstresult or "Collected" in doc, f"{name}: say that results are collected"


def test_every_hook_spec_has_a_test_here():
    source = Path(__file__).read_text()
    specs = [n for n in dir(hookspecs) if hasattr(getattr(hookspecs, n), "vigie_spec")]
    assert len(specs) >= 12
    for name in specs:
        assert f"def test_{name}" in source, f"hook {name} has no test_{name}"


def test_register_categories(vigie_api):
    communes = vigie_api.client.get("/api/v1/communes", headers=vigie_api.headers()).json()
    codes = {c["slug"]: {cat["code"] for cat in c["categories"]} for c in communes}
    assert "recorder-test" in codes["clermont-ferrand"]
    assert "recorder-test" not in codes["chamalieres"], "a commune that does not enable it"


def test_check_commune(recorder, vigie_config_dir):
    from core.config.loader import check_config
    from core.plugin_manager import get_plugin_manager

    pm = get_plugin_manager(extra_plugins=(recorder,))
    assert check_config(vigie_config_dir, pm)[1] == []
    assert [c["commune"].slug for c in recorder.called("check_commune")] == ["clermont-ferrand"]
    recorder.config_problems = ["threshold must be set for a commune with sensors"]
    area, problems = check_config(vigie_config_dir, pm)
    assert area is None
    assert [str(p) for p in problems] == [
        "communes/clermont-ferrand.toml: plugins.recorder: threshold must be set for a commune with sensors"
    ]


def test_register_connectors(vigie_runtime):
    assert "thermometer" in vigie_runtime.connectors


def test_register_routes(vigie_api):
    assert vigie_api.client.get("/api/v1/recorder/ping").json() == {"pong": True}


def test_register_commands(recorder, vigie_settings, monkeypatch, capsys):
    from core import cli as cli_module
    from core.plugin_manager import get_plugin_manager

    monkeypatch.setenv("VIGIE_DATABASE_URL", vigie_settings.database_url)
    monkeypatch.setenv("VIGIE_CONFIG_DIR", str(vigie_settings.config_dir))
    monkeypatch.setattr(
        cli_module, "get_plugin_manager",
        lambda settings: get_plugin_manager(settings, extra_plugins=(recorder,)),
    )
    monkeypatch.setattr(cli_module.cli, "commands", dict(cli_module.cli.commands))
    with pytest.raises(SystemExit) as exit_info:
        cli_module.main(["recorder-hello"])
    assert exit_info.value.code == 0
    assert "hello from recorder" in capsys.readouterr().out
    assert recorder.called("register_commands")


def test_draft_ticket(vigie_runtime, recorder):
    with vigie_runtime.sessions() as session:
        result = accept_signal(vigie_runtime, session, _alert(), "sensor:test")
        session.commit()
    assert result.created
    assert result.ticket.description == "Gel: TH-1"
    assert result.ticket.channel == "sensor"
    assert result.ticket.device_ids == ("TH-1",)
    assert recorder.called("draft_ticket")


def test_draft_ticket_not_asked_for_a_commune_without_the_plugin(vigie_runtime, recorder):
    with vigie_runtime.sessions() as session:
        result = accept_signal(vigie_runtime, session, _alert(commune="chamalieres"), "sensor:test")
        session.commit()
        stored = session.query(Ticket).count()
    assert result.ticket is None, "no plugin of chamalieres drafts thermometer alerts"
    assert result.signal.id is not None, "the alert is kept all the same"
    assert stored == 0
    assert not recorder.called("draft_ticket")


def test_route_ticket(vigie_runtime):
    with vigie_runtime.sessions() as session:
        ticket = accept_signal(vigie_runtime, session, _alert(), "sensor:test").ticket
        session.commit()
    assert ticket.status == "redirected"
    assert ticket.outside_body == "Enedis"


def test_compute_due_date(vigie_api, recorder):
    body = vigie_api.client.post("/api/v1/tickets", json=TICKET, headers=vigie_api.headers()).json()
    assert body["due_at"].startswith("2030-01-01")
    assert any(e["action"] == "due_date_set" and e["actor"] == "plugin:recorder" for e in body["history"])


def test_ticket_created(vigie_api, recorder):
    response = vigie_api.client.post("/api/v1/tickets", json=TICKET, headers=vigie_api.headers())
    calls = recorder.called("ticket_created")
    assert len(calls) == 1
    assert calls[0]["ticket"].reference == response.json()["reference"]
    assert calls[0]["commune"].slug == "clermont-ferrand"


def test_ticket_created_is_not_called_when_the_transaction_rolls_back(vigie_runtime, recorder):
    with vigie_runtime.sessions() as session:
        accept_signal(vigie_runtime, session, _alert(), "sensor:test")
        session.rollback()
    assert not recorder.called("ticket_created")
    with vigie_runtime.sessions() as session:
        session.commit()  # a later commit must not fire the dropped events
    assert not recorder.called("ticket_created")


def test_ticket_status_changed(vigie_api, recorder):
    headers = vigie_api.headers("supervisor")
    ticket = vigie_api.client.post("/api/v1/tickets", json=TICKET, headers=headers).json()
    vigie_api.client.post(
        f"/api/v1/tickets/{ticket['id']}/status", json={"status": "acknowledged", "comment": "vu"},
        headers=headers,
    )
    (call,) = recorder.called("ticket_status_changed")
    assert (call["old_status"], call["new_status"]) == ("new", "acknowledged")
    assert call["event"].comment == "vu"
    assert call["event"].actor == "supervisor:test-supervisor"
    assert call["ticket"].status == "acknowledged"


def test_signal_attached(vigie_runtime, recorder):
    with vigie_runtime.sessions() as session:
        first = accept_signal(vigie_runtime, session, _alert(), "sensor:test")
        session.commit()
    # Redirected tickets are closed to new signals: reopen the path for this test.
    recorder.route_ticket = None
    with vigie_runtime.sessions() as session:
        session.get(Ticket, first.ticket.id).status = "new"
        session.commit()
    with vigie_runtime.sessions() as session:
        again = accept_signal(vigie_runtime, session, _alert(), "sensor:test")
        session.commit()
    assert again.ticket.id == first.ticket.id
    assert not again.created
    assert again.signal.occurrences == 2
    (call,) = recorder.called("signal_attached")
    assert call["ticket"].reference == first.ticket.reference


def test_compose_notifications(vigie_api, recorder):
    body = {**TICKET, "reporter": {"email": "habitant@example.org", "notify_by": "email"}}
    ticket = vigie_api.client.post("/api/v1/tickets", json=body, headers=vigie_api.headers()).json()
    calls = recorder.called("compose_notifications")
    assert calls[0]["event"].action == "created"
    assert calls[0]["ticket"].reporters[0].email == "habitant@example.org", "the reporter is known"
    assert calls[0]["commune"].slug == "clermont-ferrand"
    with vigie_api.runtime.sessions() as session:
        (message,) = session.query(OutboxMessage).filter_by(channel="pigeon").all()
    assert (message.ticket_id, message.recipient) == (ticket["id"], "habitant@example.org")
    assert message.subject == f"Reçu {ticket['reference']}"


def test_compose_notifications_queues_nothing_when_the_change_rolls_back(vigie_runtime, recorder):
    from core.signals import Report, Reporter

    report = Report(
        commune="clermont-ferrand", category="autre", description="Question", channel="phone",
        answers={"precision": "Horaires"},
        reporter=Reporter(email="a@example.org", notify_by="email"),
    )
    with vigie_runtime.sessions() as session:
        accept_signal(vigie_runtime, session, report, "staff:test")
        assert session.query(OutboxMessage).filter_by(channel="pigeon").count() == 1, (
            "queued in the ticket's transaction"
        )
        session.rollback()
    with vigie_runtime.sessions() as session:
        assert session.query(OutboxMessage).count() == 0
    assert recorder.called("compose_notifications")


def test_send_notification(vigie_runtime, recorder):
    message = Notification(
        channel="pigeon", recipient="toit de la mairie", subject="Reçu", body="Merci",
        commune="clermont-ferrand",
    )
    with vigie_runtime.sessions() as session:
        queue(session, message)
        session.commit()
    assert deliver_due(vigie_runtime) == (1, 0)
    (call,) = recorder.called("send_notification")
    assert call["notification"].recipient == "toit de la mairie"
    with vigie_runtime.sessions() as session:
        assert session.query(OutboxMessage).one().status == "sent"


def test_send_notification_failure_is_retried_later_not_lost(vigie_runtime, recorder):
    recorder.raising.add("send_notification")
    message = Notification(
        channel="pigeon", recipient="x", subject="s", body="b", commune="clermont-ferrand"
    )
    with vigie_runtime.sessions() as session:
        queue(session, message)
        session.commit()
    assert deliver_due(vigie_runtime) == (0, 1)
    with vigie_runtime.sessions() as session:
        stored = session.query(OutboxMessage).one()
        assert stored.status == "pending"
        assert stored.attempts == 1
        assert "recorder broke" in stored.last_error
        retry_at = stored.next_attempt_at
    assert retry_at > datetime.now(UTC)
    recorder.raising.clear()
    assert deliver_due(vigie_runtime) == (0, 0), "not before its retry time"
    assert deliver_due(vigie_runtime, now=retry_at + timedelta(seconds=1)) == (1, 0)


def test_store_telemetry(vigie_runtime, recorder):
    readings = [
        Reading("TH-1", "thermometer", datetime.now(UTC), {"celsius": -3.5}, commune="clermont-ferrand"),
        Reading("TH-2", "thermometer", datetime.now(UTC), {"celsius": 1.0}, commune="chamalieres"),
    ]
    assert store_readings(vigie_runtime, readings) == 2
    (call,) = recorder.called("store_telemetry")
    assert [r.device_id for r in call["readings"]] == ["TH-1"], "chamalieres does not enable it"


@pytest.mark.parametrize(
    "hook",
    [
        "draft_ticket", "route_ticket", "compute_due_date", "ticket_created", "register_categories",
        "compose_notifications",
    ],
)
def test_a_raising_plugin_never_loses_the_ticket(vigie_settings, recorder, hook, caplog):
    from core.api.app import create_app
    from core.plugin_manager import get_plugin_manager
    from core.runtime import open_runtime

    recorder.raising.add(hook)
    runtime = open_runtime(vigie_settings, get_plugin_manager(vigie_settings, extra_plugins=(recorder,)))
    from fastapi.testclient import TestClient

    from core.testing import VigieApi

    with caplog.at_level(logging.ERROR), TestClient(create_app(runtime=runtime)) as client:
        api = VigieApi(client, runtime)
        headers = api.headers()
        first = client.post("/api/v1/tickets", json=TICKET, headers=headers)
        second = client.post("/api/v1/tickets", json=TICKET, headers=headers)
    assert first.status_code == 201, first.text
    assert second.status_code == 201, "the service keeps running"
    with runtime.sessions() as session:
        assert session.get(Ticket, first.json()["id"]) is not None
    assert f'plugin "recorder" failed in {hook}' in caplog.text
    runtime.close()


def test_a_misspelled_hook_fails_loudly():
    from core.plugin_manager import PluginLoadError, get_plugin_manager

    class Typo:
        name = "typo"

        @hookimpl
        def ticket_create(self, ticket):  # should be ticket_created
            pass

    with pytest.raises(PluginLoadError, match='Error loading plugin "typo"'):
        get_plugin_manager(extra_plugins=(Typo(),))
