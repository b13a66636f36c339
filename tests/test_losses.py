"""XTaskLoss and its registered loss functions against values worked out by hand.

Both reductions: ``original`` (the default, the original code's arithmetic) and ``masked``
(true masked means). Expected values are written out, or computed by a few lines of numpy
in the test, never by the code under test.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from xtask_core.config import LOSS_REDUCTIONS, TrainConfig
from xtask_core.errors import XTaskError
from xtask_core.train.losses import (
    DEPTH_LOSS_FNS,
    ORIGINAL_TDEP_LOSS_FNS,
    ORIGINAL_TSEG_LOSS_FNS,
    REDUCTIONS,
    TDEP_LOSS_FNS,
    TSEG_LOSS_FNS,
    XTaskLoss,
    masked_mean,
    smoothed_one_hot,
    ssim,
)

LN = math.log


def _depth_case():
    """Two 2×2 depth maps; the masked-out pixel has a huge error that must not count."""
    pred = torch.tensor([[[0.0, 1.0], [3.0, 10.0]], [[1.0, 1.0], [1.0, 1.0]]])
    target = torch.tensor([[[0.5, 1.0], [1.0, 0.0]], [[5.0, 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[[1.0, 1.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]]])
    return pred, target, mask


# per image: image 0 has errors 0.5, 0, 2 over 3 pixels; image 1 has error 4 on 1 pixel
@pytest.mark.parametrize("name, expected", [
    ("L1", ((0.5 + 0 + 2) / 3 + 4) / 2),
    ("MSE", ((0.25 + 0 + 4) / 3 + 16) / 2),
    ("logL1", ((LN(1.5) + 0 + LN(3)) / 3 + LN(5)) / 2),
    ("smoothL1", ((0.125 + 0 + 1.5) / 3 + 3.5) / 2),
])
def test_depth_losses_by_hand(name, expected):
    pred, target, mask = _depth_case()
    assert DEPTH_LOSS_FNS[name](pred, target, mask).item() == pytest.approx(expected, rel=1e-6)


def test_empty_mask_image_contributes_zero_without_nan():
    pred, target, mask = _depth_case()
    mask[1] = 0
    pred = pred.clone().requires_grad_(True)
    loss = DEPTH_LOSS_FNS["L1"](pred, target, mask)
    assert loss.item() == pytest.approx((2.5 / 3) / 2)
    loss.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad[1].abs().sum() == 0
    # NaN at a masked-out pixel must not leak either
    vals = torch.tensor([[[float("nan"), 2.0]]])
    assert masked_mean(vals, torch.tensor([[[0.0, 1.0]]])).item() == 2.0
    assert masked_mean(vals, torch.zeros(1, 1, 2)).item() == 0.0


def test_ssim_constant_images():
    a = torch.full((1, 1, 4, 4), 0.2)
    b = torch.full((1, 1, 4, 4), 0.4)
    ones = torch.ones(1, 4, 4)
    assert TDEP_LOSS_FNS["ssim"](a[:, 0], a[:, 0], ones).item() == pytest.approx(0.0, abs=1e-7)
    # constant images: sigma = cov = 0, so SSIM = (2ab + C1) / (a² + b² + C1)
    s = (2 * 0.2 * 0.4 + 1e-4) / (0.04 + 0.16 + 1e-4)
    assert ssim(a, b).flatten().allclose(torch.full((16,), s))
    assert TDEP_LOSS_FNS["ssim"](a[:, 0], b[:, 0], ones).item() == pytest.approx((1 - s) / 2, rel=1e-4)  # fp32 E[x²]-μ²
    x = torch.rand(2, 1, 5, 6)
    assert ssim(x, x).shape == x.shape
    assert TDEP_LOSS_FNS["ssim"](x[:, 0], x[:, 0], (x[:, 0] > 0.3).float()).item() == pytest.approx(0, abs=1e-6)


def test_smoothed_one_hot():
    q = smoothed_one_hot(torch.tensor([[[2]]]), 3, 0.3)
    assert q.flatten().tolist() == pytest.approx([0.15, 0.15, 0.7])
    assert q.sum(1).item() == pytest.approx(1.0)


def test_tseg_cross_and_kl_by_hand():
    # one pixel, C = 3, logits (0, ln2, 0) → p = (1/4, 1/2, 1/4); label 0, ε = 0.3 → q = (.7, .15, .15)
    logits = torch.tensor([0.0, LN(2), 0.0]).view(1, 3, 1, 1)
    labels = torch.zeros(1, 1, 1, dtype=torch.long)
    mask = torch.ones(1, 1, 1)
    q, p = [0.7, 0.15, 0.15], [0.25, 0.5, 0.25]
    ce = -sum(qi * LN(pi) for qi, pi in zip(q, p))
    kl = sum(qi * LN(qi / pi) for qi, pi in zip(q, p))
    assert TSEG_LOSS_FNS["cross"](logits, labels, mask, 0.3).item() == pytest.approx(ce, rel=1e-6)
    assert TSEG_LOSS_FNS["kl"](logits, labels, mask, 0.3).item() == pytest.approx(kl, rel=1e-6)
    # without smoothing KL(one-hot ‖ p) = CE = -ln p_true
    assert TSEG_LOSS_FNS["kl"](logits, labels, mask, 0.0).item() == pytest.approx(LN(4), rel=1e-6)
    assert TSEG_LOSS_FNS["cross"](logits, labels, mask, 0.0).item() == pytest.approx(LN(4), rel=1e-6)


def test_kl_is_per_pixel_not_the_original_view_bug():
    # 1×2×1×3 logits, each pixel different: the per-pixel KL must match a pixel-by-pixel loop
    logits = torch.tensor([[[[0.0, 1.0, 2.0]], [[3.0, -1.0, 0.5]]]])
    labels = torch.tensor([[[1, 0, 1]]])
    eps = 0.2
    expected = 0.0
    for w in range(3):
        logp = torch.log_softmax(logits[0, :, 0, w], 0)
        q = torch.full((2,), eps)
        q[labels[0, 0, w]] = 1 - eps
        expected += float((q * (q.log() - logp)).sum()) / 3
    got = TSEG_LOSS_FNS["kl"](logits, labels, torch.ones(1, 1, 3), eps).item()
    assert got == pytest.approx(expected, rel=1e-6)
    # the original's view(N, H*W, C) pairing would have given another number
    bugged = torch.log_softmax(logits.view(1, 3, 2), 2)
    assert abs(float(-bugged[0, torch.arange(3), labels[0, 0]].mean()) - got) > 1e-3


def _outputs(seed=0, n=2, c=3, h=4, w=4, grad=True):
    g = torch.Generator().manual_seed(seed)
    outs = [torch.randn(n, c, h, w, generator=g), torch.randn(n, c, h, w, generator=g),
            torch.rand(n, 1, h, w, generator=g), torch.rand(n, 1, h, w, generator=g)]
    return [o.requires_grad_(grad) for o in outs]


def _batch(seed=0, n=2, c=3, h=4, w=4, ignore=250):
    g = torch.Generator().manual_seed(seed + 100)
    seg = torch.randint(0, c, (n, h, w), generator=g)
    seg[:, 0, 0] = ignore
    depth = torch.rand(n, 1, h, w, generator=g) + 0.1
    depth[:, :, 1, 1] = 0
    return {"seg": seg, "depth": depth, "seg_mask": (seg != ignore).float().unsqueeze(1),
            "depth_mask": (depth > 0).float()}


def test_direct_seg_ce_with_ignore_by_hand():
    # 1×2×1×3: pixel 0 logits (0, ln3) label 1; pixel 1 (0, 0) label 0; pixel 2 ignored (huge logits)
    seg = torch.tensor([[[[0.0, 0.0, 100.0]], [[LN(3), 0.0, -100.0]]]])
    batch = {"seg": torch.tensor([[[1, 0, 250]]]), "depth": torch.ones(1, 1, 1, 3)}
    out = XTaskLoss(num_classes=2)((seg, None, torch.ones(1, 1, 1, 3), None), batch)
    assert out["seg"].item() == pytest.approx((LN(4 / 3) + LN(2)) / 2, rel=1e-6)
    assert out["depth"].item() == 0 and out["tseg"].item() == 0 and out["tdep"].item() == 0


def test_grouping_formula_and_keys():
    crit = XTaskLoss(num_classes=3, lambda_1=0.3, lambda_2=0.6)
    out = crit(_outputs(), _batch())
    assert set(out) == {"seg", "depth", "tseg", "tdep", "label", "image", "total"}
    assert all(v.dim() == 0 and v.dtype == torch.float32 for v in out.values())
    assert out["label"].item() == pytest.approx(0.7 * out["seg"].item() + 0.3 * out["tdep"].item(), rel=1e-6)
    assert out["image"].item() == pytest.approx(0.4 * out["depth"].item() + 0.6 * out["tseg"].item(), rel=1e-6)
    assert out["total"].item() == pytest.approx(out["label"].item() + out["image"].item(), rel=1e-6)


def test_xtsc_targets_are_detached_direct_predictions():
    seg, seg_t, depth, depth_t = outs = _outputs()
    batch = _batch()
    out = XTaskLoss(num_classes=3, method="xtsc", reduction="masked")(outs, batch)
    # tdep = masked L1 against the direct depth, tseg = CE against argmax of direct seg
    mask = batch["depth_mask"][:, 0]
    assert out["tdep"].item() == pytest.approx(
        DEPTH_LOSS_FNS["L1"](depth_t[:, 0], depth[:, 0], mask).item(), rel=1e-6)
    assert out["tseg"].item() == pytest.approx(TSEG_LOSS_FNS["cross"](
        seg_t, seg.argmax(1), batch["seg_mask"][:, 0], 0.0).item(), rel=1e-6)
    (out["tdep"] + out["tseg"]).backward()
    assert seg.grad is None and depth.grad is None  # nothing flows into the direct outputs
    assert seg_t.grad.abs().sum() > 0 and depth_t.grad.abs().sum() > 0


def test_xtc_compares_with_targets():
    seg, seg_t, depth, depth_t = outs = _outputs()
    batch = _batch()
    out = XTaskLoss(num_classes=3, method="xtc", reduction="masked")(outs, batch)
    mask = batch["depth_mask"][:, 0]
    assert out["tdep"].item() == pytest.approx(
        DEPTH_LOSS_FNS["L1"](depth_t[:, 0], batch["depth"][:, 0], mask).item(), rel=1e-6)
    labels = batch["seg"].clamp_max(2)  # void pixels are masked out anyway
    assert out["tseg"].item() == pytest.approx(TSEG_LOSS_FNS["cross"](
        seg_t, labels, batch["seg_mask"][:, 0], 0.0).item(), rel=1e-6)
    xtsc = XTaskLoss(num_classes=3, method="xtsc", reduction="masked")(outs, batch)
    assert abs(xtsc["tdep"].item() - out["tdep"].item()) > 1e-4


def test_xtsc_agreeing_outputs_give_zero_tdep_and_seg_mask_restricts_tseg():
    seg, _, depth, _ = _outputs(grad=False)
    batch = _batch()
    out = XTaskLoss(num_classes=3, tdep_loss="ssim", reduction="masked")((seg, seg, depth, depth), batch)
    assert out["tdep"].item() == pytest.approx(0.0, abs=1e-6)
    # tseg with ε = 0 and seg_t = seg is the mean of -log(max softmax) over seg_mask pixels
    logp = torch.log_softmax(seg, 1).max(1).values
    m = batch["seg_mask"][:, 0]
    expected = ((-logp * m).sum((1, 2)) / m.sum((1, 2))).mean()
    assert out["tseg"].item() == pytest.approx(expected.item(), rel=1e-6)
    # original: the same per-pixel values, summed over seg_mask pixels / all N·H·W pixels
    out = XTaskLoss(num_classes=3, tdep_loss="ssim")((seg, seg, depth, depth), batch)
    assert out["tdep"].item() == pytest.approx(0.0, abs=1e-6)
    assert out["tseg"].item() == pytest.approx(((-logp * m).sum() / m.numel()).item(), rel=1e-6)


@pytest.mark.parametrize("reduction", LOSS_REDUCTIONS)
def test_empty_masks_give_finite_losses_and_grads(reduction):
    outs = _outputs()
    batch = {"seg": torch.full((2, 4, 4), 250), "depth": torch.zeros(2, 1, 4, 4)}
    for method in ("xtsc", "xtc"):
        out = XTaskLoss(num_classes=3, tdep_loss="ssim", tseg_loss="kl", method=method,
                        reduction=reduction)(outs, batch)
        assert all(torch.isfinite(v) for v in out.values())
        assert out["total"].item() == 0.0
        out["total"].backward()
        assert all(o.grad is None or torch.isfinite(o.grad).all() for o in outs)


@pytest.mark.parametrize("lp, tdep, tseg, method, reduction", list(itertools.product(
    DEPTH_LOSS_FNS, TDEP_LOSS_FNS, TSEG_LOSS_FNS, ("xtsc", "xtc"), LOSS_REDUCTIONS)))
def test_every_option_is_finite_and_trains_every_output(lp, tdep, tseg, method, reduction):
    outs = _outputs()
    crit = XTaskLoss(num_classes=3, lp=lp, tdep_loss=tdep, tseg_loss=tseg, method=method,
                     label_smoothing=0.1, lambda_1=0.5, lambda_2=0.5, reduction=reduction)
    out = crit(outs, _batch())
    assert all(torch.isfinite(v) for v in out.values())
    out["total"].backward()
    assert all(o.grad is not None and o.grad.abs().sum() > 0 for o in outs)


def test_nyu_ignore_index_minus_one():
    outs = _outputs()
    batch = _batch(ignore=-1)
    out = XTaskLoss(num_classes=3, ignore_index=-1)(outs, batch)
    assert torch.isfinite(out["total"])
    # same numbers as with 250 when the void pixels are the same
    ref = XTaskLoss(num_classes=3)(outs, _batch(ignore=250))
    assert out["total"].item() == pytest.approx(ref["total"].item(), rel=1e-6)


@pytest.mark.parametrize("reduction", LOSS_REDUCTIONS)
def test_autocast_losses_are_float32(reduction):
    outs = [o.detach().bfloat16() for o in _outputs()]
    batch = _batch()
    crit = XTaskLoss(num_classes=3, tdep_loss="ssim", tseg_loss="kl", reduction=reduction)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = crit(outs, batch)
    ref = crit([o.float() for o in outs], batch)
    for k in out:
        assert out[k].dtype == torch.float32
        assert out[k].item() == pytest.approx(ref[k].item(), rel=1e-5)


@pytest.mark.parametrize("kw, word", [
    (dict(lp="L3"), "logL1"), (dict(tdep_loss="L2"), "ssim"), (dict(tseg_loss="bce"), "kl"),
    (dict(method="both"), "xtc"), (dict(lambda_1=1.5), "lambda_1"), (dict(label_smoothing=1.0), "label_smoothing"),
    (dict(reduction="mean"), "masked"),
])
def test_bad_options_raise(kw, word):
    with pytest.raises(XTaskError, match=word):
        XTaskLoss(num_classes=3, **kw)


def test_on_tiny_model(tiny_model):
    tiny_model.train()
    x = torch.randn(1, 3, 64, 64)
    batch = _batch(n=1, c=7, h=64, w=64)
    out = XTaskLoss(num_classes=7)(tiny_model(x), batch)
    out["total"].backward()
    assert torch.isfinite(out["total"])
    assert tiny_model.trans_s2d.final_conv.weight.grad.abs().sum() > 0


def test_out_of_range_labels_are_ignored_and_wrong_class_count_raises():
    seg = torch.tensor([[[[0.0, 0.0]], [[LN(3), 5.0]]]])
    batch = {"seg": torch.tensor([[[1, 255]]]), "depth": torch.ones(1, 1, 1, 2)}
    out = XTaskLoss(num_classes=2)((seg, None, torch.ones(1, 1, 1, 2), None), batch)
    assert out["seg"].item() == pytest.approx(LN(4 / 3), rel=1e-6)
    with pytest.raises(XTaskError, match="classes"):
        XTaskLoss(num_classes=3)((seg, None, torch.ones(1, 1, 1, 2), None), batch)


# --------------------------------------------------------------------------- the two reductions
C1, C2 = 0.01 ** 2, 0.03 ** 2


def _np_ssim(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Reference SSIM over every 3×3 window of two H×W float64 arrays (no padding) → (H-2)×(W-2)."""
    h, w = x.shape
    out = np.empty((h - 2, w - 2))
    for i in range(h - 2):
        for j in range(w - 2):
            a, b = x[i:i + 3, j:j + 3], y[i:i + 3, j:j + 3]
            ma, mb = a.mean(), b.mean()
            va, vb, cov = (a * a).mean() - ma ** 2, (b * b).mean() - mb ** 2, (a * b).mean() - ma * mb
            out[i, j] = (2 * ma * mb + C1) * (2 * cov + C2) / ((ma ** 2 + mb ** 2 + C1) * (va + vb + C2))
    return out


def test_loss_reduction_registry_matches_config_and_defaults_to_original():
    assert tuple(REDUCTIONS) == LOSS_REDUCTIONS == ("original", "masked")
    assert XTaskLoss(num_classes=3).reduction == "original"
    assert TrainConfig().loss_reduction == "original"
    assert TrainConfig.for_dataset("nyuv2", loss_reduction="masked").loss_reduction == "masked"
    with pytest.raises(XTaskError, match="loss_reduction must be one of original, masked"):
        TrainConfig(loss_reduction="mean")


def test_ssim_original_border_is_the_valid_window_map():
    # constant 3×4 images, full mask: SSIM = (2ab + C1) / (a² + b² + C1) in every window
    a, b = torch.full((1, 3, 4), 0.2), torch.full((1, 3, 4), 0.4)
    s = (2 * 0.2 * 0.4 + C1) / (0.04 + 0.16 + C1)
    assert ssim(a[:, None], b[:, None], border="valid").shape == (1, 1, 1, 2)
    ones = torch.ones(1, 3, 4)
    # original: two windows of (1-s)/2, summed, divided by Σ mask = 12 pixels
    assert ORIGINAL_TDEP_LOSS_FNS["ssim"](a, b, ones).item() == pytest.approx((1 - s) / 12, rel=1e-4)
    # masked: reflection-padded 3×4 map, every pixel (1-s)/2, mean over the 12 pixels
    assert TDEP_LOSS_FNS["ssim"](a, b, ones).item() == pytest.approx((1 - s) / 2, rel=1e-4)
    with pytest.raises(XTaskError, match="3×3"):
        ORIGINAL_TDEP_LOSS_FNS["ssim"](a[:, :2], b[:, :2], ones[:, :2])


def test_ssim_both_reductions_with_void_pixels_and_an_empty_image():
    pred = torch.tensor([[[0.1, 0.5, 0.3, 0.9], [0.2, 0.7, 0.4, 0.1], [0.6, 0.3, 0.8, 0.5]]] * 2)
    target = torch.tensor([[[0.2, 0.4, 0.3, 0.7], [0.3, 0.6, 0.5, 0.2], [0.5, 0.2, 0.9, 0.4]]] * 2)
    mask = torch.ones(2, 3, 4)
    mask[0, 0, 0] = mask[0, 2, 3] = 0
    mask[1] = 0                                   # no valid pixel: the original's 0/0, here 0
    p, t, m = (v[0].double().numpy() for v in (pred, target, mask))
    loss_valid = np.clip((1 - _np_ssim(p * m, t * m)) / 2, 0, 1)              # 1×2 map
    expected_original = (loss_valid.sum() / m.sum() + 0.0) / 2
    pr, tr = (np.pad(v * m, 1, mode="reflect") for v in (p, t))
    loss_full = np.clip((1 - _np_ssim(pr, tr)) / 2, 0, 1)                    # 3×4 map
    expected_masked = ((loss_full * m).sum() / m.sum() + 0.0) / 2
    got_o = ORIGINAL_TDEP_LOSS_FNS["ssim"](pred, target, mask).item()
    got_m = TDEP_LOSS_FNS["ssim"](pred, target, mask).item()
    assert got_o == pytest.approx(expected_original, rel=1e-4, abs=1e-6)
    assert got_m == pytest.approx(expected_masked, rel=1e-4, abs=1e-6)
    assert abs(got_o - got_m) > 1e-2               # the two reductions really differ here
    # through the module (xtsc compares with the detached direct depth)
    outs = (torch.zeros(2, 2, 3, 4), None, target[:, None], pred[:, None])
    batch = {"seg": torch.zeros(2, 3, 4, dtype=torch.long), "depth": target[:, None] + 1,
             "depth_mask": mask[:, None]}
    for reduction, expected in (("original", expected_original), ("masked", expected_masked)):
        out = XTaskLoss(num_classes=2, tdep_loss="ssim", reduction=reduction)(outs, batch)
        assert out["tdep"].item() == pytest.approx(expected, rel=1e-4, abs=1e-6)


# transferred-seg case: N=1, C=2, 2×2; ε = 0.2 → q = 0.8 on the argmax of the direct logits, 0.2 off.
# pixel (row, col):    (0,0)        (0,1)       (1,0)            (1,1)
# direct logits        (0, 1)→1     (1, 0)→0    (1, 0)            (2, 0)→0
# transferred logits   (0, ln3)     (0, 0)      (100, -100)       (0, ln3)
# label                1            0           250 (void)        0
CE_A = -(0.8 * LN(3 / 4) + 0.2 * LN(1 / 4))      # argmax 1, p = (1/4, 3/4)
CE_B = LN(2)                                      # p = (1/2, 1/2)
CE_D = -(0.8 * LN(1 / 4) + 0.2 * LN(3 / 4))      # argmax 0, p = (1/4, 3/4)
H_Q = -(0.8 * LN(0.8) + 0.2 * LN(0.2))            # entropy of q: KL = CE - H(q)
SEG_CE = (2 * LN(1 + math.exp(-1)) + LN(1 + math.exp(-2))) / 3   # direct seg over 3 labelled pixels


def _tseg_case():
    seg = torch.tensor([[[0.0, 1.0], [1.0, 2.0]], [[1.0, 0.0], [0.0, 0.0]]])[None]
    seg_t = torch.tensor([[[0.0, 0.0], [100.0, 0.0]], [[LN(3), 0.0], [-100.0, LN(3)]]])[None]
    depth = torch.full((1, 1, 2, 2), 0.5)
    batch = {"seg": torch.tensor([[[1, 0], [250, 0]]]), "depth": depth.clone()}
    return (seg, seg_t, depth, depth.clone()), batch


@pytest.mark.parametrize("reduction, n_pixels", [("original", 4), ("masked", 3)])
def test_tseg_label_smoothing_void_pixels_and_grouping_by_hand(reduction, n_pixels):
    outs, batch = _tseg_case()
    crit = XTaskLoss(num_classes=2, lambda_1=0.3, lambda_2=0.2, label_smoothing=0.2, reduction=reduction)
    out = crit(outs, batch)
    tseg = (CE_A + CE_B + CE_D) / n_pixels      # original: / all N·H·W = 4; masked: / 3 labelled
    assert out["seg"].item() == pytest.approx(SEG_CE, rel=1e-6)
    assert out["depth"].item() == 0 and out["tdep"].item() == 0
    assert out["tseg"].item() == pytest.approx(tseg, rel=1e-6)
    assert out["label"].item() == pytest.approx(0.7 * SEG_CE, rel=1e-6)
    assert out["image"].item() == pytest.approx(0.2 * tseg, rel=1e-6)
    assert out["total"].item() == pytest.approx(0.7 * SEG_CE + 0.2 * tseg, rel=1e-6)
    kl = XTaskLoss(num_classes=2, tseg_loss="kl", label_smoothing=0.2, reduction=reduction)(outs, batch)
    assert kl["tseg"].item() == pytest.approx((CE_A + CE_B + CE_D - 3 * H_Q) / n_pixels, rel=1e-5)


def test_tseg_with_an_all_void_image_in_the_batch():
    (seg, seg_t, depth, depth_t), batch = _tseg_case()
    outs = (seg.repeat(2, 1, 1, 1), seg_t.repeat(2, 1, 1, 1), depth.repeat(2, 1, 1, 1), depth_t.repeat(2, 1, 1, 1))
    batch = {"seg": torch.cat([batch["seg"], torch.full((1, 2, 2), 250)]), "depth": outs[2].clone()}
    kw = dict(num_classes=2, label_smoothing=0.2)
    original = XTaskLoss(**kw)(outs, batch)
    masked = XTaskLoss(reduction="masked", **kw)(outs, batch)
    # original: the void image adds 0 but its 4 pixels count: / 8
    assert original["tseg"].item() == pytest.approx((CE_A + CE_B + CE_D) / 8, rel=1e-6)
    # masked: per-image means (3 labelled pixels; the empty image gives 0), then the batch mean
    assert masked["tseg"].item() == pytest.approx(((CE_A + CE_B + CE_D) / 3 + 0) / 2, rel=1e-6)
    assert original["seg"].item() == masked["seg"].item() == pytest.approx(SEG_CE, rel=1e-6)


def test_original_tseg_fns_sum_over_mask_and_divide_by_all_pixels():
    # one labelled pixel (the one-pixel case above) next to a void one: the original halves it
    logits = torch.tensor([[[[0.0, 5.0]], [[LN(2), -5.0]], [[0.0, 1.0]]]])
    labels = torch.tensor([[[0, 2]]])
    mask = torch.tensor([[[1.0, 0.0]]])
    q, p = [0.7, 0.15, 0.15], [0.25, 0.5, 0.25]
    ce = -sum(qi * LN(pi) for qi, pi in zip(q, p))
    kl = sum(qi * LN(qi / pi) for qi, pi in zip(q, p))
    assert ORIGINAL_TSEG_LOSS_FNS["cross"](logits, labels, mask, 0.3).item() == pytest.approx(ce / 2, rel=1e-6)
    assert ORIGINAL_TSEG_LOSS_FNS["kl"](logits, labels, mask, 0.3).item() == pytest.approx(kl / 2, rel=1e-6)
    assert TSEG_LOSS_FNS["cross"](logits, labels, mask, 0.3).item() == pytest.approx(ce, rel=1e-6)


def _xtc_case():
    # N=1, C=2, 1×3. seg = seg_t: (0, ln3) label 1; (0, 0) label 0; (5, -5) void
    seg = torch.tensor([[[[0.0, 0.0, 5.0]], [[LN(3), 0.0, -5.0]]]])
    target = torch.tensor([[[[1.0, 1.0, 4.0]]]])
    depth_t = torch.tensor([[[[1.5, 3.0, 40.0]]]])        # errors 0.5, 2 (third pixel invalid)
    batch = {"seg": torch.tensor([[[1, 0, 250]]]), "depth": target,
             "depth_mask": torch.tensor([[[[1.0, 1.0, 0.0]]]])}
    return (seg, seg.clone(), target.clone(), depth_t), batch


def test_xtc_original_uses_lp_and_plain_ce_masked_uses_the_configured_losses():
    outs, batch = _xtc_case()
    kw = dict(num_classes=2, lambda_1=0.3, lambda_2=0.2, label_smoothing=0.2, lp="smoothL1",
              tdep_loss="L1", method="xtc")
    seg = (LN(4 / 3) + LN(2)) / 2
    # original: tdep = smoothL1 (lp) = (0.125 + 1.5) / 2; tseg = plain CE, no smoothing
    out = XTaskLoss(**kw)(outs, batch)
    assert out["seg"].item() == pytest.approx(seg, rel=1e-6)
    assert out["tdep"].item() == pytest.approx(0.8125, rel=1e-6)
    assert out["tseg"].item() == pytest.approx(seg, rel=1e-6)
    assert out["total"].item() == pytest.approx(0.7 * seg + 0.3 * 0.8125 + 0.2 * seg, rel=1e-6)
    # the configured tdep_loss does not matter in the original's xtc (ssim is not even run here)
    assert XTaskLoss(**dict(kw, tdep_loss="ssim"))(outs, batch)["tdep"].item() == pytest.approx(0.8125, rel=1e-6)
    # masked: tdep = L1 (tdep_loss) = (0.5 + 2) / 2; tseg = smoothed CE over the labelled pixels
    out = XTaskLoss(reduction="masked", **kw)(outs, batch)
    tseg = (-(0.2 * LN(1 / 4) + 0.8 * LN(3 / 4)) + LN(2)) / 2
    assert out["tdep"].item() == pytest.approx(1.25, rel=1e-6)
    assert out["tseg"].item() == pytest.approx(tseg, rel=1e-6)
    assert out["total"].item() == pytest.approx(0.7 * seg + 0.3 * 1.25 + 0.2 * tseg, rel=1e-6)


@pytest.mark.parametrize("reduction", LOSS_REDUCTIONS)
def test_direct_depth_with_an_empty_image_is_the_same_in_both_reductions(reduction):
    pred, target, mask = _depth_case()
    mask[1] = 0
    outs = (torch.zeros(2, 2, 2, 2), None, pred[:, None], None)
    batch = {"seg": torch.zeros(2, 2, 2, dtype=torch.long), "depth": target[:, None], "depth_mask": mask[:, None]}
    out = XTaskLoss(num_classes=2, reduction=reduction)(outs, batch)
    assert out["depth"].item() == pytest.approx(((0.5 + 0 + 2) / 3 + 0) / 2, rel=1e-6)
