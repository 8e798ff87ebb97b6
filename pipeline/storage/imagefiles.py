"""Encoding result images and writing files so that no half-written file ever has the final name."""

from __future__ import annotations

import io
import os
import uuid
from pathlib import Path

from PIL import Image


def image_format_for(name: str) -> str:
    """Pillow format for a file name's extension; ValueError for an unknown one."""
    extension = os.path.splitext(name)[1].lower()
    image_format = Image.registered_extensions().get(extension)
    if image_format is None or image_format not in Image.SAVE:
        raise ValueError(f"{name}: unknown or unwritable image extension {extension or '(none)'!r}; "
                         "use .png, .jpg, .webp, ...")
    return image_format


def encode_image(image: Image.Image, name: str) -> bytes:
    """The bytes of `image` in the format `name`'s extension asks for."""
    buffer = io.BytesIO()
    image_format = image_format_for(name)
    image.save(buffer, format=image_format, **({"quality": 95} if image_format in ("JPEG", "WEBP") else {}))
    return buffer.getvalue()


def write_atomically(path: Path, data: bytes) -> None:
    """Write to a hidden temporary file beside `path`, fsync, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
