"""Signed form tokens: the form was served by us, recently, and each is sent once.

The form is public and needs no login, so there is no session to bind a
token to. A token is ``<nonce>.<issued at>.<signature>``: another site cannot
make one, it expires, and its nonce names the filled-in form so that a
double click or a retried POST makes one report (the nonce becomes the
report's idempotency key).

The signing key comes from ``VIGIE_WEBFORM_SECRET``, or else from a file
written once under the data directory, which every API process of an
installation shares (attachments live there too).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

SECRET_ENV = "VIGIE_WEBFORM_SECRET"
SECRET_FILE = "webform-secret"
MAX_AGE_SECONDS = 12 * 3600


class FormTokens:
    def __init__(self, key: bytes, max_age: int = MAX_AGE_SECONDS) -> None:
        self._key = key
        self.max_age = max_age

    def issue(self, now: float | None = None) -> str:
        nonce = secrets.token_urlsafe(16)
        issued = str(int(now if now is not None else time.time()))
        return f"{nonce}.{issued}.{self._sign(nonce, issued)}"

    def check(self, token: str | None, now: float | None = None) -> str | None:
        """The token's nonce if we issued it less than ``max_age`` ago, else None."""
        parts = (token or "").split(".")
        if len(parts) != 3 or not all(parts):
            return None
        nonce, issued, signature = parts
        if not hmac.compare_digest(signature, self._sign(nonce, issued)):
            return None
        try:
            age = (now if now is not None else time.time()) - int(issued)
        except ValueError:
            return None
        return nonce if -60 <= age <= self.max_age else None

    def _sign(self, nonce: str, issued: str) -> str:
        digest = hmac.new(
            self._key, f"webform\0{nonce}\0{issued}".encode(), hashlib.sha256
        ).digest()
        return base64.urlsafe_b64encode(digest[:24]).decode().rstrip("=")


def load_key(data_dir: Path) -> bytes:
    """The signing key: from the environment, else the data directory's, made on first use."""
    from_env = os.environ.get(SECRET_ENV)
    if from_env:
        return from_env.encode()
    path = Path(data_dir) / SECRET_FILE
    with contextlib.suppress(FileNotFoundError):
        existing = path.read_bytes().strip()
        if existing:
            return existing
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written aside and linked into place: a process that starts at the same time
    # reads either no file or a whole one, and both end up with the same key.
    temporary = path.with_name(f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    temporary.write_bytes(secrets.token_urlsafe(48).encode())
    os.chmod(temporary, 0o600)
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink(missing_ok=True)
    return path.read_bytes().strip()
