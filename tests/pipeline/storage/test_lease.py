"""Run leases between real processes: flock on local folders (freed by kill -9), conditional lease objects on
the real S3 server (renewed while the holder lives, taken over after expiry by exactly one taker, lost by a
holder that stalled past it)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pipeline.storage.lease import LEASE_NAME
from pipeline.storage.store import Lease, LeaseHeld, Location, Storage, parse_location

_EXPIRY_S = 2.0

# Holds the lease of argv[1] as run argv[2] (S3 expiry argv[3]); says "held", then "lost" if it loses it;
# closing its stdin makes it release the lease and say "released".
_HOLDER = """
import os, select, sys
from pipeline.storage.store import LeaseHeld, Storage, parse_location
lease = Storage().acquire_lease(parse_location(sys.argv[1]), {"run": sys.argv[2], "pid": str(os.getpid())},
                                expiry_seconds=float(sys.argv[3]))
if isinstance(lease, LeaseHeld):
    print("refused", flush=True)
    sys.exit(1)
print("held", flush=True)
while True:
    if lease.lost:
        print("lost", flush=True)
        sys.exit(0)
    if select.select([sys.stdin], [], [], 0.05)[0] and not sys.stdin.readline():
        lease.release()
        print("released", flush=True)
        sys.exit(0)
"""


class Holder:
    """A separate process holding a lease."""

    def __init__(self, prefix: Location, run: str) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", _HOLDER, str(prefix), run, str(_EXPIRY_S)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.said() == "held"

    def said(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()

    def release(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        assert self.said() == "released"
        self.process.wait(30)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(30)


@pytest.fixture
def holders() -> Iterator[list[Holder]]:
    started: list[Holder] = []
    yield started
    for holder in started:
        if holder.process.poll() is None:
            holder.process.send_signal(signal.SIGCONT)
            holder.kill()


@pytest.fixture(params=["local", "s3"])
def folder(request: pytest.FixtureRequest, tmp_path: Path) -> Location:
    if request.param == "local":
        return parse_location(str(tmp_path / "out"))
    return request.getfixturevalue("prefix")  # type: ignore[no-any-return]


def _take(storage: Storage, prefix: Location, run: str, expiry_seconds: float = _EXPIRY_S) -> Lease | LeaseHeld:
    return storage.acquire_lease(prefix, {"run": run, "pid": str(os.getpid())}, expiry_seconds=expiry_seconds)


def test_a_second_process_is_told_who_holds_the_lease_until_it_is_released(folder: Location,
                                                                           holders: list[Holder]) -> None:
    holders.append(Holder(folder, "run-1"))
    time.sleep(_EXPIRY_S * 1.5)  # past one expiry: the holder's heartbeat keeps an S3 lease alive
    held = _take(Storage(), folder, "run-2")
    assert isinstance(held, LeaseHeld)
    assert held.holder == {"run": "run-1", "pid": str(holders[0].process.pid)}
    assert held.location == folder.child(LEASE_NAME)
    if folder.scheme == "s3":
        assert held.expires_in is not None and 0 < held.expires_in <= _EXPIRY_S + 1
    else:
        assert held.expires_in is None
    holders[0].release()
    lease = _take(Storage(), folder, "run-2")
    assert isinstance(lease, Lease) and not lease.lost and lease.guaranteed
    lease.release()
    assert lease.lost
    assert Storage().stat(folder.child(LEASE_NAME)) is None


def test_a_local_lease_is_freed_at_once_by_kill_9_of_its_holder(tmp_path: Path, holders: list[Holder]) -> None:
    folder = parse_location(str(tmp_path / "out"))
    holders.append(Holder(folder, "run-1"))
    assert isinstance(_take(Storage(), folder, "run-2"), LeaseHeld)
    holders[0].kill()
    lease = _take(Storage(), folder, "run-2")
    assert isinstance(lease, Lease)
    with lease:
        assert isinstance(_take(Storage(), folder, "run-3"), LeaseHeld)
        assert list(Storage().list(folder)) == []
    assert os.listdir(folder.path) == []


def test_an_s3_lease_of_a_killed_holder_goes_to_exactly_one_taker_after_expiry(prefix: Location,
                                                                               holders: list[Holder]) -> None:
    """The takers' own (longer) expiry does not matter: the holder's, written in the lease, does."""
    holders.append(Holder(prefix, "run-1"))
    holders[0].kill()
    held = _take(Storage(), prefix, "run-2", expiry_seconds=60)
    assert isinstance(held, LeaseHeld) and held.holder["run"] == "run-1"
    assert held.expires_in is not None and held.expires_in <= _EXPIRY_S + 1
    time.sleep(held.expires_in + 0.1)
    storages = [Storage() for _ in range(6)]
    with ThreadPoolExecutor(6) as pool:
        outcomes = list(pool.map(lambda index: _take(storages[index], prefix, f"taker-{index}", 60), range(6)))
    winners = [outcome for outcome in outcomes if isinstance(outcome, Lease)]
    assert len(winners) == 1
    assert {outcome.holder["run"] for outcome in outcomes if isinstance(outcome, LeaseHeld)} == \
        {winners[0].holder["run"]}
    winners[0].release()


def test_an_s3_holder_that_stalls_past_expiry_learns_that_it_lost_the_lease(prefix: Location,
                                                                            holders: list[Holder]) -> None:
    holders.append(Holder(prefix, "run-1"))
    holders[0].process.send_signal(signal.SIGSTOP)
    deadline = time.monotonic() + 4 * _EXPIRY_S + 5
    lease = _take(Storage(), prefix, "run-2")
    while isinstance(lease, LeaseHeld) and time.monotonic() < deadline:
        time.sleep(lease.expires_in or 0.2)
        lease = _take(Storage(), prefix, "run-2")
    assert isinstance(lease, Lease)
    holders[0].process.send_signal(signal.SIGCONT)
    assert holders[0].said() == "lost"
    time.sleep(_EXPIRY_S)
    assert not lease.lost
    held = _take(Storage(), prefix, "run-3")
    assert isinstance(held, LeaseHeld) and held.holder["run"] == "run-2"
    lease.release()


def test_without_conditional_writes_the_lease_is_best_effort_and_says_so(prefix: Location,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pipeline.storage"):
        lease = Storage().acquire_lease(prefix, {"run": "run-1"}, _EXPIRY_S, conditional=False)
    assert isinstance(lease, Lease) and not lease.guaranteed
    assert "does not honour conditional writes" in caplog.text and "best effort" in caplog.text
    held = Storage().acquire_lease(prefix, {"run": "run-2"}, _EXPIRY_S, conditional=False)
    assert isinstance(held, LeaseHeld) and held.holder == {"run": "run-1"}
    time.sleep(_EXPIRY_S * 1.5)
    assert not lease.lost
    lease.release()
    again = Storage().acquire_lease(prefix, {"run": "run-2"}, _EXPIRY_S, conditional=False)
    assert isinstance(again, Lease)
    again.release()
