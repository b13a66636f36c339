"""End-to-end: the real `streamlit run app.py` server driven in headless Chromium (playwright).

Visits every page, uploads an image on Predictions, switches checkpoints, opens a page by its
address in a second tab (the checkpoint comes with the address), runs a 3-step fine-tune, and
checks that no exception or error box appears. Screenshots go to
$XTASK_SCREENSHOT_DIR when set. Timings (cold start → first rendered predictions, a
display-only interaction) are printed and written to <screenshot dir>/timings.json.
Run with: pytest tests/test_browser.py -m browser -s
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from tests.app_helpers import make_app_env
from xtask_app.server import app_server

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.browser

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is missing: the browser test needs a system Chromium", allow_module_level=True)
playwright_sync = pytest.importorskip("playwright.sync_api", reason="Python playwright is not installed")

ERROR_SELECTORS = ("[data-testid='stException']", "[data-testid='stAlertContentError']")


def _serve(env_vars: dict[str, str]):
    """Start `streamlit run app.py` with ``env_vars`` added; yield {url, t0, proc}; stop it."""
    env = dict(os.environ, **env_vars)
    env["XTASK_JOB_OWNER"] = f"browser-test-{os.getpid()}"
    srv = None
    try:
        with app_server(ROOT, env, capture=True) as srv:
            yield {"url": srv.url, "t0": srv.t0, "proc": srv.proc}
    finally:
        out = srv.proc.stdout.read() if srv is not None and srv.proc.stdout else ""
        if "Traceback" in out:  # pages show no tracebacks (showErrorDetails = "none"): the log has them
            print(out[-6000:])


@pytest.fixture
def server(tmp_path):
    for info in _serve(make_app_env(tmp_path)):
        yield dict(info, tmp=tmp_path)


_STATE = "document.querySelector(\"[data-testid='stApp']\")?.getAttribute('data-test-script-state')"


def _idle(page, timeout: float = 120_000) -> None:
    """Wait until Streamlit has finished the current script run (stApp's script state)."""
    try:  # a click is sent over the websocket first: give the run a moment to start
        page.wait_for_function(f"{_STATE} === 'running'", timeout=1_500)
    except playwright_sync.TimeoutError:
        pass  # it may already be over
    page.wait_for_function(f"{_STATE} !== 'running' && {_STATE} !== 'rerunRequested'", timeout=timeout)
    page.wait_for_timeout(300)  # let the browser paint the last deltas


def _no_errors(page, where: str) -> None:
    for sel in ERROR_SELECTORS:
        n = page.locator(sel).count()
        assert n == 0, f"{where}: {n} × {sel}: {page.locator(sel).first.inner_text()[:300]}"
    assert "Traceback" not in page.inner_text("body"), where


def _goto(page, title: str) -> None:
    """Click ``title`` in the sidebar navigation and wait for that page's run to finish."""
    page.locator("[data-testid='stSidebarNav'] a", has_text=title).first.click()
    _idle(page)
    page.get_by_role("heading", name=title).first.wait_for(timeout=60_000)


def _wait_sidebar_text(page, text: str, timeout_s: float = 90.0) -> None:
    """Wait until the sidebar's own content (picker, model card) shows ``text``."""
    content = page.locator("[data-testid='stSidebarUserContent']")
    end = time.time() + timeout_s
    while time.time() < end:
        if content.count() and text in content.inner_text():
            return
        page.wait_for_timeout(500)
    raise AssertionError(f"sidebar never showed {text!r}: {content.inner_text()[:500] if content.count() else ''}")


def _shot(page, name: str, folder: Path | None) -> None:
    if folder is not None:
        page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def _shots_dir() -> Path | None:
    """$XTASK_SCREENSHOT_DIR (created), or None: no screenshots."""
    shots = Path(os.environ["XTASK_SCREENSHOT_DIR"]) if os.environ.get("XTASK_SCREENSHOT_DIR") else None
    if shots is not None:
        shots.mkdir(parents=True, exist_ok=True)
    return shots


def _launch(p):
    """Headless system Chromium, quiet (no background networking, updates or sync)."""
    return p.chromium.launch(executable_path=CHROMIUM, args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"])


def _record_card_metrics(checkpoint_dir: Path) -> None:
    """Re-save the tiny shipped checkpoints (same weights) with the validation metrics and λ a
    trained checkpoint's card records, so the trade-off view can place them."""
    from tests.app_helpers import tiny_model
    from xtask_core.checkpoint import default_meta, save_checkpoint
    for seed, (stem, lam) in enumerate((("tiny_a", 0.01), ("tiny_b", 0.0))):
        meta = default_meta(7, "synthetic")
        meta["name"] = stem.replace("_", " ")
        meta["training"] = {"metrics": {"miou": 0.5 + 0.1 * seed, "pixel_acc": 0.9, "abs": 0.03 - 0.01 * seed},
                            "train_config": {"dataset": "synthetic", "lambda_1": lam, "lambda_2": lam}}
        save_checkpoint(checkpoint_dir / f"{stem}.safetensors", tiny_model(seed), meta, overwrite=True)


_FIGURE_POINTS = """(part) => { const out = {};
  document.querySelectorAll('.js-plotly-plot').forEach(el => {
    if (!el.layout || !el.layout.coloraxis) return;                 // only the λ-coloured trade-off figures
    const title = String((el.layout.title && el.layout.title.text) || '');
    if (part && !title.includes(part)) return;
    (el.data || []).forEach(t => { out[t.name] = (out[t.name] || []).concat(
      (t.hovertext || []).map(h => String(h).split('</b>')[0].replace('<b>', ''))); });
  });
  return out; }"""


def _tradeoff_points(page, title_part: str | None = None) -> dict[str, list[str]]:
    """Trace name → point names of the trade-off figures drawn on the page."""
    return page.evaluate(_FIGURE_POINTS, title_part)


def test_every_page_in_chromium(server):
    shots = _shots_dir()
    _record_card_metrics(server["tmp"] / "checkpoints")
    upload = server["tmp"] / "upload photo.jpg"
    from PIL import Image
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (150, 200, 3), dtype=np.uint8)).save(upload, quality=90)
    timings = {}

    with playwright_sync.sync_playwright() as p:
        browser = _launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 2600})
        page.goto(server["url"])
        # Home shows the live model's predictions: that is "first rendered predictions".
        page.get_by_role("heading", name="Cross-task consistency explorer").wait_for(timeout=90_000)
        page.locator("[data-testid='stImage'] img").nth(4).wait_for(timeout=90_000)
        timings["cold_start_to_first_predictions_s"] = round(time.time() - server["t0"], 2)
        _idle(page)
        _no_errors(page, "home")
        _shot(page, "1_home", shots)

        t = time.time()
        _goto(page, "Predictions")
        page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
        timings["predictions_page_s"] = round(time.time() - t, 2)
        _no_errors(page, "predictions")
        _shot(page, "2_predictions_sample", shots)

        # display-only control: the colour map (cached prediction, no model run)
        t = time.time()
        cmap_box = page.locator("[data-testid='stSelectbox']", has_text="Depth colour map")
        cmap_box.locator("div[role='combobox'], input").first.click()
        page.get_by_role("option", name="viridis").click()
        _idle(page)
        timings["display_only_interaction_s"] = round(time.time() - t, 2)
        _no_errors(page, "predictions colour map")

        page.locator("[data-testid='stRadio'] label", has_text="Upload").first.click()
        _idle(page)
        page.locator("[data-testid='stMain'] input[type='file']").set_input_files(str(upload))
        page.get_by_text("upload photo.jpg: 200×150 px").wait_for(timeout=60_000)
        _idle(page)
        _no_errors(page, "predictions upload")
        _shot(page, "3_predictions_upload", shots)

        # switch checkpoints in the shared sidebar
        page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']").first.click()
        page.get_by_role("option", name="shipped: tiny_b").click()
        _idle(page)
        page.locator("[data-testid='stSidebar']").get_by_text("tiny b").first.wait_for(timeout=30_000)
        _no_errors(page, "checkpoint switch")

        for title, shot in (("Error maps", "4_error_maps"), ("Compare checkpoints", "5_compare"),
                            ("Learn", "7_learn")):
            _goto(page, title)
            _no_errors(page, title)
            _shot(page, shot, shots)

        try:
            _goto(page, "Training dashboard")
        finally:
            _shot(page, "8_dashboard", shots)
        _no_errors(page, "dashboard")
        points = _tradeoff_points(page)       # the trade-off view places every shipped checkpoint
        assert sorted(sum(points.values(), [])) == ["shipped: tiny_a", "shipped: tiny_b"], points

        # The address keeps the sidebar's checkpoint: a new browser context (a bookmark, a shared
        # link) opened on a page's address gets the same checkpoint and the real page menu.
        url = page.url
        assert "ckpt=shipped" in url and "tiny_b" in url, url
        other = browser.new_page(viewport={"width": 1400, "height": 1600})
        other.goto(url.replace("/dashboard", "/error_maps"))
        other.get_by_role("heading", name="Error maps").first.wait_for(timeout=90_000)
        _idle(other)
        _wait_sidebar_text(other, "tiny b")
        nav = other.locator("[data-testid='stSidebarNav']").inner_text()
        assert "Compare checkpoints" in nav and "Training dashboard" in nav, nav
        _no_errors(other, "deep link")
        _shot(other, "9_deep_link_error_maps", shots)
        other.close()

        _goto(page, "Fine-tune")
        # the current model's predictions on the fixed image, before any run
        page.get_by_text("Before: the current checkpoint on a fixed validation image").wait_for(timeout=120_000)
        assert page.locator("[data-testid='stMain'] [data-testid='stImage'] img").count() >= 4
        steps = page.locator("[data-testid='stSlider']", has_text="Steps").get_by_role("slider")
        steps.focus()
        page.keyboard.press("Home")            # 1 step …
        page.keyboard.press("ArrowRight")
        page.keyboard.press("ArrowRight")      # … 3 steps
        _idle(page)
        page.get_by_role("button", name="Start fine-tuning").click()
        page.get_by_text("Done: saved as a new run").wait_for(timeout=300_000)
        _idle(page)
        _no_errors(page, "fine-tune")
        _shot(page, "6_finetune_done", shots)
        wipe = page.locator("#ft-wipe-segmentation")          # before/after wipe follows the pointer
        wipe.wait_for(timeout=60_000)
        wipe.scroll_into_view_if_needed()
        box = wipe.bounding_box()
        wipe.hover(position={"x": 0.25 * box["width"], "y": box["height"] / 2})   # scrolls it into view
        page.wait_for_timeout(200)
        assert wipe.locator(".xt-top").evaluate("e => e.style.clipPath").startswith("inset(0px 75")
        # one click makes the fine-tuned model the current one of every page
        page.get_by_role("button", name="Use the fine-tuned model now").click()
        _idle(page)
        _shot(page, "6b_finetune_in_use", shots)
        main = page.locator("[data-testid='stMain']").inner_text()
        assert "Base checkpoint: run: finetune-" in main, main[:400]       # the next fine-tune starts from it
        _no_errors(page, "use the fine-tuned model")

        # a λ sweep of two values (3 steps each) in one job: two points appear in its trade-off
        page.locator("[data-testid='stCheckbox'], [data-testid='stToggle']", has_text="λ sweep").first.click()
        _idle(page)
        values = page.locator("[data-testid='stMultiSelect']", has_text="λ values")
        for v in ("0", "0.1"):                 # default 0, 0.001, 0.01, 0.1 → keep 0.001 and 0.01
            values.locator(f"button[aria-label='Remove {v}']").first.click()
            _idle(page)
        page.get_by_role("button", name="Start the sweep").click()
        page.get_by_text("2 of 2 runs finished").first.wait_for(timeout=600_000)
        _idle(page)
        _no_errors(page, "sweep")
        _shot(page, "6c_sweep_done", shots)
        sweep = _tradeoff_points(page, "λ sweep")
        assert len(sweep.get("sweep", [])) == 2, sweep

        browser.close()

    print("TIMINGS", json.dumps(timings))
    if shots is not None:
        (shots / "timings.json").write_text(json.dumps(timings, indent=2))
    assert timings["display_only_interaction_s"] < 5.0


def test_first_request_deep_link_shows_the_real_menu(server):
    """A fresh server whose very first request opens a page by its address lists the app's page
    titles, not file names (why the page folder is not called pages/: see app.py)."""
    with playwright_sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.goto(server["url"] + "/dashboard?ckpt=shipped%3A%20tiny_b")
        page.get_by_role("heading", name="Training dashboard").first.wait_for(timeout=90_000)
        _idle(page)
        nav = page.locator("[data-testid='stSidebarNav']").inner_text()
        assert "Compare checkpoints" in nav and "Training dashboard" in nav and "app" not in nav.split(), nav
        _wait_sidebar_text(page, "tiny b")
        _no_errors(page, "first request: deep link")
        browser.close()


SHIPPED_NYUV2 = ROOT / "checkpoints" / "demo-nyuv2" / "best.safetensors"


@pytest.fixture
def nyuv2_server(tmp_path):
    """The app with an NYUv2 checkpoint: the shipped demo-nyuv2 with the shipped samples when it
    exists, else a tiny 13-class model beside the tiny street ones. Yields the server and the label."""
    env = {"XTASK_RUNS_DIR": str(tmp_path / "runs")}
    if SHIPPED_NYUV2.is_file():
        label = "shipped: demo-nyuv2"
    else:
        import torch

        from tests.tiny import tiny_model_config
        from xtask_core.checkpoint import default_meta, save_checkpoint
        from xtask_core.model import XTaskNet
        env = make_app_env(tmp_path)
        torch.manual_seed(3)
        cfg = tiny_model_config(num_classes=13)
        meta = default_meta(13, "nyuv2")
        meta["name"] = "tiny nyuv2"
        save_checkpoint(Path(env["XTASK_CHECKPOINT_DIR"]) / "tiny_nyuv2.safetensors", XTaskNet(cfg).eval(), meta)
        label = "shipped: tiny_nyuv2"
    (tmp_path / "runs").mkdir(exist_ok=True)
    for info in _serve(env):
        yield dict(info, label=label)


def test_every_page_with_an_nyuv2_checkpoint(nyuv2_server):
    """Issue 18: an NYUv2 model opened by a link (?ckpt=) on every page: no error box, a figure or
    image on every image page, depth in metres, the checkpoint kept from page to page."""
    from urllib.parse import parse_qs, quote, urlparse
    label = nyuv2_server["label"]
    with playwright_sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 2400})
        page.goto(nyuv2_server["url"] + "/predictions?ckpt=" + quote(label))
        page.get_by_role("heading", name="Predictions").first.wait_for(timeout=120_000)
        _idle(page)
        _wait_sidebar_text(page, "dataset: nyuv2")
        _no_errors(page, "predictions (deep link)")
        main = page.locator("[data-testid='stMain']").inner_text()
        assert "Colour bar in metres" in main, main[:600]
        nav = page.locator("[data-testid='stSidebarNav'] a")
        titles = [nav.nth(i).inner_text().strip().splitlines()[-1] for i in range(nav.count())]  # (icon, title)
        assert len(titles) >= 7, titles
        for i, title in enumerate(titles):
            page.locator("[data-testid='stSidebarNav'] a").nth(i).click()
            _idle(page)
            page.locator("[data-testid='stMain'] h1").first.wait_for(timeout=60_000)
            _no_errors(page, f"{title} with {label}")
            assert "dataset: nyuv2" in page.locator("[data-testid='stSidebarUserContent']").inner_text(), title
            assert parse_qs(urlparse(page.url).query).get("ckpt") == [label], (title, page.url)   # the address keeps it
            if title in ("Predictions", "Error maps", "Compare checkpoints", "Learn"):
                shown = page.locator(".js-plotly-plot, [data-testid='stImage'] img").count()
                assert shown >= 1, f"{title}: nothing drawn"
        browser.close()
