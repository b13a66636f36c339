"""End-to-end Dataset page in headless Chromium: evaluate the shipped samples with both
checkpoints as a background job, rank by the drop in mIoU from A to B, click the top image's
Compare button and land on Compare with that image; the address opens the same view in a new
browser context. Run with: pytest tests/test_browser_dataset.py -m browser -s
"""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from tests.test_browser import (  # noqa: F401
    ROOT,
    _goto,
    _idle,
    _launch,
    _no_errors,
    _serve,
    _shot,
    _shots_dir,
    playwright_sync,
    server,
)

pytestmark = pytest.mark.browser


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    """The server (and its records job) caches records under the test's folder, not ~/.cache."""
    monkeypatch.setenv("XTASK_CACHE_DIR", str(tmp_path / "records-cache"))


def _sample_box_text(page) -> str:
    """The Sample image selectbox's label and value (shown as text or as its combobox input's value)."""
    box = page.locator("[data-testid='stSelectbox']", has_text="Sample image").first
    inputs = box.locator("input")
    values = [inputs.nth(i).input_value() for i in range(inputs.count())]
    return " ".join([box.inner_text(), *values, box.inner_html()])


def _open_dataset_page(browser, url: str):
    """A tall tab on the app's Home, then the Dataset page."""
    page = browser.new_page(viewport={"width": 1400, "height": 2400})
    page.goto(url)
    page.get_by_role("heading", name="Cross-task consistency explorer").wait_for(timeout=90_000)
    _idle(page)
    _goto(page, "Dataset")
    return page


def _follow_top_tile(page, pattern: str, button: str, heading: str, shot: str, shots) -> str:
    """The ranked grid's first tile: its image name (``pattern``'s group 1), then its ``button``
    clicked until the page titled ``heading`` has settled without an error box."""
    top = page.get_by_text(re.compile(r"^#1 · ")).first.inner_text()
    found = re.search(pattern, top).group(1)
    _shot(page, shot, shots)
    page.get_by_role("button", name=button, exact=True).first.click()
    page.get_by_role("heading", name=heading).first.wait_for(timeout=90_000)
    _idle(page)
    _no_errors(page, f"{heading} from the Dataset page")
    return found


@pytest.fixture
def demo_server(tmp_path):
    """The app on the repository's own shipped checkpoints and sample images (runs, caches and
    allowed folders under the test's tmp folder)."""
    (tmp_path / "runs").mkdir()
    env = {"XTASK_CHECKPOINT_DIR": str(ROOT / "checkpoints"), "XTASK_SAMPLES_DIR": str(ROOT / "sample_images"),
           "XTASK_RUNS_DIR": str(tmp_path / "runs"), "XTASK_ALLOWED_ROOTS": str(tmp_path)}
    for info in _serve(env):
        yield dict(info, tmp=tmp_path)


A, B = "shipped: demo-consistency", "shipped: demo-no-consistency"
N_STREET = len(list((ROOT / "sample_images" / "leftImg8bit").rglob("*.png")))


def test_dataset_page_click_through_in_chromium(own_cache, demo_server):
    """The shipped street samples evaluated with both shipped demo checkpoints, ranked by the drop
    of mIoU from A to B; the top image opens in Compare, and its address in a new context."""
    shots = _shots_dir()
    with playwright_sync.sync_playwright() as p:
        browser = _launch(p)
        page = _open_dataset_page(browser, demo_server["url"])
        # both demo checkpoints (the sidebar's, A, is picked already), the shipped samples, Evaluate
        page.locator("[data-testid='stMultiSelect']", has_text="Checkpoints to evaluate").first.click()
        page.get_by_role("option", name=B).click()
        page.keyboard.press("Escape")
        _idle(page)
        page.get_by_role("button", name="Evaluate", exact=True).click()
        page.get_by_text(re.compile(rf"done: {2 * N_STREET} rows")).first.wait_for(timeout=300_000)
        _idle(page)
        _no_errors(page, "dataset evaluated")
        _shot(page, "d1_dataset_evaluated", shots)
        # rank by the drop of mIoU from A to B: the default metric is miou
        page.locator("[data-testid='stRadio'] label", has_text="Largest drop from checkpoint A to B").first.click()
        page.get_by_text("Checkpoint A", exact=True).first.wait_for(timeout=90_000)
        _idle(page)
        stem = _follow_top_tile(page, r"(synthtown_\d+_\d+)", "Compare", "Compare checkpoints",
                                "d2_dataset_ranked_by_drop", shots)
        assert stem in _sample_box_text(page)
        query = parse_qs(urlparse(page.url).query)
        assert query["src"] == ["sample"] and stem in query["image"][0], page.url
        assert query["ckpts"] == [B, A], page.url               # the row's checkpoint (B) is the reference
        for label in (A, B):                                     # both chips of Compare's multiselect
            page.locator("[data-testid='stMultiSelect']").get_by_text(label).first.wait_for(timeout=90_000)
        _shot(page, "d3_compare_from_dataset", shots)
        # the same address in a new browser context (a shared link) opens the same view
        other = browser.new_context(viewport={"width": 1400, "height": 1600}).new_page()
        other.goto(page.url)
        other.get_by_role("heading", name="Compare checkpoints").first.wait_for(timeout=90_000)
        _idle(other)
        _no_errors(other, "compare deep link")
        assert stem in _sample_box_text(other)
        for label in (A, B):
            other.locator("[data-testid='stMultiSelect']").get_by_text(label).first.wait_for(timeout=90_000)
        _shot(other, "d4_compare_deep_link", shots)
        browser.close()


def test_folder_image_click_through_in_chromium(own_cache, server):  # noqa: F811
    """A plain folder of unlabelled photos evaluated on the Dataset page (ranked by energy): the
    top tile's Predictions button lands on Predictions with that file (source "Image file")."""
    import cv2
    import numpy as np
    photos = server["tmp"] / "photos"            # inside the allowed folders (XTASK_ALLOWED_ROOTS = tmp)
    photos.mkdir()
    rng = np.random.default_rng(11)
    for i in range(3):
        cv2.imwrite(str(photos / f"photo_{i}.png"), rng.integers(0, 256, (40, 60, 3), dtype=np.uint8))
    shots = _shots_dir()
    with playwright_sync.sync_playwright() as p:
        browser = _launch(p)
        page = _open_dataset_page(browser, server["url"])
        page.locator("[data-testid='stRadio'] label", has_text="Folder of images").first.click()
        _idle(page)
        box = page.locator("[data-testid='stTextInput']", has_text="searched recursively").first.locator("input")
        box.fill(str(photos))
        box.press("Enter")
        _idle(page)
        page.get_by_role("button", name="Evaluate", exact=True).click()
        page.get_by_text(re.compile(r"done: 3 rows")).first.wait_for(timeout=300_000)
        _idle(page)
        _no_errors(page, "folder evaluated")
        name = _follow_top_tile(page, r"(photo_\d\.png)", "Predictions", "Predictions",
                                "d5_folder_ranked_by_energy", shots)
        query = parse_qs(urlparse(page.url).query)
        assert query["src"] == ["file"] and Path(query["path"][0]) == (photos / name).resolve(), page.url
        path_box = page.locator("[data-testid='stTextInput']", has_text="Image file").first.locator("input")
        assert path_box.input_value() == query["path"][0]
        page.get_by_text("An image file has no ground truth").first.wait_for(timeout=30_000)
        _shot(page, "d6_predictions_from_folder", shots)
        browser.close()
