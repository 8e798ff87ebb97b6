"""Derived output names are a promise to reruns: the same row and settings must find the same file.

The golden names below were computed before `FusionParams` grouped its matching fields into
`MatchingParams`; a change of structure must not rename a single existing output.
"""

from __future__ import annotations

import json

from pipeline.batch.naming import derived_output_name, params_fingerprint
from pipeline.storage.store import parse_location
from stylecore import FusionParams

CONTENT, STYLE = parse_location("s3://bucket/in/cat.png"), parse_location("s3://bucket/styles/zebra.jpg")


def test_derived_names_match_the_golden_names_of_earlier_versions():
    """The parameters earlier versions knew (their defaults were the paper's settings) keep their names."""
    paper = FusionParams.paper()
    exact = paper.with_overrides(size=256, match_every=1, search_dim=64, search_candidates=4, search_step=1,
                                 exact_level_end=True, reuse_min_patches=0)
    assert derived_output_name(CONTENT, STYLE, paper, "caffe") == "cat__zebra__fa671ab3e4f6.png"
    assert derived_output_name(CONTENT, STYLE, exact, "caffe") == "cat__zebra__ee083c5b4040.png"
    assert derived_output_name(CONTENT, STYLE, paper.with_overrides(match_every=10), "torchvision") == \
        "cat__zebra__8d6ad11ae8b4.png"
    others = {derived_output_name(CONTENT, STYLE, params, "caffe") for params in (
        FusionParams(), paper.with_overrides(style_strength=2.0), paper.with_overrides(preserve_color=True),
        paper.with_overrides(init="content"), paper.with_overrides(local_normalization="mean"))}
    assert len(others) == 5 and "cat__zebra__fa671ab3e4f6.png" not in others, "every new setting changes the name"


def test_the_fingerprint_is_every_parameter_by_its_flat_name():
    """The results table's `params` column: one flat JSON object, as in earlier versions for the settings
    they knew; the later settings appear where they differ from what those versions did."""
    assert json.loads(json.dumps(params_fingerprint(FusionParams()))) == json.loads(
        json.dumps(params_fingerprint(FusionParams.paper()))) | {
        "alpha_global": 5.0, "alpha_local": 15.0, "alpha_content": 35.0, "local_normalization": "mean",
        "init": "content", "content_layer": "relu2_1", "style_size_exponent": 0.7}
    assert json.dumps(params_fingerprint(FusionParams.paper()), sort_keys=True) == (
        '{"alpha_content": 20.0, "alpha_global": 20.0, "alpha_local": 0.0001, "content_layer": "relu3_1", '
        '"exact_level_end": false, "global_layers": ["relu1_2", "relu2_2", "relu3_3", "relu4_2"], '
        '"init_noise": 0.001, "iterations": 100, "lbfgs_history": 25, "levels": 3, "local_layer": "relu3_1", '
        '"match_every": 5, "patch_size": 3, "patch_stride": 1, "reuse_min_patches": 2048, '
        '"search_candidates": 8, "search_dim": 128, "search_step": 2, "seed": 0, "size": 384, '
        '"style_size": null, "tv_weight": 0.0}')
