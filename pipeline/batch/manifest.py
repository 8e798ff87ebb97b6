"""Manifests: reading CSV/Parquet rows as a stream and validating each into a job or an error.

Row numbers are 1-based and count data rows only: row 1 is the first row after a CSV's
header (line 2 of the file) or the first row of a Parquet file.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow.parquet as pq

from pipeline.batch.naming import derived_output_name
from pipeline.storage.store import Location, Storage, parse_location
from stylecore import FusionParams
from stylecore.imageio import image_format_for

REQUIRED_COLUMNS = ("content", "style")
FLOAT_COLUMNS = ("alpha_global", "alpha_local", "alpha_content")
INT_COLUMNS = ("size", "levels", "iters", "seed")
KNOWN_COLUMNS = (*REQUIRED_COLUMNS, *FLOAT_COLUMNS, "output", *INT_COLUMNS)
# Manifest column -> FusionParams field.
PARAM_FIELDS = {"alpha_global": "alpha_global", "alpha_local": "alpha_local",
                "alpha_content": "alpha_content", "size": "size", "levels": "levels",
                "iters": "iterations", "seed": "seed"}


class ManifestError(ValueError):
    """The manifest as a whole cannot be used (unreadable, missing a required column)."""


@dataclass(frozen=True)
class Job:
    """One valid manifest row, resolved: what to read, what to write, with which parameters."""

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


def read_rows(storage: Storage, manifest: Location) -> tuple[list[str], Iterator[dict[str, Any]]]:
    """Column names and a stream of {column: value or None} rows of a .csv or .parquet manifest."""
    data = storage.read_bytes(manifest)
    if manifest.name.lower().endswith(".parquet"):
        try:
            table_file = pq.ParquetFile(io.BytesIO(data))
        except Exception as error:  # pyarrow raises several types for a damaged file
            raise ManifestError(f"{manifest}: not a readable Parquet file ({error})") from None
        return table_file.schema_arrow.names, _parquet_rows(table_file)
    if not manifest.name.lower().endswith(".csv"):
        raise ManifestError(f"{manifest}: a manifest must be a .csv or .parquet file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ManifestError(f"{manifest}: not UTF-8 text ({error})") from None
    reader = csv.DictReader(io.StringIO(text, newline=""), skipinitialspace=True)
    columns = [name.strip() for name in reader.fieldnames or []]
    reader.fieldnames = columns
    return columns, ({key: _blank_to_none(value) for key, value in row.items() if key is not None}
                     for row in reader)


def _parquet_rows(table_file: pq.ParquetFile) -> Iterator[dict[str, Any]]:
    for batch in table_file.iter_batches(batch_size=4096):
        for row in batch.to_pylist():
            yield {key: _blank_to_none(value) for key, value in row.items()}


def _blank_to_none(value: Any) -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.strip() if isinstance(value, str) else value


def check_columns(manifest: Location, columns: list[str]) -> list[str]:
    """Raise for a missing required column; return warnings about unknown columns."""
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise ManifestError(f"{manifest}: missing required column(s) {', '.join(missing)}; "
                            f"found {', '.join(columns) or 'none'}")
    return [f"{manifest}: unknown column {name!r} is ignored (known: {', '.join(KNOWN_COLUMNS)})"
            for name in columns if name not in KNOWN_COLUMNS]


class RowValidator:
    """Turns raw rows into Jobs or RowErrors; remembers outputs to catch duplicates."""

    def __init__(self, manifest: Location, output_prefix: Location, defaults: FusionParams,
                 weights: str = "caffe") -> None:
        self.base = manifest.parent
        self.output_prefix = output_prefix
        self.defaults = defaults
        self.weights = weights
        self._output_rows: dict[str, int] = {}

    def __call__(self, row: int, cells: dict[str, Any]) -> Job | RowError:
        try:
            return self._validate(row, cells)
        except _CellError as error:
            return RowError(row, error.column, error.reason, self._resolved(cells))

    def _resolved(self, cells: dict[str, Any]) -> dict[str, Any]:
        """The cells with every path that can be resolved made absolute, for the results table."""
        resolved = dict(cells)
        for column, resolve in (("content", lambda text: parse_location(text, base=self.base)),
                                ("style", lambda text: parse_location(text, base=self.base)),
                                ("output", self.output_prefix.child)):
            if cells.get(column) is not None:
                try:
                    resolved[column] = str(resolve(str(cells[column])))
                except ValueError:
                    pass
        return resolved

    def _validate(self, row: int, cells: dict[str, Any]) -> Job:
        content = self._location(cells, "content")
        style = self._location(cells, "style")
        overrides = {PARAM_FIELDS[name]: _number(cells, name, float) for name in FLOAT_COLUMNS}
        overrides |= {PARAM_FIELDS[name]: _number(cells, name, int) for name in INT_COLUMNS}
        try:
            params = self.defaults.with_overrides(**overrides)
        except ValueError as error:
            field = str(error).split(" ", 1)[0]
            column = next((c for c, f in PARAM_FIELDS.items() if f == field), "parameters")
            raise _CellError(column, str(error)) from None
        output = self._output(cells, content, style, params)
        first = self._output_rows.setdefault(str(output), row)
        if first != row:
            raise _CellError("output", f"{output} is already the output of row {first}")
        return Job(row, content, style, output, params)

    def _location(self, cells: dict[str, Any], column: str) -> Location:
        value = cells.get(column)
        if value is None:
            raise _CellError(column, "missing value")
        try:
            return parse_location(str(value), base=self.base)
        except ValueError as error:
            raise _CellError(column, str(error)) from None

    def _output(self, cells: dict[str, Any], content: Location, style: Location,
                params: FusionParams) -> Location:
        value = cells.get("output")
        name = str(value) if value is not None else derived_output_name(content, style, params, self.weights)
        try:
            image_format_for(name)
            return self.output_prefix.child(name)
        except ValueError as error:
            raise _CellError("output", str(error)) from None


class _CellError(Exception):
    def __init__(self, column: str, reason: str) -> None:
        super().__init__(reason)
        self.column, self.reason = column, reason


def _number(cells: dict[str, Any], column: str, kind: type) -> Any:
    """The cell as `kind` (None if empty); integral floats count as ints (Parquet nulls make floats)."""
    value = cells.get(column)
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _CellError(column, f"{value!r} is not a number") from None
    if not math.isfinite(number):
        raise _CellError(column, f"{value!r} is not a finite number")
    if kind is int:
        if not number.is_integer():
            raise _CellError(column, f"{value!r} is not a whole number")
        return int(number)
    if number < 0:
        raise _CellError(column, f"{value!r} is negative; weights must be >= 0")
    return number
