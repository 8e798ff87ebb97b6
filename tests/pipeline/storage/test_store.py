"""pipeline.storage.store against real temp folders and a real S3 server (SeaweedFS, from tests/conftest.py)."""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pipeline.storage.store import Location, NotFound, Storage, StorageError, Unavailable, parse_location

if TYPE_CHECKING:
    from tests.conftest import S3Server


def holds_file(storage: Storage, location: Location) -> bool:
    """Whether a file or object is at exactly `location` (a folder or prefix is not)."""
    info = storage.stat(location)
    return info is not None and not info.is_folder


# --- locations ---------------------------------------------------------------------------------------------

def test_s3_uri_parses_into_bucket_and_key_and_prints_back() -> None:
    location = parse_location("s3://my-bucket/images/cat.png")
    assert location == Location("s3", "my-bucket", "images/cat.png")
    assert str(location) == "s3://my-bucket/images/cat.png"
    assert location.name == "cat.png"
    assert location.parent == Location("s3", "my-bucket", "images")
    assert parse_location("s3://my-bucket") == Location("s3", "my-bucket", "")


def test_local_paths_and_file_uris_become_normalised_absolute_paths(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_location("file:///data/my%20images/a.png") == Location("file", "", "/data/my images/a.png")
    assert parse_location("file://localhost/data/a.png").path == "/data/a.png"
    assert parse_location("/data/x/../a.png") == Location("file", "", "/data/a.png")
    monkeypatch.chdir(tmp_path)
    assert parse_location("sub/a.png") == Location("file", "", str(tmp_path / "sub" / "a.png"))
    assert str(parse_location("/data/a.png")) == "/data/a.png"


def test_relative_paths_resolve_against_a_local_base_folder() -> None:
    base = parse_location("/data/manifests")
    assert parse_location("content/a.png", base).path == "/data/manifests/content/a.png"
    assert parse_location("../images/a.png", base).path == "/data/images/a.png"
    assert parse_location("s3://other/a.png", base) == Location("s3", "other", "a.png")
    assert parse_location("/elsewhere/a.png", base).path == "/elsewhere/a.png"


def test_relative_paths_resolve_against_an_s3_prefix_but_not_out_of_its_bucket() -> None:
    base = parse_location("s3://bucket/runs/manifest.csv").parent
    assert parse_location("content/a.png", base) == Location("s3", "bucket", "runs/content/a.png")
    assert parse_location("../shared/a.png", base) == Location("s3", "bucket", "shared/a.png")
    assert parse_location("./a.png", parse_location("s3://bucket")) == Location("s3", "bucket", "a.png")
    with pytest.raises(ValueError, match="climbs out of bucket 'bucket'"):
        parse_location("../../a.png", base)


@pytest.mark.parametrize("text", ["http://host/a.png", "https://host/a.png", "gs://bucket/a.png",
                                  "ftp://host/a.png", "S3A://bucket/a.png"])
def test_unknown_schemes_are_rejected_by_name(text: str) -> None:
    scheme = text.partition("://")[0].lower()
    with pytest.raises(ValueError, match=f"unsupported scheme '{scheme}'"):
        parse_location(text)


@pytest.mark.parametrize(("text", "reason"), [
    ("", "empty location"),
    ("   ", "empty location"),
    ("s3://", "without a bucket"),
    ("s3:///key.png", "without a bucket"),
    ("s3:/bucket/key.png", "malformed URI"),
    ("s3://bucket//key.png", "starts with '/'"),
    ("s3://b/key.png", "not a bucket name"),
    ("s3://my bucket/key.png", "not a bucket name"),
    ("file://server/share/a.png", "names host 'server'"),
    ("file:relative.png", "malformed URI"),
])
def test_malformed_locations_say_what_is_wrong(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_location(text)


@pytest.mark.parametrize("base", ["/data/out", "s3://bucket/out", "s3://bucket"])
def test_child_joins_under_a_folder(base: str) -> None:
    folder = parse_location(base)
    child = folder.child("./styles//mosaic/cat.png")
    assert str(child) == f"{base}/styles/mosaic/cat.png"
    assert child.scheme == folder.scheme and child.bucket == folder.bucket
    assert child.name == "cat.png"


@pytest.mark.parametrize("relative", ["..", "../x.png", "a/../../x.png", "a/../b.png", "/abs/x.png",
                                      "s3://bucket/x.png", "file:///x.png", "", " ", ".", "./"])
@pytest.mark.parametrize("base", ["/data/out", "s3://bucket/out"])
def test_child_rejects_anything_that_could_leave_the_folder(base: str, relative: str) -> None:
    with pytest.raises(ValueError):
        parse_location(base).child(relative)


@pytest.mark.parametrize(("scheme", "bucket", "path"), [("file", "", "relative/a.png"), ("file", "b", "/a.png"),
                                                        ("s3", "", "a.png"), ("s3", "bucket", "/a.png"),
                                                        ("gs", "bucket", "a.png")])
def test_inconsistent_locations_cannot_be_built(scheme: str, bucket: str, path: str) -> None:
    with pytest.raises(ValueError):
        Location(scheme, bucket, path)  # type: ignore[arg-type]


# --- local files -------------------------------------------------------------------------------------------

def test_local_round_trip_creates_folders_and_deletes_idempotently(tmp_path: Path) -> None:
    storage = Storage()
    location = parse_location(str(tmp_path / "out" / "deep" / "a.png"))
    assert not holds_file(storage, location)
    storage.write_bytes(location, b"\x89PNG first")
    storage.write_bytes(location, b"\x89PNG second")
    assert storage.read_bytes(location) == b"\x89PNG second"
    assert holds_file(storage, location)
    assert not holds_file(storage, location.parent)
    storage.delete(location)
    storage.delete(location)
    assert not holds_file(storage, location)
    assert os.listdir(tmp_path / "out" / "deep") == []


def test_reading_a_missing_file_is_not_found_naming_the_path(tmp_path: Path) -> None:
    missing = parse_location(str(tmp_path / "nope.png"))
    with pytest.raises(NotFound, match=f"^{tmp_path}/nope.png: no such file$"):
        Storage().read_bytes(missing)


def test_reading_a_folder_says_so(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="is a folder, not a file") as raised:
        Storage().read_bytes(parse_location(str(tmp_path)))
    assert not isinstance(raised.value, NotFound)


def test_writing_under_a_file_fails_clearly(tmp_path: Path) -> None:
    (tmp_path / "plain").write_bytes(b"x")
    with pytest.raises(StorageError, match=f"{tmp_path}/plain/a.png: "):
        Storage().write_bytes(parse_location(str(tmp_path / "plain" / "a.png")), b"data")


_WRITE_PAST_FILE_SIZE_LIMIT = """
import resource, signal, sys
from pipeline.storage.store import Storage, StorageError, parse_location
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    Storage().write_bytes(parse_location(sys.argv[1]), b"new" * 100_000)
except StorageError as error:
    print(error)
"""


def test_a_write_that_fails_midway_leaves_the_old_file_and_no_partial_one(tmp_path: Path) -> None:
    """The file-size limit makes the OS refuse the write after 4 KiB, as a full disk would."""
    final = tmp_path / "result.png"
    final.write_bytes(b"old result")
    run = subprocess.run([sys.executable, "-c", _WRITE_PAST_FILE_SIZE_LIMIT, str(final)],
                         capture_output=True, text=True, check=True)
    assert f"{final}: file too large" in run.stdout
    assert final.read_bytes() == b"old result"
    assert os.listdir(tmp_path) == ["result.png"]


def test_a_failed_first_write_leaves_nothing_at_the_final_name(tmp_path: Path) -> None:
    final = tmp_path / "result.png"
    subprocess.run([sys.executable, "-c", _WRITE_PAST_FILE_SIZE_LIMIT, str(final)], check=True,
                   capture_output=True)
    assert os.listdir(tmp_path) == []


_NAMES = ["b.png", "a.png", "a-c.png", "a/b.png", "a/z/y.jpg", "a0.png", "a/.a.png.0123456789ab.tmp", "Z.png"]


def test_local_listing_is_recursive_sorted_filtered_and_lazy(tmp_path: Path) -> None:
    storage = Storage()
    for name in _NAMES:
        storage.write_bytes(parse_location(name, parse_location(str(tmp_path))), b"x")
    folder = parse_location(str(tmp_path))
    listing = storage.list(folder, suffix=".png")
    assert next(listing) == folder.child("Z.png")
    assert [str(location) for location in listing] == [
        str(folder.child(name)) for name in ["a-c.png", "a.png", "a/b.png", "a0.png", "b.png"]]
    assert list(storage.list(folder.child("a"))) == [folder.child("a/b.png"), folder.child("a/z/y.jpg")]
    assert list(storage.list(folder.child("missing"))) == []


# --- S3 ----------------------------------------------------------------------------------------------------

def test_s3_round_trip_with_content_type(s3_server: S3Server, prefix: Location) -> None:
    storage = Storage()
    location = prefix.child("out/cat.png")
    assert storage.endpoint_url == s3_server.endpoint_url
    assert not holds_file(storage, location)
    storage.write_bytes(location, b"\x89PNG bytes")
    storage.write_bytes(prefix.child("raw.bin"), b"raw", content_type="application/x-test")
    assert storage.read_bytes(location) == b"\x89PNG bytes"
    assert holds_file(storage, location)
    assert not holds_file(storage, location.parent)
    client = s3_server.client()
    assert client.head_object(Bucket=location.bucket, Key=location.path)["ContentType"] == "image/png"
    assert client.head_object(Bucket=prefix.bucket, Key=f"{prefix.path}/raw.bin")["ContentType"] == \
        "application/x-test"
    storage.delete(location)
    storage.delete(location)
    assert not holds_file(storage, location)


def test_s3_missing_object_is_not_found_naming_the_uri(prefix: Location) -> None:
    missing = prefix.child("nope.png")
    with pytest.raises(NotFound) as raised:
        Storage().read_bytes(missing)
    assert str(raised.value) == f"{missing}: no such object"


def test_s3_missing_bucket_is_not_found_naming_the_bucket(s3_server: S3Server) -> None:
    location = parse_location("s3://no-such-bucket-here/a.png")
    storage = Storage()
    for action in (storage.read_bytes, lambda where: storage.write_bytes(where, b"x"),
                   lambda where: list(storage.list(where.parent))):
        with pytest.raises(NotFound, match="no such bucket 'no-such-bucket-here'"):
            action(location)
    assert not holds_file(storage, location)


def test_s3_listing_pages_through_many_keys_in_order(s3_server: S3Server, prefix: Location) -> None:
    names = [f"img/{index:03d}.png" for index in range(23)] + ["img/notes.txt", "img/sub/x.png"]
    client = s3_server.client()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda name: client.put_object(Bucket=prefix.bucket, Key=f"{prefix.path}/{name}",
                                                     Body=b"x"), names))
    client.put_object(Bucket=prefix.bucket, Key=f"{prefix.path}/img/folder-marker/", Body=b"")
    client.put_object(Bucket=prefix.bucket, Key=f"{prefix.path}/img-sibling.png", Body=b"x")
    listed = list(Storage().list(prefix.child("img"), suffix=".png", page_size=5))
    assert listed == [prefix.child(name) for name in sorted(names) if name.endswith(".png")]


def test_s3_and_local_listings_of_the_same_tree_agree(prefix: Location, tmp_path: Path) -> None:
    """Same files; local order is by full path as AWS lists (SeaweedFS lists a folder before its
    siblings that extend its name, e.g. 'a/b.png' before 'a-c.png', so S3 order is the server's)."""
    storage = Storage()
    local = parse_location(str(tmp_path))
    for name in _NAMES:
        storage.write_bytes(prefix.child(name), b"x")
        storage.write_bytes(local.child(name), b"x")
    relative_s3 = [str(location)[len(str(prefix)) + 1:] for location in storage.list(prefix, page_size=3)]
    relative_local = [str(location)[len(str(local)) + 1:] for location in storage.list(local)]
    assert sorted(relative_s3) == sorted(_NAMES)
    assert relative_local == sorted(name for name in _NAMES if not name.endswith(".tmp"))


def test_storage_pickles_without_its_client_and_works_after(s3_server: S3Server, prefix: Location) -> None:
    storage = Storage(retry_window=7.5, connect_timeout=2.0, read_timeout=9.0)
    storage.write_bytes(prefix.child("a.png"), b"before")
    storage.stat_many([prefix.child("a.png")])
    copy = pickle.loads(pickle.dumps(storage))
    assert copy.endpoint_url == s3_server.endpoint_url
    assert (copy.retry_window, copy.connect_timeout, copy.read_timeout) == (7.5, 2.0, 9.0)
    assert copy.read_bytes(prefix.child("a.png")) == b"before"
    assert s3_server.secret_key not in repr(copy)


def _secret_free(error: BaseException, *secrets: str) -> str:
    """Every text form of `error` (message, repr, traceback, pickled) checked to contain no secret."""
    forms = [str(error), repr(error), "".join(traceback.format_exception(error)),
             pickle.dumps(error).decode("latin-1"), str(pickle.loads(pickle.dumps(error)))]
    for form in forms:
        for secret in secrets:
            assert secret not in form
    return str(error)


def test_wrong_secret_is_a_clear_error_without_credentials(s3_server: S3Server, prefix: Location,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    wrong_secret = "Wr0ngSecret/For+Tests-" + "x" * 20
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", wrong_secret)
    with pytest.raises(StorageError) as raised:
        Storage().read_bytes(prefix.child("a.png"))
    message = _secret_free(raised.value, s3_server.access_key, s3_server.secret_key, wrong_secret)
    assert message.startswith(f"{prefix.child('a.png')}: access denied")
    assert "check credentials" in message
    assert not isinstance(raised.value, NotFound)


def test_unknown_access_key_is_a_clear_error_without_credentials(s3_server: S3Server, prefix: Location,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    unknown_key = "SBUNKNOWNKEY0123456"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", unknown_key)
    for action in (lambda storage: storage.write_bytes(prefix.child("a.png"), b"x"),
                   lambda storage: storage.stat(prefix.child("a.png")),
                   lambda storage: list(storage.list(prefix))):
        with pytest.raises(StorageError, match="access denied") as raised:
            action(Storage())
        _secret_free(raised.value, unknown_key, s3_server.access_key, s3_server.secret_key)


def test_missing_credentials_say_how_to_provide_them(s3_server: S3Server, prefix: Location,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(StorageError, match="no AWS credentials found"):
        Storage().read_bytes(prefix.child("a.png"))


@pytest.mark.parametrize(("userinfo", "shown"), [("", ""), ("proxyuser:hunter2-password@", "proxyuser:<redacted>@")])
def test_unreachable_endpoint_is_named_without_its_password(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch,
                                                            userinfo: str, shown: str) -> None:
    with socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{reserved.getsockname()[1]}"
        storage = Storage(f"http://{userinfo}{address}", retry_window=0.5)
        with pytest.raises(Unavailable) as raised:
            storage.read_bytes(parse_location("s3://bucket/a.png"))
    message = _secret_free(raised.value, s3_server.access_key, s3_server.secret_key, "hunter2")
    assert message.startswith(f"s3://bucket/a.png: cannot reach S3 endpoint http://{shown}{address}; retried for ")
    assert "hunter2" not in repr(storage)


def test_endpoint_argument_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    assert Storage("http://127.0.0.1:2").endpoint_url == "http://127.0.0.1:2"
    assert Storage().endpoint_url == "http://127.0.0.1:1"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:3")
    assert Storage().endpoint_url == "http://127.0.0.1:3"


_READ_THROUGH_ENVIRONMENT = """
import sys
from pipeline.storage.store import Storage, parse_location
sys.stdout.buffer.write(Storage().read_bytes(parse_location(sys.argv[1])))
"""


def test_a_process_started_later_reaches_the_server_through_the_environment_alone(prefix: Location) -> None:
    """What a Ray worker started during the session sees: the AWS_* variables, nothing passed to it."""
    Storage().write_bytes(prefix.child("shared.bin"), b"from the parent")
    child = subprocess.run([sys.executable, "-c", _READ_THROUGH_ENVIRONMENT, str(prefix.child("shared.bin"))],
                           capture_output=True, check=True)
    assert child.stdout == b"from the parent"
