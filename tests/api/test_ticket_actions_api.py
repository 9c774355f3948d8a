"""What staff do to a ticket through the API: status, comments, assignment, priority,
duplicates; and the history GET /api/v1/tickets/{id} shows for all of it."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from core.workflow import TRANSITIONS, Status

TICKETS = "/api/v1/tickets"
WITH_PATH = ["new", "acknowledged", "assigned", "in_progress", "resolved", "reopened"]


def get(vigie_api, headers, key) -> dict:
    response = vigie_api.client.get(f"{TICKETS}/{key}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def action(vigie_api, headers, key, name: str, body: dict):
    return vigie_api.client.post(f"{TICKETS}/{key}/{name}", json=body, headers=headers)


# --- The workflow -------------------------------------------------------------------


@pytest.mark.parametrize("source", [s.value for s in Status])
def test_illegal_moves_are_409_naming_the_allowed_statuses(
    vigie_api, admin, ticket_in, set_status, source
):
    ticket = ticket_in(source)
    allowed = [s.value for s in TRANSITIONS[Status(source)]]
    for target in [s.value for s in Status if s.value not in allowed]:
        response = set_status(ticket["id"], target)
        assert response.status_code == 409, (source, target, response.text)
        body = response.json()
        assert body["allowed"] == allowed
        assert f"cannot go from {source} to {target}" in body["detail"]
        for status in allowed:
            assert status in body["detail"]
        if not allowed:
            assert f"{source} is final" in body["detail"]
    assert get(vigie_api, admin, ticket["id"]) == ticket, "a refused move changes nothing"


@pytest.mark.parametrize("source", WITH_PATH)
def test_legal_moves_work(vigie_api, admin, ticket_in, set_status, source):
    for target in TRANSITIONS[Status(source)]:
        ticket = ticket_in(source)
        if target is Status.DUPLICATE:
            original = ticket_in("new")
            response = action(
                vigie_api, admin, ticket["id"], "duplicate", {"duplicate_of": original["id"]}
            )
        else:
            response = set_status(ticket["id"], target.value)
        assert response.status_code == 200, (source, target, response.text)
        moved = response.json()
        assert moved["status"] == target.value
        last = [e for e in moved["history"] if e["action"] == "status_changed"][-1]
        assert last["changes"]["status"] == [source, target.value]
        assert get(vigie_api, admin, ticket["id"])["status"] == target.value


def test_an_unknown_status_is_422_listing_the_statuses(vigie_api, admin, ticket_in, set_status):
    ticket = ticket_in("new")
    response = set_status(ticket["id"], "done")
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "status"
    assert "acknowledged" in response.json()["detail"] and "'done'" in response.json()["detail"]


@pytest.mark.parametrize(
    ("source", "target"), [("new", "rejected"), ("new", "redirected"), ("resolved", "reopened")]
)
def test_a_reason_is_required_for_rejected_redirected_reopened(
    vigie_api, admin, ticket_in, set_status, source, target
):
    ticket = ticket_in(source)
    for comment in (None, "", "   "):
        response = set_status(ticket["id"], target, comment=comment)
        assert response.status_code == 422, response.text
        assert [e["field"] for e in response.json()["errors"]] == ["comment"]
        assert target in response.json()["detail"]
    assert get(vigie_api, admin, ticket["id"]) == ticket
    done = set_status(ticket["id"], target, comment="Motif donné à l'usager")
    assert done.status_code == 200
    assert done.json()["history"][-1]["comment"] == "Motif donné à l'usager"


def test_redirected_names_the_outside_body(vigie_api, admin, ticket_in, set_status):
    ticket = ticket_in("acknowledged")
    response = set_status(
        ticket["id"], "redirected", comment="Voie départementale", outside_body=None
    )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["outside_body"]
    done = set_status(
        ticket["id"],
        "redirected",
        comment="Voie départementale",
        outside_body="Département du Puy-de-Dôme",
    )
    assert done.status_code == 200
    assert done.json()["outside_body"] == "Département du Puy-de-Dôme"
    assert done.json()["history"][-1]["changes"]["outside_body"] == [
        None,
        "Département du Puy-de-Dôme",
    ]


def test_duplicate_is_refused_through_the_status_route(vigie_api, admin, ticket_in, set_status):
    ticket = ticket_in("new")
    response = set_status(ticket["id"], "duplicate")
    assert response.status_code == 422
    assert "duplicate action" in response.json()["detail"]
    assert get(vigie_api, admin, ticket["id"])["status"] == "new"


def test_reopen_after_resolution_then_resolve_and_close(vigie_api, admin, ticket_in, set_status):
    ticket = ticket_in("resolved")
    assert (
        set_status(ticket["id"], "reopened", comment="Toujours des papiers").json()["status"]
        == "reopened"
    )
    assert set_status(ticket["id"], "in_progress").json()["status"] == "in_progress"
    assert set_status(ticket["id"], "resolved").json()["status"] == "resolved"
    closed = set_status(ticket["id"], "closed").json()
    assert closed["status"] == "closed"
    assert set_status(ticket["id"], "reopened", comment="Encore").status_code == 409


def test_a_public_flag_decides_if_residents_see_the_status_change(
    vigie_api, admin, ticket_in, set_status
):
    ticket = ticket_in("new")
    assert set_status(ticket["id"], "acknowledged").json()["history"][-1]["public"] is True
    assert (
        set_status(ticket["id"], "in_progress", public=False).json()["history"][-1]["public"]
        is False
    )


def test_status_by_reference(vigie_api, admin, ticket_in, set_status):
    ticket = ticket_in("new")
    assert set_status(ticket["reference"], "acknowledged").json()["status"] == "acknowledged"


# --- Comments -------------------------------------------------------------------------


def test_a_comment_is_internal_by_default(vigie_api, admin, ticket_in):
    ticket = ticket_in("new")
    response = action(
        vigie_api,
        vigie_api.headers("agent"),
        ticket["id"],
        "comments",
        {"comment": "Rappeler demain"},
    )
    assert response.status_code == 200
    event = response.json()["history"][-1]
    assert (event["action"], event["comment"], event["public"], event["changes"]) == (
        "commented",
        "Rappeler demain",
        False,
        {},
    )
    assert event["actor"] == "agent:test-agent"
    public = action(
        vigie_api,
        admin,
        ticket["id"],
        "comments",
        {"comment": "Intervention prévue", "public": True},
    )
    assert public.json()["history"][-1]["public"] is True
    assert response.json()["status"] == "new", "a comment does not move the ticket"


@pytest.mark.parametrize("text", ["", "   "])
def test_an_empty_comment_is_refused(vigie_api, admin, ticket_in, text):
    ticket = ticket_in("new")
    response = action(vigie_api, admin, ticket["id"], "comments", {"comment": text})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "comment"
    assert get(vigie_api, admin, ticket["id"]) == ticket


# --- Assignment -----------------------------------------------------------------------


def test_assign_gives_the_team_and_moves_a_new_ticket_to_assigned(vigie_api, admin, ticket_in):
    ticket = ticket_in("new")
    chief = vigie_api.headers("supervisor")
    response = action(
        vigie_api,
        chief,
        ticket["id"],
        "assign",
        {"team": "proprete-nord", "comment": "Secteur nord"},
    )
    assert response.status_code == 200, response.text
    assigned = response.json()
    assert (assigned["team"], assigned["status"]) == ("proprete-nord", "assigned")
    assert [(e["action"], e["changes"], e["actor"]) for e in assigned["history"][-2:]] == [
        ("assigned", {"team": ["proprete-centre", "proprete-nord"]}, "supervisor:test-supervisor"),
        ("status_changed", {"status": ["new", "assigned"]}, "supervisor:test-supervisor"),
    ]


@pytest.mark.parametrize("source", ["acknowledged", "reopened"])
def test_assign_moves_a_waiting_ticket_to_assigned(vigie_api, admin, ticket_in, source):
    ticket = ticket_in(source)
    assert (
        action(vigie_api, admin, ticket["id"], "assign", {"team": "voirie-nord"}).json()["status"]
        == "assigned"
    )


def test_assign_keeps_a_ticket_in_progress(vigie_api, admin, ticket_in):
    ticket = ticket_in("in_progress")
    moved = action(vigie_api, admin, ticket["id"], "assign", {"team": "voirie-nord"}).json()
    assert (moved["team"], moved["status"]) == ("voirie-nord", "in_progress")


def test_assign_to_an_unknown_team_lists_the_teams(vigie_api, admin, ticket_in):
    ticket = ticket_in("new")
    response = action(vigie_api, admin, ticket["id"], "assign", {"team": "proprete-ouest"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "team"
    detail = response.json()["detail"]
    assert "'proprete-ouest' is not a team of clermont-ferrand" in detail
    commune = vigie_api.runtime.area.commune("clermont-ferrand")
    assert all(team.code in detail for team in commune.teams)
    assert get(vigie_api, admin, ticket["id"]) == ticket


@pytest.mark.parametrize("source", ["closed", "rejected", "resolved"])
def test_a_finished_ticket_cannot_be_assigned(vigie_api, admin, ticket_in, source):
    ticket = ticket_in(source)
    response = action(vigie_api, admin, ticket["id"], "assign", {"team": "voirie-nord"})
    assert response.status_code == 409
    assert "reopen" in response.json()["detail"]
    assert get(vigie_api, admin, ticket["id"]) == ticket


# --- Priority -------------------------------------------------------------------------


def test_priority_change_recomputes_the_due_date(vigie_api, admin, ticket_in):
    ticket = ticket_in("new")  # Clermont-Ferrand, propreté: 48 business hours at normal priority
    response = action(
        vigie_api, admin, ticket["id"], "priority", {"priority": "urgent", "comment": "Verre brisé"}
    )
    assert response.status_code == 200
    urgent = response.json()
    created = datetime.fromisoformat(ticket["created_at"])
    # A quarter of 48 hours, counted around the clock for urgent tickets.
    assert datetime.fromisoformat(urgent["due_at"]) == created + timedelta(hours=12)
    assert datetime.fromisoformat(ticket["due_at"]) > created + timedelta(hours=12)
    assert urgent["priority"] == "urgent"
    assert [(e["action"], e["changes"].get("priority")) for e in urgent["history"][-2:]] == [
        ("priority_changed", ["normal", "urgent"]),
        ("due_date_set", None),
    ]
    assert urgent["history"][-2]["comment"] == "Verre brisé"
    low = action(vigie_api, admin, ticket["id"], "priority", {"priority": "low"}).json()
    assert datetime.fromisoformat(low["due_at"]) > datetime.fromisoformat(ticket["due_at"])


def test_priority_in_a_commune_without_sla_has_no_due_date(vigie_api, admin, new_ticket):
    ticket = new_ticket("chamalieres")
    assert (
        action(vigie_api, admin, ticket["id"], "priority", {"priority": "high"}).json()["due_at"]
        is None
    )


def test_an_unknown_priority_is_refused(vigie_api, admin, ticket_in):
    ticket = ticket_in("new")
    response = action(vigie_api, admin, ticket["id"], "priority", {"priority": "critique"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "priority"
    assert get(vigie_api, admin, ticket["id"]) == ticket


# --- Duplicates -----------------------------------------------------------------------


def test_a_duplicate_points_at_its_original_and_both_histories_say_so(vigie_api, admin, new_ticket):
    original, copy = new_ticket(), new_ticket()
    response = action(
        vigie_api,
        admin,
        copy["id"],
        "duplicate",
        {"duplicate_of": original["reference"], "comment": "Même lieu"},
    )
    assert response.status_code == 200, response.text
    linked = response.json()
    assert (linked["status"], linked["duplicate_of"]) == ("duplicate", original["reference"])
    assert [(e["action"], e["changes"]) for e in linked["history"][-2:]] == [
        ("linked", {"duplicate_of": [None, original["reference"]]}),
        ("status_changed", {"status": ["new", "duplicate"]}),
    ]
    original_now = get(vigie_api, admin, original["id"])
    assert original_now["status"] == "new"
    assert original_now["history"][:-1] == original["history"]
    assert (original_now["history"][-1]["action"], original_now["history"][-1]["changes"]) == (
        "linked",
        {"duplicates": [None, copy["reference"]]},
    )


def test_a_duplicate_of_a_duplicate_points_at_the_original(vigie_api, admin, new_ticket):
    original, first, second = new_ticket(), new_ticket(), new_ticket()
    action(vigie_api, admin, first["id"], "duplicate", {"duplicate_of": original["id"]})
    response = action(
        vigie_api, admin, second["id"], "duplicate", {"duplicate_of": first["reference"]}
    )
    assert response.json()["duplicate_of"] == original["reference"]
    assert get(vigie_api, admin, first["id"])["history"][-1]["action"] == "status_changed"
    assert get(vigie_api, admin, original["id"])["history"][-1]["changes"] == {
        "duplicates": [None, second["reference"]]
    }


def test_a_ticket_cannot_duplicate_itself(vigie_api, admin, new_ticket):
    ticket = new_ticket()
    response = action(
        vigie_api, admin, ticket["id"], "duplicate", {"duplicate_of": ticket["reference"]}
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "duplicate_of"
    assert get(vigie_api, admin, ticket["id"]) == ticket


def test_a_duplicate_stays_within_its_commune(vigie_api, admin, new_ticket):
    clermont, chamalieres = new_ticket("clermont-ferrand"), new_ticket("chamalieres")
    response = action(
        vigie_api, admin, clermont["id"], "duplicate", {"duplicate_of": chamalieres["id"]}
    )
    assert response.status_code == 422
    assert "another commune" in response.json()["detail"]
    assert get(vigie_api, admin, clermont["id"]) == clermont
    assert get(vigie_api, admin, chamalieres["id"]) == chamalieres


def test_a_duplicate_of_an_unknown_ticket_is_refused(vigie_api, admin, new_ticket):
    ticket = new_ticket()
    response = action(
        vigie_api, admin, ticket["id"], "duplicate", {"duplicate_of": "CLF-2026-999999"}
    )
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"field": "duplicate_of", "reason": "no ticket CLF-2026-999999"}
    ]


def test_a_closed_ticket_cannot_become_a_duplicate(vigie_api, admin, ticket_in, new_ticket):
    original, closed = new_ticket(), ticket_in("closed")
    response = action(vigie_api, admin, closed["id"], "duplicate", {"duplicate_of": original["id"]})
    assert response.status_code == 409
    assert get(vigie_api, admin, closed["id"]) == closed
    assert get(vigie_api, admin, original["id"]) == original


# --- History through the API -----------------------------------------------------------------


def test_the_history_lists_every_change_in_order_and_only_grows(
    vigie_api, admin, new_ticket, set_status
):
    agent, chief = vigie_api.headers("agent"), vigie_api.headers("supervisor")
    ticket = new_ticket()
    original = new_ticket()
    key = ticket["id"]
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
    steps = [
        ("status_changed", lambda: set_status(key, "acknowledged", headers=agent)),
        (
            "commented",
            lambda: action(vigie_api, agent, key, "comments", {"comment": "Appel du voisin"}),
        ),
        ("assigned", lambda: action(vigie_api, chief, key, "assign", {"team": "proprete-nord"})),
        (
            "priority_changed",
            lambda: action(vigie_api, chief, key, "priority", {"priority": "high"}),
        ),
        (
            "attachment_added",
            lambda: vigie_api.client.post(
                f"{TICKETS}/{key}/attachments",
                files={"file": ("photo.png", png, "image/png")},
                headers=agent,
            ),
        ),
        (
            "linked",
            lambda: action(vigie_api, chief, key, "duplicate", {"duplicate_of": original["id"]}),
        ),
    ]
    seen = ticket["history"]
    assert [e["action"] for e in seen] == ["created", "routed", "due_date_set"]
    for expected, step in steps:
        response = step()
        assert response.status_code in (200, 201), response.text
        now = get(vigie_api, admin, key)["history"]
        assert now[: len(seen)] == seen, f"earlier events changed after {expected}"
        added = now[len(seen) :]
        assert added and added[0]["action"] == expected
        seen = now
    assert [(e["action"], e["actor"]) for e in seen] == [
        ("created", "admin:test-admin"),
        ("routed", "plugin:routing"),
        ("due_date_set", "plugin:sla"),
        ("status_changed", "agent:test-agent"),
        ("commented", "agent:test-agent"),
        ("assigned", "supervisor:test-supervisor"),
        ("status_changed", "supervisor:test-supervisor"),
        ("priority_changed", "supervisor:test-supervisor"),
        ("due_date_set", "plugin:sla"),
        ("attachment_added", "agent:test-agent"),
        ("linked", "supervisor:test-supervisor"),
        ("status_changed", "supervisor:test-supervisor"),
    ]
    times = [datetime.fromisoformat(e["at"]) for e in seen]
    assert times == sorted(times)
    assert all(set(e) == {"at", "actor", "action", "changes", "comment", "public"} for e in seen)
    for event in seen:
        for field, change in event["changes"].items():
            if event["action"] != "created":
                assert isinstance(change, list) and len(change) == 2, (event, field)
