"""Single-task baseline net: outputs, gradients, config, and the original STL key layout."""
from __future__ import annotations

import pytest
import torch

from xtask_core.config import TASKS, ModelConfig
from xtask_core.errors import XTaskError
from xtask_core.metrics import SegDepthMetrics
from xtask_core.model import XTaskNet
from xtask_core.model.stl import STL_TASKS, STLNet, build_model, stl_task_from_state
from xtask_core.train.stl_loss import STLLoss

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _tiny(**kw) -> ModelConfig:
    base = dict(enc_layers=18, num_classes=5, mid_features=8, height=64, width=64)
    base.update(kw)
    return ModelConfig(**base)


def original_stl_keys(blocks: tuple[int, ...], bottleneck: bool = False) -> list[str]:
    """State-dict names of the original's single-task net, written from its description (not
    from our model): ResNet stem ``layer0.{0,1}``, ``layer1.1.<block>`` (index 0 is the maxpool),
    ``layer{2,3,4}.<block>``, a downsample on the first block of a stage whose shape changes,
    then ``decoder.conv{1..5}.conv{1,2,3}.{0 conv, 1 BN}`` and the bias-free ``decoder.conv6.0``."""
    keys = ["pretrained_encoder.layer0.0.weight"] + [f"pretrained_encoder.layer0.1.{s}" for s in BN]
    convs = ("1", "2", "3") if bottleneck else ("1", "2")
    for stage, n in enumerate(blocks, start=1):
        prefix = "pretrained_encoder.layer1.1." if stage == 1 else f"pretrained_encoder.layer{stage}."
        for b in range(n):
            for c in convs:
                keys.append(f"{prefix}{b}.conv{c}.weight")
                keys += [f"{prefix}{b}.bn{c}.{s}" for s in BN]
            # stage 1 keeps 64 channels at stride 1 in the basic-block nets; bottlenecks widen it
            if b == 0 and (stage > 1 or bottleneck):
                keys.append(f"{prefix}{b}.downsample.0.weight")
                keys += [f"{prefix}{b}.downsample.1.{s}" for s in BN]
    for blk in range(1, 6):
        for c in range(1, 4):
            p = f"decoder.conv{blk}.conv{c}."
            keys += [p + "0.weight", p + "0.bias"] + [p + "1." + s for s in BN]
    keys.append("decoder.conv6.0.weight")
    return keys


def test_original_resnet34_stl_layout_has_322_keys_and_matches_ours():
    expected = original_stl_keys((3, 4, 6, 3))
    assert len(expected) == len(set(expected)) == 322
    for task in STL_TASKS:
        model = STLNet(ModelConfig(enc_layers=34, num_classes=7, mid_features=8, task=task))
        assert list(model.state_dict()) == expected  # same names, same order


def test_stl_keys_are_the_cross_task_decoders_keys_renamed():
    """The original STL decoder = the cross-task decoder_segmt/decoder_depth with prefix ``decoder.``."""
    xt = XTaskNet(_tiny()).state_dict()
    for task, prefix in (("segmt", "decoder_segmt."), ("depth", "decoder_depth.")):
        ours = STLNet(_tiny(task=task)).state_dict()
        renamed = {("decoder." + k[len(prefix):] if k.startswith(prefix) else k): v.shape
                   for k, v in xt.items() if k.startswith(("pretrained_encoder.", prefix))}
        assert {k: v.shape for k, v in ours.items()} == renamed


def test_bottleneck_layout_matches_description():
    model = STLNet(_tiny(enc_layers=50, task="depth"))
    assert list(model.state_dict()) == original_stl_keys((3, 4, 6, 3), bottleneck=True)


@pytest.mark.parametrize("task", STL_TASKS)
def test_original_style_state_dict_loads_strictly_and_task_is_read_off_conv6(tmp_path, task):
    """A plain state dict with the original's names, written by torch.save, reloads strictly."""
    torch.manual_seed(0)
    src = STLNet(_tiny(task=task))
    path = tmp_path / "model.pth"
    torch.save({k: v.clone() for k, v in src.state_dict().items()}, path)
    state = torch.load(path, weights_only=True)
    assert set(state) == set(original_stl_keys((2, 2, 2, 2)))
    assert stl_task_from_state(state) == task
    assert state["decoder.conv6.0.weight"].shape[0] == (5 if task == "segmt" else 1)
    dst = STLNet(_tiny(task=task))
    dst.load_state_dict(state, strict=True)
    x = torch.randn(1, 3, 64, 64)
    a, b = src.eval()(x), dst.eval()(x)
    i = 0 if task == "segmt" else 2
    assert torch.equal(a[i], b[i])


def test_task_of_a_cross_task_state_dict_is_refused():
    with pytest.raises(XTaskError, match="decoder.conv6.0.weight"):
        stl_task_from_state(XTaskNet(_tiny()).state_dict())


@pytest.mark.parametrize("task", STL_TASKS)
def test_forward_fits_the_four_output_contract_and_gradients_reach_every_parameter(task):
    torch.manual_seed(0)
    model = STLNet(_tiny(task=task)).train()
    x = torch.randn(2, 3, 64, 96)
    out = model(x)
    assert len(out) == 4
    seg, seg_t, depth, depth_t = out
    assert seg_t is None and depth_t is None
    if task == "segmt":
        assert depth is None and seg.shape == (2, 5, 64, 96)
        pred = seg
    else:
        assert seg is None and depth.shape == (2, 1, 64, 96)
        pred = depth
    assert pred.dtype == torch.float32 and torch.isfinite(pred).all()
    # direct_only is accepted (the XTaskNet call form) and changes nothing
    assert torch.equal(model.eval()(x, direct_only=True)[0 if task == "segmt" else 2],
                       model(x)[0 if task == "segmt" else 2])
    model.train()
    (model(x)[0 if task == "segmt" else 2] ** 2).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        # a conv bias right before a train-mode BN gets an exactly-cancelled gradient
        if not (name.startswith("decoder.") and name.endswith(".0.bias")):
            assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


def test_metrics_take_a_single_task_output():
    """SegDepthMetrics skips the None prediction: a depth-only net yields depth metrics only."""
    torch.manual_seed(0)
    model = STLNet(_tiny(task="depth")).eval()
    with torch.no_grad():
        seg, _, depth, _ = model(torch.randn(1, 3, 64, 64))
    target = torch.rand(1, 1, 64, 64) + 0.5
    m = SegDepthMetrics(num_classes=5)
    m.update(seg, depth, torch.zeros(1, 64, 64, dtype=torch.long), target)
    out = m.compute()
    assert out["n_depth_pixels"] == 64 * 64 and out["n_pixels"] == 0
    assert out["abs"] == pytest.approx(float((depth - target).abs().mean()), rel=1e-5)
    assert out["miou"] != out["miou"]  # NaN: no segmentation seen


def test_parameter_count_is_encoder_plus_one_decoder():
    cfg = _tiny(task="segmt")
    stl, xt = STLNet(cfg), XTaskNet(_tiny())
    enc = sum(p.numel() for p in xt.pretrained_encoder.parameters())
    dec = sum(p.numel() for p in xt.decoder_segmt.parameters())
    assert stl.num_parameters() == enc + dec


def test_config_task_field_validation_and_round_trip():
    assert TASKS == ("both", "segmt", "depth") and ModelConfig().task == "both"
    with pytest.raises(XTaskError, match="task must be one of both, segmt, depth"):
        ModelConfig(task="seg")
    cfg = _tiny(task="depth")
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    old = cfg.to_dict()
    del old["task"]  # a config saved before the field existed reads as the cross-task net
    assert ModelConfig.from_dict(old).task == "both"


def test_build_model_dispatches_on_task():
    assert isinstance(build_model(_tiny()), XTaskNet)
    for task in STL_TASKS:
        m = build_model(_tiny(task=task))
        assert isinstance(m, STLNet) and m.task == task
    with pytest.raises(XTaskError, match="segmt' or 'depth"):
        STLNet(_tiny())


def test_bad_input_is_one_line_error():
    model = STLNet(_tiny(task="segmt"))
    with pytest.raises(XTaskError, match="multiples of 32"):
        model(torch.randn(1, 3, 50, 64))
    with pytest.raises(XTaskError, match="N×3×H×W"):
        model(torch.randn(3, 64, 64))


def test_stl_loss_segmt_is_cross_entropy_over_labelled_pixels():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 4, 4, requires_grad=True)
    target = torch.randint(0, 5, (2, 4, 4))
    target[0, 0, :] = 250  # void
    losses = STLLoss("segmt", num_classes=5)((logits, None, None, None), {"seg": target})
    keep = target != 250
    logp = torch.log_softmax(logits, 1).permute(0, 2, 3, 1)[keep]  # labelled pixels × C
    expected = -logp.gather(1, target[keep][:, None]).mean()
    assert float(losses["seg"].detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
    assert losses["total"] is losses["seg"] and losses["label"] is losses["seg"]
    assert all(float(losses[k]) == 0.0 for k in ("depth", "tseg", "tdep", "image"))
    losses["total"].backward()
    assert logits.grad.abs().sum() > 0


def test_stl_loss_depth_is_the_masked_direct_loss_per_image():
    pred = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]], [[[0.0, 0.0], [0.0, 0.0]]]])
    target = torch.tensor([[[[2.0, 0.0], [3.0, 2.0]]], [[[1.0, 3.0], [0.0, 0.0]]]])
    # image 1: valid (target > 0) at |1-2|, |3-3|, |4-2| → (1 + 0 + 2) / 3 = 1
    # image 2: valid at |0-1|, |0-3| → 2; batch mean = 1.5
    out = STLLoss("depth", num_classes=5)((None, None, pred, None), {"depth": target})
    assert float(out["depth"]) == pytest.approx(1.5)
    assert float(out["total"]) == pytest.approx(1.5) and float(out["seg"]) == 0.0
    # MSE: image 1 (1 + 0 + 4) / 3, image 2 (1 + 9) / 2
    mse = STLLoss("depth", num_classes=5, lp="MSE")((None, None, pred, None), {"depth": target})
    assert float(mse["image"]) == pytest.approx((5 / 3 + 5) / 2)


def test_stl_loss_refuses_the_wrong_output():
    with pytest.raises(XTaskError, match="needs the model's depth output"):
        STLLoss("depth", num_classes=5)((torch.zeros(1, 5, 2, 2), None, None, None),
                                        {"depth": torch.ones(1, 1, 2, 2)})
    with pytest.raises(XTaskError, match="'segmt' or 'depth'"):
        STLLoss("both", num_classes=5)
