"""evaluate_split: fast path vs the exact eager fp32 path vs train.evaluate, limit, cache, losses."""
from __future__ import annotations

import math

import pytest
import torch

from tests.tiny import tiny_model_config
from xtask_core.errors import XTaskError
from xtask_core.evaluate.split import evaluate_split

pytestmark = pytest.mark.usefixtures("one_torch_thread")   # tests/conftest.py

METRIC_KEYS = ("pixel_acc", "miou", "miou_per_image", "iou_per_class", "abs", "abs_rel", "rmse",
               "delta1", "delta2", "delta3", "confusion", "n_pixels", "n_depth_pixels", "n_images")


@pytest.fixture(scope="module")
def val_set(tmp_path_factory):
    from xtask_core.data.cityscapes import CityscapesDataset
    from xtask_core.data.synthetic import write_dataset

    root = tmp_path_factory.mktemp("synth")
    write_dataset(root, n_train=0, n_val=5, seed=11, height=64, width=128)
    return CityscapesDataset(root, "val", num_classes=7, height=64, width=128)


@pytest.fixture(scope="module")
def model():
    """Tiny XTaskNet with random BatchNorm statistics (a random-init net with identity BN gives
    near-tied logits everywhere, which says nothing about a reduced-precision path)."""
    from xtask_core.model import XTaskNet

    torch.manual_seed(0)
    net = XTaskNet(tiny_model_config(width=128))
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
    return net.eval()


class Counting(torch.utils.data.Dataset):
    """Wraps a dataset and counts decodes."""

    def __init__(self, ds):
        self.ds, self.calls, self.ignore_index = ds, 0, ds.ignore_index

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        self.calls += 1
        return self.ds[i]


def test_fast_agrees_with_exact(model, val_set):
    exact = evaluate_split(model, val_set, fast=False, workers=0)
    fast = evaluate_split(model, val_set, fast=True, precision="auto", workers=0)
    for key in METRIC_KEYS:
        assert key in fast and key in exact, key
    assert exact["precision"] == "fp32" and "reference" in exact["eval_path"]
    assert exact["n_images"] == fast["n_images"] == 5
    assert exact["n_pixels"] == fast["n_pixels"] and exact["n_depth_pixels"] == fast["n_depth_pixels"]
    assert abs(fast["miou"] - exact["miou"]) <= 0.01
    assert abs(fast["miou_per_image"] - exact["miou_per_image"]) <= 0.01
    assert abs(fast["pixel_acc"] - exact["pixel_acc"]) <= 0.005
    assert fast["abs"] == pytest.approx(exact["abs"], rel=0.02)
    assert 0.0 <= exact["miou"] <= 1.0 and math.isfinite(exact["rmse"])


def test_exact_path_equals_train_evaluate(model, val_set):
    from xtask_core.train.trainer import evaluate

    loader = torch.utils.data.DataLoader(val_set, batch_size=2)
    ref = evaluate(model, loader, num_classes=7, ignore_index=250, device="cpu", precision="fp32")
    # batch 2 over 5 images: the short last batch is run as is on the exact path
    ours = evaluate_split(model, val_set, fast=False, batch_size=2, workers=0)
    assert ours["confusion"] == ref["confusion"]
    for key in ("pixel_acc", "miou", "miou_per_image", "abs", "abs_rel", "rmse", "delta1"):
        assert ours[key] == pytest.approx(ref[key], rel=1e-6), key


def test_limit_padding_and_losses(model, val_set):
    from xtask_core.train.losses import XTaskLoss

    loss_fn = XTaskLoss(7, ignore_index=250)
    # limit 3 with batch 2: the last batch (1 image) is padded on the fast CPU path, then dropped
    res = evaluate_split(model, val_set, batch_size=2, limit=3, loss_fn=loss_fn, precision="fp32", workers=0)
    assert res["n_images"] == 3
    exact = evaluate_split(model, val_set, fast=False, batch_size=3, limit=3, loss_fn=loss_fn, workers=0)
    assert res["n_pixels"] == exact["n_pixels"]  # the padded copy is not counted
    moved = (torch.tensor(res["confusion"]) - torch.tensor(exact["confusion"])).abs().sum().item()
    assert moved <= 0.001 * res["n_pixels"]  # fp32 with folded BN: a near-tied pixel or two at most
    for key in ("loss", "loss_total", "loss_seg", "loss_depth", "loss_tseg", "loss_tdep"):
        assert key in res, key
    assert res["loss"] == pytest.approx(exact["loss"], rel=1e-3)
    direct = evaluate_split(model, val_set, limit=1, direct_only=True, loss_fn=loss_fn, workers=0)
    assert direct["n_images"] == 1 and "loss" not in direct
    with pytest.raises(XTaskError):
        evaluate_split(model, val_set, batch_size=0)


def test_cache_skips_decoding_and_workers_give_the_same_result(model, val_set):
    from xtask_core.inference.predictor import Predictor

    ds = Counting(val_set)
    pred = Predictor(model, precision="fp32")  # reused: no second trace
    cache: dict = {}
    first = evaluate_split(pred, ds, cache=cache, workers=0)
    assert ds.calls == 5 and sorted(cache) == [0, 1, 2, 3, 4]
    seen = []
    second = evaluate_split(pred, ds, cache=cache, workers=0, progress=lambda d, n: seen.append((d, n)))
    assert ds.calls == 5  # nothing decoded again
    assert seen == [(4, 5), (5, 5)]
    assert second["confusion"] == first["confusion"] and second["abs"] == first["abs"]
    for workers in (1, 3):  # decoding threads running ahead, in order, filling a cache as they go
        cache2: dict = {}
        third = evaluate_split(pred, Counting(val_set), workers=workers, batch_size=2, cache=cache2)
        assert third["confusion"] == first["confusion"] and third["abs"] == first["abs"]
        assert sorted(cache2) == [0, 1, 2, 3, 4]
        assert all(torch.equal(cache2[i]["image"], cache[i]["image"]) for i in range(5))


class FailsAt(torch.utils.data.Dataset):
    """Wraps a dataset; item ``bad`` raises the error a corrupt file gives."""

    def __init__(self, base, bad):
        self.base, self.bad, self.ignore_index = base, bad, getattr(base, "ignore_index", 250)

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        if i == self.bad:
            raise XTaskError(f"item {i}: cannot decode image 'broken.png'")
        return self.base[i]


@pytest.mark.parametrize("workers", [0, 2])
def test_a_decoding_error_reaches_the_caller(model, val_set, workers):
    with pytest.raises(XTaskError, match="item 3: cannot decode"):
        evaluate_split(model, FailsAt(val_set, 3), batch_size=2, workers=workers, precision="fp32")
