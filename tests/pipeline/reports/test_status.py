"""`stylebatch status` on real results tables and run records: counts per run, how each run ended
(a driver that stopped beating reads "not finished"), rows flagged worse than their start, failures."""

from __future__ import annotations

from datetime import timedelta

import pytest
from rich.console import Console

from pipeline.batch.results import ResultsWriter
from pipeline.batch.runs import RunRecord, utc_now, write_run
from pipeline.reports.status import MAX_LISTED_FAILURES, print_status
from pipeline.storage.store import Storage, parse_location


@pytest.fixture
def spool_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("STYLEBATCH_SPOOL_DIR", str(tmp_path / "spool"))


def write_rows(storage: Storage, results, run_id: str, statuses: list[str], worse: int = 0) -> None:
    writer = ResultsWriter(storage, results, run_id)
    now = utc_now()
    for row, status in enumerate(statuses, start=1):
        writer.add({"row": row, "content": "c.png", "style": "s.png", "output": f"{row}.png", "status": status,
                    "error": f"row {row} broke" if status == "failed" else None, "started_at": now,
                    "finished_at": now + timedelta(seconds=row), "worse_than_start": row <= worse})
    writer.close()


def status_text(results, run_id: str | None = None) -> tuple[bool, str]:
    console = Console(record=True, width=80)  # a pipe's width: nothing may be cut
    found = print_status(console, results, run_id)
    return found, console.export_text()


def test_each_run_shows_its_counts_outcome_and_flagged_rows(tmp_path, spool_dir):
    storage, results = Storage(), parse_location(str(tmp_path / "results"))
    started = utc_now() - timedelta(hours=1)
    write_rows(storage, results, "done1", ["ok", "ok", "skipped", "failed"], worse=1)
    write_run(storage, results, RunRecord("done1", "m.csv", "out", 5, started, started, "h", "0")
              .ended("finished", {"ok": 2}))
    write_rows(storage, results, "dead2", ["ok"])
    write_run(storage, results, RunRecord("dead2", "m.csv", "out", 7, started, started, "h", "0"))

    found, text = status_text(results)
    assert found
    words = " ".join(text.split())  # as wrapped at 80 columns
    assert (f"run done1: finished, 5 manifest rows: 2 ok, 1 skipped, 1 failed (1 worse than their start); "
            f"started {started:%Y-%m-%d %H:%M} UTC, 3600 s run") in words
    assert (f"run dead2: not finished, 7 manifest rows: 1 ok, 0 skipped, 0 failed; "
            f"started {started:%Y-%m-%d %H:%M} UTC, 0 s run") in words
    assert f"run dead2: not finished; no sign of life from its driver since {started:%Y-%m-%d %H:%M} UTC" in words
    assert "failed run done1 row 4: row 4 broke" in text


def test_one_run_can_be_asked_for_and_an_empty_location_says_so(tmp_path, spool_dir):
    storage, results = Storage(), parse_location(str(tmp_path / "results"))
    write_rows(storage, results, "first", ["ok"])
    write_rows(storage, results, "second", ["failed"])
    found, text = status_text(results, "second")
    assert found and "second" in text and "first" not in text
    assert status_text(results, "third") == (False, "")
    assert status_text(parse_location(str(tmp_path / "nowhere")))[0] is False


def test_failures_beyond_the_listed_ones_are_counted_not_printed(tmp_path, spool_dir):
    storage, results = Storage(), parse_location(str(tmp_path / "results"))
    write_rows(storage, results, "many", ["failed"] * (MAX_LISTED_FAILURES + 3))
    text = status_text(results)[1]
    assert text.count("failed run many row") == MAX_LISTED_FAILURES
    assert "and 3 more failed row(s)" in text
