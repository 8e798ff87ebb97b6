"""Writing local files so that no half-written file ever has the final name.

A file is written under a hidden temporary name beside its destination, flushed to disk
and renamed over the destination (atomic on POSIX): a reader, a crash or a concurrent
writer sees the old file or the new one, never a mix. Torch-free, for the batch driver.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

_TEMPORARY_NAME = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp$")
_NAME_BYTES_KEPT = 200  # + the 18 characters added stays within NAME_MAX (255 bytes)


def temporary_name(name: str) -> str:
    """A fresh hidden name for writing `name`: '.<name>.<12 hex digits>.tmp', with `name` cut to
    its first 200 bytes so that the temporary name is valid wherever `name` is."""
    encoded = os.fsencode(name)
    kept = name if len(encoded) <= _NAME_BYTES_KEPT else os.fsdecode(encoded[:_NAME_BYTES_KEPT])
    return f".{kept}.{uuid.uuid4().hex[:12]}.tmp"


def is_temporary_name(name: str) -> bool:
    """Whether a file name is one of `temporary_name`'s (an unfinished write, never a result)."""
    return _TEMPORARY_NAME.match(name) is not None


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A binary file opened for writing that appears at `path`, replacing what was there, only
    once the `with` block completes; on an exception nothing changes at `path` and the
    temporary file is removed. Creates missing parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / temporary_name(path.name)
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(descriptor, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` through `atomic_file`."""
    with atomic_file(path) as handle:
        handle.write(data)
