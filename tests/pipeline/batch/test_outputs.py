"""Output collisions found in bounded memory: repeats and file/folder clashes, in row order, like a naive set."""

from __future__ import annotations

import random

import pytest

from pipeline.batch import outputs
from pipeline.batch.outputs import OutputIndex


def naive_collisions(rows: list[tuple[int, str]]) -> dict[int, tuple[int, bool]]:
    """{row: (other row, duplicate?)} by brute force, as the index documents it."""
    first: dict[str, tuple[int, int]] = {}  # name -> (row, kind) of its earliest use
    entries = []
    for row, output in rows:
        parts = output.split("/")
        entries.append((row, output, outputs.FILE))
        entries += [(row, "/".join(parts[:depth]), outputs.FOLDER) for depth in range(1, len(parts))]
    for row, name, kind in sorted(entries, key=lambda entry: entry[0]):
        first.setdefault(name, (row, kind))
    flagged: dict[int, tuple[int, bool]] = {}
    for row, name, kind in sorted(entries, key=lambda entry: entry[0]):
        first_row, first_kind = first[name]
        if first_row == row or row in flagged:
            continue
        if kind == outputs.FILE and first_kind == outputs.FILE:
            flagged[row] = (first_row, True)
        elif kind != first_kind:
            flagged[row] = (first_row, False)
    return flagged


def collisions_of(rows: list[tuple[int, str]]) -> dict[int, tuple[int, bool]]:
    with OutputIndex() as index:
        for row, output in rows:
            parts = output.split("/")
            index.add(row, output, ["/".join(parts[:depth]) for depth in range(1, len(parts))])
        found = {collision.row: (collision.other_row, collision.duplicate) for collision in index.collisions()}
        assert found == {c.row: (c.other_row, c.duplicate) for c in index.collisions()}, "each call reads afresh"
        return found


def test_a_repeated_output_names_the_first_row_and_clashes_name_the_earlier_row():
    found = collisions_of([(1, "out/a.png"), (2, "out/b.png"), (3, "out/a.png"), (4, "out/a.png/x.png"),
                           (5, "out/d/e.png"), (6, "out/d"), (7, "out/a.png")])
    assert found == {3: (1, True), 4: (1, False), 6: (5, False), 7: (1, True)}


def test_the_stream_answers_rows_in_order_and_says_why():
    with OutputIndex() as index:
        for row, output in [(1, "o/a.png"), (2, "o/a.png")]:
            index.add(row, output)
        stream = index.collisions()
        assert stream.count == 1
        assert stream.get(1) is None
        collision = stream.get(2)
        assert collision is not None and collision.reason("o/a.png") == "o/a.png is already the output of row 1"
        assert stream.get(3) is None


def test_rows_sharing_a_folder_do_not_collide():
    assert collisions_of([(row, f"out/shared/{row}.png") for row in range(1, 200)]) == {}


@pytest.mark.parametrize("seed", [0, 1])
def test_agrees_with_a_naive_set_on_random_names_across_buckets_and_spills(monkeypatch, seed):
    monkeypatch.setattr(outputs, "FLUSH_ENTRIES", 64)  # force several spills per bucket
    generator = random.Random(seed)
    names = [f"o/{generator.choice('abc')}/{generator.randrange(400)}.png" for _ in range(3000)]
    names += ["o/a", "o/b/7.png/x.png", "o/c/1.png"]  # a file where folders are, and a folder under a file
    rows = list(enumerate(names, start=1))
    assert collisions_of(rows) == naive_collisions(rows)


def test_row_numbers_spill_and_answer_membership_in_order(tmp_path, monkeypatch):
    from pipeline.batch.outputs import RowNumbers

    monkeypatch.setattr(outputs, "FLUSH_ENTRIES", 4)
    numbers = RowNumbers(tmp_path)
    members = [2, 3, 5, 8, 13, 21, 34, 55, 89]
    for row in members:
        numbers.add(row)
    reader = numbers.reader()
    assert [row for row in range(1, 100) if row in reader] == members
    empty = tmp_path / "empty"
    empty.mkdir()
    assert 1 not in RowNumbers(empty).reader()
