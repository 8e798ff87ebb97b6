"""Fault injection on a real S3 server: SeaweedFS killed (SIGKILL) and restarted on the same ports and data
during reads, writes, listings, stats, uploads and a streaming read; short retry windows against a server
that stays down; and the one-line errors of unusable credentials, buckets and endpoints."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pipeline.storage.retry import is_transient
from pipeline.storage.store import NotFound, Storage, StorageError, Unavailable, parse_location

if TYPE_CHECKING:
    from pipeline.storage.store import Location
    from tests.conftest import S3Server, WeedMini

_OUTAGE_S = 1.5


@pytest.fixture
def base(crashable_s3: WeedMini) -> Location:
    """A fresh bucket on the crashable server."""
    return parse_location(f"s3://{crashable_s3.server.create_bucket('faults')}")


def _storage(weed: WeedMini, retry_window: float = 30.0) -> Storage:
    """A request that reaches a SeaweedFS still starting up can wait for an answer until the read timeout:
    a short one keeps these tests short."""
    return Storage(weed.server.endpoint_url, retry_window=retry_window, connect_timeout=2.0, read_timeout=3.0)


def test_reads_writes_stats_and_deletes_wait_out_a_crash(crashable_s3: WeedMini, base: Location) -> None:
    storage = _storage(crashable_s3)
    storage.write_bytes(base.child("before.png"), b"before")
    started = time.monotonic()
    restart = crashable_s3.outage(_OUTAGE_S)
    storage.write_bytes(base.child("during.png"), b"during", overwrite=False, metadata={"run": "r1"})
    waited = time.monotonic() - started
    assert storage.read_bytes(base.child("before.png")) == b"before"
    info = storage.stat(base.child("during.png"))
    assert info is not None and info.metadata == {"run": "r1"}
    storage.delete(base.child("before.png"))
    restart.wait()
    assert waited >= _OUTAGE_S
    assert [location.name for location in storage.list(base)] == ["during.png"]


def test_a_listing_goes_on_from_its_continuation_token_after_a_crash(crashable_s3: WeedMini, base: Location) -> None:
    storage = _storage(crashable_s3)
    names = [f"img/{index:03d}.png" for index in range(23)]
    for name in names:
        storage.write_bytes(base.child(name), b"x")
    listing = storage.list(base.child("img"), page_size=5)
    first = [next(listing) for _ in range(7)]
    restart = crashable_s3.outage(_OUTAGE_S)
    rest = list(listing)
    restart.wait()
    assert [location.path for location in first + rest] == names


def test_a_streaming_read_survives_a_crash_in_the_middle(crashable_s3: WeedMini, base: Location) -> None:
    storage = _storage(crashable_s3)
    data = bytes(range(256)) * 200
    storage.write_bytes(base.child("manifest.csv"), data)
    with storage.open_reader(base.child("manifest.csv"), chunk_size=4096) as reader:
        head = reader.read(10_000)
        restart = crashable_s3.outage(_OUTAGE_S)
        tail = reader.read()
    restart.wait()
    assert head + tail == data


def test_stats_of_many_objects_wait_out_a_crash(crashable_s3: WeedMini, base: Location) -> None:
    storage = _storage(crashable_s3)
    for index in range(0, 40, 2):
        storage.write_bytes(base.child(f"{index}.png"), b"x")
    restart = crashable_s3.outage(_OUTAGE_S)
    infos = storage.stat_many([base.child(f"{index}.png") for index in range(40)])
    restart.wait()
    assert [info is not None for info in infos] == [index % 2 == 0 for index in range(40)]


def test_a_multipart_upload_survives_a_crash(crashable_s3: WeedMini, base: Location, tmp_path: Path) -> None:
    """The crash comes a moment after the upload starts: before it or between its parts, either way
    the upload must complete, whole, with nothing left pending."""
    source = tmp_path / "results.parquet"
    source.write_bytes(bytes(range(256)) * (40 * 4096))
    storage = _storage(crashable_s3)
    crash = threading.Timer(0.3, lambda: crashable_s3.outage(_OUTAGE_S).wait())
    crash.start()
    storage.upload_file(source, base.child("results.parquet"), overwrite=False)
    crash.join()
    assert storage.read_bytes(base.child("results.parquet")) == source.read_bytes()
    client = crashable_s3.server.client()
    assert client.list_multipart_uploads(Bucket=base.bucket).get("Uploads", []) == []


def test_a_server_that_stays_down_fails_each_operation_after_the_window(crashable_s3: WeedMini,
                                                                        base: Location) -> None:
    storage = _storage(crashable_s3, retry_window=2.0)
    storage.write_bytes(base.child("a.csv"), b"a,b\n" * 1000)
    reader = storage.open_reader(base.child("a.csv"), chunk_size=1024)
    crashable_s3.kill()
    started = time.monotonic()
    with pytest.raises(Unavailable, match=r"^s3://.*/a\.csv: cannot reach S3 endpoint http://127\.0\.0\.1:\d+; "
                                          r"retried for 2\.\d s \(\d+ attempts, retry window 2 s\)$"):
        storage.read_bytes(base.child("a.csv"))
    assert 2.0 <= time.monotonic() - started < 10.0
    quick = _storage(crashable_s3, retry_window=0.3)
    for action in (lambda: quick.write_bytes(base.child("b.csv"), b"x"), lambda: list(quick.list(base)),
                   lambda: quick.stat(base.child("a.csv")), lambda: quick.delete(base.child("a.csv")),
                   lambda: quick.stat_many([base.child("a.csv")] * 3), lambda: reader.read(),
                   lambda: quick.probe_writable(base)):
        with pytest.raises(Unavailable, match="retried for"):
            action()


def test_errors_that_waiting_cannot_fix_fail_at_once(crashable_s3: WeedMini, base: Location) -> None:
    storage = _storage(crashable_s3, retry_window=120.0)
    started = time.monotonic()
    with pytest.raises(NotFound):
        storage.read_bytes(base.child("missing.csv"))
    with pytest.raises(NotFound):
        storage.write_bytes(parse_location("s3://no-such-bucket-here/a.png"), b"x")
    assert time.monotonic() - started < 5.0


# --- one line per unusable setting -------------------------------------------------------------------------

def _one_line_without_secrets(error: BaseException, *secrets: str) -> str:
    message = str(error)
    assert "\n" not in message
    for secret in secrets:
        assert secret not in message and secret not in repr(error)
    return message


@pytest.mark.parametrize(("variable", "value", "reason"), [
    ("AWS_ACCESS_KEY_ID", "SBUNKNOWNKEY0123456",
     "access denied: the server does not know this access key id (check credentials)"),
    ("AWS_SECRET_ACCESS_KEY", "Wr0ngSecret/For+Tests-xxxxxxxxxxxxxxxxxx",
     "access denied: request signature rejected, the secret key does not match the access key id "
     "(check credentials)"),
], ids=["unknown key id", "wrong secret"])
def test_a_probe_with_refused_credentials_says_which_at_once(s3_server: S3Server, prefix: Location,
                                                             monkeypatch: pytest.MonkeyPatch, variable: str,
                                                             value: str, reason: str) -> None:
    monkeypatch.setenv(variable, value)
    started = time.monotonic()
    with pytest.raises(StorageError) as raised:
        Storage(retry_window=120.0).probe_writable(prefix)
    assert time.monotonic() - started < 5.0
    message = _one_line_without_secrets(raised.value, value, s3_server.secret_key, s3_server.access_key)
    assert message == f"{prefix}: cannot write here: {reason}"


def test_a_probe_of_a_missing_bucket_names_it(s3_server: S3Server) -> None:
    prefix = parse_location("s3://no-such-bucket-here/out")
    with pytest.raises(NotFound) as raised:
        Storage(retry_window=120.0).probe_writable(prefix)
    message = _one_line_without_secrets(raised.value, s3_server.secret_key, s3_server.access_key)
    assert message == f"{prefix}: cannot write here: no such bucket 'no-such-bucket-here'"


def test_a_probe_of_an_unreachable_endpoint_says_how_long_it_tried(s3_server: S3Server) -> None:
    with socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{reserved.getsockname()[1]}"
        with pytest.raises(Unavailable) as raised:
            Storage(endpoint, retry_window=1.0).probe_writable(parse_location("s3://bucket/out"))
    message = _one_line_without_secrets(raised.value, s3_server.secret_key, s3_server.access_key)
    assert message.startswith(f"s3://bucket/out: cannot write here: cannot reach S3 endpoint {endpoint}; "
                              "retried for 1.")


# --- which faults are transient ----------------------------------------------------------------------------

def test_faults_are_sorted_into_transient_and_final(tmp_path: Path) -> None:
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, ReadTimeoutError

    def client_error(code: str, status: int) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": ""}, "ResponseMetadata": {"HTTPStatusCode": status}},
                           "PutObject")

    transient = [client_error("SlowDown", 503), client_error("InternalError", 500), client_error("", 429),
                 client_error("RequestTimeout", 400), client_error("ServiceUnavailable", 503),
                 EndpointConnectionError(endpoint_url="http://x"), ReadTimeoutError(endpoint_url="http://x"),
                 ConnectionResetError(), TimeoutError()]
    final = [client_error("NoSuchKey", 404), client_error("AccessDenied", 403), client_error("NoSuchBucket", 404),
             client_error("InvalidAccessKeyId", 403), client_error("SignatureDoesNotMatch", 403),
             client_error("PreconditionFailed", 412), client_error("NotImplemented", 501), NoCredentialsError()]
    for path, error_type in (("missing", FileNotFoundError), ("/", IsADirectoryError)):
        try:
            open(tmp_path / path if path != "/" else path, "rb")  # noqa: SIM115 - the error is the point
        except error_type as error:
            final.append(error)
    final += [OSError(28, "No space left on device"), OSError(30, "Read-only file system"), PermissionError(13, "")]
    assert [is_transient(error) for error in transient] == [True] * len(transient)
    assert [is_transient(error) for error in final] == [False] * len(final)
