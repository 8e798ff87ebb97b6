"""Local files and S3 objects behind one interface: locations, reads, writes, stats, listings, leases.

Every operation retries transient faults (connection errors and timeouts, 5xx, throttling) with
backoff for `retry_window` seconds (pipeline.storage.retry), then raises Unavailable saying for how
long; other faults raise at once. Every error is a StorageError (NotFound, AlreadyExists, Unavailable,
OutsidePrefix) whose message names the location and the reason and has passed through
`pipeline.storage.secrets.redact`. Storage objects pickle with their settings but without their boto3
client and threads, so Ray can ship them to worker actors, which create their own on first use.
"""

from __future__ import annotations

import mimetypes
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from hashlib import md5
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    IncompleteReadError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)

from pipeline.storage.errors import AlreadyExists, NotFound, OutsidePrefix, StorageError, Unavailable
from pipeline.storage.lease import LEASE_NAME, Lease, LeaseHeld, acquire_local, acquire_s3
from pipeline.storage.localfs import LocalReader, check_inside, stat_file, write_file
from pipeline.storage.location import Location, parse_location
from pipeline.storage.objects import ObjectInfo, check_metadata
from pipeline.storage.retry import RetryWindow
from pipeline.storage.s3io import PART_BYTES, S3Reader, upload_in_parts
from pipeline.storage.secrets import redact, register_credentials
from stylecore.files import is_temporary_name

__all__ = ["AlreadyExists", "Lease", "LeaseHeld", "Location", "NotFound", "ObjectInfo", "OutsidePrefix", "Storage",
           "StorageError", "Unavailable", "check_storable_name", "parse_location"]

T = TypeVar("T")

_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")
_NAME_MAX_BYTES = 255  # one path component, on every common filesystem
_PATH_MAX_BYTES = 4095  # a whole local path, on Linux
_KEY_MAX_BYTES = 1024  # an S3 key
_HIDDEN_PREFIX = ".stylebatch-"  # leases and probes, which listings leave out
_READ_CHUNK_BYTES = 8 * 1024 * 1024
_STAT_THREADS = 16
_RESOLVED_FOLDERS_KEPT = 65536


def check_storable_name(location: Location) -> None:
    """ValueError naming `location` if no filesystem or S3 bucket can hold that name: a control character
    (NUL included), a path component over 255 bytes (local, and on S3 so it can be copied to disk), a
    local path over 4095 bytes, or an S3 key over 1024 bytes or not valid UTF-8."""
    text = location.path
    control = _CONTROL_CHARACTER.search(text)
    if control:
        raise ValueError(f"{text!r}: the name contains the control character {control.group()!r}")
    try:
        encoded = text.encode() if location.scheme == "s3" else os.fsencode(text)
    except UnicodeEncodeError:
        raise ValueError(f"{text!r}: the name is not valid UTF-8") from None
    longest = max(encoded.split(b"/"), key=len)
    if len(longest) > _NAME_MAX_BYTES:
        raise ValueError(f"{location}: the name part {os.fsdecode(longest[:40])!r}... is {len(longest)} bytes; "
                         f"files and folders can have at most {_NAME_MAX_BYTES}")
    limit = _KEY_MAX_BYTES if location.scheme == "s3" else _PATH_MAX_BYTES
    if len(encoded) > limit:
        kind = "an S3 key" if location.scheme == "s3" else "a local path"
        raise ValueError(f"{location}: the name is {len(encoded)} bytes; {kind} can have at most {limit}")


class Storage:
    """Reads, writes, stats, deletions, listings and leases for local and S3 locations, retried.

    S3 goes through boto3's standard credential chain. The endpoint is `endpoint_url`, else
    AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, else AWS; custom endpoints get path-style addressing,
    which S3-compatible servers need. boto3 itself tries each request once with short timeouts
    (`connect_timeout`, `read_timeout` seconds): retrying is this class's job, within `retry_window`.
    """

    def __init__(self, endpoint_url: str | None = None, retry_window: float = 120.0, *,
                 connect_timeout: float = 5.0, read_timeout: float = 20.0) -> None:
        if retry_window < 0:
            raise ValueError(f"the retry window must be 0 or more seconds, not {retry_window}")
        self.endpoint_url = (endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3")
                             or os.environ.get("AWS_ENDPOINT_URL") or None)
        self.retry_window = retry_window
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._retry = RetryWindow(retry_window)
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._resolved_folders: dict[str, str] = {}
        self._conditional_writes: dict[str, bool] = {}

    def __repr__(self) -> str:
        return redact(f"Storage(endpoint_url={self.endpoint_url!r}, retry_window={self.retry_window!r})")

    def __getstate__(self) -> dict[str, Any]:
        return {"endpoint_url": self.endpoint_url, "retry_window": self.retry_window,
                "connect_timeout": self.connect_timeout, "read_timeout": self.read_timeout}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    # --- whole files and objects ---------------------------------------------------------------------------

    def read_bytes(self, location: Location) -> bytes:
        """The whole content of a file or object; NotFound if it does not exist."""
        if location.scheme == "file":
            return self.call(location, lambda: Path(location.path).read_bytes())
        client = self.client()

        def get() -> bytes:
            data: bytes = client.get_object(Bucket=location.bucket, Key=location.path)["Body"].read()
            return data
        return self.call(location, get)

    def write_bytes(self, location: Location, data: bytes, content_type: str | None = None, *, overwrite: bool = True,
                    metadata: Mapping[str, str] | None = None, confine_to: Location | None = None) -> None:
        """Write `data` so that the final name never holds a partial file or object.

        With `overwrite=False` nothing that exists is ever replaced (AlreadyExists instead): locally a hard
        link of the fsynced temporary file, on S3 a PutObject with If-None-Match: * (see
        supports_conditional_writes). `metadata` (check_metadata's rules) is part of the same atomic step:
        S3 user metadata, or locally the extended attribute `user.stylebatch.metadata` (a JSON object) where
        the filesystem has them.
        `confine_to`: a local folder that the file's folder must resolve into, checked on the opened folder
        after creating it (OutsidePrefix otherwise). `content_type` defaults to the extension's.
        """
        metadata = check_metadata(metadata)
        if location.scheme == "file":
            root = self._confinement_root(location, confine_to)
            self.call(location, lambda: write_file(location.path, lambda handle: handle.write(data),
                                                   overwrite=overwrite, metadata=metadata, confine_to=root))
            return
        self._confinement_root(location, confine_to)
        content_type = content_type or mimetypes.guess_type(location.name)[0] or "application/octet-stream"
        conditions = {} if overwrite else {"IfNoneMatch": "*"}
        client, attempts = self.client(), 0

        def put() -> None:
            nonlocal attempts
            attempts += 1
            try:
                client.put_object(Bucket=location.bucket, Key=location.path, Body=data, ContentType=content_type,
                                  Metadata=metadata, **conditions)
            except ClientError as error:
                # A retry after a lost answer finds the object there: maybe our own write.
                if attempts == 1 or overwrite or _status(error) != 412 or \
                        not self._holds(location, f'"{md5(data).hexdigest()}"', metadata):
                    raise
        self.call(location, put)

    def upload_file(self, local_path: str | os.PathLike[str], location: Location, *, overwrite: bool = True,
                    metadata: Mapping[str, str] | None = None, content_type: str | None = None,
                    confine_to: Location | None = None) -> None:
        """Copy a local file of any size to `location` without holding it in memory, with write_bytes'
        guarantees: locally an atomic copy, on S3 a multipart upload (parts of 16+ MiB, each retried; the
        completion conditional unless `overwrite`); files up to one part go as a single put."""
        source = os.fspath(local_path)
        metadata = check_metadata(metadata)
        if location.scheme == "file":
            root = self._confinement_root(location, confine_to)

            def copy(handle: BinaryIO) -> None:
                with open(source, "rb") as original:
                    while block := original.read(1024 * 1024):
                        handle.write(block)
            self.call(location, lambda: write_file(location.path, copy, overwrite=overwrite, metadata=metadata,
                                                   confine_to=root))
            return
        origin = Location("file", "", os.path.abspath(source))
        size = self.call(origin, lambda: os.path.getsize(source))
        if size <= PART_BYTES:
            data = self.call(origin, lambda: Path(source).read_bytes())
            self.write_bytes(location, data, content_type, overwrite=overwrite, metadata=metadata,
                             confine_to=confine_to)
            return
        self._confinement_root(location, confine_to)
        if not overwrite and self.stat(location) is not None:
            raise AlreadyExists(redact(f"{location}: already exists"))
        extra = {"ContentType": content_type or mimetypes.guess_type(location.name)[0] or "application/octet-stream",
                 "Metadata": metadata}
        upload_in_parts(self.client(), lambda action: self.call(location, action), location.bucket, location.path,
                        source, size, overwrite=overwrite, extra=extra)

    def open_reader(self, location: Location, *, chunk_size: int = _READ_CHUNK_BYTES) -> LocalReader | S3Reader:
        """A read-only, seekable binary file with a `size`: the open local file, or for S3 ranged GETs of
        `chunk_size` bytes, each retried, all pinned to the object's ETag at opening (an object replaced
        during the read is a StorageError, never a mix of two versions). Use as a context manager."""
        if location.scheme == "file":
            return self.call(location, lambda: LocalReader(location.path))
        info = self.stat(location)
        if info is None:
            raise NotFound(redact(f"{location}: no such object"))
        client, etag = self.client(), info.etag or "*"

        def fetch(start: int, end: int) -> bytes:
            def get() -> bytes:
                try:
                    response = client.get_object(Bucket=location.bucket, Key=location.path, IfMatch=etag,
                                                 Range=f"bytes={start}-{end - 1}")
                except ClientError as error:
                    if _status(error) == 412:
                        raise StorageError(redact(f"{location}: replaced while being read")) from None
                    raise
                data: bytes = response["Body"].read()
                if len(data) != end - start:
                    raise IncompleteReadError(actual_bytes=len(data), expected_bytes=end - start)
                return data
            return self.call(location, get)
        return S3Reader(fetch, info.size, str(location), chunk_size)

    # --- existence, stats, deletion, listing ---------------------------------------------------------------

    def stat(self, location: Location, *, with_metadata: bool = True) -> ObjectInfo | None:
        """Size, metadata, ETag and time of what is at `location`, or None if nothing is (for S3, a missing
        bucket too). Local folders are ObjectInfo(is_folder=True); symlinks are followed.
        `with_metadata=False` leaves a local file's metadata unread ({}): one syscall less per file (S3's
        HEAD answers with it anyway)."""
        if location.scheme == "file":
            return self.call(location, lambda: stat_file(location.path, with_metadata))
        client = self.client()

        def head() -> ObjectInfo | None:
            try:
                response = client.head_object(Bucket=location.bucket, Key=location.path)
            except ClientError as error:
                if _error_code(error) in ("404", "NoSuchKey", "NotFound", "NoSuchBucket"):
                    return None
                raise
            return ObjectInfo(int(response["ContentLength"]), dict(response.get("Metadata", {})), False,
                              response.get("ETag"), response["LastModified"].timestamp())
        return self.call(location, head)

    def stat_many(self, locations: Sequence[Location], *, with_metadata: bool = True) -> list[ObjectInfo | None]:
        """stat() of each location, in order: local ones one after the other (a few microseconds each), S3
        ones as concurrent HEAD requests on a bounded thread pool, each retried."""
        if all(location.scheme == "file" for location in locations):
            try:
                return [stat_file(location.path, with_metadata) for location in locations]
            except OSError:
                pass  # one of them needs retrying or putting into words: go one by one
        results: list[ObjectInfo | None] = [None] * len(locations)
        remote = []
        for index, location in enumerate(locations):
            if location.scheme == "file":
                try:
                    results[index] = stat_file(location.path, with_metadata)
                except OSError:
                    results[index] = self.stat(location, with_metadata=with_metadata)
            else:
                remote.append(index)
        if remote:
            for index, info in zip(remote, self._thread_pool().map(lambda at: self.stat(locations[at]), remote),
                                   strict=True):
                results[index] = info
        return results

    def delete(self, location: Location) -> None:
        """Remove a file or object; deleting something that does not exist is not an error (as on S3)."""
        if location.scheme == "file":
            self.call(location, lambda: Path(location.path).unlink(missing_ok=True))
            return
        client = self.client()
        self.call(location, lambda: client.delete_object(Bucket=location.bucket, Key=location.path))

    def list(self, prefix: Location, suffix: str = "", *, page_size: int = 1000) -> Iterator[Location]:
        """Every file or object under the folder `prefix` whose name ends with `suffix`, recursively.

        Streamed page by page (each page retried; an S3 listing goes on from its continuation token), so a
        listing of millions never sits in memory, in the store's order: by full path (UTF-8 bytes) locally
        and on AWS; some S3-compatible servers differ (SeaweedFS lists a folder before siblings that extend
        its name: 'a/b.png' before 'a-c.png'). A missing folder or prefix lists nothing; a missing bucket is
        NotFound. Folder markers, temporary files of writes in progress, leases and probes are left out.
        """
        if prefix.scheme == "file":
            yield from self._walk_sorted(prefix, suffix)
            return
        key_prefix = prefix.path.rstrip("/") + "/" if prefix.path.rstrip("/") else ""
        client, token = self.client(), None
        while True:
            request = {"Bucket": prefix.bucket, "Prefix": key_prefix, "MaxKeys": page_size,
                       **({"ContinuationToken": token} if token else {})}
            page = self.call(prefix, partial(client.list_objects_v2, **request))
            for entry in page.get("Contents", []):
                key = entry["Key"]
                if key.endswith(suffix) and not key.endswith("/") and \
                        not key.rpartition("/")[2].startswith(_HIDDEN_PREFIX):
                    yield Location("s3", prefix.bucket, key)
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    # --- checks before and during a run --------------------------------------------------------------------

    def probe_writable(self, prefix: Location) -> None:
        """Write, then delete, a small uniquely named object in the folder or prefix; a StorageError naming
        `prefix` and the reason in words if either fails. Final errors (no such bucket, refused credentials,
        read-only filesystem, a file where a folder should be...) come at once; an unreachable endpoint after
        the retry window."""
        probe = prefix.child(f"{_HIDDEN_PREFIX}probe-{uuid.uuid4().hex[:12]}")
        try:
            self.write_bytes(probe, b"stylebatch write probe\n", "text/plain", overwrite=False)
            self.delete(probe)
        except StorageError as error:
            reason = str(error).removeprefix(f"{redact(str(probe))}: ")
            raise type(error)(redact(f"{prefix}: cannot write here: {reason}")) from None

    def supports_conditional_writes(self, prefix: Location) -> bool:
        """Whether writes under `prefix` can refuse to replace (S3: the server honours If-None-Match: * and
        If-Match on PutObject; local: the filesystem makes hard links). Probed once per bucket or folder
        with a small object that is deleted after; errors as probe_writable's."""
        key = f"{prefix.bucket}" if prefix.scheme == "s3" else prefix.path
        if key not in self._conditional_writes:
            self._conditional_writes[key] = self._probe_conditional_writes(prefix)
        return self._conditional_writes[key]

    def check_confined(self, location: Location, prefix: Location) -> None:
        """OutsidePrefix (a ValueError) if the local `location`, resolved through symlinks (its last part
        too), is not inside the resolved folder `prefix`. Resolved folders are cached, so this costs about
        one lstat per call; writes re-check with write_bytes(confine_to=...). S3 locations: nothing to
        resolve (Location.child already keeps keys under their prefix)."""
        if location.scheme != prefix.scheme:
            raise OutsidePrefix(redact(f"{location}: not under {prefix}"))
        if location.scheme == "s3":
            return
        folder, name = os.path.split(location.path)
        resolved = os.path.join(self._resolved_folder(folder), name)
        if os.path.islink(resolved):
            resolved = os.path.realpath(resolved)
        check_inside(resolved, self._resolved_folder(prefix.path), location.path)

    def acquire_lease(self, prefix: Location, holder: Mapping[str, str], expiry_seconds: float = 60.0, *,
                      conditional: bool | None = None) -> Lease | LeaseHeld:
        """Take the run lease of an output folder or prefix (pipeline.storage.lease explains the protocol),
        or learn who holds it. `holder` describes this run (run id, host, pid, start...) for others to print.
        S3 leases expire `expiry_seconds` after their holder's last heartbeat (takers go by the expiry the
        holder wrote into the lease); local ones end with their process. `conditional` (S3): None probes
        the server, False forces the best-effort protocol."""
        location = prefix.child(LEASE_NAME)
        description = dict(holder)
        if location.scheme == "file":
            return self.call(location, lambda: acquire_local(location, description))
        if conditional is None:
            conditional = self.supports_conditional_writes(prefix)
        return acquire_s3(self, location, description, expiry_seconds, conditional)

    # --- plumbing --------------------------------------------------------------------------------------

    def call(self, location: Location, action: Callable[[], T], *, window: float | None = None) -> T:
        """`action()`, retried on transient faults for the retry window (or `window` seconds), its storage
        errors put into words about `location`."""
        retry = self._retry if window is None else RetryWindow(max(0.0, window))
        return retry.run(action, lambda error: self._error(location, error))

    def client(self) -> Any:
        """The boto3 S3 client, created on first use in this process."""
        with self._client_lock:
            if self._client is None:
                session = boto3.session.Session()
                register_credentials(session.get_credentials())
                s3_options = {"addressing_style": "path"} if self.endpoint_url else {}
                config = Config(retries={"mode": "standard", "total_max_attempts": 1}, s3=s3_options,
                                connect_timeout=self.connect_timeout, read_timeout=self.read_timeout,
                                max_pool_connections=2 * _STAT_THREADS)
                self._client = session.client("s3", endpoint_url=self.endpoint_url, config=config)
            return self._client

    def _thread_pool(self) -> ThreadPoolExecutor:
        with self._client_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(_STAT_THREADS, thread_name_prefix="storage-stat")
            return self._pool

    def _holds(self, location: Location, etag: str, metadata: dict[str, str]) -> bool:
        """Whether the object at `location` has this ETag and metadata (is the one we meant to write)."""
        info = self.stat(location)
        return info is not None and info.etag == etag and info.metadata == metadata

    def _confinement_root(self, location: Location, confine_to: Location | None) -> str | None:
        """The local folder a write must stay in (None: no constraint); OutsidePrefix for a mismatch."""
        if confine_to is None:
            return None
        inside_bucket = location.bucket == confine_to.bucket and (
            not confine_to.path.strip("/") or location.path.startswith(confine_to.path.rstrip("/") + "/"))
        if confine_to.scheme != location.scheme or (location.scheme == "s3" and not inside_bucket):
            raise OutsidePrefix(redact(f"{location}: not under {confine_to}"))
        return confine_to.path if location.scheme == "file" else None

    def _resolved_folder(self, folder: str) -> str:
        resolved = self._resolved_folders.get(folder)
        if resolved is None:
            if len(self._resolved_folders) >= _RESOLVED_FOLDERS_KEPT:
                self._resolved_folders.clear()
            resolved = self._resolved_folders[folder] = os.path.realpath(folder)
        return resolved

    def _probe_conditional_writes(self, prefix: Location) -> bool:
        probe = prefix.child(f"{_HIDDEN_PREFIX}probe-{uuid.uuid4().hex[:12]}")
        try:
            if probe.scheme == "file":
                self.write_bytes(probe, b"", overwrite=False)
                try:
                    self.write_bytes(probe, b"", overwrite=False)
                except AlreadyExists:
                    return True
                return False
            client = self.client()

            def status_of_put(**conditions: str) -> int:
                try:
                    client.put_object(Bucket=probe.bucket, Key=probe.path, Body=b"probe", **conditions)
                except ClientError as error:
                    if _status(error) in (400, 412, 501):
                        return _status(error)
                    raise
                return 200
            self.call(probe, status_of_put)
            refused_overwrite = self.call(probe, lambda: status_of_put(IfNoneMatch="*")) == 412
            refused_stale = self.call(probe, lambda: status_of_put(IfMatch='"' + "0" * 32 + '"')) == 412
            return refused_overwrite and refused_stale
        except StorageError as error:
            if probe.scheme == "file" and "hard links" in str(error):
                return False
            raise
        finally:
            self.delete(probe)

    def _walk_sorted(self, folder: Location, suffix: str) -> Iterator[Location]:
        """Files under `folder` in the order S3 would list them (sorted by their full relative paths)."""
        def scan() -> list[os.DirEntry[str]]:
            try:
                return list(os.scandir(folder.path))
            except (FileNotFoundError, NotADirectoryError):
                return []

        def sort_key(entry: os.DirEntry[str]) -> str:
            return entry.name + "/" if entry.is_dir(follow_symlinks=False) else entry.name

        for entry in sorted(self.call(folder, scan), key=sort_key):
            if entry.is_dir(follow_symlinks=False):
                yield from self._walk_sorted(Location("file", "", entry.path), suffix)
            elif entry.name.endswith(suffix) and not is_temporary_name(entry.name) \
                    and not entry.name.startswith(_HIDDEN_PREFIX):
                yield Location("file", "", entry.path)

    def _error(self, location: Location, error: BaseException) -> StorageError:
        """A StorageError that says what went wrong with `location` in words, with secrets masked."""
        if location.scheme == "file" and isinstance(error, OSError):
            return _local_error(location, error)
        endpoint = self.endpoint_url or "AWS S3"
        if isinstance(error, ClientError):
            code = _error_code(error)
            message = error.response.get("Error", {}).get("Message", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                return NotFound(redact(f"{location}: no such object"))
            if code == "NoSuchBucket":
                return NotFound(redact(f"{location}: no such bucket {location.bucket!r}"))
            if code == "PreconditionFailed" or _status(error) == 412:
                return AlreadyExists(redact(f"{location}: already exists"))
            reason = _CLIENT_ERROR_REASONS.get(code, f"S3 error {code}: {message}".rstrip(": "))
            if _status(error) >= 500 or _status(error) == 429:
                reason = f"{reason} (HTTP {_status(error)})"
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
        elif isinstance(error, BotoCoreError):
            reason = f"S3 request failed: {error}"
        else:
            reason = f"connection to S3 endpoint {endpoint} failed: {type(error).__name__}: {error}"
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
    "SlowDown": "S3 is throttling requests (SlowDown)",
}


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _status(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def _local_error(location: Location, error: OSError) -> StorageError:
    """A StorageError naming the local path and the operating system's reason."""
    if isinstance(error, FileNotFoundError):
        return NotFound(redact(f"{location}: no such file"))
    if isinstance(error, IsADirectoryError):
        return StorageError(redact(f"{location}: is a folder, not a file"))
    if isinstance(error, (NotADirectoryError, FileExistsError)):
        return StorageError(redact(f"{location}: a file is in the way where a folder should be on this path"))
    return StorageError(redact(f"{location}: {(error.strerror or str(error)).lower()}"))
