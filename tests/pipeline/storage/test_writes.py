"""Writes that must not replace, metadata that travels with them, large uploads, and write probes,
against real folders (and real in-memory filesystems where this machine lets tests mount them) and the
real S3 server."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pipeline.storage.s3io import PART_BYTES, multipart_etag
from pipeline.storage.store import AlreadyExists, Location, NotFound, Storage, StorageError, parse_location

if TYPE_CHECKING:
    from tests.conftest import S3Server


@pytest.fixture(params=["local", "s3"])
def folder(request: pytest.FixtureRequest, tmp_path: Path) -> Location:
    """The same test on a local folder and on an S3 prefix."""
    if request.param == "local":
        return parse_location(str(tmp_path / "out"))
    return request.getfixturevalue("prefix")  # type: ignore[no-any-return]


# --- overwrite=False ---------------------------------------------------------------------------------------

def test_a_write_that_must_not_replace_leaves_the_first_content(folder: Location) -> None:
    storage = Storage()
    location = folder.child("a/result.png")
    storage.write_bytes(location, b"first", overwrite=False)
    with pytest.raises(AlreadyExists, match=f"^{location}: already exists$"):
        storage.write_bytes(location, b"second", overwrite=False)
    assert storage.read_bytes(location) == b"first"
    assert list(storage.list(folder)) == [location]
    storage.write_bytes(location, b"third")
    assert storage.read_bytes(location) == b"third"


def test_a_local_folder_at_the_name_also_counts_as_existing(tmp_path: Path) -> None:
    (tmp_path / "taken.png").mkdir()
    with pytest.raises(AlreadyExists):
        Storage().write_bytes(parse_location(str(tmp_path / "taken.png")), b"x", overwrite=False)
    assert os.listdir(tmp_path) == ["taken.png"]


def test_of_many_simultaneous_writers_exactly_one_wins(folder: Location) -> None:
    location = folder.child("contested.png")

    def write(index: int) -> int | None:
        try:
            Storage().write_bytes(location, f"writer {index}".encode(), overwrite=False)
        except AlreadyExists:
            return None
        return index

    with ThreadPoolExecutor(12) as pool:
        winners = [index for index in pool.map(write, range(12)) if index is not None]
    assert len(winners) == 1
    assert Storage().read_bytes(location) == f"writer {winners[0]}".encode()


def test_the_server_refuses_overwrites_and_stale_etags(prefix: Location, tmp_path: Path) -> None:
    """SeaweedFS (the tests' S3 server) honours If-None-Match and If-Match on PutObject, and links do
    the same for local folders."""
    storage = Storage()
    assert storage.supports_conditional_writes(prefix)
    assert storage.supports_conditional_writes(parse_location(str(tmp_path)))
    assert list(storage.list(prefix)) == []
    assert os.listdir(tmp_path) == []


# --- metadata ----------------------------------------------------------------------------------------------

def test_metadata_travels_with_the_file_or_object(folder: Location, s3_server: S3Server) -> None:
    storage = Storage()
    location = folder.child("with-metadata.png")
    metadata = {"run": "2024-05-01T10-00-00-ab12", "row": "17", "loss": "1.25e+03"}
    storage.write_bytes(location, b"image", overwrite=False, metadata=metadata)
    info = storage.stat(location)
    assert info is not None and info.metadata == metadata and info.size == 5
    if location.scheme == "file":
        assert json.loads(os.getxattr(location.path, "user.stylebatch.metadata")) == metadata
    else:
        head = s3_server.client().head_object(Bucket=location.bucket, Key=location.path)
        assert head["Metadata"] == metadata
    storage.write_bytes(location, b"replaced")
    info = storage.stat(location)
    assert info is not None and info.metadata == {}


@pytest.mark.parametrize(("metadata", "reason"), [({"Run": "x"}, "metadata key 'Run'"),
                                                  ({"run id": "x"}, "metadata key 'run id'"),
                                                  ({"run": "caf\u00e9"}, "printable ASCII"),
                                                  ({"run": "a\nb"}, "printable ASCII"),
                                                  ({"run": "x" * 3000}, "2048")])
def test_metadata_that_either_store_would_mangle_is_refused(tmp_path: Path, metadata: dict[str, str],
                                                           reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        Storage().write_bytes(parse_location(str(tmp_path / "a.png")), b"x", metadata=metadata)
    assert os.listdir(tmp_path) == []


def test_metadata_is_skipped_where_the_filesystem_has_no_extended_attributes(
        mount_filesystem: Callable[..., Path]) -> None:
    ramfs = mount_filesystem("ramfs")
    storage = Storage()
    location = parse_location(str(ramfs / "a.png"))
    storage.write_bytes(location, b"image", overwrite=False, metadata={"run": "r1"})
    info = storage.stat(location)
    assert info is not None and info.size == 5 and info.metadata == {}


# --- full disks and read-only filesystems ------------------------------------------------------------------

def test_a_full_disk_fails_at_once_and_leaves_nothing(mount_filesystem: Callable[..., Path]) -> None:
    small = mount_filesystem("tmpfs", size="64k")
    storage = Storage(retry_window=30)
    location = parse_location(str(small / "out" / "big.png"))
    with pytest.raises(StorageError, match=f"^{location}: no space left on device$"):
        storage.write_bytes(location, b"x" * 200_000)
    assert os.listdir(small / "out") == []


def test_probes_name_the_folder_and_the_reason(tmp_path: Path, mount_filesystem: Callable[..., Path]) -> None:
    storage = Storage(retry_window=30)
    writable = parse_location(str(tmp_path / "new" / "out"))
    storage.probe_writable(writable)
    assert os.listdir(writable.path) == []
    (tmp_path / "file").write_bytes(b"x")
    in_the_way = parse_location(str(tmp_path / "file" / "out"))
    with pytest.raises(StorageError, match=f"^{in_the_way}: cannot write here: a file is in the way"):
        storage.probe_writable(in_the_way)
    read_only = parse_location(str(mount_filesystem("tmpfs", read_only=True) / "out"))
    with pytest.raises(StorageError, match=f"^{read_only}: cannot write here: read-only file system$"):
        storage.probe_writable(read_only)


@pytest.mark.skipif(not hasattr(os, "fork") or os.geteuid() != 0, reason="needs root, to become another user")
def test_a_probe_without_permission_says_so() -> None:
    """As the unprivileged user `nobody` (uid 65534), in a forked child, probing a folder owned by root
    (outside pytest's temporary folders, which other users cannot enter)."""
    with tempfile.TemporaryDirectory() as owned_by_root:
        os.chmod(owned_by_root, 0o755)
        message = _probe_as_nobody(parse_location(owned_by_root).child("out"))
    assert message == f"{owned_by_root}/out: cannot write here: permission denied"


def _probe_as_nobody(target: Location) -> str:
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.setgid(65534)
            os.setuid(65534)
            try:
                Storage(retry_window=30).probe_writable(target)
                message = "no error"
            except StorageError as error:
                message = str(error)
            os.write(writing, message.encode())
        finally:
            os._exit(0)
    os.close(writing)
    message = os.read(reading, 65536).decode()
    os.waitpid(child, 0)
    return message


# --- uploads -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def large_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file of a little more than two upload parts."""
    path = tmp_path_factory.mktemp("upload") / "results.parquet"
    with open(path, "wb") as handle:
        for index in range(2 * PART_BYTES // 65536 + 3):
            handle.write(index.to_bytes(4, "big") * 16384)
    return path


def test_a_large_file_uploads_in_parts_with_metadata(prefix: Location, large_file: Path, s3_server: S3Server) -> None:
    storage = Storage()
    location = prefix.child("results.parquet")
    storage.upload_file(large_file, location, overwrite=False, metadata={"rows": "123"})
    info = storage.stat(location)
    assert info is not None and info.size == large_file.stat().st_size and info.metadata == {"rows": "123"}
    with storage.open_reader(location) as reader:
        assert reader.read() == large_file.read_bytes()
    parts = s3_server.client().get_object_attributes(Bucket=location.bucket, Key=location.path,
                                                     ObjectAttributes=["ObjectParts"])
    assert parts["ObjectParts"]["TotalPartsCount"] == 3
    assert info.etag is not None and info.etag.endswith('-3"')


def test_multipart_etags_are_computed_as_the_server_computes_them(prefix: Location, large_file: Path,
                                                                  s3_server: S3Server) -> None:
    """What upload_file relies on to recognise its own upload after a lost answer."""
    client = s3_server.client()
    key = prefix.child("parts.bin").path
    upload = client.create_multipart_upload(Bucket=prefix.bucket, Key=key)["UploadId"]
    data = large_file.read_bytes()
    etags = [client.upload_part(Bucket=prefix.bucket, Key=key, UploadId=upload, PartNumber=number,
                                Body=data[(number - 1) * PART_BYTES:number * PART_BYTES])["ETag"]
             for number in (1, 2, 3)]
    client.complete_multipart_upload(Bucket=prefix.bucket, Key=key, UploadId=upload, MultipartUpload={
        "Parts": [{"ETag": etag, "PartNumber": number} for number, etag in enumerate(etags, 1)]})
    assert client.head_object(Bucket=prefix.bucket, Key=key)["ETag"] == multipart_etag(etags)


def test_an_upload_that_must_not_replace_refuses_and_leaves_no_pending_upload(prefix: Location, large_file: Path,
                                                                         s3_server: S3Server) -> None:
    storage = Storage()
    location = prefix.child("taken.parquet")
    storage.write_bytes(location, b"earlier run")
    with pytest.raises(AlreadyExists):
        storage.upload_file(large_file, location, overwrite=False)
    assert storage.read_bytes(location) == b"earlier run"
    assert s3_server.client().list_multipart_uploads(Bucket=prefix.bucket).get("Uploads", []) == []


def test_small_and_local_uploads(folder: Location, tmp_path: Path) -> None:
    storage = Storage()
    small = tmp_path / "small.csv"
    small.write_bytes(b"a,b\n1,2\n")
    storage.upload_file(small, folder.child("copy/small.csv"), overwrite=False, metadata={"kind": "manifest"})
    assert storage.read_bytes(folder.child("copy/small.csv")) == b"a,b\n1,2\n"
    info = storage.stat(folder.child("copy/small.csv"))
    assert info is not None and info.metadata == {"kind": "manifest"}
    with pytest.raises(AlreadyExists):
        storage.upload_file(small, folder.child("copy/small.csv"), overwrite=False)
    with pytest.raises(NotFound, match="no such file"):
        storage.upload_file(tmp_path / "missing.csv", folder.child("copy/missing.csv"))


def test_a_large_local_upload_is_an_atomic_copy(tmp_path: Path, large_file: Path) -> None:
    storage = Storage()
    target = parse_location(str(tmp_path / "out" / "results.parquet"))
    storage.upload_file(large_file, target, overwrite=False)
    assert Path(target.path).read_bytes() == large_file.read_bytes()
    assert os.listdir(tmp_path / "out") == ["results.parquet"]
