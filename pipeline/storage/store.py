"""Local files and S3 objects behind one small interface: locations, reads, atomic writes, listings.

Every error becomes a StorageError (or NotFound) whose message names the location and the reason
and has passed through `pipeline.storage.secrets.redact`. Storage objects pickle without their boto3
client, so Ray can ship them to worker actors, which create their own client on first use.
"""

from __future__ import annotations

import mimetypes
import os
import posixpath
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import (BotoCoreError, ClientError, ConnectTimeoutError, EndpointConnectionError,
                                 NoCredentialsError, ParamValidationError, ReadTimeoutError)

from pipeline.storage.secrets import redact, register_credentials
from stylecore.files import is_temporary_name, write_atomically


class StorageError(Exception):
    """A read, write, listing or deletion failed; the message names the location and the reason."""


class NotFound(StorageError):
    """The file, object or bucket does not exist."""


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
        parts = _relative_parts(relative)
        if self.scheme == "file":
            return Location("file", "", os.path.join(self.path, *parts))
        return Location("s3", self.bucket, "/".join([self.path.rstrip("/"), *parts]).lstrip("/"))


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


class Storage:
    """Reads, atomic writes, existence checks, deletions and sorted listings for local and S3 locations.

    S3 goes through boto3's standard credential chain and standard retry mode (AWS_MAX_ATTEMPTS and
    the config file still apply). The endpoint is `endpoint_url`, else AWS_ENDPOINT_URL_S3 or
    AWS_ENDPOINT_URL, else AWS; custom endpoints get path-style addressing, which S3-compatible
    servers need (their buckets have no DNS names).
    """

    def __init__(self, endpoint_url: str | None = None) -> None:
        self.endpoint_url = (endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3")
                             or os.environ.get("AWS_ENDPOINT_URL") or None)
        self._client: Any = None
        self._client_lock = threading.Lock()

    def __repr__(self) -> str:
        return redact(f"Storage(endpoint_url={self.endpoint_url!r})")

    def __getstate__(self) -> dict[str, Any]:
        return {"endpoint_url": self.endpoint_url}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["endpoint_url"])

    def read_bytes(self, location: Location) -> bytes:
        """The whole content of a file or object; NotFound if it does not exist."""
        if location.scheme == "file":
            try:
                return Path(location.path).read_bytes()
            except OSError as error:
                raise _local_error(location, error) from None
        try:
            response = self._s3().get_object(Bucket=location.bucket, Key=location.path)
            return response["Body"].read()
        except (BotoCoreError, ClientError) as error:
            raise self._s3_error(location, error) from None

    def write_bytes(self, location: Location, data: bytes, content_type: str | None = None) -> None:
        """Write `data` so that the final name never holds a partial file or object.

        Local files go through a temporary file and a rename; an S3 put is atomic by itself.
        `content_type` defaults to the one the name's extension implies.
        """
        if location.scheme == "file":
            try:
                write_atomically(Path(location.path), data)
            except OSError as error:
                raise _local_error(location, error) from None
            return
        content_type = content_type or mimetypes.guess_type(location.name)[0] or "application/octet-stream"
        try:
            self._s3().put_object(Bucket=location.bucket, Key=location.path, Body=data, ContentType=content_type)
        except (BotoCoreError, ClientError) as error:
            raise self._s3_error(location, error) from None

    def exists(self, location: Location) -> bool:
        """Whether a file or object exists at exactly `location` (folders and prefixes do not count)."""
        if location.scheme == "file":
            return os.path.isfile(location.path)
        try:
            self._s3().head_object(Bucket=location.bucket, Key=location.path)
        except ClientError as error:
            if _error_code(error) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._s3_error(location, error) from None
        except BotoCoreError as error:
            raise self._s3_error(location, error) from None
        return True

    def delete(self, location: Location) -> None:
        """Remove a file or object; deleting something that does not exist is not an error (as on S3)."""
        if location.scheme == "file":
            try:
                Path(location.path).unlink(missing_ok=True)
            except OSError as error:
                raise _local_error(location, error) from None
            return
        try:
            self._s3().delete_object(Bucket=location.bucket, Key=location.path)
        except (BotoCoreError, ClientError) as error:
            raise self._s3_error(location, error) from None

    def list(self, prefix: Location, suffix: str = "", *, page_size: int = 1000) -> Iterator[Location]:
        """Every file or object under the folder `prefix` whose name ends with `suffix`, recursively.

        Streamed page by page, so a listing of millions never sits in memory, in the store's order:
        by full path (UTF-8 bytes) locally and on AWS; some S3-compatible servers differ (SeaweedFS
        lists a folder before siblings that extend its name: 'a/b.png' before 'a-c.png'). A missing
        folder or prefix lists nothing; a missing bucket is NotFound. Folder markers and
        write_atomically's temporary files are left out.
        """
        if prefix.scheme == "file":
            yield from _walk_sorted(prefix, suffix)
            return
        key_prefix = prefix.path.rstrip("/") + "/" if prefix.path.rstrip("/") else ""
        pages = self._s3().get_paginator("list_objects_v2").paginate(
            Bucket=prefix.bucket, Prefix=key_prefix, PaginationConfig={"PageSize": page_size})
        try:
            for page in pages:
                for entry in page.get("Contents", []):
                    key = entry["Key"]
                    if key.endswith(suffix) and not key.endswith("/"):
                        yield Location("s3", prefix.bucket, key)
        except (BotoCoreError, ClientError) as error:
            raise self._s3_error(prefix, error) from None

    def _s3(self) -> Any:
        """The boto3 S3 client, created on first use in this process."""
        with self._client_lock:
            if self._client is None:
                session = boto3.session.Session()
                register_credentials(session.get_credentials())
                s3_options = {"addressing_style": "path"} if self.endpoint_url else {}
                config = Config(retries={"mode": "standard"}, s3=s3_options)
                self._client = session.client("s3", endpoint_url=self.endpoint_url, config=config)
            return self._client

    def _s3_error(self, location: Location, error: BotoCoreError | ClientError) -> StorageError:
        """A StorageError that says what went wrong with `location` in words, with secrets masked."""
        endpoint = self.endpoint_url or "AWS S3"
        if isinstance(error, ClientError):
            code = _error_code(error)
            message = error.response.get("Error", {}).get("Message", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                return NotFound(redact(f"{location}: no such object"))
            if code == "NoSuchBucket":
                return NotFound(redact(f"{location}: no such bucket {location.bucket!r}"))
            reason = _CLIENT_ERROR_REASONS.get(code, f"S3 error {code}: {message}".rstrip(": "))
            return StorageError(redact(f"{location}: {reason}"))
        if isinstance(error, NoCredentialsError):
            reason = ("no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                      "a profile, or an instance role)")
        elif isinstance(error, (EndpointConnectionError, ConnectTimeoutError)):
            reason = f"cannot reach S3 endpoint {endpoint}"
        elif isinstance(error, ReadTimeoutError):
            reason = f"S3 endpoint {endpoint} did not answer in time"
        elif isinstance(error, ParamValidationError):
            reason = f"invalid S3 request: {error}"
        else:
            reason = f"S3 request failed: {error}"
        return StorageError(redact(f"{location}: {reason}"))


_ACCESS_DENIED = "access denied (check credentials and permissions)"
_CLIENT_ERROR_REASONS = {
    "403": f"{_ACCESS_DENIED}; S3 also answers 403 for a missing object when listing is not allowed",
    "Forbidden": _ACCESS_DENIED,
    "AccessDenied": _ACCESS_DENIED,
    "AllAccessDisabled": _ACCESS_DENIED,
    "InvalidAccessKeyId": "access denied: the server does not know this access key id (check credentials)",
    "SignatureDoesNotMatch": "access denied: request signature rejected, the secret key does not match "
                             "the access key id (check credentials)",
    "ExpiredToken": "access denied: the session token has expired (refresh credentials)",
    "InvalidToken": "access denied: the session token is invalid (check credentials)",
    "RequestTimeTooSkewed": "request rejected: this machine's clock is too far from the server's",
    "SlowDown": "S3 is throttling requests (SlowDown) and retries did not get through",
}


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _local_error(location: Location, error: OSError) -> StorageError:
    """A StorageError naming the local path and the operating system's reason."""
    if isinstance(error, FileNotFoundError):
        return NotFound(redact(f"{location}: no such file"))
    if isinstance(error, IsADirectoryError):
        return StorageError(redact(f"{location}: is a folder, not a file"))
    return StorageError(redact(f"{location}: {(error.strerror or str(error)).lower()}"))


def _walk_sorted(folder: Location, suffix: str) -> Iterator[Location]:
    """Files under `folder` in the order S3 would list them (sorted by their full relative paths)."""
    try:
        entries = list(os.scandir(folder.path))
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as error:
        raise _local_error(folder, error) from None

    def sort_key(entry: os.DirEntry[str]) -> str:
        return entry.name + "/" if entry.is_dir(follow_symlinks=False) else entry.name

    for entry in sorted(entries, key=sort_key):
        if entry.is_dir(follow_symlinks=False):
            yield from _walk_sorted(Location("file", "", entry.path), suffix)
        elif entry.name.endswith(suffix) and not is_temporary_name(entry.name):
            yield Location("file", "", entry.path)
