"""Time the app's first page load: ``python bench/app_load.py [--runs N] [--json FILE]``.

Each run starts a fresh ``streamlit run app.py --server.headless true`` (the shipped checkpoints
and sample images, an empty runs folder), opens it in headless Chromium (playwright, the system
``/usr/bin/chromium``) and reports two figures:

- ``page_load_to_predictions_s``: from ``page.goto`` (the server answering its health check) to
  the Home page's fifth rendered image, the live model's predictions (what a user waits for);
- ``server_start_to_predictions_s``: from launching the server process to the same moment;
- ``server_cpu_s_page_load_to_predictions``: CPU seconds the server used for the page load (all
  threads), a figure that other processes on a shared machine disturb much less than wall time.

Runs alternate between an empty inference decision cache (``XTASK_CACHE_DIR``: a first start on a
new machine, the Predictor measures its paths) and the cache that run left (a later start).
Needs the project installed with playwright; nothing is downloaded.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from xtask_app.server import app_server

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (all its threads; Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(cache: Path, work: Path) -> dict:
    """One fresh server, one page load → the two figures (seconds)."""
    env = dict(os.environ, XTASK_CACHE_DIR=str(cache), XTASK_RUNS_DIR=str(work / "runs"),
               XTASK_JOB_OWNER=f"app-load-{os.getpid()}")
    (work / "runs").mkdir(parents=True, exist_ok=True)
    with app_server(ROOT, env, timeout=180.0) as srv:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 2600})
            t_load, cpu_load = time.time(), _cpu_s(srv.proc.pid)
            page.goto(srv.url)
            page.locator("[data-testid='stImage'] img").nth(4).wait_for(timeout=180_000)
            t_pred, cpu_pred = time.time(), _cpu_s(srv.proc.pid)
            errors = page.locator("[data-testid='stException'], [data-testid='stAlertContentError']").count()
            browser.close()
    t0, t_healthy = srv.t0, srv.t_healthy
    return {"page_load_to_predictions_s": round(t_pred - t_load, 2),
            "server_start_to_predictions_s": round(t_pred - t0, 2),
            "server_start_to_healthy_s": round(t_healthy - t0, 2),
            "server_cpu_s_page_load_to_predictions": round(cpu_pred - cpu_load, 2), "error_boxes": errors,
            "loadavg": list(os.getloadavg())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="time the app's page load to the first predictions")
    parser.add_argument("--runs", type=int, default=2, help="runs (alternating empty / warm decision cache)")
    parser.add_argument("--json", default=None, metavar="FILE")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="xtask-app-load-") as tmp:
        cache = Path(tmp) / "cache"
        for i in range(args.runs):
            state = "empty" if i % 2 == 0 else "warm"
            if state == "empty":
                shutil.rmtree(cache, ignore_errors=True)
            res = dict(one_run(cache, Path(tmp) / f"run{i}"), decision_cache=state)
            print(json.dumps(res), flush=True)
            results.append(res)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
