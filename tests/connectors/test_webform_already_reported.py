"""Web form, "already reported": a resident near an open ticket of the same kind is
offered it, follows it (the report joins it) or reports anyway; the first
reporter is never shown to the second."""

from __future__ import annotations

import html
import io
import re
from datetime import UTC, datetime

from PIL import Image
from sqlalchemy import func, select

from core.db.models import Attachment, SignalRecord, Ticket
from core.db.sensor_models import Device
from core.intake import accept_signal
from core.signals import Alert, Location

CLF = "clermont-ferrand"
FIRST = {
    "answers.type_objet": "meuble",
    "answers.quantite": "3",
    "description": "Un canapé devant chez Mme Lefèvre, au 12",
    "address": "12 rue Blatin, Clermont-Ferrand",
    "latitude": "45.7712",
    "longitude": "3.0781",
    "name": "Alice Premier",
    "email": "alice.premier@example.org",
    "phone": "06 98 76 54 32",
    "notify_by": "email",
}
# The second resident, 20 m north, sees the same sofa.
SECOND = {
    **FIRST,
    "description": "Encore un canapé sur le trottoir",
    "address": "14 rue Blatin",
    "latitude": "45.77138",
    "name": "Bruno Second",
    "email": "bruno.second@example.org",
    "phone": "07 11 22 33 44",
}
FIRST_PRIVATE = ("Alice", "alice.premier", "06 98 76 54 32", "Lefèvre", "12 rue Blatin")
LAMP = {
    "answers.nombre_points": "1",
    "answers.etat": "eteint",
    "description": "Le lampadaire devant l'école est éteint",
    "latitude": "45.7755",
    "longitude": "3.0819",
}


def token_of(page: str) -> str:
    found = re.search(r'name="token" value="([^"]+)"', page)
    assert found, "no form token in the page"
    return found.group(1)


def submit(vigie_api, fields: dict, category: str = "encombrants", lang: str = "fr", files=None):
    form = vigie_api.client.get("/", params={"commune": CLF, "category": category, "lang": lang})
    data = {"token": token_of(form.text), "lang": lang, "commune": CLF, "category": category}
    return vigie_api.client.post(
        f"/reports?lang={lang}", data={**data, **fields}, files=files, follow_redirects=False
    )


def hidden_fields(page: str) -> list[tuple[str, str]]:
    return [
        (html.unescape(name), html.unescape(value))
        for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page)
    ]


def choose(vigie_api, page: str, choice: str, lang: str = "fr"):
    """Press one of the page's buttons: the form's hidden fields plus the button's value."""
    assert f'name="follow" value="{choice}"' in page
    data: dict[str, list[str]] = {"follow": [choice]}
    for name, value in hidden_fields(page):
        data.setdefault(name, []).append(value)
    return vigie_api.client.post(f"/reports?lang={lang}", data=data, follow_redirects=False)


def reference_of(response, followed: bool = False) -> str:
    assert response.status_code == 303, response.text
    suffix = r"&followed=1" if followed else ""
    found = re.fullmatch(
        rf"/receipt/([A-Z]+-\d{{4}}-\d{{6}})\?lang=\w+{suffix}", response.headers["location"]
    )
    assert found, response.headers["location"]
    return found.group(1)


def counts(vigie_api) -> tuple[int, int, int]:
    with vigie_api.runtime.sessions() as session:
        return tuple(
            session.scalar(select(func.count()).select_from(model))
            for model in (Ticket, SignalRecord, Attachment)
        )


def visible_text(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def test_a_second_resident_is_offered_the_first_report_follows_it_and_sees_it_joined(vigie_api):
    reference = reference_of(submit(vigie_api, FIRST))
    before = counts(vigie_api)

    offered = submit(vigie_api, SECOND)
    assert offered.status_code == 200
    page = offered.text
    assert "Ce problème a peut-être déjà été signalé" in page
    assert reference in page
    assert "Déjà signalé : suivre ce signalement" in page
    assert "À environ 20 m" in page
    assert "Encombrants" in page and "Reçu" in page
    # Nothing stored until the resident chooses.
    assert counts(vigie_api) == before
    # Of the first report, only what the tracking page shows: not who, not what they wrote.
    shown = visible_text(page) + " ".join(v for _, v in hidden_fields(page) if v)
    for private in FIRST_PRIVATE:
        assert private not in shown, private

    followed = choose(vigie_api, page, reference)
    assert reference_of(followed, followed=True) == reference
    assert counts(vigie_api) == (before[0], before[1] + 1, before[2])
    receipt = vigie_api.client.get(followed.headers["location"])
    assert receipt.status_code == 200
    assert "Merci, votre signalement est ajouté au signalement existant" in receipt.text
    assert f'id="reference">{reference}<' in receipt.text
    assert "votre signalement y a été rattaché" in receipt.text

    # Staff see both reports on the one ticket, and the history says a report joined it.
    ticket = vigie_api.client.get(
        f"/api/v1/tickets/{reference}", headers=vigie_api.headers()
    ).json()
    assert [r["reporter"]["name"] for r in ticket["reports"]] == ["Alice Premier", "Bruno Second"]
    assert [r["channel"] for r in ticket["reports"]] == ["web", "web"]
    (event,) = [e for e in ticket["history"] if e["action"] == "report_attached"]
    assert event["changes"] == {"channel": "web", "reports": [1, 2]}

    # The public tracking page shows the second report arriving, and nobody's details.
    track = vigie_api.client.get(f"/track/{reference}")
    assert "Un autre signalement du même problème a été reçu" in track.text
    for private in (*FIRST_PRIVATE, "Bruno", "bruno.second", "Encore un canapé"):
        assert private not in track.text, private


def test_reporting_anyway_makes_a_new_ticket(vigie_api):
    first = reference_of(submit(vigie_api, FIRST))
    page = submit(vigie_api, SECOND).text
    anyway = choose(vigie_api, page, "new")
    second = reference_of(anyway)
    assert second != first
    receipt = vigie_api.client.get(anyway.headers["location"]).text
    assert "Merci, votre signalement est enregistré" in receipt


def test_farther_away_or_another_category_goes_straight_through(vigie_api):
    reference_of(submit(vigie_api, FIRST))
    far = {**SECOND, "latitude": "45.7730"}  # 200 m north
    reference_of(submit(vigie_api, far))
    litter = {
        "answers.nature": "detritus",
        "description": "Des papiers partout",
        "latitude": SECOND["latitude"],
        "longitude": SECOND["longitude"],
    }
    reference_of(submit(vigie_api, litter, category="proprete"))


def test_the_offer_in_english(vigie_api):
    reference = reference_of(submit(vigie_api, FIRST))
    page = submit(vigie_api, SECOND, lang="en").text
    assert '<html lang="en">' in page
    assert "This problem may already have been reported" in page
    assert "Already reported: follow it" in page and "About 20 m away" in page
    followed = choose(vigie_api, page, reference, lang="en")
    receipt = vigie_api.client.get(followed.headers["location"]).text
    assert "your report was added to it" in receipt


def test_a_sensor_ticket_on_the_lamps_circuit_is_offered_for_a_dead_lamp(vigie_api):
    runtime = vigie_api.runtime
    with runtime.sessions() as session:
        for device_id, latitude, longitude in (
            ("SL-CLF-04401", 45.77162, 3.08028),
            ("SL-CLF-04410", 45.7754, 3.0819),
        ):
            session.add(
                Device(device_id=device_id, kind="streetlight", commune=CLF,
                       latitude=latitude, longitude=longitude, asset="ARM-CLF-112/C2")
            )  # fmt: skip
        # The first lamp's controller reported it dead, 440 m from the resident.
        alert = Alert(
            device_id="SL-CLF-04401", condition="lamp_failure", observed_at=datetime.now(UTC),
            commune=CLF, location=Location(45.77162, 3.08028), asset="ARM-CLF-112/C2",
            device_kind="streetlight", connector="lighting",
        )  # fmt: skip
        sensor = accept_signal(runtime, session, alert, "sensor:test").ticket
        session.commit()
    offered = submit(vigie_api, LAMP, category="eclairage")
    assert offered.status_code == 200
    assert sensor.reference in offered.text
    assert "Sur le même équipement" in offered.text
    followed = choose(vigie_api, offered.text, sensor.reference)
    assert reference_of(followed, followed=True) == sensor.reference
    with runtime.sessions() as session:
        ticket = session.get(Ticket, sensor.id)
        assert [s.kind for s in ticket.signals] == ["alert", "report"]


def jpeg_taken_at(latitude: float, longitude: float) -> bytes:
    """A JPEG whose EXIF says where it was taken."""

    def dms(value: float) -> tuple[float, float, float]:
        degrees = int(value)
        minutes = int((value - degrees) * 60)
        return float(degrees), float(minutes), round((value - degrees - minutes / 60) * 3600, 4)

    exif = Image.Exif()
    exif[0x8825] = {1: "N", 2: dms(latitude), 3: "E", 4: dms(longitude)}
    output = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(output, "JPEG", exif=exif)
    return output.getvalue()


def test_the_photo_sent_first_is_kept_while_choosing_and_joins_the_followed_ticket(vigie_api):
    reference = reference_of(submit(vigie_api, FIRST))
    # Located by the photo alone: no address, no coordinates typed.
    located_by_photo = {
        k: v for k, v in SECOND.items() if k not in ("address", "latitude", "longitude")
    }
    files = {"photo": ("IMG_2031.jpg", jpeg_taken_at(45.77138, 3.0781), "image/jpeg")}
    page = submit(vigie_api, located_by_photo, files=files).text
    assert reference in page and "À environ 20 m" in page
    pending = vigie_api.runtime.settings.data_dir / "webform-pending"
    assert len(list(pending.iterdir())) == 1
    followed = choose(vigie_api, page, reference)
    assert reference_of(followed, followed=True) == reference
    ticket = vigie_api.client.get(
        f"/api/v1/tickets/{reference}", headers=vigie_api.headers()
    ).json()
    assert [a["content_type"] for a in ticket["attachments"]] == ["image/jpeg"]
    assert ticket["reports"][1]["reporter"]["name"] == "Bruno Second"
    with vigie_api.runtime.sessions() as session:
        joined = session.scalars(
            select(SignalRecord).where(SignalRecord.reporter_name == "Bruno Second")
        ).one()
        assert joined.latitude == 45.77138 and joined.details == {"located_by": "photo"}
    assert list(pending.iterdir()) == []


def test_following_twice_is_one_report(vigie_api):
    reference = reference_of(submit(vigie_api, FIRST))
    page = submit(vigie_api, SECOND).text
    reference_of(choose(vigie_api, page, reference), followed=True)
    before = counts(vigie_api)
    again = choose(vigie_api, page, reference)
    assert reference_of(again, followed=True) == reference
    assert counts(vigie_api) == before


def test_a_ticket_closed_while_choosing_is_no_longer_offered(vigie_api):
    reference = reference_of(submit(vigie_api, FIRST))
    # A second sofa next to the first, reported on its own.
    other = reference_of(choose(vigie_api, submit(vigie_api, FIRST).text, "new"))
    page = submit(vigie_api, SECOND).text
    assert reference in page and other in page
    admin = vigie_api.headers()
    vigie_api.client.post(
        f"/api/v1/tickets/{reference}/status", json={"status": "resolved"}, headers=admin
    )
    again = choose(vigie_api, page, reference)
    assert again.status_code == 200
    assert "Le signalement choisi vient d'être clos" in visible_text(again.text)
    assert f'value="{reference}"' not in again.text and other in again.text
    with vigie_api.runtime.sessions() as session:
        closed = session.scalars(select(Ticket).where(Ticket.reference == reference)).one()
        assert len(closed.reports) == 1
