"""The explorer page in a real browser: headless Chromium (Debian's ``chromium``) driven by
Playwright with the system browser (``executable_path``; Playwright downloads nothing).

Skips, with the reason, where Playwright or Chromium is missing, unless ``VITAE_REQUIRE_BROWSER=1``
(``.ci/run`` sets it after installing Chromium), where it fails instead. The screenshot goes to
``tmp_path``, and also to ``$VITAE_SCREENSHOT`` when that is set: the README's picture is made by
``VITAE_SCREENSHOT=docs/explore.png python -m pytest tests/explore/test_browser.py``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from explore_helpers import as_uint8, read_png, serving
from vitae import pretrained
from vitae.explore.explorer import for_run

VIEWPORT = {"width": 1280, "height": 700}


def _browser_or_skip():
    """``(sync_playwright, chromium path)``, or a skip (a failure under VITAE_REQUIRE_BROWSER=1)."""
    stop = pytest.fail if os.environ.get("VITAE_REQUIRE_BROWSER") == "1" else pytest.skip
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        stop("playwright is not installed (pip install -e '.[test]')")
    for name in (os.environ.get("VITAE_CHROMIUM"), "chromium", "chromium-browser"):
        path = name and shutil.which(name)
        if path:
            return sync_playwright, path
    stop("no chromium executable on PATH (Debian: apt-get install chromium, as .ci/run does; or set VITAE_CHROMIUM)")


@pytest.fixture(scope="module")
def page_of_shipped_model():
    sync_playwright, chromium = _browser_or_skip()
    config, model, _, _ = pretrained.load_run("pretrained:mnist_cvitae")
    explorer = for_run(config, model, name="pretrained:mnist_cvitae")
    # Chromium's sandbox refuses to run as root; containers often have a tiny /dev/shm
    args = ["--disable-dev-shm-usage"] + (["--no-sandbox"] if os.geteuid() == 0 else [])
    with serving(explorer) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=args)
        page = browser.new_page(viewport=VIEWPORT)
        requests, errors = [], []
        page.on("request", lambda r: requests.append(r.url))
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(base)
        page.wait_for_selector("body[data-ready='1']", timeout=30_000)
        wait_idle(page)
        yield page, model, explorer, base, requests, errors
        browser.close()


def wait_idle(page) -> None:
    """Until no request is in flight and the decoded image shows the sliders' codes."""
    page.wait_for_function("""() => document.body.dataset.pending === '0' &&
        document.getElementById('decoded').dataset.codes === JSON.stringify(codes())""", timeout=30_000)


def slider_codes(page) -> dict:
    return page.evaluate("() => codes()")


def shown(page, element: str) -> np.ndarray:
    return read_png(page.get_attribute(f"#{element}", "src"))


@torch.no_grad()
def decode(model, codes: dict) -> np.ndarray:
    return as_uint8(model.decode({k: torch.tensor([v]) for k, v in codes.items()})[0])


def test_slider_moves_the_decoded_image(page_of_shipped_model):
    page, model, _, _, _, errors = page_of_shipped_model
    before, before_codes = shown(page, "decoded"), slider_codes(page)
    np.testing.assert_array_equal(before, decode(model, before_codes))
    slider = page.locator("#s-z_P-0")
    box = slider.bounding_box()
    page.mouse.click(box["x"] + 0.9 * box["width"], box["y"] + box["height"] / 2)  # as a user drags it
    wait_idle(page)
    after_codes = slider_codes(page)
    assert after_codes["z_P"][0] > 1.5 and after_codes["z_A"] == before_codes["z_A"]
    after = shown(page, "decoded")
    assert not np.array_equal(after, before)
    np.testing.assert_array_equal(after, decode(model, after_codes))
    assert errors == []


def test_upload_shows_its_reconstruction_and_codes(page_of_shipped_model, tmp_path):
    page, model, explorer, _, _, errors = page_of_shipped_model
    pixels = as_uint8(explorer.images[9])  # a test image as a user would save it
    path = tmp_path / "digit.png"
    Image.fromarray(pixels).save(path)
    old = page.get_attribute("#input-a", "src")
    page.set_input_files("#upload", str(path))
    page.wait_for_function(f"() => document.getElementById('input-a').src !== {json.dumps(old)}", timeout=30_000)
    wait_idle(page)
    x = torch.from_numpy(pixels.astype(np.float32) / 255).view(1, 1, 28, 28)
    with torch.no_grad():
        recon, posteriors = model.reconstruct(x)[0], model.encode(x)
    np.testing.assert_array_equal(shown(page, "input-a"), pixels)
    np.testing.assert_array_equal(shown(page, "recon-a"), as_uint8(recon))
    codes = slider_codes(page)  # the upload's codes are on the sliders (to their 0.01 step)
    for group in ("z_A", "z_P"):
        expected = posteriors[group].mean[0].clamp(-3, 3).numpy()
        np.testing.assert_allclose(codes[group], expected, atol=0.0051)
    np.testing.assert_array_equal(shown(page, "decoded"), decode(model, codes))
    swap = shown(page, "swap-ab")  # appearance of the upload, perspective of image B
    assert swap.shape == (28, 28)
    assert errors == []


def test_a_wrong_upload_shows_one_line(page_of_shipped_model, tmp_path):
    page, _, _, _, _, _ = page_of_shipped_model
    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((40, 30), np.uint8)).save(path)
    page.set_input_files("#upload", str(path))
    page.wait_for_function("() => document.getElementById('error').textContent !== ''", timeout=30_000)
    assert page.text_content("#error") == "error: the upload is 30x40 pixels; this model takes 28x28 (resize it, or tick 'resize to fit')"


def test_screenshot_and_offline(page_of_shipped_model, tmp_path):
    """The page fetched nothing but its own server, and its screenshot is the README's picture."""
    page, _, _, base, requests, _ = page_of_shipped_model
    page.evaluate("() => { document.getElementById('error').textContent = ''; }")
    wait_idle(page)
    assert requests and all(r.startswith(base) or r.startswith("data:") for r in requests)
    target = tmp_path / "explore.png"
    page.screenshot(path=str(target))
    with Image.open(target) as image:
        assert image.format == "PNG" and image.size == (VIEWPORT["width"], VIEWPORT["height"])
    wanted = os.environ.get("VITAE_SCREENSHOT")
    if wanted:
        Path(wanted).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(target, wanted)
