"""Tiny on-disk fixtures for the app tests: two checkpoints, a few Cityscapes-layout samples.

``make_app_env(tmp_path)`` writes everything under ``tmp_path`` and returns the environment
variables that point the app at it (XTASK_CHECKPOINT_DIR, XTASK_RUNS_DIR, XTASK_SAMPLES_DIR).
Models are ResNet18 with 8-wide decoders and 4-wide TTNets at 64×64, so a prediction takes
milliseconds on one CPU core.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

APP_FILE = str(Path(__file__).resolve().parents[1] / "app.py")
PAGE_DIR = Path(__file__).resolve().parents[1] / "app_pages"


def tiny_model(seed: int):
    import torch

    from tests.tiny import tiny_model_config
    from xtask_core.model import XTaskNet
    torch.manual_seed(seed)
    cfg = tiny_model_config()
    return XTaskNet(cfg).eval()


def write_checkpoint(path: Path, seed: int, name: str) -> Path:
    from xtask_core.checkpoint import default_meta, save_checkpoint
    meta = default_meta(7, "synthetic")
    meta["name"] = name
    return save_checkpoint(path, tiny_model(seed), meta)


def write_samples(root: Path, n: int = 2, size: tuple[int, int] = (48, 96), split: str = "val") -> list[Path]:
    """``n`` random samples in the Cityscapes layout (raw label ids of all 7 categories + void,
    16-bit disparity with an invalid sky band). Size (h, w) deliberately not the model's."""
    rng = np.random.default_rng(0)
    h, w = size
    out = []
    raw_ids = np.array([7, 11, 17, 21, 23, 24, 26, 0], dtype=np.uint8)  # one per category + void
    for i in range(n):
        stem = f"synth_{i:06d}_000019"
        for sub in ("leftImg8bit", "gtFine", "disparity"):
            (root / sub / split / "synth").mkdir(parents=True, exist_ok=True)
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        lab = raw_ids[rng.integers(0, len(raw_ids), (h, w))]
        disp = rng.integers(1, 20000, (h, w)).astype(np.uint16)
        disp[: h // 4] = 0  # "sky": no disparity, as in Cityscapes
        img_path = root / "leftImg8bit" / split / "synth" / f"{stem}_leftImg8bit.png"
        cv2.imwrite(str(img_path), rgb[:, :, ::-1])
        cv2.imwrite(str(root / "gtFine" / split / "synth" / f"{stem}_gtFine_labelIds.png"), lab)
        cv2.imwrite(str(root / "disparity" / split / "synth" / f"{stem}_disparity.png"), disp)
        out.append(img_path)
    return out


def make_app_env(tmp_path: Path, n_checkpoints: int = 2) -> dict[str, str]:
    """Write checkpoints + samples under tmp_path; return the env vars for the app."""
    ck = tmp_path / "checkpoints"
    ck.mkdir(parents=True, exist_ok=True)
    for i in range(n_checkpoints):
        write_checkpoint(ck / f"tiny_{chr(ord('a') + i)}.safetensors", seed=i, name=f"tiny {chr(ord('a') + i)}")
    samples = tmp_path / "samples"
    write_samples(samples)
    runs = tmp_path / "runs"
    runs.mkdir(exist_ok=True)
    return {"XTASK_CHECKPOINT_DIR": str(ck), "XTASK_SAMPLES_DIR": str(samples),
            "XTASK_RUNS_DIR": str(runs), "XTASK_ALLOWED_ROOTS": str(tmp_path)}


def set_env(monkeypatch, env: dict[str, str]) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)


def app_text(at) -> str:
    """All markdown/caption/title/header text of an AppTest run, joined (for `in` checks)."""
    parts = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "info", "warning", "error", "success"):
        parts += [str(e.value) for e in getattr(at, kind)]
    for kind in ("title", "header", "subheader", "markdown", "caption", "info", "warning", "error"):
        parts += [str(e.value) for e in getattr(at.sidebar, kind)]
    return "\n".join(parts)


def run_page(page: str, env: dict[str, str], monkeypatch, timeout: float = 60):
    """AppTest of ``app_pages/<page>.py`` run once with ``env`` set and empty Streamlit caches."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest
    set_env(monkeypatch, env)
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(str(PAGE_DIR / f"{page}.py"), default_timeout=timeout)
    at.run()
    return at


def checkpoint_box(at):
    """The sidebar's checkpoint selectbox."""
    return next(s for s in at.sidebar.selectbox if s.label == "Checkpoint")


def count_predict_calls(monkeypatch) -> list:
    """Patch Predictor.predict to record each call; returns the (growing) list of calls."""
    from xtask_core.inference import predictor as inference
    calls = []
    orig = inference.Predictor.predict

    def counting(self, *args, **kwargs):
        calls.append(1)
        return orig(self, *args, **kwargs)

    monkeypatch.setattr(inference.Predictor, "predict", counting)
    return calls
