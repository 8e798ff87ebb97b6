"""Small JPEG thumbnails of local or S3 images, each source decoded at most once.

Content and style images recur across the rows of a results table, so their thumbnails
are kept in a bounded LRU cache; results are unique per row and are not cached. An image
that cannot be read becomes a Thumbnail without an image that says why, so a report can
show a placeholder instead of a broken picture.

Decoding is `stylecore.imageio.load_image` at reduced scale: the same strict decoding,
colour handling and pixel limit as the synthesis's inputs, without importing torch.
"""

from __future__ import annotations

import base64
import io
from collections import OrderedDict
from dataclasses import dataclass

from PIL import Image

from pipeline.storage.secrets import redact
from pipeline.storage.store import Storage, StorageError, parse_location
from stylecore.imageio import load_image

JPEG_QUALITY = 75


@dataclass(frozen=True)
class Thumbnail:
    """A small RGB image and its JPEG data URI, or the reason there is none."""

    image: Image.Image | None
    data_uri: str | None
    reason: str = ""

    @classmethod
    def missing(cls, reason: str) -> Thumbnail:
        return cls(None, None, reason)


class Thumbnailer:
    """Reads, decodes and shrinks images through `storage`; caches up to `cache_size` recurring ones."""

    def __init__(self, storage: Storage, cache_size: int = 512) -> None:
        self.storage = storage
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str, int], Thumbnail] = OrderedDict()

    def recurring(self, location_text: str | None, long_side: int) -> Thumbnail:
        """The thumbnail of an image that other rows may show too (a content or style image)."""
        key = (location_text or "", long_side)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        thumbnail = self.make(location_text, long_side)
        self._cache[key] = thumbnail
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return thumbnail

    def make(self, location_text: str | None, long_side: int) -> Thumbnail:
        """Decode `location_text` (a path or s3:// URI) once and shrink it to `long_side` px."""
        if not location_text:
            return Thumbnail.missing("no file recorded")
        try:
            location = parse_location(location_text)
            image = load_image(self.storage.read_bytes(location), name=str(location), max_side=long_side)
        except (ValueError, StorageError, OSError) as error:
            return Thumbnail.missing(redact(str(error)))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=True)
        return Thumbnail(image, "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"))


def file_name(location: str | None) -> str:
    """The last path component of a path or URI (the whole text if it has none)."""
    if not location:
        return ""
    return location.rstrip("/").rpartition("/")[2] or location
