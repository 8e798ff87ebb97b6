"""The parameters object: the paper's defaults and clear refusals of impossible values."""

from __future__ import annotations

import math

import pytest

from stylecore import FusionParams


def test_defaults_are_the_papers():
    params = FusionParams()
    assert (params.alpha_global, params.alpha_local, params.alpha_content) == (20.0, 1e-4, 20.0)
    assert params.global_layers == ("relu1_2", "relu2_2", "relu3_3", "relu4_2")
    assert (params.local_layer, params.content_layer, params.patch_size, params.patch_stride) == \
        ("relu3_1", "relu3_1", 3, 1)
    assert params.layers == ("relu1_2", "relu2_2", "relu3_3", "relu4_2", "relu3_1")


@pytest.mark.parametrize("field, value", [
    ("alpha_local", -1.0), ("alpha_global", math.nan), ("levels", 0), ("iterations", 0), ("size", 0),
])
def test_impossible_values_are_refused_with_the_field_name(field, value):
    with pytest.raises(ValueError, match=field):
        FusionParams(**{field: value})


def test_overrides_ignore_none():
    params = FusionParams().with_overrides(size=None, iterations=7)
    assert params.size == 384 and params.iterations == 7
