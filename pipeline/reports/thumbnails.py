"""Small JPEG thumbnails of local or S3 images, each source decoded at most once.

Content and style images recur across the rows of a results table, so their thumbnails
are kept in a bounded LRU cache; results are unique per row and are not cached. An image
that cannot be read becomes a Thumbnail without an image that says why, so a report can
show a placeholder instead of a broken picture.

Decoding uses Pillow directly rather than `stylecore.load_image`: importing stylecore loads
torch (seconds and most of a gigabyte) that a report never needs, and JPEGs can be decoded
at reduced scale for a thumbnail. The same pixel limit guards against decompression bombs.
"""

from __future__ import annotations

import base64
import io
import warnings
from collections import OrderedDict
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline.storage.secrets import redact
from pipeline.storage.store import Storage, StorageError, parse_location

JPEG_QUALITY = 75
MAX_PIXELS = 64_000_000  # as stylecore.images.DEFAULT_MAX_PIXELS


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
            image = shrink(self.storage.read_bytes(location), str(location), long_side)
        except (ValueError, StorageError, OSError) as error:
            return Thumbnail.missing(redact(str(error)))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=True)
        return Thumbnail(image, "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"))


def shrink(data: bytes, name: str, long_side: int) -> Image.Image:
    """Decode an image file's bytes into an upright RGB image at most `long_side` px; ValueError naming
    `name` if it is not a readable image or has more than MAX_PIXELS pixels."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
        if image.width * image.height > MAX_PIXELS:
            raise ValueError(f"{name}: refused, {image.width}x{image.height} is more than {MAX_PIXELS:,} pixels")
        image.draft("RGB", (long_side, long_side))
        image = ImageOps.exif_transpose(image)
        image.thumbnail((long_side, long_side), Image.Resampling.LANCZOS)
        if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
            rgba = image.convert("RGBA")
            return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
        return image.convert("RGB")
    except (UnidentifiedImageError, Image.DecompressionBombError) as error:
        raise ValueError(f"{name}: not a readable image ({error})") from None
    except (OSError, SyntaxError, EOFError, IndexError) as error:
        raise ValueError(f"{name}: corrupt or truncated image data ({error})") from None
