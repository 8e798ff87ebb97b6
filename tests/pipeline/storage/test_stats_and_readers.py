"""stat, stat_many and open_reader on real folders and the real S3 server: what the batch driver uses to
skip finished rows and to stream manifests of any size."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.storage.s3io import S3Reader
from pipeline.storage.store import Location, NotFound, ObjectInfo, Storage, StorageError, parse_location

if TYPE_CHECKING:
    from tests.conftest import S3Server


# --- stats -------------------------------------------------------------------------------------------------

def test_local_stats_see_files_folders_symlinks_and_absence(tmp_path: Path) -> None:
    storage = Storage()
    folder = parse_location(str(tmp_path))
    storage.write_bytes(folder.child("a.png"), b"12345", metadata={"run": "r1"})
    (tmp_path / "sub").mkdir()
    (tmp_path / "alias.png").symlink_to(tmp_path / "a.png")
    (tmp_path / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    info = storage.stat(folder.child("a.png"))
    assert info is not None and (info.size, info.metadata, info.is_folder, info.etag) == (5, {"run": "r1"}, False, None)
    assert info.modified == pytest.approx(os.stat(tmp_path / "a.png").st_mtime)
    assert storage.stat(folder.child("alias.png")) == info
    assert storage.stat(folder.child("sub")) == ObjectInfo(0, {}, True, None, os.stat(tmp_path / "sub").st_mtime)
    for absent in ("missing.png", "dangling.png", "a.png/below.png", "missing/below.png"):
        assert storage.stat(folder.child(absent)) is None


def test_s3_stats_give_size_metadata_and_etag(prefix: Location, s3_server: S3Server) -> None:
    storage = Storage()
    storage.write_bytes(prefix.child("a.png"), b"12345", metadata={"run": "r1"})
    info = storage.stat(prefix.child("a.png"))
    head = s3_server.client().head_object(Bucket=prefix.bucket, Key=prefix.child("a.png").path)
    assert info == ObjectInfo(5, {"run": "r1"}, False, head["ETag"], head["LastModified"].timestamp())
    assert storage.stat(prefix.child("missing.png")) is None
    assert storage.stat(prefix) is None
    assert storage.stat(parse_location("s3://no-such-bucket-here/a.png")) is None


def test_stat_many_keeps_the_order_across_stores(prefix: Location, tmp_path: Path) -> None:
    storage = Storage()
    local = parse_location(str(tmp_path))
    present = set(range(0, 300, 3))
    for index in present:
        storage.write_bytes(prefix.child(f"{index}.png"), b"x" * index, metadata={"row": str(index)})
        storage.write_bytes(local.child(f"{index}.png"), b"x" * index, metadata={"row": str(index)})
    locations = [(prefix if index % 2 else local).child(f"{index}.png") for index in range(300)]
    infos = storage.stat_many(locations)
    assert len(infos) == 300
    bare = storage.stat_many(locations, with_metadata=False)
    assert [info is None for info in bare] == [info is None for info in infos]
    assert all(info.metadata == {} for info in bare[::2] if info is not None)  # the local ones
    for index, info in enumerate(infos):
        if index in present:
            assert info is not None and info.size == index and info.metadata == {"row": str(index)}
        else:
            assert info is None
    assert storage.stat_many([]) == []


def test_stat_errors_are_put_into_words(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefix: Location) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "SBUNKNOWNKEY0123456")
    with pytest.raises(StorageError, match="access denied"):
        Storage().stat_many([parse_location(str(tmp_path / "a.png")), prefix.child("a.png")])


# --- readers -----------------------------------------------------------------------------------------------

def _csv_bytes(rows: int) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["content", "style", "alpha", "note"])
    for index in range(rows):
        writer.writerow([f"content/{index:05d}.png", f"styles/s{index % 7}.jpg", index / 10, "caf\u00e9, \"quoted\""])
    return text.getvalue().encode()


def _parquet_bytes(rows: int) -> bytes:
    table = pa.table({"content": [f"content/{index:05d}.png" for index in range(rows)],
                      "alpha": [index / 10 for index in range(rows)]})
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=rows // 4)
    return sink.getvalue()


@pytest.fixture(params=["local", "s3"])
def folder(request: pytest.FixtureRequest, tmp_path: Path) -> Location:
    if request.param == "local":
        return parse_location(str(tmp_path))
    return request.getfixturevalue("prefix")  # type: ignore[no-any-return]


def test_a_csv_manifest_streams_through_a_text_wrapper(folder: Location) -> None:
    storage = Storage()
    data = _csv_bytes(2000)
    storage.write_bytes(folder.child("manifest.csv"), data)
    with storage.open_reader(folder.child("manifest.csv"), chunk_size=4096) as reader:
        assert reader.size == len(data) > 20 * 4096
        rows = list(csv.reader(io.TextIOWrapper(reader, encoding="utf-8", newline="")))
    assert rows == list(csv.reader(io.StringIO(data.decode(), newline="")))


def test_a_parquet_manifest_is_read_by_row_group(folder: Location) -> None:
    storage = Storage()
    data = _parquet_bytes(4000)
    storage.write_bytes(folder.child("manifest.parquet"), data)
    with storage.open_reader(folder.child("manifest.parquet"), chunk_size=2048) as reader:
        assert len(data) > 10 * 2048
        parquet = pq.ParquetFile(reader)
        assert parquet.metadata.num_rows == 4000 and parquet.num_row_groups == 4
        batches = list(parquet.iter_batches(batch_size=700, columns=["content", "alpha"]))
    assert pa.Table.from_batches(batches).equals(pq.read_table(io.BytesIO(data)))


def test_readers_seek_and_read_across_chunks(folder: Location) -> None:
    storage = Storage()
    data = bytes(range(256)) * 40
    storage.write_bytes(folder.child("blob.bin"), data)
    with storage.open_reader(folder.child("blob.bin"), chunk_size=1000) as reader:
        assert reader.seekable() and reader.readable() and not reader.writable()
        assert reader.seek(-10, io.SEEK_END) == len(data) - 10
        assert reader.read() == data[-10:]
        assert reader.read(5) == b""
        reader.seek(995)
        assert reader.read(1010) == data[995:2005]
        assert reader.tell() == 2005
        reader.seek(3, io.SEEK_CUR)
        buffer = bytearray(7)
        assert reader.readinto(buffer) == 7 and bytes(buffer) == data[2008:2015]
        reader.seek(0)
        assert reader.read() == data
    assert reader.closed


def test_a_missing_object_or_file_is_not_found(folder: Location) -> None:
    with pytest.raises(NotFound):
        Storage().open_reader(folder.child("missing.csv"))


def test_an_object_replaced_during_a_read_is_an_error_not_a_mix(prefix: Location) -> None:
    storage = Storage()
    location = prefix.child("changing.csv")
    storage.write_bytes(location, b"a" * 10_000)
    with storage.open_reader(location, chunk_size=1000) as reader:
        assert reader.read(1500) == b"a" * 1500
        storage.write_bytes(location, b"b" * 10_000)
        with pytest.raises(StorageError, match=f"^{location}: replaced while being read$"):
            reader.read()


def test_an_s3_reader_holds_one_chunk(prefix: Location) -> None:
    storage = Storage()
    storage.write_bytes(prefix.child("big.bin"), os.urandom(200_000))
    fetched: list[int] = []
    with storage.open_reader(prefix.child("big.bin"), chunk_size=10_000) as reader:
        assert isinstance(reader, S3Reader)
        original = reader._fetch

        def counting(start: int, end: int) -> bytes:
            fetched.append(end - start)
            return original(start, end)
        reader._fetch = counting
        while reader.read1(4096):
            pass
    assert fetched == [10_000] * 20
