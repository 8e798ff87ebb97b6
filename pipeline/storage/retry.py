"""Retrying transient storage faults with exponential backoff and jitter until a time window is spent.

Transient: connection failures and timeouts, a connection dropped mid-response, HTTP 5xx (but 501 Not
Implemented), throttling (429, SlowDown, ...), S3's RequestTimeout, and the errno values that network
filesystems return during an outage. Everything else (missing key or bucket, refused credentials, a full
or read-only disk, ...) is final at once: waiting would not change it.
"""

from __future__ import annotations

import errno
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.client import HTTPException
from typing import TypeVar

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, IncompleteReadError, SSLError
from botocore.exceptions import ConnectionError as BotoConnectionError
from urllib3.exceptions import HTTPError as Urllib3Error

from pipeline.storage.errors import StorageError, Unavailable

T = TypeVar("T")

log = logging.getLogger("pipeline.storage")

# The errors a storage call can raise that are about storage; anything else (a bug) propagates untouched.
STORAGE_FAULTS = (OSError, BotoCoreError, ClientError, HTTPException, Urllib3Error)

_TRANSIENT_S3_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
    "RequestThrottledException", "TooManyRequests", "TooManyRequestsException", "RequestLimitExceeded",
    "BandwidthLimitExceeded", "ProvisionedThroughputExceededException", "RequestTimeout", "RequestTimeoutException",
    "InternalError", "ServiceUnavailable", "OperationAborted", "ConditionalRequestConflict",
    "PriorRequestNotComplete", "IncompleteBody", "EC2ThrottledException",
})
# ENOENT, EACCES, ENOSPC, EROFS, EDQUOT... are final. EIO is here because NFS, FUSE and other network
# filesystems report an unreachable server with it; on a local disk it costs the window before failing.
_TRANSIENT_ERRNOS = frozenset({
    errno.EAGAIN, errno.EINTR, errno.ETIMEDOUT, errno.ESTALE, errno.EIO, errno.ECONNRESET, errno.ECONNREFUSED,
    errno.ECONNABORTED, errno.EPIPE, errno.ENETDOWN, errno.ENETUNREACH, errno.ENETRESET, errno.EHOSTDOWN,
    errno.EHOSTUNREACH,
})


_WARNING_INTERVAL_S = 10.0  # an outage seen by a thousand concurrent calls is one warning, not a thousand
_last_warning = 0.0
_warning_lock = threading.Lock()


def _note_retry(message: str) -> None:
    """A warning that a call is being retried, at most one per interval per process (the rest at DEBUG)."""
    global _last_warning
    with _warning_lock:
        now = time.monotonic()
        loud = now - _last_warning >= _WARNING_INTERVAL_S
        if loud:
            _last_warning = now
    log.log(logging.WARNING if loud else logging.DEBUG, "%s", message)


def is_transient(error: BaseException) -> bool:
    """Whether `error` may well go away if the same call is made again a little later."""
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return code in _TRANSIENT_S3_CODES or status == 429 or (status >= 500 and status != 501
                                                                and code != "NotImplemented")
    if isinstance(error, SSLError):
        return False
    if isinstance(error, (BotoConnectionError, HTTPClientError, IncompleteReadError, HTTPException, Urllib3Error,
                          ConnectionError, TimeoutError)):
        return True
    return isinstance(error, OSError) and error.errno in _TRANSIENT_ERRNOS


@dataclass(frozen=True)
class RetryWindow:
    """Call again after transient faults, waiting first_delay, then twice as long each time (at most
    max_delay, each wait drawn between half and all of it), until `seconds` have passed since the first try.
    The last try happens when the window ends, so a window of 0 means exactly one try."""

    seconds: float
    first_delay: float = 0.1
    max_delay: float = 4.0

    def run(self, action: Callable[[], T], fail: Callable[[BaseException], StorageError]) -> T:
        """`action()`'s result; a storage fault becomes `fail(fault)` at once if final, or after the window if
        transient, then as an Unavailable that says how long and how many times it was tried."""
        start = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            try:
                return action()
            except StorageError:
                raise
            except STORAGE_FAULTS as error:
                if not is_transient(error):
                    raise fail(error) from None
                elapsed = time.monotonic() - start
                remaining = self.seconds - elapsed
                if remaining <= 0:
                    retried = (f"; retried for {elapsed:.1f} s ({attempts} attempts, retry window {self.seconds:g} s)"
                               if attempts > 1 else "")
                    raise Unavailable(f"{fail(error)}{retried}") from None
                if attempts == 1:
                    _note_retry(f"{fail(error)}; retrying for up to {self.seconds:g} s")
                delay = min(self.max_delay, self.first_delay * 2 ** (attempts - 1))
                time.sleep(min(remaining, random.uniform(delay / 2, delay)))
