"""A resident's photo: checked from its bytes, its GPS position read, its metadata removed.

Phones write where and when a picture was taken, and often the owner's name
or device, into EXIF, XMP and comments. The position helps locate the
problem; the rest is personal data the city has no use for. So the position
is read first, then the image is decoded and encoded again with none of its
metadata (only the colour profile is kept).
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from core.attachments import MAX_ATTACHMENT_BYTES, sniff_type

PHOTO_TYPES: dict[str, str] = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}
_EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp"}
_GPS_IFD = 0x8825
# Beyond this a "photo" is a decompression bomb, not a picture of a pothole.
MAX_PIXELS = 60_000_000


class PhotoRefused(ValueError):
    """The upload is not a photo we take; ``reason`` is a message key of :mod:`.i18n`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Photo:
    data: bytes  # encoded again, without metadata
    content_type: str  # from the bytes, not from the name or the browser
    filename: str
    latitude: float | None = None
    longitude: float | None = None

    @property
    def has_position(self) -> bool:
        return self.latitude is not None and self.longitude is not None


def clean_photo(data: bytes) -> Photo:
    """The photo ready to store; raise PhotoRefused for anything else."""
    if len(data) > MAX_ATTACHMENT_BYTES:
        raise PhotoRefused("error.photo_too_big")
    content_type = sniff_type(data)
    if content_type not in PHOTO_TYPES:
        raise PhotoRefused("error.photo_type")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > MAX_PIXELS:
                raise PhotoRefused("error.photo_unreadable")
            image.load()
            latitude, longitude = gps_position(image.getexif())
            upright = ImageOps.exif_transpose(image)
    except PhotoRefused:
        raise
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ):
        raise PhotoRefused("error.photo_unreadable") from None
    cleaned = _encode_without_metadata(upright, PHOTO_TYPES[content_type])
    if len(cleaned) > MAX_ATTACHMENT_BYTES:
        raise PhotoRefused("error.photo_too_big")
    return Photo(
        data=cleaned,
        content_type=content_type,
        # The resident's own file name may carry a name or a date: not kept.
        filename=f"photo{_EXTENSIONS[content_type]}",
        latitude=latitude,
        longitude=longitude,
    )


def gps_position(exif: Image.Exif) -> tuple[float | None, float | None]:
    """(latitude, longitude) from EXIF's GPS block, or (None, None) if absent or unusable."""
    try:
        gps = exif.get_ifd(_GPS_IFD)
    except (KeyError, ValueError, TypeError, OSError):
        return None, None
    latitude = _degrees(gps.get(2), gps.get(1), "S")
    longitude = _degrees(gps.get(4), gps.get(3), "W")
    if latitude is None or longitude is None:
        return None, None
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180) or (latitude, longitude) == (0, 0):
        # (0, 0) is what some cameras write when they had no fix.
        return None, None
    return round(latitude, 7), round(longitude, 7)


def _degrees(value: object, reference: object, negative: str) -> float | None:
    if not isinstance(value, tuple | list) or len(value) != 3:
        return None
    try:
        degrees, minutes, seconds = (float(part) for part in value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    result = degrees + minutes / 60 + seconds / 3600
    if not math.isfinite(result):
        return None
    if isinstance(reference, bytes):
        reference = reference.decode("ascii", "replace")
    if isinstance(reference, str) and reference.strip().upper().startswith(negative):
        result = -result
    return result


def _encode_without_metadata(image: Image.Image, image_format: str) -> bytes:
    icc_profile = image.info.get("icc_profile")
    # Pillow copies some entries of ``info`` (a JPEG comment...) when saving: drop them all.
    image.info = {}
    options: dict[str, object] = {}
    if icc_profile:
        options["icc_profile"] = icc_profile
    if image_format == "JPEG":
        if image.mode not in ("RGB", "L", "CMYK"):
            image = image.convert("RGB")
        options.update(quality=88, optimize=True)
    elif image_format == "WEBP":
        options.update(quality=88)
    output = io.BytesIO()
    image.save(output, image_format, **options)
    return output.getvalue()
