"""`stylebatch report` on results made by the real `stylebatch submit` (local files and S3), opened
in a real headless Chromium: one card per row, every image loads, failures show their errors,
the page regroups and filters, and names from the table are text, never markup.

Chromium and its WebDriver come from Debian (`chromium`, `chromium-driver`); when they are missing
the session installs them with apt-get, and fails (not skips) if that is impossible.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from html import escape
from pathlib import Path

import pytest
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from pipeline.batch.results import ResultsWriter
from pipeline.storage.store import Storage, parse_location
from tests.demo_images import IMAGES
from tests.pipeline.conftest import TINY, RayHead, stylebatch

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")
CAT, ASTRONAUT = IMAGES / "content/cat_chelsea.png", IMAGES / "content/portrait_astronaut.png"
ZEBRA, GRASS = IMAGES / "style/texture_zebra.jpg", IMAGES / "style/texture_grass.png"
# A file name that would inject markup and script if any string reached the page unescaped.
HOSTILE = "\"><img src=x onerror=alert(1)><b id=pwned>cat' & 'x.png"
HOSTILE_OUTPUT = "<i id=pwned2>out' & \".png"

# What each manifest row of `local_runs` becomes, per run: the status, and how many images its card shows.
ROWS = {1: ("ok", 3), 2: ("ok", 3), 3: ("ok", 3), 4: ("failed", 1), 5: ("failed", 2)}
RERUN_STATUS = {1: "skipped", 2: "skipped", 3: "skipped", 4: "failed", 5: "failed"}


def _install_chromium() -> None:
    """apt-get install Debian's chromium and chromium-driver (updating the package lists if needed)."""
    if os.geteuid() != 0:
        pytest.fail("chromium and chromium-driver are not installed and installing them needs root: "
                    "apt-get install chromium chromium-driver")
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=600",
               "chromium", "chromium-driver"]
    for before in ([], [["apt-get", "update", "-o", "DPkg::Lock::Timeout=600"]]):
        for command in before:
            subprocess.run(command, env=environment, capture_output=True, text=True, timeout=900)
        done = subprocess.run(install, env=environment, capture_output=True, text=True, timeout=1800)
        if done.returncode == 0 and CHROMIUM.exists() and CHROMEDRIVER.exists():
            return
    pytest.fail(f"cannot install chromium and chromium-driver with apt-get:\n{done.stdout[-2000:]}"
                f"\n{done.stderr[-2000:]}")


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """Headless Chromium driven over WebDriver, with a fresh profile; quit at the end of the session."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        _install_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


def open_page(browser: WebDriver, page: Path) -> dict:
    """Load a report and read back what a person would see: cards, images, placeholders, errors."""
    browser.get(page.as_uri())
    return browser.execute_script("""
        const visible = el => !el.closest('[hidden]');
        return {
          title: document.title,
          scripts: document.scripts.length,
          injected: !!document.getElementById('pwned') || !!document.getElementById('pwned2'),
          images: Array.from(document.images).map(i => ({alt: i.alt, loaded: i.complete && i.naturalWidth > 0})),
          cards: Array.from(document.querySelectorAll('article.card')).map(card => ({
            status: card.dataset.status, row: Number(card.dataset.row), run: card.dataset.run,
            loss: card.dataset.loss, visible: visible(card),
            images: card.querySelectorAll('img').length,
            missing: Array.from(card.querySelectorAll('.missing')).map(m => m.textContent),
            captions: Array.from(card.querySelectorAll('figcaption')).map(c => c.textContent),
            error: (card.querySelector('pre.error') || {}).textContent || null})),
          headings: Array.from(document.querySelectorAll('section.group > h2')).map(h => h.textContent),
        };""")


def write_manifest(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["content", "style", "alpha_local", "output"])
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def local_runs(tmp_path_factory: pytest.TempPathFactory, ray_head: RayHead) -> tuple[Path, list[str]]:
    """Two real runs of one local manifest (3 ok, a missing file, an invalid row; then a rerun that
    skips the finished rows): the results folder and the run ids in order."""
    folder = tmp_path_factory.mktemp("report-local")
    hostile_content = folder / HOSTILE
    shutil.copy(CAT, hostile_content)
    manifest = write_manifest(folder / "manifest.csv", [
        {"content": str(CAT), "style": str(ZEBRA), "output": "cat_zebra.png"},
        {"content": str(ASTRONAUT), "style": str(ZEBRA), "output": "astronaut_zebra.png"},
        {"content": str(hostile_content), "style": str(GRASS), "output": HOSTILE_OUTPUT},
        {"content": str(folder / f"missing {HOSTILE}"), "style": str(GRASS), "output": "missing.png"},
        {"content": str(CAT), "style": str(GRASS), "alpha_local": "abc", "output": "invalid.png"},
    ])
    run_ids = []
    for _ in range(2):
        done = stylebatch("submit", str(manifest), "--output", str(folder / "out"), "--address", ray_head.address,
                          *TINY)
        assert done.returncode == 1, done.stderr
        run_ids.append(done.stdout.split("done: run ")[1].split(":")[0])
    return folder / "out" / "_results", run_ids


def test_report_has_a_card_per_row_every_image_loads_and_failures_show_their_errors(local_runs, browser, tmp_path):
    results, (first, second) = local_runs
    page, sheet = tmp_path / "report.html", tmp_path / "sheet.png"
    done = stylebatch("report", str(results), "-o", str(page), "--png", str(sheet))
    assert done.returncode == 0, done.stderr
    assert "3 ok, 3 skipped, 4 failed" in done.stderr

    seen = open_page(browser, page)
    assert seen["images"] and all(image["loaded"] for image in seen["images"]), seen["images"]
    cards = {(card["run"], card["row"]): card for card in seen["cards"]}
    assert len(seen["cards"]) == len(cards) == 10
    for (run, row), card in cards.items():
        status, images = ROWS[row]
        assert card["status"] == (status if run == first else RERUN_STATUS[row]), (run, row)
        assert card["images"] == images and len(card["missing"]) == 3 - images, (run, row, card)
        assert card["visible"]
    for run in (first, second):
        assert "no such file" in cards[(run, 4)]["error"] and "no content image" in cards[(run, 4)]["missing"][0]
        assert "column alpha_local: 'abc' is not a number" in cards[(run, 5)]["error"]
        assert "not written: the row failed" in cards[(run, 5)]["missing"][0]
    assert float(cards[(first, 1)]["loss"]) > 0 and cards[(first, 1)]["error"] is None
    assert sorted(heading.split(" — ")[0] for heading in seen["headings"]) == [str(GRASS), str(ZEBRA)]

    contact = Image.open(sheet)
    cells = json.loads(contact.text["stylebatch"])["cells"]
    assert sorted((cell["run_id"], cell["row"], cell["status"]) for cell in cells) == sorted(
        (card["run"], card["row"], card["status"]) for card in seen["cards"])


def test_the_page_regroups_sorts_and_filters_in_the_browser(local_runs, browser, tmp_path):
    results, (first, _) = local_runs
    page = tmp_path / "report.html"
    assert stylebatch("report", str(results), "-o", str(page), "--run", first).returncode == 0
    browser.get(page.as_uri())
    Select(browser.find_element("id", "group")).select_by_value("")
    Select(browser.find_element("id", "sort")).select_by_value("loss")
    browser.find_element("css selector", "input[data-status=failed]").click()
    state = browser.execute_script("""
        return {headings: document.querySelectorAll('section.group > h2').length,
                order: Array.from(document.querySelectorAll('article.card')).map(card =>
                    [card.dataset.status, card.dataset.loss, card.hidden])};""")
    assert state["headings"] == 0
    shown = [(status, float(loss)) for status, loss, hidden in state["order"] if not hidden]
    assert [status for status, _ in shown] == ["ok"] * 3
    assert [loss for _, loss in shown] == sorted(loss for _, loss in shown)
    assert sorted(status for status, _, hidden in state["order"] if hidden) == ["failed", "failed"]


def test_names_and_errors_from_the_table_are_text_never_markup(local_runs, browser, tmp_path):
    results, _ = local_runs
    page = tmp_path / "report.html"
    assert stylebatch("report", str(results), "-o", str(page)).returncode == 0
    html = page.read_text()
    assert HOSTILE not in html and escape(HOSTILE) in html

    seen = open_page(browser, page)
    assert not seen["injected"] and seen["scripts"] == 1 and seen["title"].startswith("stylebatch report")
    captions = [caption for card in seen["cards"] for caption in card["captions"]]
    assert f"content: {HOSTILE}" in captions and f"result: {HOSTILE_OUTPUT}" in captions
    assert any(HOSTILE in (card["error"] or "") for card in seen["cards"])


def test_every_string_column_is_escaped(browser, tmp_path):
    """A results table with markup in every string column (run id, paths, weights, host, params, error)."""
    results = parse_location(str(tmp_path / "results"))
    writer = ResultsWriter(Storage(), results, run_id="<img src=x onerror=document.title='pwned'>")
    common = {"content": f"/nowhere/{HOSTILE}", "style": f"/nowhere/<b id=pwned>{HOSTILE}",
              "weights": "<b id=pwned>", "worker_host": "<b id=pwned>", "device": "<i id=pwned2>",
              "params": '{"layers": "</pre></details><b id=pwned>"}'}
    writer.add({**common, "row": 1, "status": "failed", "error": f"</pre><b id=pwned>{HOSTILE}"})
    writer.add({**common, "row": 2, "status": "<b id=pwned>ok", "output": f"/nowhere/{HOSTILE_OUTPUT}",
                "loss_total": 1.5, "synthesis_seconds": 2.0})
    writer.close()
    page = tmp_path / "report.html"
    done = stylebatch("report", str(results), "-o", str(page))
    assert done.returncode == 0, done.stderr

    seen = open_page(browser, page)
    assert not seen["injected"] and seen["scripts"] == 1 and "pwned" not in seen["title"]
    assert len(seen["cards"]) == 2 and seen["images"] == []
    assert all(len(card["missing"]) == 3 for card in seen["cards"])
    assert seen["cards"][0]["error"] == f"</pre><b id=pwned>{HOSTILE}"
    assert {card["run"] for card in seen["cards"]} == {"<img src=x onerror=document.title='pwned'>"}


def test_report_over_s3_results_and_images(s3_server, s3_bucket, ray_head, browser, tmp_path):
    client = s3_server.client()
    for key, source in (("in/cat.png", CAT), ("in/zebra.jpg", ZEBRA)):
        client.put_object(Bucket=s3_bucket, Key=key, Body=source.read_bytes())
    manifest = io.StringIO()
    csv.writer(manifest).writerows([["content", "style", "output"], ["in/cat.png", "in/zebra.jpg", "cat.png"],
                                    ["in/missing.png", "in/zebra.jpg", "missing.png"]])
    client.put_object(Bucket=s3_bucket, Key="manifest.csv", Body=manifest.getvalue().encode())
    done = stylebatch("submit", f"s3://{s3_bucket}/manifest.csv", "--output", f"s3://{s3_bucket}/out",
                      "--address", ray_head.address, *TINY)
    assert done.returncode == 1 and "1 ok, 0 skipped, 1 failed of 2 rows" in done.stdout, done.stderr

    page, sheet = tmp_path / "report.html", tmp_path / "sheet.png"
    done = stylebatch("report", f"s3://{s3_bucket}/out/_results", "-o", str(page), "--png", str(sheet),
                      "--s3-endpoint", s3_server.endpoint_url)
    assert done.returncode == 0, done.stderr
    seen = open_page(browser, page)
    assert len(seen["images"]) == 4 and all(image["loaded"] for image in seen["images"]), seen["images"]
    ok, failed = sorted(seen["cards"], key=lambda card: card["row"])
    assert (ok["status"], ok["images"], failed["status"], failed["images"]) == ("ok", 3, "failed", 1)
    assert f"s3://{s3_bucket}/in/missing.png: no such object" in failed["error"]
    assert s3_server.secret_key not in page.read_text()
    assert Image.open(sheet).size[0] > 0


def test_report_without_results_fails_clearly(tmp_path):
    done = stylebatch("report", str(tmp_path), "-o", str(tmp_path / "report.html"))
    assert done.returncode == 1 and f"no results found in {tmp_path}" in " ".join(done.stderr.split())
    assert not (tmp_path / "report.html").exists()
