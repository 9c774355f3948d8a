"""Same problem, one ticket: reports offered the open ticket nearby or on the same
asset, a further report joining it, and staff merging two tickets."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core import hookimpl
from core.db.models import SignalRecord, Ticket
from core.db.sensor_models import Device
from core.errors import Conflict, InvalidInput
from core.history import history_of
from core.intake import accept_signal
from core.matching import (
    attach_report,
    bounding_box,
    distance_m,
    merge_tickets,
    similar_open_tickets,
)
from core.signals import Alert, Location, Report, Reporter
from core.ticket_actions import change_status, mark_duplicate
from core.workflow import IllegalTransition

CLF = "clermont-ferrand"
# Place de Jaude, and points a known distance north of it (1e-4 degree of latitude ≈ 11.1 m).
JAUDE = (45.7772, 3.0830)
CIRCUIT = "ARM-CLF-112/C2"
# Lamps of circuit C2 of cabinet ARM-CLF-112, rue Blatin (config/devices/clermont-ferrand.csv).
LAMPS = [
    ("SL-CLF-04401", 45.77162, 3.08028),
    ("SL-CLF-04405", 45.77330, 3.08100),
    ("SL-CLF-04410", 45.77540, 3.08190),
]
FIRST = Reporter(name="Alice Premier", email="alice@example.org", notify_by="email")
SECOND = Reporter(name="Bruno Second", phone="06 11 22 33 44", notify_by="sms", language="en")


class Recorder:
    """Records signal_attached calls (made after commit only)."""

    name = "recorder"

    def __init__(self) -> None:
        self.attached: list[tuple] = []

    @hookimpl
    def signal_attached(self, ticket, signal, commune):
        self.attached.append((ticket, signal, commune.slug))


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def vigie_plugins(recorder):
    return (recorder,)


@pytest.fixture
def vigie_config_dir(tmp_path: Path) -> Path:
    """The example area, with Clermont-Ferrand enabling the recorder."""
    config = tmp_path / "config"
    shutil.copytree(Path(__file__).resolve().parents[2] / "config", config)
    with (config / "communes" / "clermont-ferrand.toml").open("a", encoding="utf-8") as file:
        file.write("\n[plugins.recorder]\n")
    return config


def north_of(point: tuple[float, float], metres: float) -> tuple[float, float]:
    return point[0] + metres / 111_195.0, point[1]


def report(
    category: str = "proprete",
    point: tuple[float, float] | None = JAUDE,
    reporter: Reporter = FIRST,
    commune: str = CLF,
    key: str | None = None,
    **extra,
) -> Report:
    answers = {"nature": "detritus"} if category == "proprete" else {}
    if category == "eclairage":
        answers = {"nombre_points": 1, "etat": "eteint"}
    return Report(
        commune=commune,
        category=category,
        description=extra.pop("description", "Papiers et canettes sur le trottoir"),
        channel=extra.pop("channel", "web"),
        location=Location(*point, "place de Jaude") if point else Location(address="Jaude"),
        reporter=reporter,
        answers=extra.pop("answers", answers),
        idempotency_key=key,
    )


def store(runtime, signal) -> Ticket:
    with runtime.sessions() as session:
        result = accept_signal(runtime, session, signal, "test")
        session.commit()
        return result.ticket


def offers(runtime, signal: Report, **kwargs) -> list[tuple[str, float | None, bool]]:
    commune = runtime.commune(signal.commune)
    with runtime.sessions() as session:
        found = similar_open_tickets(
            session, commune, signal.category, signal.location, **kwargs
        )
        return [
            (s.ticket.reference, s.distance_m and round(s.distance_m), s.same_asset) for s in found
        ]


def lamp_alert(device_id: str, latitude: float, longitude: float) -> Alert:
    return Alert(
        device_id=device_id,
        condition="lamp_failure",
        observed_at=datetime.now(UTC),
        commune=CLF,
        location=Location(latitude, longitude),
        asset=CIRCUIT,
        device_kind="streetlight",
        connector="lighting",
    )


def register_lamps(runtime) -> None:
    with runtime.sessions() as session:
        for device_id, latitude, longitude in LAMPS:
            session.add(
                Device(
                    device_id=device_id, kind="streetlight", commune=CLF,
                    latitude=latitude, longitude=longitude, asset=CIRCUIT,
                )
            )  # fmt: skip
        session.commit()


# --- Distances ------------------------------------------------------------------------


def test_haversine_distances():
    assert distance_m(*JAUDE, *JAUDE) == 0
    assert distance_m(*JAUDE, *north_of(JAUDE, 30)) == pytest.approx(30, abs=0.1)
    # Clermont-Ferrand to Paris (Notre-Dame): about 347 km as the crow flies.
    assert distance_m(*JAUDE, 48.8530, 2.3499) == pytest.approx(347_000, rel=0.01)


def test_the_bounding_box_holds_the_whole_circle():
    min_lat, max_lat, min_lon, max_lon = bounding_box(*JAUDE, 50)
    for bearing_point in [
        north_of(JAUDE, 50), north_of(JAUDE, -50),
        (JAUDE[0], JAUDE[1] + 50 / (111_195.0 * 0.6979)),  # cos(45.777°)
        (JAUDE[0], JAUDE[1] - 50 / (111_195.0 * 0.6979)),
    ]:  # fmt: skip
        assert min_lat <= bearing_point[0] <= max_lat
        assert min_lon <= bearing_point[1] <= max_lon


# --- Offering the open ticket -----------------------------------------------------------


def test_a_second_resident_near_the_first_report_is_offered_its_ticket(vigie_runtime):
    first = store(vigie_runtime, report())
    second = report(point=north_of(JAUDE, 30), reporter=SECOND)
    assert offers(vigie_runtime, second) == [(first.reference, 30, False)]


def test_farther_than_the_commune_distance_other_category_or_commune_is_not_offered(
    vigie_runtime,
):
    assert vigie_runtime.commune(CLF).matching_radius("proprete") == 50
    store(vigie_runtime, report())
    assert offers(vigie_runtime, report(point=north_of(JAUDE, 60))) == []
    assert offers(vigie_runtime, report(category="voirie", answers={"nature": "trottoir"})) == []
    # The same spot seen from Chamalières' side of the boundary is another commune's ticket.
    assert offers(vigie_runtime, report(commune="chamalieres")) == []
    # A wider distance, asked for, finds it.
    assert len(offers(vigie_runtime, report(point=north_of(JAUDE, 60)), radius_m=80)) == 1


def test_a_category_may_set_its_own_distance(vigie_runtime):
    commune = vigie_runtime.commune(CLF)
    wide = commune.category("proprete").model_copy(update={"matching_radius_m": 200})
    categories = tuple(wide if c.code == "proprete" else c for c in commune.categories)
    changed = commune.model_copy(update={"categories": categories})
    assert changed.matching_radius("proprete") == 200
    assert changed.matching_radius("voirie") == 50


def test_only_open_tickets_are_offered_nearest_first(vigie_runtime):
    far = store(vigie_runtime, report(point=north_of(JAUDE, 40)))
    near = store(vigie_runtime, report(point=north_of(JAUDE, 10)))
    done = store(vigie_runtime, report())
    with vigie_runtime.sessions() as session:
        ticket = session.get(Ticket, done.id)
        change_status(vigie_runtime, session, ticket, "resolved", "test")
        session.commit()
    assert [reference for reference, *_ in offers(vigie_runtime, report())] == [
        near.reference, far.reference,
    ]  # fmt: skip
    assert len(offers(vigie_runtime, report(), limit=1)) == 1


def test_a_sensor_ticket_on_the_circuit_is_offered_to_a_resident_under_a_dead_lamp(
    vigie_runtime,
):
    register_lamps(vigie_runtime)
    # The controller of the first lamp of the circuit reports it dead: a sensor ticket.
    sensor = store(vigie_runtime, lamp_alert(*LAMPS[0]))
    assert (sensor.channel, sensor.asset) == ("sensor", CIRCUIT)
    # A resident standing near the last lamp, 450 m up the street, reports it dark.
    resident = report(
        category="eclairage", point=north_of(LAMPS[2][1:], 10), reporter=SECOND,
        description="Le lampadaire devant chez moi est éteint",
    )  # fmt: skip
    ((reference, distance, same_asset),) = offers(vigie_runtime, resident)
    assert reference == sensor.reference and same_asset
    assert distance == pytest.approx(450, abs=10)
    # A pothole under the same lamp is not the circuit's problem.
    assert offers(vigie_runtime, report(category="voirie", point=LAMPS[2][1:])) == []
    # Staff naming the asset find it whatever the category and the point.
    named = report(category="voirie", point=None)
    assert [r for r, *_ in offers(vigie_runtime, named, asset=CIRCUIT)] == [sensor.reference]


def test_an_open_incident_is_offered_instead_of_the_ticket_it_gathered(vigie_runtime):
    lamp = store(vigie_runtime, report(category="eclairage"))
    incident = store(vigie_runtime, report(category="eclairage", point=north_of(JAUDE, 500)))
    with vigie_runtime.sessions() as session:
        session.get(Ticket, incident.id).is_incident = True
        session.get(Ticket, lamp.id).incident_id = incident.id
        session.commit()
    assert [r for r, *_ in offers(vigie_runtime, report(category="eclairage"))] == [
        incident.reference
    ]


# --- Following it ------------------------------------------------------------------------


def test_a_report_that_follows_the_ticket_joins_it_and_the_history_names_only_the_channel(
    vigie_runtime, recorder
):
    first = store(vigie_runtime, report())
    second = report(point=north_of(JAUDE, 30), reporter=SECOND, channel="phone", key="k-2")
    with vigie_runtime.sessions() as session:
        ticket = session.get(Ticket, first.id)
        result = attach_report(vigie_runtime, session, ticket, second, "agent:standard")
        assert not recorder.attached  # not before the commit
        session.commit()
    assert result.ticket.id == first.id and not result.created and not result.repeated
    with vigie_runtime.sessions() as session:
        ticket = session.get(Ticket, first.id)
        assert [r.reporter_name for r in ticket.reports] == ["Alice Premier", "Bruno Second"]
        assert [r.channel for r in ticket.reports] == ["web", "phone"]
        events = history_of(session, ticket.id)
        attached = [e for e in events if e.action == "report_attached"]
        assert len(attached) == 1
        event = attached[0]
        assert event.public and event.actor == "agent:standard"
        assert event.changes == {"channel": "phone", "reports": [1, 2]}
        shown = repr([(e.changes, e.comment) for e in events])
        for personal in ("Bruno", "Alice", "06 11", "example.org", "trottoir"):
            assert personal not in shown
    ((snapshot, signal, slug),) = recorder.attached
    assert (snapshot.id, signal.reporter.name, slug) == (first.id, "Bruno Second", CLF)
    # Both residents will be told when it is fixed.
    assert [c.name for c in snapshot.reporters] == ["Alice Premier", "Bruno Second"]


def test_the_same_report_sent_twice_joins_once(vigie_runtime):
    first = store(vigie_runtime, report())
    for _ in range(2):
        with vigie_runtime.sessions() as session:
            result = attach_report(
                vigie_runtime, session, session.get(Ticket, first.id),
                report(reporter=SECOND, key="retried"), "test",
            )  # fmt: skip
            session.commit()
    assert result.repeated
    with vigie_runtime.sessions() as session:
        assert len(session.get(Ticket, first.id).reports) == 2


def test_a_following_report_is_checked_like_a_new_one_and_stores_nothing_when_wrong(
    vigie_runtime,
):
    first = store(vigie_runtime, report())
    with vigie_runtime.sessions() as session:
        ticket = session.get(Ticket, first.id)
        with pytest.raises(InvalidInput) as refused:
            attach_report(vigie_runtime, session, ticket, report(answers={}), "test")
        assert "answers.nature" in str(refused.value)
        session.rollback()
        count = session.scalar(select(func.count()).select_from(SignalRecord))
    assert count == 1


def test_a_closed_ticket_takes_no_report_and_a_duplicate_passes_it_to_its_original(
    vigie_runtime,
):
    original = store(vigie_runtime, report())
    copy = store(vigie_runtime, report())
    with vigie_runtime.sessions() as session:
        mark_duplicate(
            vigie_runtime, session, session.get(Ticket, copy.id),
            session.get(Ticket, original.id), "test",
        )  # fmt: skip
        session.commit()
    with vigie_runtime.sessions() as session:
        result = attach_report(
            vigie_runtime, session, session.get(Ticket, copy.id), report(reporter=SECOND), "test"
        )
        session.commit()
    assert result.ticket.id == original.id
    with vigie_runtime.sessions() as session:
        ticket = session.get(Ticket, original.id)
        change_status(vigie_runtime, session, ticket, "resolved", "test")
        session.commit()
        with pytest.raises(Conflict, match="resolved"):
            attach_report(vigie_runtime, session, ticket, report(), "test")


# --- Merging -------------------------------------------------------------------------------


def test_merge_moves_the_reports_and_both_histories_say_so(vigie_runtime, recorder):
    target = store(vigie_runtime, report())
    source = store(vigie_runtime, report(point=north_of(JAUDE, 200), reporter=SECOND))
    with vigie_runtime.sessions() as session:
        carried_on = merge_tickets(
            vigie_runtime, session, session.get(Ticket, source.id),
            session.get(Ticket, target.id), "supervisor:chef", "même dépôt",
        )  # fmt: skip
        session.commit()
    assert carried_on.id == target.id
    with vigie_runtime.sessions() as session:
        kept, merged = session.get(Ticket, target.id), session.get(Ticket, source.id)
        assert [r.reporter_name for r in kept.reports] == ["Alice Premier", "Bruno Second"]
        assert merged.reports == [] and merged.status == "duplicate"
        assert merged.duplicate_of_id == kept.id
        kept_events = {e.action: e for e in history_of(session, kept.id)}
        merged_events = {e.action: e for e in history_of(session, merged.id)}
    assert kept_events["merged"].changes["merged_from"] == [None, source.reference]
    assert merged_events["merged"].changes["merged_into"] == [None, target.reference]
    assert kept_events["merged"].changes["signals"] == 1
    # Residents see it through the public "linked" events, not the staff details.
    assert not kept_events["merged"].public
    assert kept_events["linked"].public and merged_events["linked"].public
    assert [signal.reporter.name for _, signal, _ in recorder.attached] == ["Bruno Second"]


def test_merge_refuses_itself_a_final_ticket_and_a_closed_target(vigie_runtime):
    a = store(vigie_runtime, report())
    b = store(vigie_runtime, report())
    with vigie_runtime.sessions() as session:
        ta, tb = session.get(Ticket, a.id), session.get(Ticket, b.id)
        with pytest.raises(InvalidInput, match="itself"):
            merge_tickets(vigie_runtime, session, ta, ta, "test")
        change_status(vigie_runtime, session, tb, "resolved", "test")
        with pytest.raises(Conflict, match="open ticket"):
            merge_tickets(vigie_runtime, session, ta, tb, "test")
        change_status(vigie_runtime, session, tb, "closed", "test")
        with pytest.raises(IllegalTransition):
            merge_tickets(vigie_runtime, session, tb, ta, "test")
        session.rollback()
    with vigie_runtime.sessions() as session:
        assert len(session.get(Ticket, a.id).reports) == 1
