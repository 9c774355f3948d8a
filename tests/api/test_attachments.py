"""Photos and documents attached to a ticket: the type comes from the bytes, not the name."""

from __future__ import annotations

import pytest

from core.attachments import MAX_ATTACHMENT_BYTES

TICKETS = "/api/v1/tickets"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256))
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + bytes(64)
PDF = b"%PDF-1.7\n" + b"1 0 obj\n" * 8


def upload(vigie_api, headers, key, name: str, data: bytes, claimed: str = "image/png"):
    return vigie_api.client.post(
        f"{TICKETS}/{key}/attachments", files={"file": (name, data, claimed)}, headers=headers
    )


@pytest.mark.parametrize(
    ("name", "data", "claimed", "stored_type"),
    [
        ("trottoir.png", PNG, "image/png", "image/png"),
        ("trottoir.jpg", JPEG, "image/jpeg", "image/jpeg"),
        ("trottoir.png", JPEG, "image/png", "image/jpeg"),  # a phone that names every photo .png
        ("photo", WEBP, "application/octet-stream", "image/webp"),
        ("courrier.pdf", PDF, "application/pdf", "application/pdf"),
    ],
)
def test_an_attachment_is_stored_with_the_type_its_bytes_say(
    vigie_api, admin, new_ticket, name, data, claimed, stored_type
):
    ticket = new_ticket()
    response = upload(vigie_api, vigie_api.headers("agent"), ticket["id"], name, data, claimed)
    assert response.status_code == 201, response.text
    [attachment] = response.json()["attachments"]
    assert (attachment["filename"], attachment["content_type"], attachment["size"]) == (
        name,
        stored_type,
        len(data),
    )
    event = response.json()["history"][-1]
    assert (event["action"], event["actor"], event["changes"], event["public"]) == (
        "attachment_added",
        "agent:test-agent",
        {"attachment": [None, name]},
        False,
    )
    download = vigie_api.client.get(
        f"{TICKETS}/{ticket['id']}/attachments/{attachment['id']}", headers=admin
    )
    assert download.status_code == 200
    assert download.content == data
    assert download.headers["content-type"] == stored_type
    assert name in download.headers["content-disposition"]


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        (
            "photo.png",
            b"Ceci n'est pas une image, juste du texte.",
            "must be a JPEG, PNG or WebP image, or a PDF",
        ),
        (
            "script.png",
            b"<svg onload='alert(1)'></svg>",
            "must be a JPEG, PNG or WebP image, or a PDF",
        ),
        ("vide.png", b"", "is empty"),
    ],
)
def test_a_file_that_is_not_an_image_or_pdf_is_refused(
    vigie_api, admin, new_ticket, name, data, reason
):
    ticket = new_ticket()
    response = upload(vigie_api, admin, ticket["id"], name, data)
    assert response.status_code == 422
    assert response.json()["errors"] == [{"field": "file", "reason": reason}]
    assert vigie_api.client.get(f"{TICKETS}/{ticket['id']}", headers=admin).json() == ticket


def test_a_file_over_10_mb_is_refused(vigie_api, admin, new_ticket):
    ticket = new_ticket()
    assert MAX_ATTACHMENT_BYTES == 10 * 1024 * 1024
    too_big = PNG + bytes(MAX_ATTACHMENT_BYTES + 1 - len(PNG))
    response = upload(vigie_api, admin, ticket["id"], "enorme.png", too_big)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "file"
    assert "limit" in response.json()["detail"]
    assert (
        vigie_api.client.get(f"{TICKETS}/{ticket['id']}", headers=admin).json()["attachments"] == []
    )
    just_fits = PNG + bytes(MAX_ATTACHMENT_BYTES - len(PNG))
    assert upload(vigie_api, admin, ticket["id"], "limite.png", just_fits).status_code == 201


@pytest.mark.parametrize(
    "name", ["../../etc/photo.png", "C:\\Users\\agent\\photo.png", "/tmp/photo.png"]
)
def test_a_path_in_the_file_name_is_dropped(vigie_api, admin, new_ticket, name):
    ticket = new_ticket()
    response = upload(vigie_api, admin, ticket["id"], name, PNG)
    assert response.json()["attachments"][0]["filename"] == "photo.png"


def test_several_attachments_are_listed_in_order(vigie_api, admin, new_ticket):
    ticket = new_ticket()
    for name, data in (("a.png", PNG), ("b.jpg", JPEG), ("c.png", PNG)):
        assert upload(vigie_api, admin, ticket["id"], name, data).status_code == 201
    listed = vigie_api.client.get(f"{TICKETS}/{ticket['id']}", headers=admin).json()["attachments"]
    assert [a["filename"] for a in listed] == ["a.png", "b.jpg", "c.png"]
    third = vigie_api.client.get(
        f"{TICKETS}/{ticket['id']}/attachments/{listed[2]['id']}", headers=admin
    )
    assert third.content == PNG


def test_an_attachment_is_only_found_on_its_own_ticket(vigie_api, admin, new_ticket):
    first, second = new_ticket(), new_ticket()
    attachment = upload(vigie_api, admin, first["id"], "a.png", PNG).json()["attachments"][0]
    response = vigie_api.client.get(
        f"{TICKETS}/{second['id']}/attachments/{attachment['id']}", headers=admin
    )
    assert response.status_code == 404
    assert second["reference"] in response.json()["detail"]


def test_an_integration_may_attach_but_needs_a_token(vigie_api, new_ticket):
    ticket = new_ticket()
    assert upload(vigie_api, {}, ticket["id"], "a.png", PNG).status_code == 401
    assert (
        upload(vigie_api, vigie_api.headers("integration"), ticket["id"], "a.png", PNG).status_code
        == 201
    )
