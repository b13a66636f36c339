"""SegDepthMetrics vs hand-made confusion matrices, the loop reference, and depth by hand."""
from __future__ import annotations

import math

import pytest
import torch

from xtask_core.errors import XTaskError
from xtask_core.evaluate.metrics import (
    SegDepthMetrics,
    consistency_energy,
    reference_metrics_loop,
)

LN = math.log


def _seg_only(metrics, pred, target):
    metrics.update(pred, None, target, None)
    return metrics.compute()


def test_confusion_matrix_by_hand():
    # 3 classes; the void pixel (250) is predicted 0 and must not count anywhere
    target = torch.tensor([[[0, 0, 1], [1, 2, 250]]])
    pred = torch.tensor([[[0, 1, 1], [2, 2, 0]]])
    out = _seg_only(SegDepthMetrics(3, 250), pred, target)
    assert out["confusion"] == [[1, 1, 0], [0, 1, 1], [0, 0, 1]]  # rows = target
    assert out["n_pixels"] == 5
    assert out["pixel_acc"] == pytest.approx(3 / 5)
    assert out["iou_per_class"] == pytest.approx([1 / 2, 1 / 3, 1 / 2])
    assert out["miou"] == pytest.approx(4 / 9)
    assert out["miou_per_image"] == pytest.approx(4 / 9)  # one image: both definitions agree


def test_logits_and_labels_agree():
    pred = torch.tensor([[[0, 1, 1], [2, 2, 0]]])
    logits = torch.nn.functional.one_hot(pred, 3).permute(0, 3, 1, 2).float() * 5
    target = torch.tensor([[[0, 0, 1], [1, 2, 250]]])
    a = _seg_only(SegDepthMetrics(3), pred, target)
    b = _seg_only(SegDepthMetrics(3), logits.half(), target)
    assert a["confusion"] == b["confusion"] and a["miou"] == b["miou"]


def test_per_image_miou_differs_from_dataset_miou_by_hand():
    # image A: everything class 0, right → mIoU 1. image B: target (1, 2), pred (1, 1) →
    # IoU1 = 1/2, IoU2 = 0 → 1/4. Per-image mean 5/8; dataset-level (1 + 1/2 + 0)/3 = 1/2.
    target = torch.tensor([[[0, 0]], [[1, 2]]])
    pred = torch.tensor([[[0, 0]], [[1, 1]]])
    out = _seg_only(SegDepthMetrics(4), pred, target)
    assert out["miou_per_image"] == pytest.approx(5 / 8)
    assert out["miou"] == pytest.approx(1 / 2)
    assert out["iou_per_class"][:3] == pytest.approx([1.0, 0.5, 0.0])
    assert math.isnan(out["iou_per_class"][3])  # class 3 never seen
    assert out["n_images"] == 2


def test_nyu_ignore_minus_one_and_unlabelled_images_are_skipped():
    target = torch.tensor([[[-1, -1]], [[1, 1]]])
    pred = torch.tensor([[[0, 1]], [[1, 0]]])
    out = _seg_only(SegDepthMetrics(2, -1), pred, target)
    assert out["n_pixels"] == 2 and out["n_images"] == 1
    assert out["pixel_acc"] == pytest.approx(0.5)
    assert out["miou_per_image"] == pytest.approx(0.25)  # IoU0 = 0, IoU1 = 1/2


def _random_batch(seed, n=4, c=5, h=8, w=8):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, h, w, generator=g)
    target = torch.randint(0, c, (n, h, w), generator=g)
    target[torch.rand(n, h, w, generator=g) < 0.2] = 250
    depth_t = torch.rand(n, 1, h, w, generator=g) + 0.05
    depth_t[torch.rand(n, 1, h, w, generator=g) < 0.2] = 0
    depth_p = depth_t + 0.1 * torch.randn(n, 1, h, w, generator=g)
    mask = (torch.rand(n, 1, h, w, generator=g) > 0.1).float()
    return logits, depth_p, target, depth_t, mask


def test_batch_invariance():
    logits, dp, tgt, dt, mask = _random_batch(1)
    one = SegDepthMetrics(5)
    one.update(logits, dp, tgt, dt, mask)
    two = SegDepthMetrics(5)
    two.update(logits[:1], dp[:1], tgt[:1], dt[:1], mask[:1])
    two.update(logits[1:], dp[1:], tgt[1:], dt[1:], mask[1:])
    a, b = one.compute(), two.compute()
    assert a["confusion"] == b["confusion"]
    for k in ("pixel_acc", "miou", "miou_per_image", "abs", "abs_rel", "rmse", "delta1", "delta2", "delta3"):
        assert a[k] == pytest.approx(b[k], rel=1e-12), k
    one.reset()
    assert math.isnan(one.compute()["miou"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equal_to_reference_loop(seed):
    logits, dp, tgt, dt, mask = _random_batch(seed)
    m = SegDepthMetrics(5)
    m.update(logits, dp, tgt, dt, mask)
    ours = m.compute()
    ref = reference_metrics_loop(logits, dp, tgt, dt, num_classes=5, ignore_index=250, depth_mask=mask)
    for k in ("pixel_acc", "miou", "miou_per_image", "abs", "abs_rel", "rmse", "delta1", "delta2", "delta3"):
        assert ours[k] == pytest.approx(ref[k], rel=1e-9), k
    assert ours["iou_per_class"] == pytest.approx(ref["iou_per_class"], rel=1e-9, nan_ok=True)
    assert ref["original_rmse_is_mae"] == pytest.approx(ref["abs"], rel=1e-9)  # its "RMSE" is MAE
    assert ref["rmse"] > ref["abs"]


def test_depth_metrics_by_hand():
    # valid pixels: (p, t) = (1, 1), (1.9, 1), (4.5, 5), (0 → 1e-6, 2); t = 0 and masked pixels drop
    pred = torch.tensor([[[[1.0, 1.9, 4.5, 0.0, 7.0, 9.0]]]])
    target = torch.tensor([[[[1.0, 1.0, 5.0, 2.0, 0.0, 3.0]]]])
    mask = torch.tensor([[[[1.0, 1, 1, 1, 1, 0]]]])
    m = SegDepthMetrics(2)
    m.update(None, pred, None, target, mask)
    out = m.compute()
    assert out["n_depth_pixels"] == 4
    assert out["abs"] == pytest.approx((0 + 0.9 + 0.5 + 2) / 4)
    assert out["abs_rel"] == pytest.approx((0 + 0.9 + 0.1 + 1) / 4)
    assert out["rmse"] == pytest.approx(math.sqrt((0 + 0.81 + 0.25 + 4) / 4))
    # ratios 1, 1.9, 1.111, 2e6 against 1.25, 1.5625, 1.953
    assert (out["delta1"], out["delta2"], out["delta3"]) == pytest.approx((0.5, 0.5, 0.75))
    assert math.isnan(out["pixel_acc"])  # no segmentation seen: NaN, not a crash


def test_bad_labels_raise():
    with pytest.raises(XTaskError, match="labels"):
        SegDepthMetrics(3).update(torch.tensor([[[0, 5]]]), None, torch.tensor([[[0, 1]]]), None)
    with pytest.raises(XTaskError, match="shape"):
        SegDepthMetrics(3).update(torch.tensor([[[0, 1]]]), None, torch.tensor([[[0, 1, 1]]]), None)


def test_consistency_energy():
    seg = torch.randn(2, 3, 4, 5)
    depth = torch.rand(2, 1, 4, 5)
    e = consistency_energy(seg, seg.clone(), depth, depth.clone())
    assert e["seg_kl"].shape == (2, 4, 5) and e["depth_abs"].shape == (2, 4, 5)
    assert e["seg_kl"].abs().max().item() < 1e-6 and e["depth_abs"].max().item() == 0
    assert e["seg_kl_mean"] == pytest.approx(0, abs=1e-6) and e["depth_abs_mean"] == 0
    # one pixel by hand: p = (1/4, 3/4), q = (1/2, 1/2) → KL = ¼·ln(½) + ¾·ln(3/2)
    s = torch.tensor([0.0, LN(3)]).view(1, 2, 1, 1)
    st = torch.zeros(1, 2, 1, 1)
    e = consistency_energy(s, st, torch.tensor([[[[0.5]]]]), torch.tensor([[[[0.2]]]]))
    assert e["seg_kl_mean"] == pytest.approx(0.25 * LN(0.5) + 0.75 * LN(1.5), rel=1e-6)
    assert e["depth_abs_mean"] == pytest.approx(0.3, rel=1e-6)


def test_logits_with_wrong_class_count_raise():
    with pytest.raises(XTaskError, match="classes"):
        SegDepthMetrics(3).update(torch.randn(1, 4, 2, 2), None, torch.zeros(1, 2, 2, dtype=torch.long), None)


# ---------------------------------------------------------------- fast kernels == reference
_KEYS = ("pixel_acc", "miou", "miou_per_image", "abs", "abs_rel", "rmse", "delta1", "delta2", "delta3")


def _hard_batch(seed, n, c, h, w, ties=True):
    """Random logits with exact ties (integer values), ignore/out-of-range targets, invalid depth,
    zero/negative depth predictions and a mask."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randint(-2, 3, (n, c, h, w), generator=g).float() if ties else torch.randn(n, c, h, w, generator=g)
    target = torch.randint(0, c, (n, h, w), generator=g)
    r = torch.rand(n, h, w, generator=g)
    target[r < 0.1] = 250
    target[(r >= 0.1) & (r < 0.13)] = -1       # outside [0, C): ignored too
    depth_t = torch.rand(n, 1, h, w, generator=g) * 2
    depth_t[torch.rand(n, 1, h, w, generator=g) < 0.15] = 0.0
    depth_p = depth_t * (1 + 0.4 * torch.randn(n, 1, h, w, generator=g))  # some ≤ 0 → clamped
    mask = (torch.rand(n, 1, h, w, generator=g) > 0.1).float()
    return logits, depth_p, target, depth_t, mask


def _check_same(ours, ref):
    for k in _KEYS:
        assert ours[k] == pytest.approx(ref[k], rel=1e-12, nan_ok=True), k
    assert ours["iou_per_class"] == pytest.approx(ref["iou_per_class"], rel=1e-12, nan_ok=True)


BACKENDS = ["compiled", "numpy", "torch"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(3, 4, 8, 12), (2, 3, 260, 200), (5, 19, 96, 160)])
@pytest.mark.parametrize("ties", [True, False])
def test_fast_kernels_equal_reference(monkeypatch, backend, shape, ties):
    # small images (many per block), blocks straddling images, and several threads' shares
    monkeypatch.setattr(SegDepthMetrics, "cpu_backend", backend)
    n, c, h, w = shape
    logits, dp, tgt, dt, mask = _hard_batch(7, n, c, h, w, ties)
    for m_ in (None, mask):
        m = SegDepthMetrics(c, 250)
        m.update(logits, dp, tgt, dt, m_)
        ours = m.compute()
        ref = reference_metrics_loop(logits, dp, tgt, dt, num_classes=c, ignore_index=250, depth_mask=m_)
        _check_same(ours, ref)
        pred = logits.max(1).indices  # confusion matrix by hand from torch's own arg-max
        keep = (tgt >= 0) & (tgt < c)
        by_hand = torch.bincount(tgt[keep] * c + pred[keep], minlength=c * c).view(c, c)
        assert ours["confusion"] == by_hand.tolist()


@pytest.mark.parametrize("backend", BACKENDS)
def test_half_logits_labels_and_ignore_inside_range(monkeypatch, backend):
    monkeypatch.setattr(SegDepthMetrics, "cpu_backend", backend)
    logits, dp, tgt, dt, _ = _hard_batch(3, 2, 5, 6, 7)
    tgt[tgt == 250] = 0  # ignore_index 0 lies inside [0, C): its pixels must still be skipped
    m = SegDepthMetrics(5, ignore_index=0)
    m.update(logits.half(), dp.half(), tgt, dt)
    ref = reference_metrics_loop(logits.half().float(), dp.half().float(), tgt, dt, 5, ignore_index=0)
    _check_same(m.compute(), ref)
    m2 = SegDepthMetrics(5, ignore_index=0)
    m2.update(logits.half().max(1).indices, None, tgt, None)  # labels in, same confusion
    assert m2.compute()["confusion"] == m.compute()["confusion"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_logits_fall_back_to_torch_argmax(monkeypatch, backend):
    monkeypatch.setattr(SegDepthMetrics, "cpu_backend", backend)
    logits = torch.randn(1, 3, 2, 2)
    logits[0, 1, 0, 0] = float("nan")
    tgt = torch.tensor([[[1, 0], [2, 1]]])
    m = SegDepthMetrics(3)
    m.update(logits, None, tgt, None)
    pred = logits.max(1).indices[0]  # torch's NaN rule (NaN wins)
    assert m.compute()["n_pixels"] == 4
    assert m.compute()["pixel_acc"] == pytest.approx(float((pred == tgt[0]).float().mean()))


@pytest.mark.parametrize("backend", BACKENDS)
def test_delta_thresholds_decided_exactly_at_the_boundary(monkeypatch, backend):
    monkeypatch.setattr(SegDepthMetrics, "cpu_backend", backend)
    # ratios exactly at, one float32 step below and above each threshold; float32 rounding
    # alone would misplace some of these, the float64 re-check must match the reference
    t = torch.ones(1, 1, 1, 12)
    vals = []
    for thr in (1.25, 1.5625, 1.953125):
        x = torch.tensor(thr)
        vals += [thr, float(torch.nextafter(x, torch.tensor(0.0))), float(torch.nextafter(x, torch.tensor(9.0))),
                 1.0 / thr]
    p = torch.tensor(vals).view(1, 1, 1, 12)
    m = SegDepthMetrics(2)
    m.update(None, p, None, t)
    ref = reference_metrics_loop(torch.zeros(1, 2, 1, 12), p, torch.zeros(1, 1, 12, dtype=torch.long), t, 2)
    out = m.compute()
    for k in ("delta1", "delta2", "delta3", "abs", "abs_rel", "rmse"):
        assert out[k] == ref[k], k


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_finite_depth_takes_the_exact_path(monkeypatch, backend):
    monkeypatch.setattr(SegDepthMetrics, "cpu_backend", backend)
    p = torch.tensor([[[[1.0, float("nan"), 2.0, 3.0]]]])
    t = torch.tensor([[[[1.0, 0.0, 2.5, 3.0]]]])  # the NaN sits on an invalid pixel: ignored
    m = SegDepthMetrics(2)
    m.update(None, p, None, t)
    out = m.compute()
    assert out["n_depth_pixels"] == 3 and out["abs"] == pytest.approx(0.5 / 3)
    p[0, 0, 0, 0] = float("inf")  # on a valid pixel: the error sums become non-finite, as in the reference
    m.reset()
    m.update(None, p, None, t)
    assert not math.isfinite(m.compute()["abs"])


# ---------------------------------------------------------------- compiled kernels: threads, fallback
def test_compiled_kernels_split_over_threads_give_the_same_counts(monkeypatch):
    from xtask_core.evaluate import kernels

    assert kernels.available(), kernels.unavailable_reason()  # numba is a requirement
    logits, dp, tgt, dt, mask = _hard_batch(11, 3, 7, 50, 70)
    ref = reference_metrics_loop(logits, dp, tgt, dt, num_classes=7, ignore_index=250, depth_mask=mask)
    monkeypatch.setattr(SegDepthMetrics, "cpu_backend", "compiled")
    results = []
    for n_threads in (1, 3):  # 3 shares whose borders fall inside images and inside blocks
        monkeypatch.setattr(kernels, "threads", lambda n=n_threads: n)
        monkeypatch.setattr(kernels, "MIN_PIXELS_PER_THREAD", 1)
        m = SegDepthMetrics(7, 250)
        m.update(logits, dp, tgt, dt, mask)
        m.update(logits.max(1).indices, None, tgt, None)  # the label kernel too
        results.append(m.compute())
        _check_same(results[-1], ref)  # the same images twice: every ratio unchanged
    assert results[0]["confusion"] == results[1]["confusion"]
    assert results[0]["n_depth_pixels"] == results[1]["n_depth_pixels"]


def test_compiled_kernels_are_safe_from_several_threads():
    import threading

    logits, dp, tgt, dt, _ = _hard_batch(5, 2, 6, 64, 64)
    expected = SegDepthMetrics(6, 250)
    expected.update(logits, dp, tgt, dt)
    want = expected.compute()
    got, errors = [], []

    def work():
        try:
            for _ in range(20):
                m = SegDepthMetrics(6, 250)
                m.update(logits, dp, tgt, dt)
                got.append(m.compute())
        except Exception as err:  # noqa: BLE001
            errors.append(err)

    ts = [threading.Thread(target=work) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors and len(got) == 80
    assert all(g["confusion"] == want["confusion"] and g["abs"] == want["abs"] for g in got)


def test_without_numba_the_numpy_kernels_take_over(monkeypatch):
    from xtask_core.evaluate import kernels

    monkeypatch.setattr(kernels, "_state", {"error": "ModuleNotFoundError: No module named 'numba'"})
    assert not kernels.available() and "numba" in kernels.unavailable_reason()
    logits, dp, tgt, dt, _ = _hard_batch(2, 2, 4, 10, 12)
    m = SegDepthMetrics(4, 250)
    assert m._cpu_backend(logits) == "numpy"
    m.update(logits, dp, tgt, dt)
    _check_same(m.compute(), reference_metrics_loop(logits, dp, tgt, dt, 4, 250))
    monkeypatch.setattr(SegDepthMetrics, "cpu_backend", "compiled")
    with pytest.raises(XTaskError, match="compiled metric kernels unavailable"):
        SegDepthMetrics(4, 250).update(logits, None, tgt, None)


def test_compiled_argmax_matches_torch_on_float_edge_cases():
    # the kernel compares float bits as integer keys: signed zeros, denormals, infinities and
    # exact ties must order as torch.argmax orders them (first maximum wins)
    import numpy as np

    from xtask_core.evaluate import kernels

    tiny = float(np.nextafter(np.float32(0), np.float32(1)))
    cols = [[-0.0, 0.0], [0.0, -0.0], [1.0, 1.0], [-np.inf, -np.inf], [-np.inf, -1e30], [np.inf, np.inf],
            [-2.0, -1.0, -1.0], [-1.0, -2.0], [tiny, 0.0], [-tiny, -0.0], [-0.0, -tiny], [3.0, -np.inf, np.inf],
            [-3e38, -3.4e38], [5.0, 5.0, 5.0]]
    c = max(len(col) for col in cols)
    logits = torch.full((len(cols), c, 1), -np.inf)  # one image of one pixel per case
    for j, col in enumerate(cols):
        logits[j, :len(col), 0] = torch.tensor(col)
    target = torch.zeros(len(cols), 1, dtype=torch.long)
    counts = kernels.seg_counts(logits.numpy(), target.numpy(), c, 250)
    assert counts[:, 0].argmax(1).tolist() == logits.argmax(1)[:, 0].tolist()
    assert counts.sum() == len(cols)
    for nan in (float("nan"), -float("nan")):  # either sign: the caller is told (None) and uses torch
        bad = logits.clone()
        bad[3, 1, 0] = nan
        assert kernels.seg_counts(bad.numpy(), target.numpy(), c, 250) is None


def test_warm_in_background_is_idempotent_and_leaves_kernels_ready():
    from xtask_core.evaluate import kernels

    kernels.warm_in_background()
    kernels.warm_in_background()  # a second call starts nothing new
    assert kernels.available()    # waits for a warm-up still in progress
