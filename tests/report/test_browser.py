"""The reports opened in a real headless browser (Debian's chromium, driven by Playwright):
they load with no console error and no request but the file itself, every picture decodes,
a hostile column name is shown as text and runs nothing, and a screenshot is written.

``VAELAB_SCREENSHOTS=DIR`` also copies the full-page screenshots there (for a release note).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.report.conftest import HOSTILE_COLUMN
from vaelab.runs.layout import REPORT_FILE

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"no {CHROMIUM} (`.ci/run` installs Debian's chromium)"
)


def _open(report: Path, screenshot: Path) -> dict:
    sync_api = pytest.importorskip("playwright.sync_api")
    seen: dict = {"errors": [], "requests": [], "dialogs": []}
    with sync_api.sync_playwright() as p:
        # Playwright's own browser download is not used: the system chromium is
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on(
                "console",
                lambda m: seen["errors"].append(m.text) if m.type == "error" else None,
            )
            page.on("pageerror", lambda e: seen["errors"].append(str(e)))
            page.on("request", lambda r: seen["requests"].append(r.url))

            def dialog(d):
                seen["dialogs"].append(d.message)
                d.dismiss()

            page.on("dialog", dialog)
            page.goto(report.resolve().as_uri(), wait_until="load")
            seen["images"] = page.eval_on_selector_all(
                "img", "imgs => imgs.map(i => [i.complete, i.naturalWidth, i.naturalHeight])"
            )
            seen["text"] = page.inner_text("body")
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return seen


def _check(seen: dict, report: Path, screenshot: Path, min_images: int) -> None:
    assert seen["errors"] == [], seen["errors"]
    assert seen["dialogs"] == [], seen["dialogs"]
    others = [u for u in seen["requests"] if not u.startswith("data:")]
    assert others == [report.resolve().as_uri()], others
    assert len(seen["images"]) >= min_images
    assert all(ok and w > 0 and h > 0 for ok, w, h in seen["images"]), seen["images"]
    assert screenshot.stat().st_size > 10_000


def _keep(screenshot: Path, name: str) -> None:
    if folder := os.environ.get("VAELAB_SCREENSHOTS"):
        shutil.copyfile(screenshot, Path(folder) / name)


def test_mnist_report_in_a_browser(mnist_run, tmp_path):
    report, shot = mnist_run / REPORT_FILE, tmp_path / "mnist-report.png"
    seen = _open(report, shot)
    _check(seen, report, shot, min_images=7)
    assert "run <img src=x onerror=alert(2)>" in seen["text"]  # the folder's name, as text
    _keep(shot, "mnist-report.png")


def test_table_report_in_a_browser_shows_a_script_column_as_text(table_run, tmp_path):
    report, shot = table_run / REPORT_FILE, tmp_path / "table-report.png"
    seen = _open(report, shot)
    _check(seen, report, shot, min_images=4)
    assert HOSTILE_COLUMN in seen["text"]
    _keep(shot, "table-report.png")
