"""Large S3 transfers that survive network blips: a seekable reader of ranged GETs, and multipart uploads.

Both retry piece by piece (a chunk, a part) through the caller's retry window, so a blip in the middle of
a 10 GB transfer costs one piece again, not the whole transfer.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from typing import Any, TypeVar

from botocore.exceptions import ClientError

T = TypeVar("T")
Call = Callable[[Callable[[], T]], T]

PART_BYTES = 16 * 1024 * 1024
_MAX_PARTS = 10_000  # S3's limit per upload
_PARALLEL_PARTS = 4  # parts in flight (and in memory) at once


class S3Reader(io.BufferedIOBase):
    """A read-only, seekable binary file over an S3 object of known `size`, fetched in chunks.

    `fetch(start, end)` returns bytes [start, end) of the object (one retried ranged GET). One chunk is
    cached, aligned to multiples of the chunk size, so memory is one chunk plus what the caller asks for.
    """

    def __init__(self, fetch: Callable[[int, int], bytes], size: int, name: str, chunk_size: int) -> None:
        super().__init__()
        if chunk_size <= 0:
            raise ValueError(f"chunk size must be positive, not {chunk_size}")
        self.size = size
        self.name = name
        self._fetch = fetch
        self._chunk_size = chunk_size
        self._chunk = b""
        self._chunk_start = 0
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        self._checkClosed()
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._checkClosed()
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}.get(whence)
        if base is None:
            raise ValueError(f"invalid whence {whence}")
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._position = base + offset
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        """Up to `size` bytes (all that remain if negative); fewer only at the end of the object."""
        self._checkClosed()
        end = self._end(size)
        pieces = []
        while self._position < end:
            pieces.append(self._piece(end))
        return b"".join(pieces)

    def read1(self, size: int | None = -1) -> bytes:
        """Up to `size` bytes from at most one chunk fetch (what io.TextIOWrapper reads with)."""
        self._checkClosed()
        end = self._end(size)
        return self._piece(end) if self._position < end else b""

    def readinto(self, buffer: Any) -> int:
        data = self.read(memoryview(buffer).nbytes)
        memoryview(buffer).cast("B")[:len(data)] = data
        return len(data)

    def close(self) -> None:
        self._chunk = b""
        super().close()

    def _end(self, size: int | None) -> int:
        return self.size if size is None or size < 0 else min(self.size, self._position + size)

    def _piece(self, end: int) -> bytes:
        offset = self._position - self._chunk_start
        if not 0 <= offset < len(self._chunk):
            self._chunk = b""
            self._chunk_start = self._position - self._position % self._chunk_size
            self._chunk = self._fetch(self._chunk_start, min(self.size, self._chunk_start + self._chunk_size))
            offset = self._position - self._chunk_start
        piece = self._chunk[offset:offset + end - self._position]
        self._position += len(piece)
        return piece


def multipart_etag(part_etags: list[str]) -> str:
    """The ETag S3 gives an object completed from parts with these ETags (MD5 of their MD5s, dash, count)."""
    digests = b"".join(bytes.fromhex(etag.strip('"')) for etag in part_etags)
    return f'"{hashlib.md5(digests).hexdigest()}-{len(part_etags)}"'


def upload_in_parts(client: Any, call: Call[Any], bucket: str, key: str, path: str, size: int, *,
                    overwrite: bool, extra: dict[str, Any]) -> None:
    """Upload the file at `path` as a multipart upload, each request retried through `call`; completed with
    If-None-Match: * unless `overwrite`, aborted if anything fails. ClientError 412 means it existed."""
    part_bytes = max(PART_BYTES, math.ceil(size / _MAX_PARTS))
    count = math.ceil(size / part_bytes)
    upload_id = call(lambda: client.create_multipart_upload(Bucket=bucket, Key=key, **extra)["UploadId"])
    try:
        with open(path, "rb") as source, ThreadPoolExecutor(_PARALLEL_PARTS) as pool:
            def send(number: int) -> str:
                data = os.pread(source.fileno(), part_bytes, (number - 1) * part_bytes)
                response = call(lambda: client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id,
                                                           PartNumber=number, Body=data))
                return str(response["ETag"])
            etags = list(pool.map(send, range(1, count + 1)))
        conditions = {} if overwrite else {"IfNoneMatch": "*"}
        parts = {"Parts": [{"ETag": etag, "PartNumber": number} for number, etag in enumerate(etags, 1)]}
        attempts = 0

        def complete() -> None:
            nonlocal attempts
            attempts += 1
            try:
                client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload=parts,
                                                 **conditions)
            except ClientError:
                # A retry after a lost answer finds the upload gone or the object there: maybe our own.
                if attempts == 1 or not _is_object(client, bucket, key, multipart_etag(etags)):
                    raise
        call(complete)
    except BaseException:
        with suppress(Exception):  # best effort: an S3 lifecycle rule cleans up what remains
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        raise


def _is_object(client: Any, bucket: str, key: str, etag: str) -> bool:
    try:
        return str(client.head_object(Bucket=bucket, Key=key)["ETag"]) == etag
    except ClientError:
        return False
