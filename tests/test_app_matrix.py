"""Every kind of checkpoint on every image page with every image source it offers (issue 18).

Checkpoints: the 7-class street demo (``dataset: synthetic``), a 19-class Cityscapes model, a
13-class NYUv2 model (depth in metres) and the original code's ``model.pth`` (a plain state dict,
7 classes). Pages: home, predictions, error maps, compare, learn. Sources: the shipped samples
(street, and indoor ones when the samples folder has them), a dataset split in the street
(Cityscapes) layout, one in the NYUv2 ``.npy`` layout, and an upload. Each run must show no error
and at least one figure; ground truth and its metrics appear exactly when the source's labels
are the model's, and otherwise one line says why.

The checkpoint is chosen through the address (``?ckpt=``), as a page opened by a link would be.
Models are tiny (ResNet18, 8-wide decoders, 4-wide TTNets, 64×64), so every run is quick.
"""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

from tests.app_helpers import PAGE_DIR, set_env, write_samples
from tests.tiny import tiny_model_config
from xtask_app.pickers import sample_source
from xtask_core.checkpoint import default_meta, save_checkpoint
from xtask_core.data.samples import find_samples
from xtask_core.evaluate.report import labels_fit
from xtask_core.model.stl import build_model

pytestmark = pytest.mark.slow   # 20 page sessions, ~2 minutes on 2 shared cores

# label in the sidebar → (dataset of the model, class count, depth kind)
CHECKPOINTS = {
    "shipped: demo7": ("synthetic", 7, "disparity"),
    "shipped: cityscapes19": ("cityscapes", 19, "disparity"),
    "shipped: nyuv2_13": ("nyuv2", 13, "depth"),
    "shipped: model": ("unknown", 7, "disparity"),        # the original code's model.pth
}
PAGES = {"home": None, "predictions": "pred", "error_maps": "err", "compare": "cmp", "learn": "learn"}
PARTNER = {"shipped: nyuv2_13": "shipped: demo7"}         # compare's second checkpoint (another label set)


def _model(num_classes: int, seed: int, height: int = 64, width: int = 64, task: str = "both"):
    torch.manual_seed(seed)
    cfg = tiny_model_config(num_classes=num_classes, height=height, width=width, task=task)
    return build_model(cfg).eval()


def _write_nyuv2_split(root, n: int = 2, size: tuple[int, int] = (48, 64)) -> None:
    """``n`` random rooms in the MTAN NYUv2 layout: 13 classes + -1 ignore, metres with invalid 0s."""
    rng = np.random.default_rng(1)
    h, w = size
    for sub in ("image", "label", "depth"):
        (root / "val" / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        np.save(root / "val" / "image" / f"{i}.npy", rng.random((h, w, 3)).astype(np.float32))
        np.save(root / "val" / "label" / f"{i}.npy", rng.integers(-1, 13, (h, w)).astype(np.float32))
        depth = (rng.random((h, w, 1)) * 9 + 0.5).astype(np.float32)
        depth[: h // 6] = 0.0
        np.save(root / "val" / "depth" / f"{i}.npy", depth)


@pytest.fixture(scope="module")
def matrix_env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("matrix")
    ck = tmp / "checkpoints"
    ck.mkdir()
    for seed, (label, (dataset, k, _)) in enumerate(CHECKPOINTS.items()):
        name = label.split(": ")[1]
        if name == "model":   # the original code saves a bare state dict; its size comes from the class count
            torch.save(_model(k, seed, 128, 256).state_dict(), ck / "model.pth")
            continue
        meta = default_meta(k, dataset)
        meta["name"] = name
        save_checkpoint(ck / f"{name}.safetensors", _model(k, seed), meta)
    for task in ("segmt", "depth"):   # single-task baselines (NYUv2 labels: no shipped street pair needed)
        meta = default_meta(13, "nyuv2")
        meta["name"] = f"stl {task}"
        save_checkpoint(ck / f"stl_{task}.safetensors", _model(13, 7, task=task), meta)
    samples = tmp / "samples"
    write_samples(samples)
    _write_nyuv2_split(samples / "nyuv2")     # indoor samples; the same folder is an NYUv2 dataset root
    (tmp / "runs").mkdir()
    ok, png = cv2.imencode(".png", np.random.default_rng(2).integers(0, 256, (40, 60, 3), dtype=np.uint8))
    assert ok
    env = {"XTASK_CHECKPOINT_DIR": str(ck), "XTASK_SAMPLES_DIR": str(samples), "XTASK_RUNS_DIR": str(tmp / "runs"),
           "XTASK_ALLOWED_ROOTS": str(tmp)}
    return {"env": env, "street": str(samples), "nyu": str(samples / "nyuv2"), "png": png.tobytes()}


def _sources(m: dict, key: str, at: AppTest) -> list[tuple[str, str | None, object]]:
    """(name, label set of the source or None for an upload, function that switches ``at`` to it)."""
    out = []
    sample_box = at.selectbox(key=f"{key}_sample") if f"{key}_sample" in _keys(at) else None
    by_kind = {}
    for s in find_samples(m["env"]["XTASK_SAMPLES_DIR"]):
        by_kind.setdefault(sample_source(s), s.name)
    for kind, name in by_kind.items():
        def to_sample(at, name=name):
            at.radio(key=f"{key}_src").set_value("Sample").run()
            if sample_box is not None:
                at.selectbox(key=f"{key}_sample").set_value(name).run()
        out.append((f"sample {name}", kind, to_sample))
    for ds, root in (("synthetic", m["street"]), ("nyuv2", m["nyu"])):
        def to_split(at, ds=ds, root=root):
            at.radio(key=f"{key}_src").set_value("Dataset split").run()
            at.selectbox(key=f"{key}_ds").set_value(ds).run()
            at.text_input(key=f"{key}_root").input(root).run()
            at.number_input(key=f"{key}_idx").set_value(1).run()
        out.append((f"split {ds}", ds, to_split))

    def to_upload(at):
        at.radio(key=f"{key}_src").set_value("Upload").run()
        at.file_uploader(key=f"{key}_upload").set_value(("room.png", m["png"], "image/png")).run()
    out.append(("upload", None, to_upload))
    return out


def _keys(at: AppTest) -> set[str]:
    return {getattr(w, "key", None) for w in at.main.get("selectbox")}


def _texts(at: AppTest) -> str:
    parts = []
    for kind in ("subheader", "caption", "info", "markdown"):
        parts += [str(e.value) for e in getattr(at, kind)]
    return "\n".join(parts)


def _colour_bars(at: AppTest) -> set[str]:
    """Titles of every colour bar on the page."""
    out = set()
    for chart in at.get("plotly_chart"):
        for trace in json.loads(chart.proto.spec).get("data", []):
            title = (trace.get("colorbar") or {}).get("title") or {}
            if title.get("text"):
                out.add(title["text"])
    return out


def _figure_titles(at: AppTest) -> set[str]:
    return {(json.loads(c.proto.spec).get("layout", {}).get("title") or {}).get("text", "")
            for c in at.get("plotly_chart")}


def _assert_clean(at: AppTest, where: str) -> None:
    assert not at.exception, f"{where}: {[e.value for e in at.exception]}"
    errors = [e.value for e in at.error] + [e.value for e in at.sidebar.error]
    assert not errors, f"{where}: {errors}"
    figures = len(at.get("plotly_chart")) + len(at.image)
    assert figures >= 1, f"{where}: no figure"


def _open(page: str, env: dict, label: str, monkeypatch) -> AppTest:
    set_env(monkeypatch, env)
    at = AppTest.from_file(str(PAGE_DIR / f"{page}.py"), default_timeout=120)
    at.query_params["ckpt"] = label           # a deep link: the address names the checkpoint
    at.run()
    return at


@pytest.mark.parametrize("label", list(CHECKPOINTS))
@pytest.mark.parametrize("page", list(PAGES))
def test_every_checkpoint_every_page_every_source(matrix_env, monkeypatch, page, label):
    st.cache_data.clear()
    dataset, k, depth_kind = CHECKPOINTS[label]
    at = _open(page, matrix_env["env"], label, monkeypatch)
    box = next(s for s in at.sidebar.selectbox if s.label == "Checkpoint")
    assert box.value == label                                   # the address's choice holds
    _assert_clean(at, f"{page} / {label} / default")
    key = PAGES[page]
    if key is None:
        return
    if page == "compare":   # this checkpoint as the reference next to one of another label set
        at.multiselect(key="cmp_models").set_value([label, PARTNER.get(label, "shipped: nyuv2_13")]).run()
        _assert_clean(at, f"compare / {label}")
        assert "different label sets" in _texts(at)
    for name, source, switch in _sources(matrix_env, key, at):
        switch(at)
        where = f"{page} / {label} / {name}"
        _assert_clean(at, where)
        fit = labels_fit(source, dataset, k, depth_kind)
        text = _texts(at)
        if page == "compare":
            continue
        if fit.seg and fit.depth:
            assert "Ground truth not shown" not in text, where
            if page == "predictions":
                assert "This image's metrics" in text, where
            if page == "error_maps":
                assert "|direct − ground truth|" in _figure_titles(at), where
        else:
            assert fit.reason in text, where                     # one line says why
            assert "This image's metrics" not in text, where
        if page in ("predictions", "error_maps"):   # depth colour bars in the checkpoint's unit, never the other
            bars = _colour_bars(at)
            if depth_kind == "depth":
                assert {"depth (m)", "m"} & bars and not any("disparity" in b for b in bars), f"{where}: {bars}"
            else:
                assert "disparity/256" in bars and not {"depth (m)", "m"} & bars, f"{where}: {bars}"


def _single_task(monkeypatch, task: str) -> None:
    """Make every prediction look like a single-task model's: None for the absent task and for
    both transferred outputs (a baseline has no transfer nets)."""
    from dataclasses import replace

    from xtask_core.inference import predictor as inference
    orig = inference.Predictor.predict

    def predict(self, *args, **kwargs):
        p = orig(self, *args, **kwargs)
        if task == "depth":
            return replace(p, seg_logits=None, seg_t_logits=None, depth_t=None)
        return replace(p, depth=None, depth_t=None, seg_t_logits=None)

    monkeypatch.setattr(inference.Predictor, "predict", predict)


@pytest.mark.parametrize("task, other", [("depth", "segmentation"), ("segmentation", "depth")])
@pytest.mark.parametrize("page", ["home", "predictions", "error_maps", "compare", "learn"])
def test_single_task_prediction_shows_its_task(matrix_env, monkeypatch, page, task, other):
    st.cache_data.clear()
    _single_task(monkeypatch, "depth" if task == "depth" else "segmt")
    at = _open(page, matrix_env["env"], "shipped: demo7", monkeypatch)
    if page == "compare":
        at.multiselect(key="cmp_models").set_value(["shipped: demo7", "shipped: cityscapes19"]).run()
    where = f"{page} / single-task {task}"
    _assert_clean(at, where)
    if page == "home":
        return
    assert f"predicts {task} only: there is no {other}" in _texts(at), where
    if page == "predictions":
        titles = _figure_titles(at)
        assert any(t.endswith(task) for t in titles) and not any(t.endswith(other) for t in titles), titles


@pytest.mark.parametrize("task, other", [("depth", "segmentation"), ("segmt", "depth")])
@pytest.mark.parametrize("page", ["home", "predictions", "error_maps", "compare", "learn"])
def test_single_task_checkpoint_on_every_page(matrix_env, monkeypatch, page, task, other):
    """A real single-task baseline checkpoint (STLNet, NYUv2 labels) on an indoor sample."""
    st.cache_data.clear()
    label = f"shipped: stl_{task}"
    at = _open(page, matrix_env["env"], label, monkeypatch)
    if page == "compare":     # next to the cross-task NYUv2 model: same labels, so differences are drawn
        at.multiselect(key="cmp_models").set_value([label, "shipped: nyuv2_13"]).run()
    key = PAGES[page]
    if key is not None:
        at.selectbox(key=f"{key}_sample").set_value("nyuv2/val/0").run()
    where = f"{page} / {label}"
    _assert_clean(at, where)
    if page != "home":
        shown = "segmentation" if task == "segmt" else "depth"
        assert f"predicts {shown} only: there is no {other}" in _texts(at), where


@pytest.mark.parametrize("page", ["predictions", "error_maps", "learn"])
def test_deep_link_opens_an_nyuv2_image_with_an_nyuv2_checkpoint(matrix_env, monkeypatch, page):
    """The Dataset page's click-through address (?ckpt=&src=…) with an NYUv2 model: the linked
    item opens with its ground truth, the address's checkpoint holds, no warning or error."""
    st.cache_data.clear()
    set_env(monkeypatch, matrix_env["env"])
    key = PAGES[page]
    for params, shown in (({"src": "dataset", "ds": "nyuv2", "root": matrix_env["nyu"], "split": "val", "idx": "1"},
                           lambda at: at.number_input(key=f"{key}_idx").value == 1),
                          ({"src": "sample", "image": "nyuv2/val/1"},
                           lambda at: at.selectbox(key=f"{key}_sample").value == "nyuv2/val/1")):
        at = AppTest.from_file(str(PAGE_DIR / f"{page}.py"), default_timeout=120)
        at.query_params.update({"ckpt": "shipped: nyuv2_13", **params})
        at.run()
        _assert_clean(at, f"{page} {params}")
        assert not at.warning and shown(at), params
        assert "Ground truth not shown" not in _texts(at)
        if page == "predictions":
            assert "This image's metrics" in _texts(at)
