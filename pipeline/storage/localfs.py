"""Local files: atomic writes that may refuse to replace, metadata in extended attributes, cheap stats.

A write goes to a hidden temporary file in the destination folder (named like
`.{name}.{12 hex digits}.tmp`, which listings skip), is fsynced with its metadata already attached, then
takes the final name: by rename (replacing) or by hard link (never replacing: link fails if the name
exists, atomically, even against another process). The folder is opened once and every step is done
relative to that open folder, so confinement checked on it holds even if a symlink is swapped in later.
Errors are raw OSErrors (or OutsidePrefix); pipeline.storage.store puts them into words.
"""

from __future__ import annotations

import errno
import io
import json
import os
import stat
from collections.abc import Callable, Mapping
from contextlib import suppress
from typing import BinaryIO

from pipeline.storage.errors import AlreadyExists, OutsidePrefix
from pipeline.storage.objects import ObjectInfo
from pipeline.storage.secrets import redact
from stylecore.files import temporary_name

METADATA_ATTRIBUTE = "user.stylebatch.metadata"
_NO_XATTRS = (errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENODATA)


def write_file(path: str, fill: Callable[[BinaryIO], object], *, overwrite: bool = True,
               metadata: Mapping[str, str] | None = None, confine_to: str | None = None) -> None:
    """Create `path` (and its folders) with what `fill` writes into the open temporary file.

    AlreadyExists if `overwrite` is False and something has the name; OutsidePrefix if `confine_to` is
    given and the folder, resolved before creating it and again once opened, is not inside it.
    """
    folder, name = os.path.split(path)
    root = os.path.realpath(confine_to) if confine_to is not None else None
    if root is not None:  # before creating folders, so none is made through a symlink outside
        check_inside(os.path.join(os.path.realpath(folder), name), root, path)
    os.makedirs(folder, exist_ok=True)
    folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if root is not None:  # again on the opened folder, which every later step is relative to
            check_inside(os.path.join(real_folder(folder_fd, folder), name), root, path)
        temporary = temporary_name(name)
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666, dir_fd=folder_fd)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                fill(handle)
                handle.flush()
                _set_metadata(handle.fileno(), metadata or {})
                os.fsync(handle.fileno())
            if overwrite:
                os.replace(temporary, name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
            else:
                _link_without_replacing(temporary, name, folder_fd, path)
        finally:
            with suppress(FileNotFoundError):
                os.unlink(temporary, dir_fd=folder_fd)
    finally:
        os.close(folder_fd)


def _link_without_replacing(temporary: str, name: str, folder_fd: int, path: str) -> None:
    try:
        os.link(temporary, name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
    except FileExistsError:
        raise AlreadyExists(redact(f"{path}: already exists")) from None
    except OSError as error:
        if error.errno in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise OSError(error.errno, "this filesystem cannot make hard links, which a write that must not "
                                       "replace an existing file needs") from None
        raise



def real_folder(folder_fd: int, folder: str) -> str:
    """The resolved path of an open folder (from /proc on Linux, else by resolving its path again)."""
    with suppress(OSError):
        return os.readlink(f"/proc/self/fd/{folder_fd}")
    return os.path.realpath(folder)


def check_inside(resolved: str, root: str, shown: str) -> None:
    """OutsidePrefix naming `shown` unless its resolved path `resolved` is the resolved folder `root` or
    inside it."""
    if resolved != root and not resolved.startswith(root.rstrip("/") + "/"):
        through = f" (it resolves through a symlink to {resolved})" if resolved != shown else ""
        raise OutsidePrefix(redact(f"{shown}: outside {root}{through}"))


def _set_metadata(descriptor: int, metadata: Mapping[str, str]) -> None:
    """Metadata as one user extended attribute holding a JSON object (one syscall to read it back, whatever
    the number of keys); skipped where the filesystem has none (ramfs, some network filesystems)."""
    if not metadata:
        return
    try:
        os.setxattr(descriptor, METADATA_ATTRIBUTE, json.dumps(metadata, separators=(",", ":")).encode())
    except OSError as error:
        if error.errno not in _NO_XATTRS:
            raise


def read_metadata(path: str) -> dict[str, str]:
    """The metadata that write_file attached to `path` ({} if none, unreadable, or unsupported)."""
    try:
        stored = json.loads(os.getxattr(path, METADATA_ATTRIBUTE))
    except OSError as error:
        if error.errno in _NO_XATTRS:
            return {}
        raise
    except ValueError:
        return {}
    return {str(key): str(value) for key, value in stored.items()} if isinstance(stored, dict) else {}


class LocalReader(io.BufferedReader):
    """An open local file, read-only and seekable, with its `size` in bytes."""

    def __init__(self, path: str) -> None:
        super().__init__(io.FileIO(path, "rb"))
        self.size = os.fstat(self.fileno()).st_size


def stat_file(path: str, with_metadata: bool = True) -> ObjectInfo | None:
    """What is at `path` (following symlinks), or None if nothing is; metadata {} unless `with_metadata`."""
    try:
        status = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if stat.S_ISDIR(status.st_mode):
        return ObjectInfo(0, {}, True, None, status.st_mtime)
    return ObjectInfo(status.st_size, read_metadata(path) if with_metadata else {}, False, None, status.st_mtime)
