"""The residents' web form (plugin ``webform``): pages, checks, photos, receipt, tracking."""

from __future__ import annotations

import html
import io
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, select

from connectors.webform.i18n import MESSAGES, pick_language
from connectors.webform.photos import PhotoRefused, clean_photo
from connectors.webform.tokens import FormTokens
from core.attachments import MAX_ATTACHMENT_BYTES
from core.db.models import Attachment, SignalRecord, Ticket

YEAR = datetime.now(UTC).year

# A category with a question of every type, added to Royat for these tests.
EVERY_TYPE = """
[[categories]]
code = "essai-types"
name = "Essai de tous les types"
group = "Essais"
description = "Une catégorie de test."

[[categories.questions]]
code = "libelle"
label = "Un texte court"
type = "string"
required = true

[[categories.questions]]
code = "details"
label = "Un texte long"
type = "text"

[[categories.questions]]
code = "hauteur"
label = "Hauteur en mètres"
type = "number"

[[categories.questions]]
code = "nombre"
label = "Nombre d'objets"
type = "integer"
required = true

[[categories.questions]]
code = "urgent"
label = "Est-ce urgent ?"
type = "boolean"
required = true

[[categories.questions]]
code = "eclaire"
label = "Le lieu est éclairé"
type = "boolean"

[[categories.questions]]
code = "depuis"
label = "Depuis le"
type = "date"

[[categories.questions]]
code = "couleur"
label = "Couleur"
type = "choice"
required = true
choices = [{ key = "rouge", name = "Rouge" }, { key = "vert", name = "Vert" }]

[[categories.questions]]
code = "materiaux"
label = "Matériaux"
type = "multichoice"
help = "Ce que vous voyez."
choices = [
    { key = "bois", name = "Bois" },
    { key = "metal", name = "Métal" },
    { key = "verre", name = "Verre" },
]

[categories.translations.en]
name = "Every type of question"
group = "Trials"
description = "A test category."

[categories.translations.en.questions.couleur]
label = "Colour"
choices = { rouge = "Red" }

[categories.translations.en.questions.materiaux]
label = "Materials"
help = "What you can see."
choices = { bois = "Wood", metal = "Metal", verre = "Glass" }
"""

REPORTER = {
    "name": "Jeanne Martin-Delorme",
    "email": "jeanne.martin@example.org",
    "phone": "06 12 34 56 78",
}


@pytest.fixture
def vigie_config_dir(tmp_path: Path) -> Path:
    """The example area, with a test category of every question type in Royat."""
    source = Path(__file__).resolve().parents[2] / "config"
    target = tmp_path / "config"
    shutil.copytree(source, target)
    royat = target / "communes" / "royat.toml"
    royat.write_text(royat.read_text(encoding="utf-8") + EVERY_TYPE, encoding="utf-8")
    return target


# --- Helpers ---------------------------------------------------------------------


def token_of(page: str) -> str:
    found = re.search(r'name="token" value="([^"]+)"', page)
    assert found, "no form token in the page"
    return found.group(1)


def details_page(vigie_api, commune: str, category: str, **params: str):
    response = vigie_api.client.get(
        "/", params={"commune": commune, "category": category, **params}
    )
    assert response.status_code == 200, response.text
    return response


def submit(
    vigie_api,
    commune: str,
    category: str,
    fields: dict,
    files=None,
    lang: str = "fr",
    token: str | None = None,
    headers: dict | None = None,
):
    if token is None:
        token = token_of(details_page(vigie_api, commune, category, lang=lang).text)
    data = {"token": token, "lang": lang, "commune": commune, "category": category, **fields}
    return vigie_api.client.post(
        f"/reports?lang={lang}", data=data, files=files, headers=headers, follow_redirects=False
    )


def reference_of(response) -> str:
    assert response.status_code == 303, response.text
    found = re.fullmatch(r"/receipt/([A-Z]+-\d{4}-\d{6})\?lang=\w+", response.headers["location"])
    assert found, response.headers["location"]
    return found.group(1)


def staff_ticket(vigie_api, reference: str) -> dict:
    response = vigie_api.client.get(f"/api/v1/tickets/{reference}", headers=vigie_api.headers())
    assert response.status_code == 200, response.text
    return response.json()


def stored(vigie_api) -> tuple[int, int, int]:
    with vigie_api.runtime.sessions() as session:
        return (
            session.scalar(select(func.count()).select_from(Ticket)),
            session.scalar(select(func.count()).select_from(SignalRecord)),
            session.scalar(select(func.count()).select_from(Attachment)),
        )


def tag_with_id(page: str, element_id: str) -> str:
    found = re.search(rf'<(?:input|select|textarea)[^>]*\bid="{re.escape(element_id)}"[^>]*>', page)
    assert found, f"no input with id {element_id}"
    return found.group(0)


def label_for(page: str, element_id: str) -> str:
    found = re.search(rf'<label for="{re.escape(element_id)}">(.*?)</label>', page, re.S)
    assert found, f"no label for {element_id}"
    return html.unescape(re.sub(r"<[^>]+>", "", found.group(1))).strip()


def jpeg_with_gps(latitude: float, longitude: float, size=(640, 480)) -> bytes:
    """A real JPEG whose EXIF says where it was taken, who took it and with what."""
    image = Image.new("RGB", size, (120, 130, 140))
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x0110] = "Model X"  # Model
    exif[0x013B] = "Jeanne Martin-Delorme"  # Artist

    def dms(value: float) -> tuple[float, float, float]:
        value = abs(value)
        degrees = int(value)
        minutes = int((value - degrees) * 60)
        return float(degrees), float(minutes), round((value - degrees - minutes / 60) * 3600, 4)

    exif[0x8825] = {
        1: "N" if latitude >= 0 else "S",
        2: dms(latitude),
        3: "E" if longitude >= 0 else "W",
        4: dms(longitude),
    }
    output = io.BytesIO()
    image.save(output, "JPEG", exif=exif, comment=b"Jeanne's phone")
    return output.getvalue()


def png_bytes() -> bytes:
    output = io.BytesIO()
    Image.new("RGBA", (32, 32), (10, 200, 10, 255)).save(output, "PNG")
    return output.getvalue()


ENCOMBRANTS = {
    "answers.type_objet": "meuble",
    "answers.quantite": "3",
    "answers.gene_passage": "true",
    "description": "Un canapé et deux chaises devant le numéro 12",
    "address": "12 rue Blatin, Clermont-Ferrand",
    "latitude": "45.7712",
    "longitude": "3.0781",
    "notify_by": "email",
    **REPORTER,
}


# --- The pages ---------------------------------------------------------------------


def test_the_first_step_offers_the_communes_that_enable_the_form(vigie_api):
    response = vigie_api.client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert '<html lang="fr">' in page
    assert "Étape 1 sur 3" in page
    for name in ("Clermont-Ferrand", "Chamalières", "Royat"):
        assert f">{name}</option>" in page
    # Beaumont and Aubière do not enable [plugins.webform].
    assert "Beaumont" not in page and "Aubière" not in page
    assert label_for(page, "commune") == "Commune"
    assert "<legend>Dans quelle commune ?</legend>" in page
    assert 'aria-describedby="position-help"' in tag_with_id(page, "latitude")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"


def test_the_commune_is_found_from_the_position(vigie_api):
    # Chamalières lies inside Clermont-Ferrand's box too: the smaller box wins.
    response = vigie_api.client.get(
        "/", params={"step": "1", "latitude": "45,7744", "longitude": "3.0672"}
    )
    assert response.status_code == 200
    assert "Commune : Chamalières" in response.text
    assert 'name="commune" value="chamalieres"' in response.text
    # The position goes on to the last step.
    assert 'name="latitude" value="45,7744"' in response.text


def test_a_position_outside_every_commune_is_an_error_next_to_the_field(vigie_api):
    response = vigie_api.client.get(
        "/", params={"step": "1", "latitude": "48.85", "longitude": "2.35"}
    )
    assert response.status_code == 422
    page = response.text
    assert "Aucune commune desservie ne contient ce point" in page
    assert 'id="latitude-error"' in page
    field = tag_with_id(page, "latitude")
    assert 'aria-invalid="true"' in field and "latitude-error" in field
    assert 'value="48.85"' in field


def test_continuing_without_a_commune_or_position_asks_for_one(vigie_api):
    response = vigie_api.client.get("/", params={"step": "1", "commune": ""})
    assert response.status_code == 422
    assert "Choisissez une commune ou donnez la position du problème." in response.text
    assert '<a href="#commune">' in response.text


def test_the_second_step_lists_the_communes_categories_by_group(vigie_api):
    response = vigie_api.client.get("/", params={"commune": "clermont-ferrand"})
    assert response.status_code == 200
    page = response.text
    commune = vigie_api.runtime.area.commune("clermont-ferrand")
    shown = set(re.findall(r'name="category" value="([^"]+)"', page))
    assert shown == {c.code for c in commune.categories if c.public}
    for group in {c.group for c in commune.categories}:
        assert f"<legend>{html.escape(group, quote=False)}</legend>" in page
    assert "essai-types" not in page  # Royat's
    # Each radio is labelled and described by the category's description.
    assert label_for(page, "category") == commune.categories[0].name
    assert 'aria-describedby="category-hint"' in tag_with_id(page, "category")


def test_an_unknown_category_or_commune_is_an_error(vigie_api):
    unknown_category = vigie_api.client.get("/", params={"commune": "royat", "category": "nope"})
    assert unknown_category.status_code == 422
    assert "Choisissez une catégorie dans la liste." in unknown_category.text
    not_served = vigie_api.client.get("/", params={"commune": "beaumont"})
    assert not_served.status_code == 422
    assert "Cette commune ne reçoit pas de signalements par ce formulaire." in not_served.text


def test_the_last_step_draws_each_question_by_its_type(vigie_api):
    page = details_page(vigie_api, "royat", "essai-types").text
    assert "Étape 3 sur 3" in page
    assert 'enctype="multipart/form-data"' in page
    assert 'type="text"' in tag_with_id(page, "answers-libelle")
    assert "<textarea" in tag_with_id(page, "answers-details")
    number = tag_with_id(page, "answers-hauteur")
    assert 'type="number"' in number and 'step="any"' in number
    integer = tag_with_id(page, "answers-nombre")
    assert 'type="number"' in integer and 'step="1"' in integer and "required" in integer
    assert 'type="date"' in tag_with_id(page, "answers-depuis")
    assert "<select" in tag_with_id(page, "answers-couleur")
    assert '<option value="rouge">Rouge</option>' in page
    # A required yes/no is a pair of radio buttons; an optional one a checkbox.
    assert 'type="radio"' in tag_with_id(page, "answers-urgent")
    assert "<legend>Est-ce urgent ? <span" in page
    assert 'type="checkbox"' in tag_with_id(page, "answers-eclaire")
    # A multichoice question is a group of checkboxes with a legend.
    assert "<legend>Matériaux</legend>" in page
    assert (
        len(
            re.findall(
                r'type="checkbox" id="answers-materiaux[^"]*" name="answers.materiaux"', page
            )
        )
        == 3
    )
    assert 'aria-describedby="answers-materiaux-help"' in tag_with_id(page, "answers-materiaux")
    # Required questions are marked in their label.
    assert label_for(page, "answers-libelle") == "Un texte court (obligatoire)"
    assert label_for(page, "answers-details") == "Un texte long"
    # Every visible input has a label.
    for element_id in re.findall(
        r'<(?:input|select|textarea)(?![^>]*type="hidden")[^>]*\bid="([^"]+)"', page
    ):
        label_for(page, element_id)
    for legend in (
        "Quelques précisions",
        "Ce que vous avez constaté",
        "Où se trouve le problème ?",
        "Vos coordonnées",
        "Comment voulez-vous être prévenu ?",
    ):
        assert f"<legend>{html.escape(legend, quote=False)}" in page


# --- Submitting ----------------------------------------------------------------------


def test_a_submitted_report_becomes_a_web_ticket(vigie_api):
    response = submit(vigie_api, "clermont-ferrand", "encombrants", ENCOMBRANTS)
    reference = reference_of(response)
    assert reference == f"CLF-{YEAR}-000001"
    ticket = staff_ticket(vigie_api, reference)
    assert ticket["channel"] == "web"
    assert ticket["category"] == "encombrants"
    assert ticket["description"] == "Un canapé et deux chaises devant le numéro 12"
    assert ticket["answers"] == {"type_objet": "meuble", "quantite": 3, "gene_passage": True}
    assert ticket["location"] == {
        "latitude": 45.7712,
        "longitude": 3.0781,
        "address": "12 rue Blatin, Clermont-Ferrand",
    }
    assert ticket["reporter"] == {
        "name": "Jeanne Martin-Delorme",
        "email": "jeanne.martin@example.org",
        "phone": "06 12 34 56 78",
        "notify_by": "email",
    }
    assert ticket["history"][0]["actor"] == "plugin:webform"
    with vigie_api.runtime.sessions() as session:
        report = session.scalar(select(SignalRecord))
        assert (report.channel, report.language) == ("web", "fr")

    receipt = vigie_api.client.get(response.headers["location"])
    assert receipt.status_code == 200
    assert f'<p class="reference" id="reference">{reference}</p>' in receipt.text
    assert "Merci, votre signalement est enregistré" in receipt.text
    assert f'href="/track/{reference}?lang=fr"' in receipt.text
    assert "jeanne" not in receipt.text.lower()


def test_every_answer_type_is_stored_typed(vigie_api):
    fields = {
        "answers.libelle": "Barrière",
        "answers.details": "Tordue\nsur deux mètres",
        "answers.hauteur": "2.5",
        "answers.nombre": "4",
        "answers.urgent": "false",
        "answers.depuis": "2026-11-20",
        "answers.couleur": "vert",
        "answers.materiaux": ["bois", "metal"],
        "description": "Barrière tordue",
        "address": "Place Allard",
        "notify_by": "none",
    }
    reference = reference_of(submit(vigie_api, "royat", "essai-types", fields))
    ticket = staff_ticket(vigie_api, reference)
    assert ticket["answers"] == {
        "libelle": "Barrière",
        "details": "Tordue\nsur deux mètres",
        "hauteur": 2.5,
        "nombre": 4,
        "urgent": False,
        "depuis": "2026-11-20",
        "couleur": "vert",
        "materiaux": ["bois", "metal"],
    }
    assert ticket["location"]["latitude"] is None
    assert ticket["reporter"] is None


def test_errors_come_back_by_their_fields_with_what_was_typed_and_nothing_is_stored(vigie_api):
    fields = {
        "answers.libelle": "",
        "answers.nombre": "quatre",
        "answers.hauteur": "2.5",
        "answers.materiaux": ["bois"],
        "answers.details": "Garder ce texte <b>tel quel</b>",
        "description": "",
        "address": "",
        "latitude": "45.76",
        "longitude": "",
        "name": "Jeanne",
        "email": "jeanne(at)example",
        "phone": "",
        "notify_by": "sms",
    }
    response = submit(vigie_api, "royat", "essai-types", fields)
    assert response.status_code == 422
    page = response.text
    assert stored(vigie_api) == (0, 0, 0)
    assert page.count('class="error"') >= 8
    assert "<title>Erreur : Essai de tous les types" in page
    expected = {
        "answers-libelle": "Ce champ est obligatoire.",
        "answers-nombre": "Saisissez un nombre entier, par exemple 3.",
        "answers-urgent": "Choisissez une réponse.",
        "answers-couleur": "Choisissez une réponse.",
        "description": "Décrivez le problème en quelques mots (3 caractères au moins).",
        "longitude": "Donnez la latitude et la longitude, ou aucune des deux.",
        "email": "Saisissez une adresse e-mail valide, par exemple nom@exemple.fr.",
        "phone": "Donnez votre numéro de mobile pour être prévenu par SMS.",
    }
    for field_id, message in expected.items():
        error = re.search(rf'<p class="error" id="{field_id}-error">(.*?)</p>', page, re.S)
        assert error, f"no error next to {field_id}"
        assert message in html.unescape(error.group(1))
        field = tag_with_id(page, field_id)
        assert f"{field_id}-error" in field and 'aria-invalid="true"' in field
        assert f'<a href="#{field_id}">' in page  # the summary links to it
    # What was typed is still there (escaped), checkboxes still ticked.
    assert 'value="quatre"' in tag_with_id(page, "answers-nombre")
    assert 'value="2.5"' in tag_with_id(page, "answers-hauteur")
    assert "Garder ce texte &lt;b&gt;tel quel&lt;/b&gt;</textarea>" in page
    assert "checked" in tag_with_id(page, "answers-materiaux")
    assert "checked" not in tag_with_id(page, "answers-materiaux-2")
    assert 'value="Jeanne"' in tag_with_id(page, "name")
    assert "checked" in tag_with_id(page, "notify-by-2")  # sms
    # The same token comes back, so the corrected form is still one report.
    assert token_of(page)


def test_a_location_is_required_and_must_be_in_the_commune(vigie_api):
    nowhere = submit(
        vigie_api,
        "clermont-ferrand",
        "encombrants",
        {**ENCOMBRANTS, "address": "", "latitude": "", "longitude": ""},
    )
    assert nowhere.status_code == 422
    assert "Indiquez où se trouve le problème" in nowhere.text
    assert 'id="address-error"' in nowhere.text
    elsewhere = submit(
        vigie_api,
        "royat",
        "essai-types",
        {
            "answers.libelle": "x",
            "answers.nombre": "1",
            "answers.urgent": "true",
            "answers.couleur": "rouge",
            "description": "Barrière tordue",
            "latitude": "45.80",
            "longitude": "3.15",  # Clermont-Ferrand, not Royat
        },
    )
    assert elsewhere.status_code == 422
    assert "Ce point n&#39;est pas sur le territoire de Royat." in elsewhere.text
    assert stored(vigie_api) == (0, 0, 0)


def test_a_stale_or_forged_token_stores_nothing(vigie_api):
    expired = FormTokens(b"another key").issue()
    response = submit(vigie_api, "clermont-ferrand", "encombrants", ENCOMBRANTS, token=expired)
    assert response.status_code == 422
    assert "Le formulaire a expiré" in response.text
    assert token_of(response.text) != expired  # a fresh one to send again with
    assert 'value="12 rue Blatin, Clermont-Ferrand"' in response.text
    assert stored(vigie_api) == (0, 0, 0)
    again = submit(
        vigie_api, "clermont-ferrand", "encombrants", ENCOMBRANTS, token=token_of(response.text)
    )
    assert reference_of(again)


def test_a_post_from_another_site_is_refused(vigie_api):
    response = submit(
        vigie_api,
        "clermont-ferrand",
        "encombrants",
        ENCOMBRANTS,
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403
    assert "Ce formulaire n&#39;a pas été envoyé depuis ce site." in response.text
    cross_site = submit(
        vigie_api,
        "clermont-ferrand",
        "encombrants",
        ENCOMBRANTS,
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert cross_site.status_code == 403
    assert stored(vigie_api) == (0, 0, 0)
    same = submit(
        vigie_api,
        "clermont-ferrand",
        "encombrants",
        ENCOMBRANTS,
        headers={"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"},
    )
    assert reference_of(same)


def test_sending_the_same_form_twice_makes_one_report(vigie_api):
    token = token_of(details_page(vigie_api, "clermont-ferrand", "encombrants").text)
    first = reference_of(
        submit(vigie_api, "clermont-ferrand", "encombrants", ENCOMBRANTS, token=token)
    )
    second = reference_of(
        submit(vigie_api, "clermont-ferrand", "encombrants", ENCOMBRANTS, token=token)
    )
    assert first == second
    assert stored(vigie_api)[:2] == (1, 1)


# --- Photos --------------------------------------------------------------------------------


def test_a_photo_gives_its_gps_position_and_is_stored_without_exif(vigie_api):
    photo = jpeg_with_gps(45.7698, 3.0554)  # in Royat
    fields = {
        "answers.libelle": "x",
        "answers.nombre": "1",
        "answers.urgent": "true",
        "answers.couleur": "rouge",
        "description": "Barrière tordue",
        "notify_by": "none",
    }
    response = submit(
        vigie_api,
        "royat",
        "essai-types",
        fields,
        files={"photo": ("IMG_Jeanne_20261120.jpg", photo, "image/jpeg")},
    )
    ticket = staff_ticket(vigie_api, reference_of(response))
    assert ticket["location"]["latitude"] == pytest.approx(45.7698, abs=1e-5)
    assert ticket["location"]["longitude"] == pytest.approx(3.0554, abs=1e-5)
    [attachment] = ticket["attachments"]
    assert attachment["content_type"] == "image/jpeg"
    assert attachment["filename"] == "photo.jpg"  # the resident's file name is not kept
    with vigie_api.runtime.sessions() as session:
        path = Path(session.scalar(select(Attachment)).storage_path)
        located_by = session.scalar(select(SignalRecord)).details
    assert located_by == {"located_by": "photo"}
    data = path.read_bytes()
    assert data[:3] == b"\xff\xd8\xff"
    for trace in (b"Exif", b"PhoneMaker", b"Jeanne", b"http://ns.adobe.com/xap"):
        assert trace not in data
    stored_image = Image.open(io.BytesIO(data))
    assert stored_image.size == (640, 480)
    assert not stored_image.getexif()


def test_typed_coordinates_win_over_the_photos(vigie_api):
    photo = jpeg_with_gps(45.7698, 3.0554)
    response = submit(
        vigie_api,
        "clermont-ferrand",
        "encombrants",
        ENCOMBRANTS,
        files={"photo": ("p.jpg", photo, "image/jpeg")},
    )
    ticket = staff_ticket(vigie_api, reference_of(response))
    assert (ticket["location"]["latitude"], ticket["location"]["longitude"]) == (45.7712, 3.0781)


def test_a_png_named_jpg_is_taken_as_a_png(vigie_api):
    response = submit(
        vigie_api,
        "clermont-ferrand",
        "encombrants",
        ENCOMBRANTS,
        files={"photo": ("holiday.jpg", png_bytes(), "image/jpeg")},
    )
    [attachment] = staff_ticket(vigie_api, reference_of(response))["attachments"]
    assert (attachment["content_type"], attachment["filename"]) == ("image/png", "photo.png")


def test_a_text_file_named_jpg_is_refused_and_nothing_is_stored(vigie_api):
    response = submit(
        vigie_api,
        "clermont-ferrand",
        "encombrants",
        ENCOMBRANTS,
        files={"photo": ("photo.jpg", b"not an image at all", "image/jpeg")},
    )
    assert response.status_code == 422
    assert "La photo doit être une image JPEG, PNG ou WebP." in response.text
    assert "photo-error" in tag_with_id(response.text, "photo")
    assert stored(vigie_api) == (0, 0, 0)


def test_a_photo_over_10_mb_is_refused(vigie_api):
    too_big = b"\xff\xd8\xff\xe0" + b"\0" * MAX_ATTACHMENT_BYTES
    response = submit(
        vigie_api,
        "clermont-ferrand",
        "encombrants",
        ENCOMBRANTS,
        files={"photo": ("big.jpg", too_big, "image/jpeg")},
    )
    assert response.status_code == 422
    assert "La photo dépasse 10 Mo." in response.text
    assert stored(vigie_api) == (0, 0, 0)


def test_a_body_over_the_limit_gets_a_413_page(vigie_api):
    huge = b"\xff\xd8\xff\xe0" + b"\0" * (12 * 1024 * 1024)
    response = submit(
        vigie_api,
        "clermont-ferrand",
        "encombrants",
        ENCOMBRANTS,
        files={"photo": ("huge.jpg", huge, "image/jpeg")},
    )
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("text/html")
    assert "Envoi trop volumineux" in response.text
    assert stored(vigie_api) == (0, 0, 0)


def test_a_body_without_a_declared_length_is_cut_off_at_the_limit(vigie_api):
    def chunks():
        yield b'--x\r\nContent-Disposition: form-data; name="photo"; filename="a.jpg"\r\n\r\n'
        for _ in range(12):
            yield b"\0" * (1024 * 1024)

    response = vigie_api.client.post(
        "/reports?lang=en",
        content=chunks(),
        headers={"Content-Type": "multipart/form-data; boundary=x"},
    )
    assert response.status_code == 413
    assert "The upload is larger than 11 MB." in response.text
    assert stored(vigie_api) == (0, 0, 0)


def test_clean_photo_handles_webp_and_refuses_pdf():
    output = io.BytesIO()
    Image.new("RGB", (20, 10)).save(output, "WEBP", exif=Image.Exif())
    photo = clean_photo(output.getvalue())
    assert (photo.content_type, photo.filename, photo.has_position) == (
        "image/webp",
        "photo.webp",
        False,
    )
    with pytest.raises(PhotoRefused) as refused:
        clean_photo(b"%PDF-1.7 a document")
    assert refused.value.reason == "error.photo_type"
    with pytest.raises(PhotoRefused) as broken:
        clean_photo(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    assert broken.value.reason == "error.photo_unreadable"


# --- Tracking ---------------------------------------------------------------------------


def test_tracking_shows_status_and_public_history_but_no_personal_data(vigie_api):
    reference = reference_of(submit(vigie_api, "clermont-ferrand", "encombrants", ENCOMBRANTS))
    ticket_id = staff_ticket(vigie_api, reference)["id"]
    admin = vigie_api.headers()
    moved = vigie_api.client.post(
        f"/api/v1/tickets/{ticket_id}/status",
        json={"status": "in_progress", "comment": "Enlèvement prévu jeudi matin."},
        headers=admin,
    )
    assert moved.status_code == 200, moved.text
    internal = vigie_api.client.post(
        f"/api/v1/tickets/{ticket_id}/comments",
        json={"comment": "Rappeler Mme Martin-Delorme au 06 12 34 56 78", "public": False},
        headers=admin,
    )
    assert internal.status_code == 200, internal.text

    response = vigie_api.client.get(f"/track/{reference}")
    assert response.status_code == 200
    page = response.text
    assert f"Suivi du signalement {reference}" in page
    assert (
        '<span class="status status-in_progress" id="status">En cours de traitement</span>' in page
    )
    assert "Encombrants sur le trottoir" in page
    assert "Signalement reçu" in page
    assert "Statut : En cours de traitement" in page
    assert "Enlèvement prévu jeudi matin." in page
    assert "Confié à l&#39;équipe : Collecte des encombrants" in page
    lowered = page.lower()
    for private in (
        "Jeanne",
        "Martin-Delorme",
        "jeanne.martin@example.org",
        "06 12 34 56 78",
        "Rappeler",
        "admin:",
        "test-admin",
        "plugin:",
        "canapé",
        "12 rue Blatin",
        "meuble",
    ):
        assert private.lower() not in lowered, private


def test_tracking_an_unknown_reference_is_a_404_page(vigie_api):
    response = vigie_api.client.get(f"/track/CLF-{YEAR}-999999")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert f"Aucun signalement ne porte la référence « CLF-{YEAR}-999999 »." in response.text
    assert vigie_api.client.get("/track/1").status_code == 404  # ids are not references
    escaped = vigie_api.client.get("/track/<script>alert(1)</script>")
    assert escaped.status_code == 404 and "<script>alert" not in escaped.text


def test_tickets_of_communes_without_the_form_are_not_shown(vigie_api):
    created = vigie_api.client.post(
        "/api/v1/tickets",
        json={
            "commune": "beaumont",
            "category": "autre",
            "description": "Une question",
            "address": "Place de la mairie",
            "answers": {"precision": "Horaires"},
        },
        headers=vigie_api.headers(),
    )
    assert created.status_code == 201, created.text
    assert vigie_api.client.get(f"/track/{created.json()['reference']}").status_code == 404


def test_the_lookup_form_leads_to_the_tracking_page(vigie_api):
    page = vigie_api.client.get("/track")
    assert page.status_code == 200
    assert label_for(page.text, "reference").startswith("Référence du signalement")
    found = vigie_api.client.get(
        "/track", params={"reference": " clf-2026-000001 "}, follow_redirects=False
    )
    assert found.status_code == 303
    assert found.headers["location"] == "/track/CLF-2026-000001?lang=fr"


# --- Languages -------------------------------------------------------------------------


def test_english_with_lang_en(vigie_api):
    page = details_page(vigie_api, "clermont-ferrand", "encombrants", lang="en").text
    assert '<html lang="en">' in page
    assert "Step 3 of 3" in page
    assert label_for(page, "description") == "Description of the problem (required)"
    assert "<legend>How would you like to hear back?</legend>" in page
    assert (
        '<a href="/?commune=clermont-ferrand&amp;category=encombrants&amp;lang=fr" lang="fr"'
        in page
    )
    errors = submit(
        vigie_api, "clermont-ferrand", "encombrants", {**ENCOMBRANTS, "description": ""}, lang="en"
    )
    assert errors.status_code == 422
    assert "Describe the problem in a few words" in errors.text
    assert '<html lang="en">' in errors.text
    done = submit(vigie_api, "clermont-ferrand", "encombrants", ENCOMBRANTS, lang="en")
    receipt = vigie_api.client.get(done.headers["location"])
    assert "Thank you, your report is recorded" in receipt.text
    reference = reference_of(done)
    track = vigie_api.client.get(f"/track/{reference}", params={"lang": "en"})
    assert "Report received" in track.text and "Received" in track.text
    with vigie_api.runtime.sessions() as session:
        assert session.scalar(select(SignalRecord.language)) == "en"


def test_english_from_the_browsers_languages(vigie_api):
    english = vigie_api.client.get("/", headers={"Accept-Language": "en-GB,en;q=0.9,fr;q=0.5"})
    assert '<html lang="en">' in english.text
    assert english.headers["content-language"] == "en"
    french = vigie_api.client.get("/", headers={"Accept-Language": "de-DE,de;q=0.9"})
    assert '<html lang="fr">' in french.text


def test_pick_language():
    assert pick_language(None, None) == "fr"
    assert pick_language("en", "fr") == "en"
    assert pick_language("de", "en-US") == "en"
    assert pick_language(None, "fr;q=0.4, en;q=0.8") == "en"
    assert pick_language(None, "en;q=0, fr") == "fr"
    assert pick_language(None, "*") == "fr"


def test_both_languages_have_every_message():
    assert MESSAGES["fr"].keys() == MESSAGES["en"].keys()


def test_form_tokens_expire_and_cannot_be_forged():
    tokens = FormTokens(b"k", max_age=60)
    token = tokens.issue(now=1000)
    nonce = tokens.check(token, now=1030)
    assert nonce and token.startswith(nonce)
    assert tokens.check(token, now=1061) is None
    assert tokens.check(token.replace(".1000.", ".1050."), now=1060) is None
    assert FormTokens(b"other").check(token, now=1030) is None
    assert tokens.check("", now=1030) is None


def test_the_stylesheet_is_served(vigie_api):
    response = vigie_api.client.get("/static/webform/webform.css")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")
    assert ":focus-visible" in response.text


def test_english_pages_use_the_categorys_english_words(vigie_api):
    """[categories.translations.en] in the commune's file: names, questions and
    choices in English; what it leaves out stays as written; French unchanged."""
    listing = vigie_api.client.get("/", params={"commune": "royat", "lang": "en"}).text
    assert "Every type of question" in listing and "Trials" in listing
    page = details_page(vigie_api, "royat", "essai-types", lang="en").text
    assert "<h1>Every type of question</h1>" in page
    assert "A test category." in page
    assert label_for(page, "answers-couleur").startswith("Colour")
    assert ">Red</option>" in page and ">Vert</option>" in page  # Vert left in French
    assert "<legend>Materials" in page and "What you can see." in page
    assert ">Wood</label>" in page
    assert label_for(page, "answers-libelle").startswith("Un texte court")  # not translated
    french = details_page(vigie_api, "royat", "essai-types").text
    assert "<h1>Essai de tous les types</h1>" in french and ">Rouge</option>" in french
    answers = {
        "answers.libelle": "x", "answers.nombre": "2", "answers.urgent": "false",
        "answers.couleur": "rouge",
    }  # fmt: skip
    report = {"description": "Barrière tordue", "address": "Place Allard", "notify_by": "none"}
    done = submit(vigie_api, "royat", "essai-types", {**report, **answers}, lang="en")
    assert done.status_code == 303, done.text
    receipt = vigie_api.client.get(done.headers["location"]).text
    assert "Every type of question" in receipt
    track = vigie_api.client.get(f"/track/{reference_of(done)}", params={"lang": "en"}).text
    assert "Every type of question" in track
    ticket = staff_ticket(vigie_api, reference_of(done))
    assert ticket["answers"]["couleur"] == "rouge"  # stored by key, whatever the language
