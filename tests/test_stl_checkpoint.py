"""Single-task baseline checkpoints: our format, the original's model.pth, and their consumers."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.test_stl import original_stl_keys
from xtask_core.checkpoint import describe, load_checkpoint, save_checkpoint, save_train_state
from xtask_core.config import ModelConfig
from xtask_core.errors import XTaskError
from xtask_core.inference.predictor import Predictor
from xtask_core.model.stl import STL_TASKS, STLNet

pytestmark = pytest.mark.usefixtures("one_torch_thread")   # tests/conftest.py


def _net(task: str, seed: int = 0) -> STLNet:
    torch.manual_seed(seed)
    net = STLNet(ModelConfig(enc_layers=18, num_classes=5, mid_features=8, height=64, width=64, task=task))
    with torch.no_grad():  # non-trivial BN statistics, so a missed buffer would show
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def _out(model, x):
    seg, seg_t, depth, depth_t = model(x)
    assert seg_t is None and depth_t is None
    return seg if depth is None else depth


@pytest.mark.parametrize("task", STL_TASKS)
def test_our_checkpoint_round_trips_with_the_task(tmp_path, task):
    net, x = _net(task), torch.randn(2, 3, 64, 64)
    save_checkpoint(tmp_path / "m.safetensors", net, {"dataset": "synthetic"})
    loaded = load_checkpoint(tmp_path / "m.safetensors", device="cpu")
    assert isinstance(loaded.model, STLNet) and loaded.config == net.config and loaded.source == "xtask"
    assert torch.equal(_out(loaded.model, x), _out(net, x))
    card = describe(loaded)
    assert card["task"] == task and card["ttnet_widths"] is None
    # fp16 storage comes back as float32, close to the original
    save_checkpoint(tmp_path / "h.safetensors", net, half=True)
    half = load_checkpoint(tmp_path / "h.safetensors", device="cpu")
    torch.testing.assert_close(_out(half.model, x), _out(net, x), rtol=2e-2, atol=2e-2)
    # the trainer's resume state loads as a checkpoint too
    save_train_state(tmp_path / "last.state.pt", model=net, epoch=1, step=3)
    state = load_checkpoint(tmp_path / "last.state.pt", device="cpu")
    assert state.source == "train-state" and state.config.task == task
    assert torch.equal(_out(state.model, x), _out(net, x))


@pytest.mark.parametrize("task", STL_TASKS)
@pytest.mark.parametrize("prefix", ["", "module."])
def test_original_single_task_model_pth_loads_strictly_and_the_task_is_inferred(tmp_path, task, prefix):
    net, x = _net(task, seed=1), torch.randn(1, 3, 64, 64)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    assert list(state) == original_stl_keys((2, 2, 2, 2))  # the layout written from its description
    folder = tmp_path / "exps" / "007" / "model"
    folder.mkdir(parents=True)
    torch.save({prefix + k: v for k, v in state.items()}, folder / "model.pth")
    loaded = load_checkpoint(folder / "model.pth", device="cpu")
    assert loaded.source == "xtask-mt" and isinstance(loaded.model, STLNet)
    cfg = loaded.config
    assert (cfg.task, cfg.enc_layers, cfg.mid_features) == (task, 18, 8)
    if task == "segmt":
        assert cfg.num_classes == 5
    assert loaded.meta["name"] == "007"
    assert torch.equal(_out(loaded.model, x), _out(net, x))


def test_an_incomplete_single_task_state_dict_is_a_one_line_error(tmp_path):
    state = _net("segmt").state_dict()
    del state["decoder.conv3.conv2.0.weight"]
    torch.save(state, tmp_path / "model.pth")
    with pytest.raises(XTaskError, match="decoder.conv3.conv2.0.weight") as err:
        load_checkpoint(tmp_path / "model.pth", device="cpu")
    assert "\n" not in str(err.value) and "single-task segmt" in str(err.value)


@pytest.mark.parametrize("task", STL_TASKS)
def test_predictor_fills_only_the_task_the_net_has(tmp_path, task):
    net = _net(task)
    pred = Predictor(net, cache_dir=tmp_path).predict(np.full((50, 70, 3), 120, np.uint8))
    assert pred.tasks == (task,)
    assert pred.seg_t_logits is None and pred.depth_t is None and pred.seg_t is None
    if task == "segmt":
        assert pred.depth is None and pred.seg_logits.shape == (5, 64, 64) and pred.seg.shape == (64, 64)
    else:
        assert pred.seg_logits is None and pred.seg is None and pred.depth.shape == (64, 64)
    assert pred.size == (64, 64) and pred.resized(32, 32).tasks == (task,)


@pytest.mark.parametrize("task", STL_TASKS)
def test_split_evaluation_reports_the_one_task(tmp_path, task):
    from xtask_core.evaluate.split import evaluate_split
    from xtask_core.train.stl_loss import STLLoss

    g = torch.Generator().manual_seed(0)
    ds = [{"image": torch.randn(3, 64, 64, generator=g), "seg": torch.randint(0, 5, (64, 64), generator=g),
           "depth": torch.rand(1, 64, 64, generator=g) + 0.1, "depth_mask": torch.ones(1, 64, 64)}
          for _ in range(3)]
    res = evaluate_split(_net(task), ds, batch_size=2, fast=False, workers=0, ignore_index=250,
                         loss_fn=STLLoss(task, 5))
    seg_ok, depth_ok = math.isfinite(res["miou"]), math.isfinite(res["abs"])
    assert (seg_ok, depth_ok) == ((True, False) if task == "segmt" else (False, True))
    assert res["n_images"] == 3 and math.isfinite(res["loss"]) and res["loss"] > 0


def test_per_image_records_refuse_a_single_task_checkpoint_in_one_line(tmp_path):
    from PIL import Image

    from xtask_core.evaluate.records import records_for
    from xtask_core.evaluate.sources import folder_source

    save_checkpoint(tmp_path / "seg.safetensors", _net("segmt"))
    (tmp_path / "images").mkdir()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "images" / "a.png")
    with pytest.raises(XTaskError, match="single-task baseline") as err:
        records_for([tmp_path / "seg.safetensors"], folder_source(tmp_path / "images", (64, 64)), cache=False)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("task", STL_TASKS)
def test_cli_predict_writes_only_the_files_of_the_task_it_has(tmp_path, task, capsys):
    import json

    from PIL import Image

    from xtask_core import cli

    save_checkpoint(tmp_path / "m.safetensors", _net(task), {"dataset": "synthetic"})
    Image.fromarray(np.full((40, 70, 3), 90, np.uint8)).save(tmp_path / "a.png")
    code = cli.main(["predict", "--checkpoint", str(tmp_path / "m.safetensors"), "--image", str(tmp_path / "a.png"),
                     "--out", str(tmp_path / "out"), "--cpu", "--precision", "fp32"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"single-task baseline: {task} only" in out
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["task"] == task and summary["consistency"] is None
    expected = {"input.png"} | ({"seg.png", "overlay.png", "seg.npy", "seg_logits.npy"} if task == "segmt"
                                else {"depth.png", "depth.npy"})
    assert set(summary["files"]) == expected
    assert {p.name for p in (tmp_path / "out").iterdir()} == expected | {"summary.json"}
    assert (summary["depth_stats"] is None) == (task == "segmt")
    assert (summary["seg_class_fraction"] is None) == (task == "depth")
