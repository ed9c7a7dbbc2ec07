"""The page in Debian's Chromium through Playwright: fill a prompt, generate in each tab, see the video.

Never runs `playwright install`: it uses /usr/bin/chromium. Outside CI it is skipped when Chromium is absent; with
CI=true a missing Chromium fails. `GVS_SCREENSHOT=1` copies the text-to-video screenshot to docs/screenshot.png.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from .conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.browser]
CHROMIUM = os.environ.get("GVS_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PROMPTS = {
    "t2v": "a red circle moving left to right on a black background",
    "style": "a white square moving up on a black background",
    "audio": "a green circle bouncing on a black background",
    "interpolate": "a blue triangle moving left to right on a gray background",
}
UPLOADS = {"style": ["style_stripes.png"], "audio": ["impacts.wav"], "interpolate": ["first_frame.png", "last_frame.png"]}
TAB_LABELS = {"t2v": "Text to video", "style": "Style reference", "audio": "Audio alignment",
              "interpolate": "Frame interpolation"}


def _chromium_or_skip():
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true but Chromium is missing at {CHROMIUM} (.ci/run installs Debian's chromium)")
    pytest.skip(f"Debian Chromium not found at {CHROMIUM} (apt-get install chromium)")


@pytest.fixture(scope="module")
def browser_app(app_url):
    _chromium_or_skip()
    return app_url


def test_generate_in_every_tab(browser_app, examples_dir, tmp_path):
    pw = pytest.importorskip("playwright.sync_api")
    shots = Path(os.environ.get("GVS_SCREENSHOT_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    with pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium_or_skip(), args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            page.goto(browser_app, wait_until="domcontentloaded", timeout=120_000)
            page.wait_for_selector("#preset-banner", timeout=120_000)
            assert "Live preset" in page.inner_text("#preset-banner")
            for task, label in TAB_LABELS.items():
                page.get_by_role("tab", name=label).click()
                panel = page.locator(f"#tab-{task}")
                panel.locator(f"#{task}-prompt textarea").fill(PROMPTS[task])
                files = [str(examples_dir / f) for f in UPLOADS.get(task, [])]
                if files:
                    inputs = panel.locator("input[type=file]")
                    for i, f in enumerate(files):
                        inputs.nth(i).set_input_files(f)
                    page.wait_for_timeout(1500)
                page.locator(f"#{task}-generate").click()
                video = panel.locator(f"#{task}-video video")
                video.wait_for(state="attached", timeout=300_000)
                src = video.get_attribute("src") or video.locator("source").first.get_attribute("src")
                assert src and (".mp4" in src or "file=" in src or "/gradio_api/" in src), src
                page.wait_for_timeout(800)
                page.screenshot(path=str(shots / f"{task}.png"), full_page=True)
        finally:
            browser.close()
    if os.environ.get("GVS_SCREENSHOT") == "1":
        (ROOT / "docs").mkdir(exist_ok=True)
        shutil.copy(shots / "t2v.png", ROOT / "docs" / "screenshot.png")
