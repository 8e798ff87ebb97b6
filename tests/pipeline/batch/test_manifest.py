"""Manifest reading and row validation: every malformed row is caught with its row, column and reason."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.batch.manifest import Job, ManifestError, RowError, RowValidator, read_manifest, unknown_column_warnings
from pipeline.batch.naming import derived_output_name
from pipeline.storage.store import Location, Storage, parse_location
from stylecore import FusionParams


def validator(folder: Path, defaults: FusionParams = FusionParams()) -> RowValidator:
    return RowValidator(parse_location(str(folder / "manifest.csv")), parse_location(str(folder / "out")),
                        defaults)


def read(path: Path):
    return read_manifest(Storage(), parse_location(str(path)))


def test_csv_rows_stream_with_bom_spaces_blank_lines_and_empty_cells(tmp_path):
    path = tmp_path / "m.csv"
    path.write_bytes("\ufeffcontent, style ,alpha_local\n a.png ,b.png,\n\nc.png,d.png,1e-3\n".encode())
    manifest = read(path)
    assert manifest.columns == ("content", "style", "alpha_local")
    assert list(manifest.rows) == [(1, {"content": "a.png", "style": "b.png", "alpha_local": None}),
                                   (2, {"content": "c.png", "style": "d.png", "alpha_local": "1e-3"})]


def test_parquet_rows_with_nulls_stream_across_batches(tmp_path, monkeypatch):
    from pipeline.batch import manifest as manifest_module

    monkeypatch.setattr(manifest_module, "PARQUET_BATCH_ROWS", 2)
    path = tmp_path / "m.parquet"
    pq.write_table(pa.table({"content": ["a.png", "c.png", "e.png"], "style": ["b.png", "d.png", "f.png"],
                             "size": pa.array([64, None, 32], pa.int64())}), path)
    rows = list(read(path).rows)
    assert [number for number, _ in rows] == [1, 2, 3] and rows[1][1]["size"] is None and rows[2][1]["size"] == 32
    job = validator(tmp_path)(1, rows[0][1])
    assert isinstance(job, Job) and job.params.size == 64


def test_a_row_with_more_fields_than_the_header_is_an_invalid_row_and_the_others_still_read(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("content,style\na.png,b.png\nc.png,d.png,extra\ne.png,f.png\n")
    rows = list(read(path).rows)
    assert [number for number, _ in rows] == [1, 2, 3]
    error = rows[1][1]
    assert isinstance(error, RowError) and error.row == 2
    assert "3 fields, but the header has 2 columns" in error.reason
    assert rows[2][1] == {"content": "e.png", "style": "f.png"}


@pytest.mark.parametrize("header", ["content,style,content", "content,style,size,size"])
def test_a_column_named_twice_is_refused(tmp_path, header):
    path = tmp_path / "m.csv"
    path.write_text(header + "\n")
    with pytest.raises(ManifestError, match="appear more than once"):
        read(path)


@pytest.mark.parametrize("name, data, message", [
    ("m.txt", b"content,style\n", "must be a .csv or .parquet"),
    ("m.parquet", b"not parquet", "not a readable Parquet file"),
    ("m.csv", b"\xff\xfe\x00bad", "not UTF-8"),
])
def test_unreadable_manifests_are_refused_whole(tmp_path, name, data, message):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ManifestError, match=message):
        list(read(path).rows)


def test_missing_required_columns_and_unknown_columns(tmp_path):
    (tmp_path / "m.csv").write_text("content,alpha_local\n")
    with pytest.raises(ManifestError, match=r"missing required column.*style"):
        read(tmp_path / "m.csv")
    (tmp_path / "m.csv").write_text("content,style,alpha_locl\n")
    warnings = unknown_column_warnings(read(tmp_path / "m.csv"))
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
    ({"preset": "gatys"}, "preset", "'gatys' is not a preset: use default or paper"),
    ({"preserve_color": "maybe"}, "preserve_color", "'maybe' is not true or false"),
    ({"style_strength": "-2"}, "style_strength", "is negative"),
])
def test_each_kind_of_bad_row_names_its_column_and_reason(tmp_path, cells, column, reason):
    row = {"content": "a.png", "style": "b.png"} | cells
    outcome = validator(tmp_path)(7, row)
    assert isinstance(outcome, RowError), outcome
    assert (outcome.row, outcome.column) == (7, column)
    assert reason in outcome.reason
    assert str(outcome).startswith(f"row 7, column {column}: ")


def test_equal_outputs_resolve_to_one_location_for_the_collision_check(tmp_path):
    check = validator(tmp_path)
    one = check(1, {"content": "a.png", "style": "b.png", "output": "x/same.png"})
    two = check(2, {"content": "c.png", "style": "d.png", "output": "x//./same.png"})
    derived = [check(row, {"content": "a.png", "style": "b.png"}) for row in (3, 4)]
    assert isinstance(one, Job) and isinstance(two, Job) and one.output == two.output
    assert derived[0].output == derived[1].output


def test_the_output_check_sees_every_output_and_its_refusal_names_the_column(tmp_path):
    seen = []

    def refuse_x(output: Location) -> None:
        seen.append(output)
        if "x" in output.name:
            raise ValueError(f"{output}: not allowed here")

    check = RowValidator(parse_location(str(tmp_path / "m.csv")), parse_location(str(tmp_path / "out")),
                         FusionParams(), check_output=refuse_x)
    assert isinstance(check(1, {"content": "a.png", "style": "b.png", "output": "ok.png"}), Job)
    error = check(2, {"content": "a.png", "style": "b.png", "output": "x.png"})
    assert isinstance(error, RowError) and error.column == "output" and "not allowed here" in error.reason
    assert [location.name for location in seen] == ["ok.png", "x.png"]


def test_cells_override_command_defaults_and_paths_resolve_against_the_manifest(tmp_path):
    defaults = FusionParams(size=128, iterations=7)
    job = validator(tmp_path, defaults)(1, {"content": "in/a.png", "style": "s3://bucket/b.jpg",
                                            "alpha_local": "1e-3", "size": "64.0", "seed": "5"})
    assert isinstance(job, Job)
    assert job.content == parse_location(str(tmp_path / "in" / "a.png"))
    assert job.style == Location("s3", "bucket", "b.jpg")
    assert (job.params.alpha_local, job.params.size, job.params.iterations, job.params.seed) == (1e-3, 64, 7, 5)
    assert job.output.path.startswith(str(tmp_path / "out") + "/") and job.output.name.endswith(".png")


def test_a_preset_column_picks_the_papers_settings_or_the_defaults_and_the_rows_cells_still_apply(tmp_path):
    run_defaults = FusionParams(size=128).with_overrides(style_strength=2.0)
    check = validator(tmp_path, run_defaults)
    cells = {"content": "a.png", "style": "b.png"}
    paper, default, own = (check(row, cells | more) for row, more in enumerate((
        {"preset": "Paper"}, {"preset": "default"},
        {"preset": "paper", "alpha_local": "2e-4", "preserve_color": "yes"})))
    assert isinstance(paper, Job) and isinstance(default, Job) and isinstance(own, Job)
    assert paper.params == FusionParams.paper().with_overrides(size=128, style_strength=2.0), \
        "the preset fixes what the two differ in; the run's other settings stay"
    assert default.params == run_defaults
    assert (own.params.alpha_local, own.params.preserve_color, own.params.local_normalization) == (2e-4, True, "sum")
    unset = check(4, cells | {"preset": None, "preserve_color": "0", "style_strength": "0.5"})
    assert isinstance(unset, Job) and unset.params == run_defaults.with_overrides(style_strength=0.5)


def test_derived_names_are_stable_and_change_with_inputs_and_parameters():
    content, style = parse_location("/d/cat photo.png"), parse_location("s3://bucket/zebra.jpg")
    name = derived_output_name(content, style, FusionParams(), "caffe")
    assert name == derived_output_name(content, style, FusionParams(), "caffe")
    assert name.startswith("cat-photo__zebra__") and name.endswith(".png")
    others = {derived_output_name(content, style, FusionParams(seed=1), "caffe"),
              derived_output_name(content, style, FusionParams(), "torchvision"),
              derived_output_name(style, content, FusionParams(), "caffe")}
    assert name not in others and len(others) == 3
    cheaper = FusionParams().with_overrides(search_budget_bytes=1024)
    assert derived_output_name(content, style, cheaper, "caffe") == name, \
        "the search's memory budget does not change the result, so not the name either"


def test_invalid_rows_keep_their_paths_resolved_where_possible(tmp_path):
    error = validator(tmp_path)(3, {"content": "in/a.png", "style": "ftp://x/b.png", "output": "o.png"})
    assert isinstance(error, RowError) and error.column == "style"
    assert error.cells["content"] == str(tmp_path / "in" / "a.png")
    assert error.cells["style"] == "ftp://x/b.png", "what cannot be resolved is kept as written"
    assert error.cells["output"] == str(tmp_path / "out" / "o.png")
