"""`stylebatch compare` as a user runs it: the sheet has the paper's tiles in the paper's order, the
default beside the paper's settings and the style-strength sweep, and the distances written on it
are the ones `stylecore.metrics.distances` gives for the same syntheses."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from pipeline.reports.drawing import BACKGROUND, fitted
from stylecore import FusionParams, Stylizer, image_to_tensor, load_image, tensor_to_image
from stylecore.metrics import distances
from tests.demo_images import IMAGES
from tests.pipeline.conftest import stylebatch

CAT, ZEBRA = IMAGES / "content/cat_chelsea.png", IMAGES / "style/texture_zebra.jpg"
SIZE, ITERS = 32, 3
METHODS = ["content", "style", "global only (a2 = 0)", "local only (a1 = 0)", "fusion (default)", "paper's settings"]
STRENGTHS = [0.25, 0.5, 1, 2, 4]
DEFAULT, PAPER = FusionParams(), FusionParams.paper()
SETTINGS = ("alpha_global", "alpha_local", "alpha_content", "style_strength", "local_normalization", "init",
            "content_layer", "style_size_exponent")


@pytest.fixture(scope="module")
def sheet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Image.Image, dict, str]:
    """A tiny comparison sheet made by the real command, its metadata and the command's stdout."""
    output = tmp_path_factory.mktemp("compare") / "sheet.png"
    done = stylebatch("compare", str(CAT), str(ZEBRA), "-o", str(output), "--size", str(SIZE), "--levels", "1",
                      "--iters", str(ITERS), "--tile", "48", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert f"wrote {output}" in " ".join(done.stderr.split())
    image = Image.open(output)
    image.load()
    return image, json.loads(image.text["stylebatch"]), done.stdout


def settings(params: FusionParams, **changes: object) -> tuple:
    return tuple(changes.get(name, getattr(params, name)) for name in SETTINGS)


def test_sheet_lays_out_inputs_methods_and_the_strength_sweep_in_two_rows(sheet):
    image, metadata, stdout = sheet
    tiles = metadata["tiles"]
    assert [tile["label"] for tile in tiles] == METHODS + [f"strength {strength:g}" for strength in STRENGTHS]
    top, bottom = tiles[:6], tiles[6:]
    for row in (top, bottom):
        assert len({tile["box"][1] for tile in row}) == 1, "a row's tiles share their top edge"
        lefts = [tile["box"][0] for tile in row]
        assert lefts == sorted(lefts) and len(set(lefts)) == len(lefts)
    assert bottom[0]["box"][1] > top[0]["box"][1] + top[0]["box"][3]
    shown = {tile["label"]: tuple(tile[name] for name in SETTINGS) for tile in tiles[2:]}
    assert shown["global only (a2 = 0)"] == settings(DEFAULT, alpha_local=0.0)
    assert shown["local only (a1 = 0)"] == settings(DEFAULT, alpha_global=0.0)
    assert shown["fusion (default)"] == settings(DEFAULT)
    assert shown["paper's settings"] == settings(PAPER) == (20.0, 1e-4, 20.0, 1.0, "sum", "noise", "relu3_1", 0.0)
    assert [shown[tile["label"]] for tile in bottom] == [settings(DEFAULT, style_strength=s) for s in STRENGTHS]
    for tile in tiles:
        assert tile["label"] in stdout, "the printed table lists every tile"
        left, top_edge, width, height = tile["caption_box"]
        caption = image.convert("RGB").crop((left, top_edge, left + width, top_edge + height))
        assert caption.getcolors(4096) != [(caption.width * caption.height, BACKGROUND)], \
            f"{tile['label']}: the caption under the tile is empty"
    assert image.size[0] < 2200 and image.size[1] < 800


def test_tiles_show_the_syntheses_and_carry_the_distances_of_stylecore_metrics(sheet):
    """Redo each synthesis in this process: the pixels in each tile's box are that synthesis, and the
    numbers on the tile are `distances` of it, in the base settings' layers for every tile (the
    paper's tile, whose content term reads relu3_1, is measured on the default's relu2_1 too)."""
    image, metadata, _ = sheet
    stylizer = Stylizer("caffe", "cpu")
    content, style = image_to_tensor(load_image(CAT)), image_to_tensor(load_image(ZEBRA))
    base = FusionParams(size=SIZE, levels=1, iterations=ITERS).with_overrides(match_every=1)
    synthesized = [tile for tile in metadata["tiles"] if tile["alpha_global"] is not None]
    assert len(synthesized) == 9
    for tile in synthesized:
        params = base.with_overrides(**{name: tile[name] for name in SETTINGS})
        result = stylizer(content, style, params).image
        measured = distances(stylizer.extractor, result, content, style, base)
        assert (tile["gram"], tile["mrf"], tile["content"]) == pytest.approx(
            (measured.gram, measured.mrf, measured.content), rel=1e-4), tile["label"]
        left, top, width, height = tile["box"]
        shown = image.convert("RGB").crop((left, top, left + width, top + height))
        expected = fitted(tensor_to_image(result), width, height)
        difference = max(abs(a - b) for a, b in zip(shown.tobytes(), expected.tobytes(), strict=True))
        assert difference <= 2, f"{tile['label']}: the tile does not show its synthesis"
    content_tile = metadata["tiles"][0]
    assert content_tile["content"] == 0 and content_tile["gram"] > 0 and content_tile["mrf"] > 0


def test_compare_refuses_bad_requests_before_any_synthesis(tmp_path):
    existing = tmp_path / "sheet.png"
    existing.write_bytes(b"keep me")
    cases = [
        ((str(CAT), str(ZEBRA), "-o", str(existing)), "exists; pass --force to overwrite it"),
        ((str(tmp_path / "nope.png"), str(ZEBRA), "-o", str(tmp_path / "a.png")), "nope.png: no such file"),
        ((str(CAT), str(ZEBRA), "-o", str(tmp_path / "b.png"), "--strengths", "1,x"),
         "--strengths: 'x' is not a number >= 0"),
        ((str(CAT), str(ZEBRA), "-o", str(tmp_path / "c.unknown")), "unknown or unwritable image extension"),
    ]
    for args, message in cases:
        done = stylebatch("compare", *args, "--size", "32", "--levels", "1", "--iters", "1")
        assert done.returncode == 1 and message in " ".join(done.stderr.split()), (args, done.stderr)
    assert existing.read_bytes() == b"keep me" and sorted(tmp_path.iterdir()) == [existing]


def test_an_empty_sweep_gives_the_methods_row_alone(tmp_path):
    output = tmp_path / "methods.png"
    done = stylebatch("compare", str(CAT), str(ZEBRA), "-o", str(output), "--size", str(SIZE), "--levels", "1",
                      "--iters", "1", "--strengths", "", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    metadata = json.loads(Image.open(output).text["stylebatch"])
    assert [tile["label"] for tile in metadata["tiles"]] == METHODS
    assert "strength" not in metadata["title"]
    lowest_tile_edge = max(tile["box"][1] + tile["box"][3] for tile in metadata["tiles"])
    assert Image.open(output).height < lowest_tile_edge + 150, "no empty sweep row below the methods"
