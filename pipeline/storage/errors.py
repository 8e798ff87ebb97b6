"""The storage layer's exceptions: each message names the location and the reason, secrets masked."""

from __future__ import annotations


class StorageError(Exception):
    """A read, write, listing, stat or deletion failed; the message names the location and the reason."""


class NotFound(StorageError):
    """The file, object or bucket does not exist."""


class AlreadyExists(StorageError):
    """A write that must not replace anything found a file, folder or object at its name."""


class Unavailable(StorageError):
    """A transient fault (network, 5xx, throttling) outlasted the retry window; the message says how long."""


class OutsidePrefix(StorageError, ValueError):
    """A local location resolves, through symlinks, to somewhere outside the folder it must stay in.

    A ValueError at validation time and a StorageError at write time, so either kind of handler sees it.
    """
