"""The command line as a user runs it: `stylize` for one image, and `submit` + `status` on the
embedded default (a local Ray started and stopped by the command, local files, the demo manifest)."""

from __future__ import annotations

import os

import psutil
from PIL import Image

from stylecore import FusionParams
from tests.demo_images import IMAGES
from tests.pipeline.conftest import TINY, local_results, stylebatch

CAT, ZEBRA = str(IMAGES / "content/cat_chelsea.png"), str(IMAGES / "style/texture_zebra.jpg")


def test_stylize_writes_the_image_and_never_overwrites_by_accident(tmp_path):
    output = tmp_path / "nested" / "cat.jpg"
    done = stylebatch("stylize", CAT, ZEBRA, "-o", str(output), *TINY)
    assert done.returncode == 0, done.stderr
    assert f"wrote {output} (32x21)" in done.stderr.replace("\n", "")
    assert f"style weights x{(32 / 384) ** 0.7:.2f} for its size" in " ".join(done.stderr.split()), \
        "a result off 384 px says its style factor"
    assert Image.open(output).format == "JPEG"
    before = output.stat().st_mtime_ns

    again = stylebatch("stylize", CAT, ZEBRA, "-o", str(output), *TINY)
    assert again.returncode == 1 and "exists; pass --force to overwrite it" in again.stderr
    assert output.stat().st_mtime_ns == before
    forced = stylebatch("stylize", CAT, ZEBRA, "-o", str(output), "--seed", "3", "--force", *TINY)
    assert forced.returncode == 0 and output.stat().st_mtime_ns != before
    assert [path.name for path in output.parent.iterdir()] == ["cat.jpg"], "no temporary file left behind"


def test_stylize_errors_name_the_file_and_the_problem(tmp_path):
    sliver = tmp_path / "sliver.png"
    Image.new("RGB", (300, 10)).save(sliver)
    cases = [
        ((str(tmp_path / "missing.png"), ZEBRA, "-o", str(tmp_path / "a.png")), "missing.png: file not found"),
        ((sliver, ZEBRA, "-o", str(tmp_path / "b.png")), f"{sliver}: content image is too small"),
        ((CAT, ZEBRA, "-o", str(tmp_path / "c.unknown")), "unknown or unwritable image extension"),
        ((CAT, ZEBRA, "-o", str(tmp_path / "d.png"), "--alpha-local", "-1"), "Invalid value for '--alpha-local'"),
    ]
    for args, message in cases:
        done = stylebatch("stylize", *map(str, args), *TINY)
        assert done.returncode != 0 and message in " ".join(done.stderr.split()), (args, done.stderr)
    assert list(tmp_path.iterdir()) == [sliver]


def test_submit_on_the_embedded_default_runs_the_demo_manifest_then_status_summarises_it(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    output = tmp_path / "demo"
    done = stylebatch("submit", "manifests/demo.csv", "--output", str(output), *TINY, env=env)
    assert done.returncode == 0, done.stderr
    assert "3 ok, 0 skipped, 0 failed of 3 rows" in done.stdout
    assert sorted(path.name for path in output.glob("*.png")) == [
        "astronaut_zebra.png", "cat_starry_night.png", "coffee_great_wave.png"]
    table = local_results(output / "_results")
    assert table.num_rows == 3 and set(table["status"].to_pylist()) == {"ok"}
    local_ray = [process for process in psutil.process_iter(["cmdline"])
                 if "/tmp/ray/session" in " ".join(process.info["cmdline"] or [])]
    assert not local_ray, "the local Ray started by the command must be stopped by it"

    status = stylebatch("status", str(output / "_results"))
    assert status.returncode == 0
    assert (f"run {table['run_id'][0].as_py()}: finished, 3 manifest rows: 3 ok, 0 skipped, 0 failed; started"
            in " ".join(status.stdout.split()))
    missing = stylebatch("status", str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and "no results found" in missing.stderr


def test_help_shows_the_defaults_that_options_left_unset_take():
    """Options that default to None (so that a manifest cell or a preset can fill them) name the value
    they stand for; rich would swallow an unescaped "[default: ...]" as markup."""
    shown = " ".join(stylebatch("submit", "--help", env={**os.environ, "COLUMNS": "200"}).stdout.split())
    defaults = FusionParams()
    for fragment in (f"Default longest side [default: {defaults.size}]",
                     f"Default local weight [default: {defaults.alpha_local:g}]",
                     "Both style weights times S against the content weight: 0.5 = less style, 2 = more [default: 1]"):
        assert fragment in shown, fragment
