""""Already reported": the open tickets a resident's report may be about, as the
page shows them, and the photo kept while the resident chooses.

The page names what residents may see of another's report (the tracking page's
share: reference, category, status, date) and how far it is; never its
description, address, answers or reporter.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from connectors.webform.i18n import format_datetime, translator
from connectors.webform.photos import Photo
from connectors.webform.tracking import status_label
from core.config import Commune
from core.matching import SimilarTicket

# The choice field: a reference to follow, or NEW to report anyway.
FOLLOW = "follow"
NEW = "new"
PENDING_DIR = "webform-pending"


@dataclass(frozen=True)
class Offer:
    reference: str
    category: str
    status_label: str
    received: str
    where: str  # "about 20 m away", "on the same equipment"


def offers_shown(offers: list[SimilarTicket], commune: Commune, language: str) -> list[Offer]:
    _ = translator(language)
    zone = ZoneInfo(commune.business_hours.timezone)
    shown = []
    for offer in offers:
        ticket = offer.ticket
        category = commune.category(ticket.category)
        if offer.same_asset:
            where = _("follow.same_asset")
        elif offer.distance_m is not None:
            # Rounded: the page says "about", and a precise figure helps no one.
            where = _("follow.distance", metres=max(5, int(round(offer.distance_m / 5.0)) * 5))
        else:
            where = _("follow.nearby")
        shown.append(
            Offer(
                reference=ticket.reference,
                category=category.in_language(language).name if category else ticket.category,
                status_label=status_label(ticket.status, language),
                received=format_datetime(language, ticket.created_at.astimezone(zone)),
                where=where,
            )
        )
    return shown


class PendingPhotos:
    """The cleaned photo of a form waiting for the resident's choice, on disk under
    the data directory (shared by every API process), named after the form's nonce.
    Taken back when the form is sent again; forgotten after ``max_age`` seconds."""

    def __init__(self, data_dir: Path, max_age: int) -> None:
        self.directory = Path(data_dir) / PENDING_DIR
        self.max_age = max_age

    def _path(self, nonce: str) -> Path:
        return self.directory / hashlib.sha256(f"photo\0{nonce}".encode()).hexdigest()

    def keep(self, nonce: str, photo: Photo) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.forget_old()
        # The position is kept: it may be all that locates the report.
        header = json.dumps(
            {
                "content_type": photo.content_type,
                "filename": photo.filename,
                "latitude": photo.latitude,
                "longitude": photo.longitude,
            }
        ).encode()
        path = self._path(nonce)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        temporary.write_bytes(header + b"\n" + photo.data)
        os.replace(temporary, path)

    def take(self, nonce: str) -> Photo | None:
        path = self._path(nonce)
        try:
            if time.time() - path.stat().st_mtime > self.max_age:
                path.unlink(missing_ok=True)
                return None
            header, _, data = path.read_bytes().partition(b"\n")
        except FileNotFoundError:
            return None
        meta = json.loads(header)
        return Photo(
            data=data,
            content_type=meta["content_type"],
            filename=meta["filename"],
            latitude=meta.get("latitude"),
            longitude=meta.get("longitude"),
        )

    def discard(self, nonce: str) -> None:
        self._path(nonce).unlink(missing_ok=True)

    def forget_old(self) -> None:
        limit = time.time() - self.max_age
        for path in self.directory.glob("*"):
            try:
                if path.stat().st_mtime < limit:
                    path.unlink(missing_ok=True)
            except FileNotFoundError:
                continue
