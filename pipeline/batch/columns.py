"""The synthesis parameters as columns: one table that the manifest, the results schema and the
records all read, so a new parameter is one line here."""

from __future__ import annotations

import functools
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
    kind: type  # float, int, bool or str
    in_manifest: bool  # whether a manifest row may set it
    label: str = ""  # a short name for displays such as the report's cards ("" = the column's name)

    def value(self, params: FusionParams) -> Any:
        return operator.attrgetter(self.field)(params)

    @property
    def arrow_type(self) -> pa.DataType:
        return _ARROW_TYPES[self.kind]


PARAMETER_COLUMNS: tuple[ParameterColumn, ...] = (
    ParameterColumn("alpha_global", "alpha_global", float, True, "a1"),
    ParameterColumn("alpha_local", "alpha_local", float, True, "a2"),
    ParameterColumn("alpha_content", "alpha_content", float, True, "a3"),
    ParameterColumn("tv_weight", "tv_weight", float, False, "tv"),
    ParameterColumn("size", "size", int, True),
    ParameterColumn("levels", "levels", int, True),
    ParameterColumn("iters", "iterations", int, True),
    ParameterColumn("seed", "seed", int, True),
    ParameterColumn("style_strength", "style_strength", float, True, "strength"),
    ParameterColumn("preserve_color", "preserve_color", bool, True, "keep colour"),
    ParameterColumn("local_normalization", "local_normalization", str, False, "local term"),  # set by a preset
    ParameterColumn("init", "init", str, False),  # set by a preset
    ParameterColumn("content_layer", "content_layer", str, False, "content layer"),  # set by a preset
    ParameterColumn("style_size_exponent", "style_size_exponent", float, False, "size exponent"),  # set by a preset
    ParameterColumn("match_every", "matching.match_every", int, False, "match"),
    ParameterColumn("search_dim", "matching.search_dim", int, False, "search"),
    ParameterColumn("search_candidates", "matching.search_candidates", int, False, "rerank"),
    # search_step is null in tables written before it existed
    ParameterColumn("search_step", "matching.search_step", int, False, "step"),
)
MANIFEST_PARAMETERS = tuple(column for column in PARAMETER_COLUMNS if column.in_manifest)


PRESETS = ("default", "paper")  # values of a manifest's `preset` column


@functools.cache
def preset_settings(preset: str) -> dict[str, Any]:
    """The settings a preset fixes: where stylebatch's defaults and the paper's settings differ
    (`FusionParams()` against `FusionParams.paper()`), by flat name. ValueError for an unknown preset."""
    if preset not in PRESETS:
        raise ValueError(f"{preset!r} is not a preset: use {' or '.join(PRESETS)}")
    default, paper = FusionParams().flattened(), FusionParams.paper().flattened()
    chosen = paper if preset == "paper" else default
    return {name: chosen[name] for name in default if default[name] != paper[name]}


def parameter_values(params: FusionParams) -> dict[str, Any]:
    """{column name: value} of every parameter column."""
    return {column.name: column.value(params) for column in PARAMETER_COLUMNS}
