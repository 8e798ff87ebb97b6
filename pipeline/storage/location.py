"""Where a file or object is: `Location` (a local path or an S3 bucket and key) and `parse_location`.

Plain data with no I/O, so that every layer (and the lease protocol beside `Storage`) can name
locations without importing the storage client.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_BUCKET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]$")


@dataclass(frozen=True)
class Location:
    """A local file or an S3 object, or a local folder or an S3 prefix that holds them."""

    scheme: Literal["file", "s3"]
    bucket: str
    path: str

    def __post_init__(self) -> None:
        if self.scheme == "file" and (self.bucket or not os.path.isabs(self.path)):
            raise ValueError(f"a local Location needs an absolute path and no bucket, not {self!r}")
        if self.scheme == "s3" and (not self.bucket or self.path.startswith("/")):
            raise ValueError(f"an S3 Location needs a bucket and a key without a leading '/', not {self!r}")
        if self.scheme not in ("file", "s3"):
            raise ValueError(f"unknown Location scheme {self.scheme!r}")

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.path}" if self.scheme == "s3" else self.path

    @property
    def name(self) -> str:
        """The last path component ('' for a bucket root)."""
        return self.path.rstrip("/").rpartition("/")[2]

    @property
    def parent(self) -> Location:
        """The folder or prefix that holds this location (a bucket root and '/' are their own parents)."""
        if self.scheme == "file":
            return Location("file", "", os.path.dirname(self.path))
        return Location("s3", self.bucket, self.path.rstrip("/").rpartition("/")[0])

    def child(self, relative: str) -> Location:
        """`relative` joined under this folder/prefix; ValueError if it could land anywhere else."""
        if _is_plain_relative(relative):  # the common case, joined as is: a driver does this per manifest row
            if self.scheme == "file":
                return _trusted("file", "", f"{self.path.rstrip('/')}/{relative}")
            folder = self.path.rstrip("/")
            return _trusted("s3", self.bucket, f"{folder}/{relative}" if folder else relative)
        parts = _relative_parts(relative)
        if self.scheme == "file":
            return Location("file", "", os.path.join(self.path, *parts))
        return Location("s3", self.bucket, "/".join([self.path.rstrip("/"), *parts]).lstrip("/"))


def _is_plain_relative(relative: str) -> bool:
    """Whether `relative` is 'a/b.png'-like: no scheme, no leading or doubled '/', no part that starts
    with '.' (so no '.' or '..'), no backslash. Such a path stays under any folder as written."""
    return (bool(relative) and relative[0] not in "/." and relative[-1] != "/" and ":" not in relative
            and "//" not in relative and "/." not in relative and "\\" not in relative and relative.strip() == relative)


def _trusted(scheme: Literal["file", "s3"], bucket: str, path: str) -> Location:
    """A Location built without __post_init__'s checks, for paths already known to be well formed."""
    location = object.__new__(Location)
    object.__setattr__(location, "scheme", scheme)
    object.__setattr__(location, "bucket", bucket)
    object.__setattr__(location, "path", path)
    return location


def _relative_parts(relative: str) -> list[str]:
    """The components of a path meant to stay under a folder; ValueError if it is empty or escapes."""
    if not relative or not relative.strip():
        raise ValueError("empty relative path")
    if _SCHEME.match(relative) or relative.startswith(("s3:", "file:")):
        raise ValueError(f"{relative!r} is a URI, not a path relative to a folder")
    if relative.startswith(("/", "\\")) or os.path.isabs(relative):
        raise ValueError(f"{relative!r} is an absolute path, not a path relative to a folder")
    parts = [part for part in relative.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"{relative!r} contains '..' and could escape its folder")
    if not parts:
        raise ValueError(f"{relative!r} names the folder itself, not something inside it")
    return parts


def parse_location(text: str, base: Location | None = None) -> Location:
    """Parse 's3://bucket/key', 'file:///abs', '/abs', or a relative path.

    A relative path resolves against the folder `base` (local or S3; '..' may climb but not out of
    the bucket), or against the current directory without one. ValueError says what is wrong.
    """
    if not text or not text.strip():
        raise ValueError("empty location")
    scheme = _SCHEME.match(text)
    if scheme:
        name = scheme.group(1).lower()
        if name == "s3":
            return _parse_s3(text)
        if name == "file":
            return _parse_file_uri(text)
        raise ValueError(f"{text!r}: unsupported scheme {name!r}; use a local path, file:// or s3://")
    if text.lower().startswith(("s3:", "file:")):
        raise ValueError(f"{text!r}: malformed URI; write s3://bucket/key or file:///absolute/path")
    if os.path.isabs(text):
        return Location("file", "", os.path.normpath(text))
    if base is None:
        return Location("file", "", os.path.abspath(text))
    if base.scheme == "file":
        return Location("file", "", os.path.normpath(os.path.join(base.path, text)))
    key = posixpath.normpath(posixpath.join(base.path, text))
    if key == ".." or key.startswith("../"):
        raise ValueError(f"{text!r} climbs out of bucket {base.bucket!r}")
    return Location("s3", base.bucket, "" if key == "." else key)


def _parse_s3(text: str) -> Location:
    bucket, _, key = text[len("s3://"):].partition("/")
    if not bucket:
        raise ValueError(f"{text!r}: S3 URI without a bucket; write s3://bucket/key")
    if not _BUCKET_NAME.match(bucket):
        raise ValueError(f"{text!r}: {bucket!r} is not a bucket name (3-255 letters, digits, '.', '-', '_')")
    if key.startswith("/"):
        raise ValueError(f"{text!r}: S3 key starts with '/'; write s3://bucket/key")
    return Location("s3", bucket, key)


def _parse_file_uri(text: str) -> Location:
    parts = urlsplit(text)
    if parts.netloc not in ("", "localhost"):
        raise ValueError(f"{text!r}: file URI names host {parts.netloc!r}; write file:///absolute/path")
    if parts.query or parts.fragment or not parts.path.startswith("/"):
        raise ValueError(f"{text!r}: malformed file URI; write file:///absolute/path")
    return Location("file", "", os.path.normpath(unquote(parts.path)))
