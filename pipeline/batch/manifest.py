"""Manifests: CSV/Parquet rows read as a bounded stream and validated one by one into jobs or errors.

Row numbers are 1-based and count data rows only: row 1 is the first row after a CSV's
header (blank lines are not rows) or the first row of a Parquet file. Reading never holds
more than one Parquet batch or one CSV line, so a manifest of any length streams in
constant memory; duplicate outputs are found separately (`pipeline.batch.outputs`).
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any, BinaryIO, NamedTuple, cast

import pyarrow.parquet as pq

from pipeline.batch.columns import MANIFEST_PARAMETERS, ParameterColumn, preset_settings
from pipeline.batch.naming import derived_output_name
from pipeline.storage.store import Location, Storage, parse_location
from stylecore import FusionParams
from stylecore.imageio import image_format_for

REQUIRED_COLUMNS = ("content", "style")
KNOWN_COLUMNS = (*REQUIRED_COLUMNS, "output", "preset", *(column.name for column in MANIFEST_PARAMETERS))
PARQUET_BATCH_ROWS = 4096


class ManifestError(ValueError):
    """The manifest as a whole cannot be used (unreadable, missing or repeated columns)."""


class Job(NamedTuple):
    """One valid manifest row, resolved: what to read, what to write, with which parameters.

    A NamedTuple rather than a frozen dataclass: the driver makes two per manifest row, and
    this is several times cheaper to build.
    """

    row: int
    content: Location
    style: Location
    output: Location
    params: FusionParams


@dataclass(frozen=True)
class RowError:
    """One invalid manifest row: where and what is wrong."""

    row: int
    column: str
    reason: str
    cells: dict[str, Any]

    def __str__(self) -> str:
        return f"row {self.row}, column {self.column}: {self.reason}"


Rows = Iterator[tuple[int, dict[str, Any] | RowError]]  # (row number, cells) or a row whose shape is wrong


@dataclass(frozen=True)
class Manifest:
    """An opened manifest: its columns and a one-pass stream of (row number, cells) or shape errors."""

    location: Location
    columns: tuple[str, ...]
    rows: Rows


def read_manifest(storage: Storage, location: Location) -> Manifest:
    """Open a .csv or .parquet manifest for streaming; ManifestError if it cannot be used at all.

    Each call reads the manifest afresh (the driver reads it twice: once to validate, once to
    dispatch). Rows whose shape is wrong (more fields than the header) come as RowErrors.
    """
    suffix = location.name.lower().rpartition(".")[2]
    if suffix not in ("csv", "parquet"):
        raise ManifestError(f"{location}: a manifest must be a .csv or .parquet file")
    reader = cast(BinaryIO, storage.open_reader(location))  # a buffered, seekable binary file
    try:
        columns, rows = (_parquet(location, reader) if suffix == "parquet" else _csv(location, reader))
    except BaseException:
        reader.close()
        raise
    repeated = sorted({name for name in columns if columns.count(name) > 1})
    if repeated:
        reader.close()
        raise ManifestError(f"{location}: column(s) {', '.join(map(repr, repeated))} appear more than once "
                            "in the header")
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        reader.close()
        raise ManifestError(f"{location}: missing required column(s) {', '.join(missing)}; "
                            f"found {', '.join(columns) or 'none'}")
    return Manifest(location, tuple(columns), _closing(rows, reader))


def unknown_column_warnings(manifest: Manifest) -> list[str]:
    """One warning per column stylebatch does not know (it is ignored)."""
    return [f"{manifest.location}: unknown column {name!r} is ignored (known: {', '.join(KNOWN_COLUMNS)})"
            for name in manifest.columns if name not in KNOWN_COLUMNS]


def _closing(rows: Rows,
             reader: BinaryIO) -> Rows:
    try:
        yield from rows
    finally:
        reader.close()


def _csv(location: Location, reader: BinaryIO) -> tuple[list[str], Rows]:
    text = io.TextIOWrapper(reader, encoding="utf-8-sig", newline="")
    lines = csv.reader(text, skipinitialspace=True)
    try:
        header = next(lines, [])
    except UnicodeDecodeError as error:
        raise ManifestError(f"{location}: not UTF-8 text ({error})") from None
    except csv.Error as error:
        raise ManifestError(f"{location}: not a readable CSV file ({error})") from None
    return [name.strip() for name in header], _csv_rows(location, [name.strip() for name in header], lines)


def _csv_rows(location: Location, columns: list[str],
              lines: Iterator[list[str]]) -> Rows:
    width = len(columns)
    number = 0
    try:
        for fields in lines:
            if not fields:
                continue
            number += 1
            if len(fields) > width:
                cells = {name: value.strip() or None for name, value in zip(columns, fields, strict=False)}
                yield number, RowError(number, "(row)", f"{len(fields)} fields, but the header has {width} "
                                       f"columns; quote values that contain commas", cells)
                continue
            yield number, {name: value.strip() or None for name, value in zip(columns, fields, strict=False)}
    except UnicodeDecodeError as error:
        raise ManifestError(f"{location}: not UTF-8 text after row {number} ({error})") from None
    except csv.Error as error:
        raise ManifestError(f"{location}: unreadable CSV after row {number} ({error})") from None


def _parquet(location: Location,
             reader: BinaryIO) -> tuple[list[str], Rows]:
    try:
        table_file = pq.ParquetFile(reader)
    except Exception as error:  # pyarrow raises several types for a damaged file
        raise ManifestError(f"{location}: not a readable Parquet file ({error})") from None
    return list(table_file.schema_arrow.names), _parquet_rows(location, table_file)


def _parquet_rows(location: Location, table_file: pq.ParquetFile) -> Rows:
    number = 0
    try:
        for batch in table_file.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            names = batch.schema.names
            for values in zip(*(column.to_pylist() for column in batch.columns), strict=True):
                number += 1
                yield number, {name: _blank_to_none(value) for name, value in zip(names, values, strict=True)}
    except Exception as error:
        raise ManifestError(f"{location}: unreadable Parquet data after row {number} ({error})") from None


def _blank_to_none(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        value = value.strip()
        return value or None
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


class RowValidator:
    """Turns raw rows into Jobs or RowErrors; holds only bounded caches, never every row's output.

    Duplicate outputs are not its concern (see `pipeline.batch.outputs`). `check_output`
    (optional) vets each output location (names a filesystem or S3 cannot hold, local
    outputs escaping the prefix through a symlink) and raises ValueError with the reason.
    """

    def __init__(self, manifest: Location, output_prefix: Location, defaults: FusionParams,
                 weights: str = "caffe", check_output: Callable[[Location], None] | None = None,
                 columns: tuple[str, ...] | None = None) -> None:
        """`columns`: the manifest's, if known (without a parameter column, rows need no parsing of them)."""
        self.base = manifest.parent
        self._parameter_cells = columns is None or "preset" in columns or any(
            column.name in columns for column in MANIFEST_PARAMETERS)
        self.output_prefix = output_prefix
        self.defaults = defaults
        self.weights = weights
        self.check_output = check_output
        # Bounded memos: rows mostly share styles and parameters, and memory must not grow with rows.
        self._location = functools.lru_cache(maxsize=4096)(partial(parse_location, base=self.base))
        self._params = functools.lru_cache(maxsize=1024)(self._params_for)
        self._writable_extension = functools.lru_cache(maxsize=64)(_is_writable_extension)

    def __call__(self, row: int, cells: dict[str, Any]) -> Job | RowError:
        try:
            return self._validate(row, cells)
        except _CellError as error:
            return RowError(row, error.column, error.reason, self.resolved(cells))

    def resolved(self, cells: dict[str, Any]) -> dict[str, Any]:
        """The cells with every path that can be resolved made absolute, for the results table."""
        resolved = dict(cells)
        for column, resolve in (("content", self._location), ("style", self._location),
                                ("output", self.output_prefix.child)):
            if cells.get(column) is not None:
                with contextlib.suppress(ValueError):
                    resolved[column] = str(resolve(str(cells[column])))
        return resolved

    def _validate(self, row: int, cells: dict[str, Any]) -> Job:
        content = self._input(cells, "content")
        style = self._input(cells, "style")
        params: FusionParams = (self._params(_preset(cells), *(_cell(cells, column) for column in MANIFEST_PARAMETERS))
                                if self._parameter_cells else self.defaults)
        output = self._output(cells, content, style, params)
        return Job(row, content, style, output, params)

    def _input(self, cells: dict[str, Any], column: str) -> Location:
        value = cells.get(column)
        if value is None:
            raise _CellError(column, "missing value")
        try:
            location: Location = self._location(str(value))
        except ValueError as error:
            raise _CellError(column, str(error)) from None
        return location

    def _params_for(self, preset: str | None, *values: Any) -> FusionParams:
        """The parameters for a row's preset and cells (memoised: rows mostly share them): the run's
        defaults, then what the preset fixes, then the row's own cells."""
        overrides = {column.field: value for column, value in zip(MANIFEST_PARAMETERS, values, strict=True)}
        try:
            fixed = preset_settings(preset) if preset else {}
        except ValueError as error:
            raise _CellError("preset", str(error)) from None
        try:
            return self.defaults.with_overrides(**fixed).with_overrides(**overrides)
        except ValueError as error:
            field = str(error).split(" ", 1)[0]
            column_name = next((c.name for c in MANIFEST_PARAMETERS if c.field == field), "parameters")
            raise _CellError(column_name, str(error)) from None

    def _output(self, cells: dict[str, Any], content: Location, style: Location, params: FusionParams) -> Location:
        value = cells.get("output")
        name = str(value) if value is not None else derived_output_name(content, style, params, self.weights)
        try:
            if not self._writable_extension(os.path.splitext(name)[1].lower()):
                image_format_for(name)  # raises, naming the file
            output = self.output_prefix.child(name)
            if self.check_output is not None:
                self.check_output(output)
        except ValueError as error:
            raise _CellError("output", str(error)) from None
        return output


def _is_writable_extension(extension: str) -> bool:
    """Whether Pillow can write images with this extension ('.png')."""
    try:
        image_format_for(f"x{extension}")
    except ValueError:
        return False
    return True


class _CellError(Exception):
    def __init__(self, column: str, reason: str) -> None:
        super().__init__(reason)
        self.column, self.reason = column, reason


def _preset(cells: dict[str, Any]) -> str | None:
    value = cells.get("preset")
    return None if value is None else str(value).strip().lower() or None


_TRUE, _FALSE = frozenset(("true", "yes", "1", "1.0")), frozenset(("false", "no", "0", "0.0"))


def _cell(cells: dict[str, Any], column: ParameterColumn) -> Any:
    """The cell of `column` as its kind (None if empty); integral floats count as ints (Parquet
    nulls turn integer columns into floats); true/false, yes/no or 1/0 for a yes-or-no column."""
    value = cells.get(column.name)
    if value is None:
        return None
    if column.kind is bool:
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise _CellError(column.name, f"{value!r} is not true or false")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _CellError(column.name, f"{value!r} is not a number") from None
    if not math.isfinite(number):
        raise _CellError(column.name, f"{value!r} is not a finite number")
    if column.kind is int:
        if not number.is_integer():
            raise _CellError(column.name, f"{value!r} is not a whole number")
        return int(number)
    if number < 0:
        raise _CellError(column.name, f"{value!r} is negative; weights must be >= 0")
    return number
