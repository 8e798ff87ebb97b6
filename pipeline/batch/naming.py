"""Deterministic output names, so a rerun of the same row finds the image it made before."""

from __future__ import annotations

import functools
import hashlib
import json
import re

from pipeline.storage.store import Location
from stylecore import FusionParams

# Fields that change how fast the result is computed but not the result itself.
_NOT_IN_NAME = frozenset({"search_budget_bytes"})
# Settings added after output names were first derived, each with the value that does what every
# earlier version did: at that value a setting is left out of the fingerprint, so the parameters
# an earlier version knew keep their names (and a rerun still finds those outputs).
_ADDED_LATER = {"style_strength": 1.0, "preserve_color": False, "local_normalization": "sum", "init": "noise",
                "style_size_exponent": 0.0}


def params_fingerprint(params: FusionParams) -> dict[str, object]:
    """The parameters that determine a result, as plain JSON-able values."""
    return {key: value for key, value in params.flattened().items()
            if key not in _NOT_IN_NAME and not (key in _ADDED_LATER and _ADDED_LATER[key] == value)}


@functools.lru_cache(maxsize=1024)
def params_json(params: FusionParams) -> str:
    """`params_fingerprint` as sorted JSON, memoised: rows of a manifest mostly share their parameters,
    and flattening them would otherwise dominate the driver's time per row."""
    return json.dumps(params_fingerprint(params), sort_keys=True)


def derived_output_name(content: Location, style: Location, params: FusionParams, weights: str) -> str:
    """'<content stem>__<style stem>__<12 hex digits>.png', the digits hashing inputs and parameters.

    The digits hash the sorted JSON of {content, params (the fingerprint), style, weights}.
    """
    identity = (f'{{"content": {json.dumps(str(content))}, "params": {params_json(params)}, '
                f'"style": {json.dumps(str(style))}, "weights": {json.dumps(weights)}}}')
    digest = hashlib.sha256(identity.encode()).hexdigest()[:12]
    return f"{_stem(content.name)}__{_stem(style.name)}__{digest}.png"


def _stem(name: str) -> str:
    stem = name.rsplit(".", 1)[0] if "." in name[1:] else name
    return re.sub(r"[^A-Za-z0-9_-]+", "-", stem).strip("-")[:40] or "image"
