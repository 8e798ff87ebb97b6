"""What a stat returns, and the rules for the small metadata that travels with each file or object."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

# S3 sends user metadata as HTTP headers (x-amz-meta-<key>) and gives keys back lower-cased; local files
# keep it in extended attributes. Keys and values that survive both the same way are the only ones allowed.
_METADATA_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_METADATA_VALUE = re.compile(r"^[\x20-\x7e]*$")
METADATA_LIMIT_BYTES = 2048  # what S3 allows for all user metadata of one object


@dataclass(frozen=True)
class ObjectInfo:
    """A file, folder or object that exists: its size in bytes, its metadata, whether it is a local folder,
    its S3 ETag (None locally) and its modification time (seconds since the epoch)."""

    size: int
    metadata: dict[str, str] = field(default_factory=dict)
    is_folder: bool = False
    etag: str | None = None
    modified: float = 0.0


def check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """`metadata` as a plain dict; ValueError unless every key is lower-case [a-z0-9_-] (at most 64 characters),
    every value printable ASCII, and the whole fits S3's 2 KiB."""
    if not metadata:
        return {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not _METADATA_KEY.match(key):
            raise ValueError(f"metadata key {key!r}: use 1-64 lower-case letters, digits, '-' or '_'")
        if not isinstance(value, str) or not _METADATA_VALUE.match(value):
            raise ValueError(f"metadata value for {key!r}: use printable ASCII text, not {value!r}")
    if sum(len(key) + len(value) for key, value in metadata.items()) > METADATA_LIMIT_BYTES:
        raise ValueError(f"metadata of {METADATA_LIMIT_BYTES}+ bytes; S3 keeps at most {METADATA_LIMIT_BYTES}")
    return dict(metadata)
