"""A run lease per output prefix: the mechanism that lets at most one live run hold a prefix at a time.

The batch layer decides the policy (wait, fail, or proceed with per-row conditional writes); this module
only takes, keeps and releases the lease. Both kinds live at `<prefix>/.stylebatch-lease` (listings skip
it) and record the holder's own description (run id, host, pid, start time...) for a second run to print.

Local folders: `fcntl.flock(LOCK_EX | LOCK_NB)` on that file. The operating system releases the lock when
the holding process ends in any way, kill -9 included, so a crashed run never blocks the next one. The
descriptor is close-on-exec (children started with exec do not inherit it; a bare fork would). After
locking, the taker checks that the locked file is still the one at the name (a releasing holder unlinks
it while still holding the lock), else it tries again. On NFS, Linux maps flock to NFS byte-range locks,
which the server frees when the client's lease lapses.

S3 prefixes (conditional writes, server clock only):
  1. Take: PutObject with If-None-Match: * . It succeeds for exactly one of any number of takers.
  2. Keep: a heartbeat thread rewrites the object every expiry/3 seconds with If-Match: <its last ETag>.
     Every write carries a fresh nonce, so every ETag differs. A 412 means another run took over: the
     lease is `lost`. A renewal that cannot get through (storage down) within the expiry also makes it
     `lost`, since another run may have taken over meanwhile. `lost` never clears.
  3. Take over: a taker that finds the object reads it; the object is stale when the server's own clock
     (the Date header of that response) is more than the holder's `expiry_seconds` (written in the
     object) past its Last-Modified (both are whole seconds, so one second of margin). A stale lease is
     replaced with If-Match: <the stale ETag>, so of two takers only one wins; the other sees 412 and
     reads the new holder.
  4. Release: DeleteObject with If-Match: <its ETag> (so a lease already taken over is left alone).
  A conditional write whose answer was lost is retried; a 412 on the retry is checked against the
  object's nonce, so a run never mistakes its own successful write for someone else's.
  On a server that ignores If-None-Match/If-Match (Storage.supports_conditional_writes is False) the
  same steps run without conditions, reading the object back after each write to see whose nonce it
  holds: best effort only (two runs starting within a second can both believe they hold it), and said so
  in a warning and in `Lease.guaranteed`.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Protocol, TypeVar

from botocore.exceptions import ClientError

from pipeline.storage.errors import StorageError
from pipeline.storage.location import Location
from pipeline.storage.secrets import redact

T = TypeVar("T")


class Storage(Protocol):
    """What the S3 lease needs of `pipeline.storage.store.Storage` (which imports this module)."""

    def client(self) -> Any: ...

    def call(self, location: Location, action: Callable[[], T], *, window: float | None = None) -> T: ...

LEASE_NAME = ".stylebatch-lease"
_CLOCK_RESOLUTION_S = 1.0  # Last-Modified and Date have whole seconds
_TAKE_ATTEMPTS = 5
_UNREADABLE_EXPIRY_S = 60.0  # for a lease object that is not ours to read: wait this long before replacing it
_READ_BACK_DELAY_S = 0.5  # best-effort mode: how long another taker has to show up before the read-back

log = logging.getLogger("pipeline.storage")


@dataclass(frozen=True)
class LeaseHeld:
    """Another live run holds the lease: its own description of itself, and for S3 the seconds until the
    lease expires unless renewed (None locally: held as long as the holding process lives)."""

    location: Location
    holder: dict[str, str]
    expires_in: float | None


class Lease:
    """A held lease; `release()` (or leaving a `with` block) gives it back."""

    def __init__(self, location: Location, holder: dict[str, str], guaranteed: bool = True) -> None:
        self.location = location
        self.holder = holder
        self.guaranteed = guaranteed

    @property
    def lost(self) -> bool:
        """Whether another run may hold the lease now."""
        return False

    def release(self) -> None:
        """Give the lease back (idempotent)."""

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


# --- local: flock ----------------------------------------------------------------------------------------

class LocalLease(Lease):
    """An flock held on an open lock file until release() or the end of the process."""

    def __init__(self, location: Location, holder: dict[str, str], descriptor: int) -> None:
        super().__init__(location, holder)
        self._descriptor: int | None = descriptor

    @property
    def lost(self) -> bool:
        """True once released, or if someone removed or replaced the lock file."""
        if self._descriptor is None:
            return True
        try:
            return not _same_file(os.fstat(self._descriptor), os.stat(self.location.path))
        except FileNotFoundError:
            return True

    def release(self) -> None:
        if self._descriptor is None:
            return
        try:
            if not self.lost:
                os.unlink(self.location.path)
        finally:
            os.close(self._descriptor)
            self._descriptor = None


def acquire_local(location: Location, holder: dict[str, str]) -> Lease | LeaseHeld:
    """Lock the file at `location` (created with its folders), or say who holds it. OSError on failure."""
    os.makedirs(os.path.dirname(location.path), exist_ok=True)
    for _ in range(_TAKE_ATTEMPTS):
        descriptor = os.open(location.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held = LeaseHeld(location, _read_local_holder(descriptor), None)
            os.close(descriptor)
            return held
        except BaseException:
            os.close(descriptor)
            raise
        try:
            if _same_file(os.fstat(descriptor), os.stat(location.path)):
                payload = json.dumps(holder).encode()
                os.ftruncate(descriptor, 0)
                os.pwrite(descriptor, payload, 0)
                os.fsync(descriptor)
                return LocalLease(location, holder, descriptor)
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(descriptor)
            raise
        os.close(descriptor)  # the holder released (and unlinked) it between our open and our lock
    raise StorageError(redact(f"{location}: the lock file keeps being replaced; is another program removing it?"))


def _same_file(first: os.stat_result, second: os.stat_result) -> bool:
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


def _read_local_holder(descriptor: int) -> dict[str, str]:
    """The holder's description; {} if it is still being written after a few tries."""
    for _ in range(10):
        holder = _holder_from(os.pread(descriptor, 65536, 0))
        if holder:
            return holder
        time.sleep(0.02)
    return {}


def _holder_from(payload: bytes) -> dict[str, str]:
    try:
        return _as_holder(json.loads(payload))
    except ValueError:
        return {}


def _as_holder(value: Any) -> dict[str, str]:
    return {str(key): str(item) for key, item in value.items()} if isinstance(value, dict) else {}


# --- S3: conditional writes ------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Current:
    """The lease object as read: its ETag, body fields, and age by the server's clock."""

    etag: str
    holder: dict[str, str]
    nonce: str
    age: float
    expiry_seconds: float

    def expires_in(self) -> float:
        """Seconds until a taker may replace it (one second of margin for the whole-second clocks)."""
        return max(0.0, self.expiry_seconds + _CLOCK_RESOLUTION_S - self.age)


class S3Lease(Lease):
    """A lease object kept alive by a heartbeat thread until release()."""

    def __init__(self, storage: Storage, location: Location, holder: dict[str, str], expiry_seconds: float,
                 etag: str, sent_at: float, conditional: bool) -> None:
        super().__init__(location, holder, guaranteed=conditional)
        self._storage = storage
        self._expiry = expiry_seconds
        self._etag = etag
        self._confirmed_at = sent_at
        self._conditional = conditional
        self._lost = False
        self._released = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._heartbeat, name=f"lease {location}", daemon=True)
        self._thread.start()

    @property
    def lost(self) -> bool:
        if not self._lost and time.monotonic() - self._confirmed_at > self._expiry:
            self._lost = True
        return self._lost

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        self._stop.set()
        self._thread.join()
        if not self.lost:
            _delete_if_current(self._storage, self.location, self._etag, self._conditional)
        self._lost = True

    def _heartbeat(self) -> None:
        """Renew a third of the expiry after the last confirmed renewal, until stopped or lost."""
        while not self._stop.wait(max(0.0, self._confirmed_at + self._expiry / 3 - time.monotonic())):
            if self.lost:
                return
            sent_at = time.monotonic()
            window = self._expiry - (sent_at - self._confirmed_at)
            body, nonce = _body(self.holder, self._expiry)
            try:
                etag = _put(self._storage, self.location, body, nonce, self._conditional, window,
                            IfMatch=self._etag)
            except StorageError as error:
                log.warning("%s: lease renewal failed (%s); trying again", self.location, error)
                self._stop.wait(min(1.0, self._expiry / 10))
                continue
            if etag is None:
                self._lost = True
                log.warning("%s: another run took over this run's lease", self.location)
                return
            self._etag, self._confirmed_at = etag, sent_at


def acquire_s3(storage: Storage, location: Location, holder: dict[str, str], expiry_seconds: float,
               conditional: bool) -> Lease | LeaseHeld:
    """Take the lease object at `location`, or take over a stale one, or say who holds it."""
    if not conditional:
        log.warning("%s: the S3 server does not honour conditional writes (If-None-Match, If-Match); this "
                    "lease is best effort: two runs starting within a second of each other may both hold it",
                    location)
    current: _Current | None = None
    storage.client()  # created before the clock starts: the expiry counts from the request
    for _ in range(_TAKE_ATTEMPTS):
        sent_at = time.monotonic()
        body, nonce = _body(holder, expiry_seconds)
        if current is None:
            etag = _put(storage, location, body, nonce, conditional, None, IfNoneMatch="*")
        elif current.expires_in() <= 0:
            etag = _put(storage, location, body, nonce, conditional, None, IfMatch=current.etag)
        else:
            return LeaseHeld(location, current.holder, current.expires_in())
        if etag is not None:
            return S3Lease(storage, location, holder, expiry_seconds, etag, sent_at, conditional)
        current = storage.call(location, lambda: _read(storage.client(), location))
    if current is None:
        raise StorageError(redact(f"{location}: the lease object keeps appearing and disappearing"))
    return LeaseHeld(location, current.holder, current.expires_in())


def _body(holder: dict[str, str], expiry_seconds: float) -> tuple[bytes, str]:
    """The lease object's content: who holds it, their expiry (which takers go by), a fresh nonce."""
    nonce = uuid.uuid4().hex
    return json.dumps({"holder": holder, "expiry_seconds": expiry_seconds, "nonce": nonce}).encode(), nonce


def _read(client: Any, location: Location) -> _Current | None:
    """The lease object now (None if there is none)."""
    try:
        response = client.get_object(Bucket=location.bucket, Key=location.path)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
            return None
        raise
    payload = response["Body"].read()
    date = response["ResponseMetadata"].get("HTTPHeaders", {}).get("date")
    now = parsedate_to_datetime(date).timestamp() if date else time.time()
    try:
        body = json.loads(payload)
        holder, nonce, expiry = _as_holder(body["holder"]), str(body["nonce"]), float(body["expiry_seconds"])
    except (ValueError, KeyError, TypeError):
        holder, nonce, expiry = {}, "", _UNREADABLE_EXPIRY_S
    return _Current(str(response["ETag"]), holder, nonce, now - response["LastModified"].timestamp(), expiry)


def _put(storage: Storage, location: Location, body: bytes, nonce: str, conditional: bool,
         window: float | None, **conditions: str) -> str | None:
    """The ETag of our write of `body`, or None if the condition did not hold (someone else's lease).

    Without server support for conditions: check the condition by reading first, write, wait a moment,
    and read back whose nonce the object holds."""
    client = storage.client()
    attempts = 0

    def conditional_put() -> str | None:
        nonlocal attempts
        attempts += 1
        try:
            response = client.put_object(Bucket=location.bucket, Key=location.path, Body=body,
                                         ContentType="application/json", **conditions)
            return str(response["ETag"])
        except ClientError as error:
            if error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 412:
                raise
            current = _read(client, location) if attempts > 1 else None
            return current.etag if current is not None and current.nonce == nonce else None

    def best_effort_put() -> str | None:
        current = _read(client, location)
        if "IfNoneMatch" in conditions:
            allowed = current is None
        else:
            allowed = current is not None and current.etag == conditions["IfMatch"]
        if not allowed:
            return None
        client.put_object(Bucket=location.bucket, Key=location.path, Body=body, ContentType="application/json")
        time.sleep(_READ_BACK_DELAY_S)
        current = _read(client, location)
        return current.etag if current is not None and current.nonce == nonce else None

    action: Callable[[], str | None] = conditional_put if conditional else best_effort_put
    return storage.call(location, action, window=window)


def _delete_if_current(storage: Storage, location: Location, etag: str, conditional: bool) -> None:
    """Delete the lease object if it is still the one with `etag` (the server checks, where it can)."""
    client = storage.client()

    def delete() -> None:
        if conditional:
            try:
                client.delete_object(Bucket=location.bucket, Key=location.path, IfMatch=etag)
                return
            except ClientError as error:
                status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if status in (404, 412):
                    return
                if status != 501:
                    raise
        current = _read(client, location)
        if current is not None and current.etag == etag:
            client.delete_object(Bucket=location.bucket, Key=location.path)

    try:
        storage.call(location, delete)
    except StorageError as error:
        log.warning("%s: could not release the lease (%s); it expires by itself", location, error)
