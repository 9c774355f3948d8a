"""The web form in a real browser: Debian's Chromium, headless, driven by Playwright.

The app runs under uvicorn on a free port; the test types with the keyboard and
clicks like a resident, then reads the receipt and the tracking page.
"""

from __future__ import annotations

import io
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

if not CHROMIUM.exists():
    pytest.skip("Chromium not installed: apt-get install chromium", allow_module_level=True)
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright not installed: pip install -e '.[test]'"
)


@pytest.fixture
def vigie_database_url(tmp_path: Path) -> str:
    """One database is enough here: the fast tests run on SQLite and PostgreSQL."""
    return f"sqlite:///{tmp_path / 'vigie.db'}"


@pytest.fixture
def server_url(vigie_runtime) -> Iterator[str]:
    import uvicorn

    from core.api.app import create_app

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(create_app(runtime=vigie_runtime), log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        listener.close()


@pytest.fixture
def page(server_url):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        context = browser.new_context(
            viewport={"width": 900, "height": 1000}, locale="fr-FR", java_script_enabled=False
        )
        context.set_default_timeout(15_000)
        try:
            yield context.new_page()
        finally:
            context.close()
            browser.close()


def photo_taken_in_clermont(path: Path) -> Path:
    image = Image.new("RGB", (800, 600), (90, 110, 130))
    exif = Image.Exif()
    exif[0x8825] = {1: "N", 2: (45.0, 46.0, 20.0), 3: "E", 4: (3.0, 4.0, 50.0)}
    output = io.BytesIO()
    image.save(output, "JPEG", exif=exif)
    path.write_bytes(output.getvalue())
    return path


def focused(page) -> str:
    return page.evaluate("document.activeElement.id || document.activeElement.className")


def test_a_resident_reports_a_problem_and_follows_it(page, server_url, tmp_path):
    page.goto(f"{server_url}/")
    assert page.get_attribute("html", "lang") == "fr"
    # The first Tab reaches the skip link.
    page.keyboard.press("Tab")
    assert focused(page) == "skip-link"

    # Step 1: the commune, chosen from the list, then "Continuer" with the keyboard.
    page.screenshot(path=str(tmp_path / "start.png"), full_page=True)
    page.get_by_label("Commune", exact=True).select_option("clermont-ferrand")
    page.get_by_role("button", name="Continuer").focus()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*commune=clermont-ferrand.*"))

    # Step 2: the category, clicked with the mouse.
    assert page.get_by_role("heading", level=1).inner_text() == "Quel est le problème ?"
    page.screenshot(path=str(tmp_path / "category.png"), full_page=True)
    page.get_by_label("Encombrants sur le trottoir").click()
    page.get_by_role("button", name="Continuer").click()
    page.wait_for_url(re.compile(r".*category=encombrants.*"))

    # Step 3: questions, description and contact, typed; "by SMS" but no phone number.
    assert page.get_by_role("heading", level=1).inner_text() == "Encombrants sur le trottoir"
    page.get_by_label("Type d'objets").select_option("matelas")
    page.get_by_label("Nombre d'objets").focus()
    page.keyboard.type("2")
    page.get_by_label("Les objets gênent-ils le passage des piétons ?").focus()
    page.keyboard.press("Space")
    page.get_by_label("Description du problème").focus()
    page.keyboard.type("Deux matelas posés contre le mur de l'école")
    page.keyboard.press("Tab")
    assert focused(page) == "address"
    page.keyboard.type("Rue Bonnabaud, devant l'école")
    page.get_by_label("Nom", exact=True).fill("Jeanne Martin")
    page.get_by_label("Par SMS").check()
    page.get_by_role("button", name="Envoyer le signalement").click()

    # The server's check: the page comes back with the message by the field,
    # the error summary focused and everything typed still there.
    page.wait_for_selector("#phone-error")
    assert "numéro de mobile" in page.inner_text("#phone-error")
    assert focused(page) == "error-summary"
    assert page.get_by_label("Nom", exact=True).input_value() == "Jeanne Martin"
    assert page.get_by_label("Nombre d'objets").input_value() == "2"
    page.get_by_role("link", name=re.compile("Téléphone mobile")).click()
    assert focused(page) == "phone"
    page.keyboard.type("06 11 22 33 44")
    page.get_by_label("Photo", exact=True).set_input_files(
        str(photo_taken_in_clermont(tmp_path / "matelas.jpg"))
    )
    page.screenshot(path=str(tmp_path / "form.png"), full_page=True)
    page.get_by_role("button", name="Envoyer le signalement").focus()
    page.keyboard.press("Enter")

    # The receipt.
    page.wait_for_url(re.compile(r".*/receipt/.*"))
    reference = page.inner_text("#reference").strip()
    assert re.fullmatch(r"CLF-\d{4}-\d{6}", reference)
    assert "Merci, votre signalement est enregistré" in page.inner_text("h1")
    page.screenshot(path=str(tmp_path / "receipt.png"), full_page=True)

    # The tracking page: status and history, nothing personal.
    page.get_by_role("link", name="Suivre ce signalement").click()
    page.wait_for_url(re.compile(rf".*/track/{reference}.*"))
    assert page.inner_text("#status") == "Reçu"
    history = page.inner_text("ol.timeline")
    assert "Signalement reçu" in history
    assert "Confié à l'équipe : Collecte des encombrants" in history
    body = page.inner_text("body")
    assert "Jeanne" not in body and "06 11 22 33 44" not in body and "matelas" not in body.lower()
    page.screenshot(path=str(tmp_path / "track.png"), full_page=True)

    # In English too.
    page.get_by_role("link", name="English").click()
    assert page.get_attribute("html", "lang") == "en"
    assert page.inner_text("#status") == "Received"


def test_the_photos_position_locates_the_report(page, server_url, tmp_path, vigie_api):
    page.goto(f"{server_url}/?commune=clermont-ferrand&category=encombrants")
    page.get_by_label("Type d'objets").select_option("meuble")
    page.get_by_label("Description du problème").fill("Une armoire sur le trottoir")
    page.get_by_label("Photo", exact=True).set_input_files(
        str(photo_taken_in_clermont(tmp_path / "armoire.jpg"))
    )
    page.get_by_role("button", name="Envoyer le signalement").click()
    page.wait_for_url(re.compile(r".*/receipt/.*"))
    reference = page.inner_text("#reference").strip()
    response = vigie_api.client.get(f"/api/v1/tickets/{reference}", headers=vigie_api.headers())
    ticket = response.json()
    assert ticket["channel"] == "web"
    assert ticket["location"]["latitude"] == pytest.approx(45 + 46 / 60 + 20 / 3600, abs=1e-5)
    assert ticket["location"]["longitude"] == pytest.approx(3 + 4 / 60 + 50 / 3600, abs=1e-5)
    assert ticket["attachments"][0]["content_type"] == "image/jpeg"
