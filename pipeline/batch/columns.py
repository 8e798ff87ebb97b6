"""The synthesis parameters as columns: one table that the manifest, the results schema and the
records all read, so a new parameter is one line here."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from stylecore.params import FusionParams

_ARROW_TYPES: dict[type, pa.DataType] = {float: pa.float64(), int: pa.int64(), bool: pa.bool_(), str: pa.string()}


@dataclass(frozen=True)
class ParameterColumn:
    """One FusionParams value as a column of the results table (and, if `in_manifest`, of manifests)."""

    name: str  # the column's name in manifests and in the results table
    field: str  # the FusionParams attribute it reads (dotted for a nested one)
    kind: type  # float, int or bool
    in_manifest: bool  # whether a manifest row may set it

    def value(self, params: FusionParams) -> Any:
        return operator.attrgetter(self.field)(params)

    @property
    def arrow_type(self) -> pa.DataType:
        return _ARROW_TYPES[self.kind]


PARAMETER_COLUMNS: tuple[ParameterColumn, ...] = (
    ParameterColumn("alpha_global", "alpha_global", float, True),
    ParameterColumn("alpha_local", "alpha_local", float, True),
    ParameterColumn("alpha_content", "alpha_content", float, True),
    ParameterColumn("tv_weight", "tv_weight", float, False),
    ParameterColumn("size", "size", int, True),
    ParameterColumn("levels", "levels", int, True),
    ParameterColumn("iters", "iterations", int, True),
    ParameterColumn("seed", "seed", int, True),
    ParameterColumn("match_every", "matching.match_every", int, False),
    ParameterColumn("search_dim", "matching.search_dim", int, False),
    ParameterColumn("search_candidates", "matching.search_candidates", int, False),
    ParameterColumn("search_step", "matching.search_step", int, False),  # null in tables written before it existed
)
MANIFEST_PARAMETERS = tuple(column for column in PARAMETER_COLUMNS if column.in_manifest)


def parameter_values(params: FusionParams) -> dict[str, Any]:
    """{column name: value} of every parameter column."""
    return {column.name: column.value(params) for column in PARAMETER_COLUMNS}
