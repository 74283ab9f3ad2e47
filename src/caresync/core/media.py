"""What an attachment's bytes become before they are sealed: photos made small, signatures made plain images.

Pure functions on bytes (Pillow), no files: the replica reads the file and seals what these return.

- A **photo** is turned upright (its EXIF orientation applied), stripped of its metadata (EXIF carries the GPS
  position of a resident's home and the phone's serial number), scaled so its longest side is at most
  :attr:`MediaSettings.longest_side` pixels and saved as JPEG at :attr:`MediaSettings.jpeg_quality`; a
  thumbnail of :attr:`MediaSettings.thumb_side` pixels goes with it, for lists and for a knocker's phone.
- A **signature** is an image of the signature (a scan, a photo, or what a touch screen drew), kept as a
  greyscale PNG (lines stay sharp), at most :attr:`MediaSettings.longest_side` pixels, with a thumbnail.
- A **document** stays exactly as it is (a PDF, a scan the station must keep intact); it has no thumbnail.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal

from PIL import Image, ImageOps, UnidentifiedImageError

from caresync.errors import InvalidInputError

__all__ = ["AttachmentKind", "MediaSettings", "Prepared", "prepare"]

AttachmentKind = Literal["photo", "signature", "document"]
#: Decoding stops above this many pixels (a "decompression bomb" is a small file that decodes to gigabytes).
_MAX_PIXELS = 80_000_000


@dataclass(frozen=True)
class MediaSettings:
    """How photos and signatures are made small on the device, before they are sealed."""

    longest_side: int = 1600
    """The longest side of a photo or signature, in pixels (larger ones are scaled down, never up)."""
    jpeg_quality: int = 80
    """JPEG quality of a photo, 1 to 95."""
    thumb_side: int = 256
    """The longest side of a thumbnail, in pixels."""

    def __post_init__(self) -> None:
        problems = []
        if not 16 <= self.longest_side <= 10_000:
            problems.append(("longest_side", f"must be 16 to 10000 pixels, got {self.longest_side}"))
        if not 1 <= self.jpeg_quality <= 95:
            problems.append(("jpeg_quality", f"must be 1 to 95, got {self.jpeg_quality}"))
        if not 16 <= self.thumb_side <= self.longest_side:
            problems.append(("thumb_side", f"must be 16 pixels to longest_side, got {self.thumb_side}"))
        if problems:
            raise InvalidInputError("These attachment settings cannot be used", problems, key="attachment.settings")


@dataclass(frozen=True)
class Prepared:
    """An attachment's bytes as they will be sealed, their media type, and a thumbnail (None for documents)."""

    data: bytes
    media: str
    thumb: bytes | None


def _image(data: bytes, kind: str) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
            if width * height > _MAX_PIXELS:
                raise InvalidInputError(
                    f"Cannot attach this {kind}",
                    [("image", f"{width}x{height} pixels is too large to be a {kind}")],
                    key="attachment.cannot_attach",
                    fields={"noun": kind},
                )
            image = ImageOps.exif_transpose(probe)
            image.load()
            return image
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidInputError(
            f"Cannot attach this {kind}",
            [("image", f"is not an image Pillow can read ({exc})")],
            key="attachment.cannot_attach",
            fields={"noun": kind},
        ) from None


def _scaled(image: Image.Image, side: int) -> Image.Image:
    out = image.copy()
    out.thumbnail((side, side), Image.Resampling.LANCZOS)  # keeps the aspect ratio; never scales up
    return out


def _jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality, optimize=True)  # no exif= : metadata dropped
    return buffer.getvalue()


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def _greyscale(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA", "P"):
        # strokes drawn on a transparent canvas: put them on white paper before dropping the alpha
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        paper.alpha_composite(rgba)
        image = paper
    return image.convert("L")


def prepare(data: bytes, kind: AttachmentKind, settings: MediaSettings) -> Prepared:
    """The bytes to seal for an attachment of ``kind``, made from what was captured.

    Raises:
        InvalidInputError: a photo or signature that is not an image Pillow can read, or empty bytes.
    """
    if not data:
        raise InvalidInputError(
            f"Cannot attach this {kind}", [("data", "is empty")], key="attachment.cannot_attach", fields={"noun": kind}
        )
    if kind == "document":
        return Prepared(data, "application/octet-stream", None)
    image = _image(data, kind)
    if kind == "photo":
        return Prepared(
            _jpeg(_scaled(image, settings.longest_side), settings.jpeg_quality),
            "image/jpeg",
            _jpeg(_scaled(image, settings.thumb_side), min(settings.jpeg_quality, 75)),
        )
    if kind == "signature":
        grey = _greyscale(image)
        return Prepared(
            _png(_scaled(grey, settings.longest_side)), "image/png", _png(_scaled(grey, settings.thumb_side))
        )
    raise InvalidInputError(
        "Cannot attach this", [("kind", f"must be photo, signature or document, got {kind!r}")], key="attachment.cannot"
    )
