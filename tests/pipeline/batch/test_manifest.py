"""Manifest reading and row validation: every malformed row is caught with its row, column and reason."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.batch.manifest import Job, ManifestError, RowError, RowValidator, check_columns, read_rows
from pipeline.batch.naming import derived_output_name
from pipeline.storage.store import Location, Storage, parse_location
from stylecore import FusionParams


def validator(folder: Path, defaults: FusionParams = FusionParams()) -> RowValidator:
    return RowValidator(parse_location(str(folder / "manifest.csv")), parse_location(str(folder / "out")),
                        defaults)


def test_csv_rows_stream_with_bom_spaces_and_empty_cells(tmp_path):
    path = tmp_path / "m.csv"
    path.write_bytes("\ufeffcontent, style ,alpha_local\n a.png ,b.png,\nc.png,d.png,1e-3\n".encode())
    columns, rows = read_rows(Storage(), parse_location(str(path)))
    assert columns == ["content", "style", "alpha_local"]
    assert list(rows) == [{"content": "a.png", "style": "b.png", "alpha_local": None},
                          {"content": "c.png", "style": "d.png", "alpha_local": "1e-3"}]


def test_parquet_rows_with_nulls(tmp_path):
    path = tmp_path / "m.parquet"
    pq.write_table(pa.table({"content": ["a.png", "c.png"], "style": ["b.png", "d.png"],
                             "size": pa.array([64, None], pa.int64())}), path)
    columns, rows = read_rows(Storage(), parse_location(str(path)))
    rows = list(rows)
    assert columns == ["content", "style", "size"] and rows[1]["size"] is None
    job = validator(tmp_path)(1, rows[0])
    assert isinstance(job, Job) and job.params.size == 64


@pytest.mark.parametrize("name, data, message", [
    ("m.txt", b"content,style\n", "must be a .csv or .parquet"),
    ("m.parquet", b"not parquet", "not a readable Parquet file"),
    ("m.csv", b"\xff\xfe\x00bad", "not UTF-8"),
])
def test_unreadable_manifests_are_refused_whole(tmp_path, name, data, message):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ManifestError, match=message):
        read_rows(Storage(), parse_location(str(path)))


def test_missing_required_columns_and_unknown_columns():
    manifest = parse_location("/data/m.csv")
    with pytest.raises(ManifestError, match="missing required column.*style"):
        check_columns(manifest, ["content", "alpha_local"])
    warnings = check_columns(manifest, ["content", "style", "alpha_locl"])
    assert len(warnings) == 1 and "unknown column 'alpha_locl'" in warnings[0]


@pytest.mark.parametrize("cells, column, reason", [
    ({"content": None}, "content", "missing value"),
    ({"style": None}, "style", "missing value"),
    ({"alpha_global": "lots"}, "alpha_global", "'lots' is not a number"),
    ({"alpha_local": "-1e-4"}, "alpha_local", "is negative"),
    ({"alpha_content": "nan"}, "alpha_content", "not a finite number"),
    ({"size": "0"}, "size", "size must be >= 1"),
    ({"iters": "2.5"}, "iters", "not a whole number"),
    ({"levels": "0"}, "levels", "levels must be >= 1"),
    ({"content": "http://example.com/a.png"}, "content", "unsupported scheme 'http'"),
    ({"output": "../up.png"}, "output", "contains '..'"),
    ({"output": "/etc/passwd.png"}, "output", "absolute path"),
    ({"output": "s3://other/x.png"}, "output", "is a URI"),
    ({"output": "result.txt"}, "output", "unknown or unwritable image extension"),
])
def test_each_kind_of_bad_row_names_its_column_and_reason(tmp_path, cells, column, reason):
    row = {"content": "a.png", "style": "b.png"} | cells
    outcome = validator(tmp_path)(7, row)
    assert isinstance(outcome, RowError), outcome
    assert (outcome.row, outcome.column) == (7, column)
    assert reason in outcome.reason
    assert str(outcome).startswith(f"row 7, column {column}: ")


def test_duplicate_outputs_name_the_first_row(tmp_path):
    check = validator(tmp_path)
    assert isinstance(check(1, {"content": "a.png", "style": "b.png", "output": "x/same.png"}), Job)
    duplicate = check(2, {"content": "c.png", "style": "d.png", "output": "x//same.png"})
    assert isinstance(duplicate, RowError) and "already the output of row 1" in duplicate.reason
    derived_once = check(3, {"content": "a.png", "style": "b.png"})
    derived_twice = check(4, {"content": "a.png", "style": "b.png"})
    assert isinstance(derived_once, Job) and isinstance(derived_twice, RowError)


def test_cells_override_command_defaults_and_paths_resolve_against_the_manifest(tmp_path):
    defaults = FusionParams(size=128, iterations=7)
    job = validator(tmp_path, defaults)(1, {"content": "in/a.png", "style": "s3://bucket/b.jpg",
                                            "alpha_local": "1e-3", "size": "64.0", "seed": "5"})
    assert isinstance(job, Job)
    assert job.content == parse_location(str(tmp_path / "in" / "a.png"))
    assert job.style == Location("s3", "bucket", "b.jpg")
    assert (job.params.alpha_local, job.params.size, job.params.iterations, job.params.seed) == (1e-3, 64, 7, 5)
    assert job.output.path.startswith(str(tmp_path / "out") + "/") and job.output.name.endswith(".png")


def test_derived_names_are_stable_and_change_with_inputs_and_parameters():
    content, style = parse_location("/d/cat photo.png"), parse_location("s3://bucket/zebra.jpg")
    name = derived_output_name(content, style, FusionParams(), "caffe")
    assert name == derived_output_name(content, style, FusionParams(), "caffe")
    assert name.startswith("cat-photo__zebra__") and name.endswith(".png")
    others = {derived_output_name(content, style, FusionParams(seed=1), "caffe"),
              derived_output_name(content, style, FusionParams(), "torchvision"),
              derived_output_name(style, content, FusionParams(), "caffe")}
    assert name not in others and len(others) == 3
    assert derived_output_name(content, style, FusionParams().with_overrides(search_budget_bytes=1024), "caffe") == name, \
        "the search's memory budget does not change the result, so not the name either"


def test_invalid_rows_keep_their_paths_resolved_where_possible(tmp_path):
    error = validator(tmp_path)(3, {"content": "in/a.png", "style": "ftp://x/b.png", "output": "o.png"})
    assert isinstance(error, RowError) and error.column == "style"
    assert error.cells["content"] == str(tmp_path / "in" / "a.png")
    assert error.cells["style"] == "ftp://x/b.png", "what cannot be resolved is kept as written"
    assert error.cells["output"] == str(tmp_path / "out" / "o.png")
