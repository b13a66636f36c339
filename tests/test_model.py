"""XTaskNet and its parts: shapes, gradients, init, key layout of the original checkpoints."""
from __future__ import annotations

import pytest
import torch
import torchvision

from xtask_core.config import ModelConfig
from xtask_core.errors import XTaskError
from xtask_core.model import (
    Decoder,
    ResNetEncoder,
    TaskTransferNet,
    XTaskNet,
    encoder_widths,
)


def _tiny(**kw) -> ModelConfig:
    base = dict(enc_layers=18, num_classes=5, mid_features=8, ttnet_features=4, height=64, width=64)
    base.update(kw)
    return ModelConfig(**base)


def _check_forward_backward(model: XTaskNet, direct_only: bool, n: int = 2, c: int = 5):
    torch.manual_seed(1)
    x = torch.randn(n, 3, 64, 64)
    seg, seg_t, depth, depth_t = model(x, direct_only=direct_only)
    assert seg.shape == (n, c, 64, 64) and depth.shape == (n, 1, 64, 64)
    outs = [seg, depth]
    if direct_only:
        assert seg_t is None and depth_t is None
    else:
        assert seg_t.shape == (n, c, 64, 64) and depth_t.shape == (n, 1, 64, 64)
        outs += [seg_t, depth_t]
    for o in outs:
        assert o.dtype == torch.float32 and torch.isfinite(o).all()
    # squares so no output's gradient is a constant that BN could cancel
    sum((o ** 2).mean() for o in outs).backward()
    for name, p in model.named_parameters():
        if direct_only and name.startswith("trans_"):
            assert p.grad is None, name
            continue
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), name
        # a conv bias right before a train-mode BN has exactly-cancelled gradient; skip those
        before_bn = name.endswith(".0.bias") and ("decoder_" in name or model.config.batch_norm)
        if not before_bn:
            assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


@pytest.mark.parametrize("enc_layers", [18, 34, 50, 101, 152])
def test_every_encoder_forward_backward(enc_layers):
    torch.manual_seed(0)
    model = XTaskNet(_tiny(enc_layers=enc_layers)).train()
    assert model.pretrained_encoder.widths == encoder_widths(enc_layers)
    _check_forward_backward(model, direct_only=False)


# each option takes both values at least once, with every pair of options varied (4 of 8 combos
# keeps the suite light on a shared 2-core machine)
@pytest.mark.parametrize("batch_norm,wider_ttnet,direct_only", [
    (False, False, False), (True, True, False), (True, False, True), (False, True, True)])
def test_options_forward_backward(batch_norm, wider_ttnet, direct_only):
    torch.manual_seed(0)
    model = XTaskNet(_tiny(batch_norm=batch_norm, wider_ttnet=wider_ttnet)).train()
    f = 8 if wider_ttnet else 4
    assert model.trans_s2d.enc1.double_conv[0].conv[0].out_channels == f
    assert model.trans_s2d.enc3.double_conv[1].conv[0].out_channels == 4 * f
    has_bn = any(isinstance(m, torch.nn.BatchNorm2d) for m in model.trans_d2s.modules())
    assert has_bn == batch_norm
    _check_forward_backward(model, direct_only=direct_only)


def test_eval_mode_deterministic_and_batch_independent(tiny_model):
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        full = tiny_model(x)
        one = tiny_model(x[1:2])
    for a, b in zip(full, one):
        torch.testing.assert_close(a[1:2], b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("h,w", [(64, 48), (50, 64), (96, 100)])
def test_input_not_multiple_of_32_is_refused(tiny_model, h, w):
    with pytest.raises(XTaskError, match="multiples of 32"):
        tiny_model(torch.zeros(1, 3, h, w))


def test_wrong_channel_count_is_refused(tiny_model):
    with pytest.raises(XTaskError, match="N×3×H×W"):
        tiny_model(torch.zeros(1, 1, 64, 64))


def test_non_square_input_and_strides():
    enc = ResNetEncoder(50)
    feats = enc(torch.zeros(1, 3, 64, 128))
    assert [tuple(f.shape[1:]) for f in feats] == [
        (64, 32, 64), (256, 16, 32), (512, 8, 16), (1024, 4, 8), (2048, 2, 4)]
    assert isinstance(enc.layer1[0], torch.nn.MaxPool2d)  # original layout: layer1 = (maxpool, layer1)


def test_original_key_layout_resnet34_7_classes():
    """The original ResNet34 / 7-class model.pth has exactly 478 entries."""
    model = XTaskNet(ModelConfig(enc_layers=34, num_classes=7))
    keys = list(model.state_dict())
    assert len(keys) == 478
    # hand count: encoder 6 + 16 basic blocks × 12 + 3 downsamples × 6 = 216;
    # decoders 2 × (15 conv+BN units × 7 + conv6) = 212; TTNets 2 × (12 convs × 2 + final) = 50
    assert sum(k.startswith("pretrained_encoder.") for k in keys) == 216
    assert sum(k.startswith("decoder_") for k in keys) == 212
    assert sum(k.startswith("trans_") for k in keys) == 50
    for k in ["pretrained_encoder.layer0.0.weight", "pretrained_encoder.layer0.1.running_var",
              "pretrained_encoder.layer1.1.2.conv2.weight", "pretrained_encoder.layer2.0.downsample.0.weight",
              "pretrained_encoder.layer4.2.bn2.num_batches_tracked",
              "decoder_segmt.conv5.conv3.1.running_mean", "decoder_depth.conv1.conv1.0.bias",
              "decoder_segmt.conv6.0.weight", "trans_s2d.dec3.double_conv.1.conv.0.bias",
              "trans_d2s.enc1.double_conv.0.conv.0.weight", "trans_d2s.final_conv.weight"]:
        assert k in keys, k
    sd = model.state_dict()
    assert sd["decoder_segmt.conv6.0.weight"].shape == (7, 128, 1, 1)
    assert sd["decoder_segmt.conv2.conv1.0.weight"].shape == (128, 128 + 256, 3, 3)
    assert sd["trans_s2d.enc1.double_conv.0.conv.0.weight"].shape == (64, 7, 3, 3)
    assert sd["trans_s2d.dec2.double_conv.0.conv.0.weight"].shape == (64, 256, 3, 3)
    assert sd["trans_d2s.final_conv.weight"].shape == (7, 64, 1, 1)
    # with batch_norm every one of the 24 TTNet convs gains a BN (5 entries): 478 + 120
    bn = XTaskNet(ModelConfig(enc_layers=18, num_classes=7, mid_features=8, batch_norm=True))
    assert "trans_s2d.enc2.double_conv.1.conv.1.running_var" in bn.state_dict()
    assert len(bn.state_dict()) - len(XTaskNet(ModelConfig(enc_layers=18, num_classes=7,
                                                           mid_features=8)).state_dict()) == 120


def test_decoder_init_and_shapes():
    torch.manual_seed(0)
    dec = Decoder([64, 64, 128, 256, 512], mid_features=16, out_channels=3)
    for m in dec.modules():
        if isinstance(m, torch.nn.Conv2d) and m.bias is not None:
            assert torch.count_nonzero(m.bias) == 0
        if isinstance(m, torch.nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.count_nonzero(m.bias) == 0
    # Xavier-normal std = sqrt(2 / (fan_in + fan_out)); conv2.conv1: fan_in = 272·9, fan_out = 16·9
    w = dec.conv2.conv1[0].weight
    expected = (2.0 / (272 * 9 + 16 * 9)) ** 0.5
    assert abs(w.std().item() - expected) / expected < 0.05
    assert dec.conv6[0].bias is None
    feats = [torch.zeros(1, c, 64 // 2 ** (k + 1), 64 // 2 ** (k + 1))
             for k, c in enumerate([64, 64, 128, 256, 512])]
    assert dec(feats).shape == (1, 3, 64, 64)


def test_s2d_log_softmax_makes_it_shift_invariant():
    """log_softmax(x + c) == log_softmax(x), so seg→depth ignores a constant added to all logits;
    depth→seg takes raw depth and must not."""
    torch.manual_seed(0)
    s2d = TaskTransferNet(4, 1, (4, 8, 16), log_softmax_input=True).eval()
    d2s = TaskTransferNet(1, 4, (4, 8, 16), log_softmax_input=False).eval()
    x = torch.randn(2, 4, 32, 32)
    torch.testing.assert_close(s2d(x), s2d(x + 7.0), rtol=1e-5, atol=1e-5)
    d = torch.rand(2, 1, 32, 32)
    assert not torch.allclose(d2s(d), d2s(d + 7.0))
    assert s2d(x).shape == (2, 1, 32, 32) and d2s(d).shape == (2, 4, 32, 32)


def test_ttnet_skip_channel_flow():
    net = TaskTransferNet(3, 2, (4, 8, 16))
    shapes = {n: tuple(m.weight.shape[:2]) for n, m in net.named_modules() if isinstance(m, torch.nn.Conv2d)}
    assert shapes["enc1.double_conv.0.conv.0"] == (4, 3)
    assert shapes["enc3.double_conv.0.conv.0"] == (16, 8)
    assert shapes["dec1.double_conv.0.conv.0"] == (8, 16)
    assert shapes["dec2.double_conv.0.conv.0"] == (4, 16)   # concat(dec1 2f, enc2 2f) → f
    assert shapes["dec3.double_conv.0.conv.0"] == (4, 8)    # concat(dec2 f, enc1 f) → f
    assert shapes["final_conv"] == (2, 4)


def test_transfer_outputs_come_from_the_direct_predictions(tiny_model):
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        seg, seg_t, depth, depth_t = tiny_model(x)
        torch.testing.assert_close(depth_t, tiny_model.trans_s2d(seg))
        torch.testing.assert_close(seg_t, tiny_model.trans_d2s(depth))
        direct = tiny_model(x, direct_only=True)
    torch.testing.assert_close(direct[0], seg)
    torch.testing.assert_close(direct[2], depth)


def test_pretrained_encoder_from_local_file(tmp_path):
    torch.manual_seed(3)
    ref = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(ref.state_dict(), path)
    enc = ResNetEncoder(18, pretrained_path=path)
    torch.testing.assert_close(enc.layer0[0].weight, ref.conv1.weight)
    torch.testing.assert_close(enc.layer1[1][1].conv2.weight, ref.layer1[1].conv2.weight)
    torch.testing.assert_close(enc.layer4[0].downsample[1].running_var, ref.layer4[0].downsample[1].running_var)
    # the classifier is optional in the file
    no_fc = {k: v for k, v in ref.state_dict().items() if not k.startswith("fc.")}
    torch.save(no_fc, tmp_path / "nofc.pth")
    ResNetEncoder(18, pretrained_path=tmp_path / "nofc.pth")
    # through XTaskNet too
    model = XTaskNet(_tiny(), pretrained_path=path)
    torch.testing.assert_close(model.pretrained_encoder.layer3[0].conv1.weight, ref.layer3[0].conv1.weight)


def test_pretrained_encoder_errors(tmp_path):
    with pytest.raises(XTaskError, match="not found"):
        ResNetEncoder(18, pretrained_path=tmp_path / "nope.pth")
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), tmp_path / "r34.pth")
    with pytest.raises(XTaskError, match=r"unexpected key\(s\): layer1.2"):
        ResNetEncoder(18, pretrained_path=tmp_path / "r34.pth")
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, tmp_path / "partial.pth")
    with pytest.raises(XTaskError, match=r"missing key\(s\).*and \d+ more"):
        ResNetEncoder(18, pretrained_path=tmp_path / "partial.pth")


def test_unknown_enc_layers():
    with pytest.raises(XTaskError, match="18, 34, 50, 101, 152"):
        ResNetEncoder(42)
