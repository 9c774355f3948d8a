"""Files attached to tickets: type checked from the bytes, stored by content hash."""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePosixPath

from sqlalchemy.orm import Session

from core import history
from core.db.models import Attachment, Ticket
from core.errors import InvalidInput

MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024

# What the first bytes say, not what the client claims.
_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"WEBP", 8, "image/webp"),
    (b"%PDF-", 0, "application/pdf"),
)


def sniff_type(data: bytes) -> str | None:
    for signature, offset, content_type in _SIGNATURES:
        if data[offset : offset + len(signature)] == signature:
            if content_type == "image/webp" and not data.startswith(b"RIFF"):
                continue
            return content_type
    return None


def store_attachment(
    session: Session, data_dir: Path, ticket: Ticket, filename: str, data: bytes, actor: str
) -> Attachment:
    if not data:
        raise InvalidInput.one("file", "is empty")
    if len(data) > MAX_ATTACHMENT_BYTES:
        raise InvalidInput.one("file", f"is {len(data)} bytes; the limit is {MAX_ATTACHMENT_BYTES}")
    content_type = sniff_type(data)
    if content_type is None:
        raise InvalidInput.one("file", "must be a JPEG, PNG or WebP image, or a PDF")
    digest = hashlib.sha256(data).hexdigest()
    path = data_dir / "attachments" / digest[:2] / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_bytes(data)
    # Keep the last part of a Windows or POSIX path; never a folder name.
    safe_name = PurePosixPath((filename or "").replace("\\", "/")).name[:255] or "file"
    attachment = Attachment(
        ticket_id=ticket.id, filename=safe_name, content_type=content_type, size=len(data),
        sha256=digest, storage_path=str(path), created_by=actor,
    )
    ticket.attachments.append(attachment)  # so that the ticket in hand lists it too
    session.add(attachment)
    session.flush()
    history.record(session, ticket, actor, "attachment_added", {"attachment": [None, safe_name]}, public=False)
    return attachment
