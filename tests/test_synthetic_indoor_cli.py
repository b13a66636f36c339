"""``xtask synth --kind indoor`` end to end: the NYUv2 ``.npy`` layout it writes trains and
evaluates with ``--dataset nyuv2`` (tiny model, 64×96 rooms, one epoch on the CPU)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from xtask_core import cli
from xtask_core.data import synthetic as S

pytestmark = pytest.mark.usefixtures("one_torch_thread")   # tests/conftest.py

TINY = ["--enc_layers", "18", "--mid_features", "8", "--ttnet_features", "4", "--height", "64",
        "--width", "96", "--batch_size", "2", "--cpu", "--precision", "fp32", "--workers", "0"]


def test_synth_kind_indoor_writes_the_nyuv2_layout(tmp_path, capsys):
    root = tmp_path / "rooms"
    assert cli.main(["synth", "--kind", "indoor", "--out", str(root), "--n-train", "2", "--n-val", "1",
                     "--height", "64", "--width", "96", "--seed", "4"]) == 0
    assert "indoor" in capsys.readouterr().out
    for split, n in (("train", 2), ("val", 1)):
        for sub in ("image", "label", "depth"):
            assert sorted(p.name for p in (root / split / sub).iterdir()) == [f"{i}.npy" for i in range(n)]
    assert not (root / "leftImg8bit").exists()
    rgb, lab, dep = S.render_indoor(S.scene_seed(4, "train", 1), 64, 96)
    assert np.array_equal(np.load(root / "train/label/1.npy"), lab.astype(np.float32))
    assert np.array_equal(np.load(root / "train/depth/1.npy")[:, :, 0], dep)


def test_synth_default_kind_is_street(tmp_path):
    root = tmp_path / "street"
    assert cli.main(["synth", "--out", str(root), "--n-train", "1", "--n-val", "0",
                     "--height", "64", "--width", "128"]) == 0
    assert list((root / "leftImg8bit" / "train").rglob("*_leftImg8bit.png"))
    assert not (root / "train").exists()


def test_synth_indoor_size_not_a_multiple_of_32_is_one_line(tmp_path, capsys):
    code = cli.main(["synth", "--kind", "indoor", "--out", str(tmp_path / "x"), "--n-train", "1",
                     "--height", "72", "--width", "96"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "multiples of 32" in err
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_train_and_eval_nyuv2_on_synthetic_rooms(tmp_path, capsys):
    os.environ["XTASK_NO_TQDM"] = "1"
    root, run = tmp_path / "rooms", tmp_path / "run"
    assert cli.main(["synth", "--kind", "indoor", "--out", str(root), "--n-train", "4", "--n-val", "2",
                     "--height", "64", "--width", "96", "--seed", "1"]) == 0
    code = cli.main(["train", "--dataset", "nyuv2", "--input_path", str(root), "--out", str(run),
                     "--epochs", "1", *TINY])
    assert code == 0, capsys.readouterr().err
    out_json = tmp_path / "eval.json"
    code = cli.main(["eval", "--checkpoint", str(run / "best.safetensors"), "--input_path", str(root),
                     "--split", "val", "--json", str(out_json), "--cpu"])
    assert code == 0, capsys.readouterr().err
    res = json.loads(out_json.read_text())
    assert res["dataset"] == "nyuv2" and res["n_images"] == 2
    assert len(res["iou_per_class"]) == 13
    assert np.isfinite(res["abs"]) and 0.0 <= res["pixel_acc"] <= 1.0
