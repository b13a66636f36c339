"""Checkpoint save/load: our format, the original's state dicts, training state, bad files."""
from __future__ import annotations

import copy
import json
import os
import pickle
import struct

import pytest
import torch

from tests.tiny import tiny_model_config
from xtask_core import checkpoint as ck
from xtask_core.config import ModelConfig, TrainConfig
from xtask_core.errors import XTaskError
from xtask_core.io.tensorfile import pickle_globals
from xtask_core.model import XTaskNet


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module, atol=0.0):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sb[k].dtype == sa[k].dtype, k
        torch.testing.assert_close(sb[k], sa[k], rtol=0, atol=atol, msg=k)


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg and len(msg) < 400, msg
    return msg


# Models are built once per module and deep-copied per test: building a ResNet is the slow
# part on a shared 2-core machine, copying 11 M floats is not.
@pytest.fixture(scope="module")
def _bn_model_once():
    torch.manual_seed(0)
    cfg = tiny_model_config(batch_norm=True)
    model = XTaskNet(cfg)
    with torch.no_grad():  # make BN buffers non-default so a round trip is a real test
        model.train()(torch.randn(2, 3, 64, 64))
    return model.eval()


@pytest.fixture(scope="module")
def _tiny_model_once():
    torch.manual_seed(0)
    return XTaskNet(tiny_model_config()).eval()


@pytest.fixture
def bn_model(_bn_model_once):
    return copy.deepcopy(_bn_model_once)


@pytest.fixture
def tiny_model(_tiny_model_once):  # overrides conftest's per-test build with a copy
    return copy.deepcopy(_tiny_model_once)


# ----------------------------------------------------------------------------- our format
def test_roundtrip_fp32_exact(tmp_path, bn_model):
    meta = ck.default_meta(7, "cityscapes")
    meta["training"] = {"epochs": 3, "final": {"miou": 0.5}}
    path = ck.save_checkpoint(tmp_path / "m.safetensors", bn_model, meta)
    loaded = ck.load_checkpoint(path, device="cpu")
    assert loaded.source == "xtask" and loaded.config == bn_model.config
    assert loaded.meta["training"]["final"]["miou"] == 0.5
    assert loaded.meta["class_names"][0] == "flat" and len(loaded.meta["palette"]) == 7
    assert not loaded.model.training
    _assert_same_weights(bn_model, loaded.model)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(bn_model(x), loaded.model(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    # header metadata is plain JSON, readable without xtask
    from safetensors import safe_open
    with safe_open(str(path), "pt") as fh:
        md = fh.metadata()
    assert md["format"] == "xtask/1" and json.loads(md["config"])["batch_norm"] is True


def test_roundtrip_fp16_halves_size_and_restores_fp32(tmp_path, bn_model):
    p32 = ck.save_checkpoint(tmp_path / "a.safetensors", bn_model)
    p16 = ck.save_checkpoint(tmp_path / "b.safetensors", bn_model, half=True)
    assert p16.stat().st_size < 0.55 * p32.stat().st_size
    loaded = ck.load_checkpoint(p16, device="cpu")
    for k, v in loaded.model.state_dict().items():
        ref = bn_model.state_dict()[k]
        assert v.dtype == ref.dtype, k  # float32 again (and int64 BN counters untouched)
        if torch.is_floating_point(ref):
            # fp16 keeps 11 significant bits: relative error <= 2^-11
            assert torch.all((v - ref).abs() <= ref.abs() * 2 ** -11 + 1e-7), k


def test_half_refuses_values_beyond_fp16(tmp_path, tiny_model):
    with torch.no_grad():
        tiny_model.decoder_depth.conv6[0].weight[0, 0, 0, 0] = 1e6
    with pytest.raises(XTaskError, match="float16.*decoder_depth.conv6.0.weight"):
        ck.save_checkpoint(tmp_path / "x.safetensors", tiny_model, half=True)
    assert not (tmp_path / "x.safetensors").exists()


def test_no_overwrite_unless_asked(tmp_path, tiny_model):
    path = tmp_path / "m.safetensors"
    ck.save_checkpoint(path, tiny_model)
    before = path.read_bytes()
    with pytest.raises(XTaskError, match="overwrite"):
        ck.save_checkpoint(path, tiny_model, {"name": "other"})
    assert path.read_bytes() == before
    ck.save_checkpoint(path, tiny_model, {"name": "other"}, overwrite=True)
    assert ck.load_checkpoint(path, "cpu").meta["name"] == "other"


def test_failed_save_leaves_no_file(tmp_path, tiny_model):
    path = tmp_path / "m.safetensors"
    with pytest.raises(XTaskError, match="JSON"):
        ck.save_checkpoint(path, tiny_model, {"bad": object()})
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temp file
    # a failure while writing (after the temp file exists) also leaves nothing behind
    ck.save_checkpoint(path, tiny_model)
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")
    orig = os.fsync
    os.fsync = boom
    try:
        with pytest.raises(OSError):
            ck.save_checkpoint(path, tiny_model, {"name": "new"}, overwrite=True)
    finally:
        os.fsync = orig
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_default_meta():
    m = ck.default_meta(13)
    assert m["dataset"] == "nyuv2" and m["depth_kind"] == "depth" and m["ignore_index"] == -1
    assert len(m["class_names"]) == 13 and len(m["palette"]) == 13
    c = ck.default_meta(19, "cityscapes")
    assert c["class_names"][0] == "road" and c["depth_kind"] == "disparity" and c["ignore_index"] == 250
    assert c["palette"][0] == [128, 64, 128]  # the official Cityscapes road colour
    u = ck.default_meta(4)
    assert u["dataset"] == "unknown" and u["class_names"] == ["class 0", "class 1", "class 2", "class 3"]
    assert len({tuple(c) for c in u["palette"]}) == 4
    json.dumps(m), json.dumps(c), json.dumps(u)


# ----------------------------------------------------------------------------- original format
@pytest.mark.parametrize("prefix", ["", "module."])
def test_original_state_dict_roundtrip(tmp_path, bn_model, prefix):
    sd = {prefix + k: v for k, v in bn_model.state_dict().items()}
    exp = tmp_path / "exps" / "007" / "model"
    exp.mkdir(parents=True)
    torch.save(sd, exp / "model.pth")
    loaded = ck.load_checkpoint(exp / "model.pth", device="cpu")
    assert loaded.source == "xtask-mt" and loaded.meta["name"] == "007"
    c = loaded.config
    assert (c.enc_layers, c.num_classes, c.mid_features, c.ttnet_widths, c.batch_norm) == (18, 7, 8, (4, 8, 16), True)
    assert (c.height, c.width) == (128, 256)  # not in the weights: the Cityscapes default
    _assert_same_weights(bn_model, loaded.model)


def test_original_resnet34_default_layout_is_478_keys_and_infers(tmp_path):
    torch.manual_seed(0)
    model = XTaskNet(ModelConfig(enc_layers=34, num_classes=7))
    sd = model.state_dict()
    assert len(sd) == 478
    cfg = ck.infer_config(sd)
    assert cfg == ModelConfig(enc_layers=34, num_classes=7)


@pytest.mark.parametrize("enc_layers", [18, 34, 50, 101, 152])
def test_infer_enc_layers_from_shapes(enc_layers):
    # shapes only matter, so build the state dict of meta tensors (no memory, no init time)
    with torch.device("meta"):
        model = XTaskNet(ModelConfig(enc_layers=enc_layers, num_classes=13, mid_features=8,
                                     ttnet_features=64, wider_ttnet=True))
    cfg = ck.infer_config(model.state_dict())
    assert cfg.enc_layers == enc_layers and cfg.num_classes == 13 and cfg.wider_ttnet
    assert cfg.ttnet_widths == (128, 256, 512) and not cfg.batch_norm
    assert (cfg.height, cfg.width) == (288, 384)  # 13 classes: NYUv2 defaults


def test_original_in_legacy_torch_format_and_safetensors(tmp_path, tiny_model):
    torch.save(tiny_model.state_dict(), tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    _assert_same_weights(tiny_model, ck.load_checkpoint(tmp_path / "legacy.pth", "cpu").model)
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in tiny_model.state_dict().items()}, tmp_path / "bare.safetensors")
    loaded = ck.load_checkpoint(tmp_path / "bare.safetensors", "cpu")
    assert loaded.source == "xtask-mt"
    _assert_same_weights(tiny_model, loaded.model)


# ----------------------------------------------------------------------------- training state
def test_train_state_roundtrip(tmp_path, tiny_model):
    opt = torch.optim.Adam(tiny_model.parameters(), lr=1e-4, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=80, gamma=0.5)
    tiny_model.train()
    out = tiny_model(torch.randn(1, 3, 64, 64))
    sum(o.mean() for o in out).backward()
    opt.step()
    sched.step()
    tc = TrainConfig.for_dataset("synthetic", epochs=2, height=64, width=64)
    path = ck.save_train_state(tmp_path / "last.pt", model=tiny_model, optimizer=opt, scheduler=sched,
                               balancer=None, epoch=1, step=7, train_config=tc)
    state = ck.load_train_state(path)
    assert state["epoch"] == 1 and state["step"] == 7
    assert TrainConfig.from_dict(state["train_config"]) == tc
    opt2 = torch.optim.Adam(tiny_model.parameters(), lr=1.0)
    opt2.load_state_dict(state["optimizer"])
    assert opt2.param_groups[0]["lr"] == pytest.approx(1e-4) and len(opt2.state) == len(opt.state)
    # the training state is also a loadable checkpoint
    loaded = ck.load_checkpoint(path, "cpu")
    assert loaded.source == "train-state" and loaded.meta["training"]["step"] == 7
    _assert_same_weights(tiny_model, loaded.model)
    # overwriting last.pt is the point of it
    ck.save_train_state(path, model=tiny_model, epoch=2, step=9)
    assert ck.load_train_state(path)["step"] == 9


def test_load_train_state_rejects_plain_state_dict(tmp_path, tiny_model):
    torch.save(tiny_model.state_dict(), tmp_path / "sd.pt")
    with pytest.raises(XTaskError, match="not an xtask training state"):
        ck.load_train_state(tmp_path / "sd.pt")


# ----------------------------------------------------------------------------- bad files
class _Evil:
    """Unpickling this would run a shell command that creates a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("how", ["torch_zip", "torch_legacy", "raw_pickle_p2", "raw_pickle_p5"])
def test_malicious_pickle_refused_without_running(tmp_path, how):
    marker = tmp_path / "PWNED"
    evil = {"decoder_segmt.conv6.0.weight": torch.zeros(1), "x": _Evil(marker)}
    path = tmp_path / "model.pth"
    if how == "torch_zip":
        torch.save(evil, path)
    elif how == "torch_legacy":
        torch.save(evil, path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps(evil, protocol=2 if how.endswith("p2") else 5))
    for fn in (ck.load_checkpoint, ck.load_train_state, ck.read_tensor_file):
        with pytest.raises(XTaskError) as err:
            fn(path)
        msg = _one_line(err)
        assert "system" in msg and "nothing was executed" in msg, msg
    assert not marker.exists()


def test_pickle_scan_names_stack_global_through_memo():
    # protocol 4+ writes module and name as memoised strings; the second global from the same
    # module fetches the module string back with BINGET
    data = pickle.dumps([os.system, os.getcwd, os.system], protocol=4)
    mod = os.system.__module__
    assert pickle_globals(data) == [f"{mod}.system", f"{mod}.getcwd"]
    # and nothing is unpickled: garbage after a valid prefix just ends the scan
    assert pickle_globals(data[:-5] + b"\xff\xfe") == [f"{mod}.system", f"{mod}.getcwd"]


def test_whole_model_pickle_refused(tmp_path, tiny_model):
    torch.save(tiny_model, tmp_path / "whole.pth")
    with pytest.raises(XTaskError, match=r"pickled whole model .*state_dict\(\)") as err:
        ck.load_checkpoint(tmp_path / "whole.pth", "cpu")
    _one_line(err)


@pytest.mark.parametrize("content,match", [
    (b"", "empty"),
    (bytes(range(256)) * 40, "not a checkpoint"),
    (os.urandom(4000), "not a checkpoint|corrupt"),
    (b"\x80\x02" + bytes(range(7, 250)) * 5, "corrupt"),          # starts like a pickle
    (b"PK\x03\x04" + b"\x00" * 100, "truncated or corrupt"),        # starts like a zip
    (struct.pack("<Q", 500) + b'{"a": 1', "truncated or corrupt"),  # starts like safetensors
])
def test_garbage_files(tmp_path, content, match):
    path = tmp_path / "model.pth"
    path.write_bytes(content)
    with pytest.raises(XTaskError, match=match) as err:
        ck.load_checkpoint(path, "cpu")
    _one_line(err)


@pytest.mark.parametrize("fmt", ["safetensors", "torch"])
@pytest.mark.parametrize("frac", [0.5, 0.98])
def test_truncated_files(tmp_path, tiny_model, fmt, frac):
    if fmt == "safetensors":
        full = ck.save_checkpoint(tmp_path / "full.safetensors", tiny_model)
    else:
        full = tmp_path / "full.pth"
        torch.save(tiny_model.state_dict(), full)
    data = full.read_bytes()
    cut = tmp_path / f"cut{full.suffix}"
    cut.write_bytes(data[: int(len(data) * frac)])
    with pytest.raises(XTaskError, match="truncated") as err:
        ck.load_checkpoint(cut, "cpu")
    _one_line(err)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(XTaskError, match="not found"):
        ck.load_checkpoint(tmp_path / "nope.safetensors", "cpu")
    with pytest.raises(XTaskError, match="not a file"):
        ck.load_checkpoint(tmp_path, "cpu")


def test_size_cap_checked_before_reading(tmp_path, tiny_model, monkeypatch):
    path = ck.save_checkpoint(tmp_path / "m.safetensors", tiny_model)
    calls = []
    monkeypatch.setattr(ck, "sniff", lambda p: calls.append(p) or "safetensors")
    with pytest.raises(XTaskError, match="over the .* limit"):
        ck.load_checkpoint(path, "cpu", max_bytes=1000)
    assert calls == []  # refused before opening the file


def test_wrong_architecture_names_keys(tmp_path, tiny_model):
    sd = dict(tiny_model.state_dict())
    del sd["decoder_depth.conv3.conv2.1.running_mean"]
    sd["decoder_depth.extra.weight"] = torch.zeros(3)
    sd["trans_d2s.dec1.double_conv.0.conv.0.bias"] = torch.zeros(99)
    meta_cfg = tiny_model.config
    torch.save({"model": sd, "config": meta_cfg.to_dict()}, tmp_path / "bad.pt")
    with pytest.raises(XTaskError) as err:
        ck.load_checkpoint(tmp_path / "bad.pt", "cpu")
    msg = _one_line(err)
    assert "1 missing key(s): decoder_depth.conv3.conv2.1.running_mean" in msg
    assert "1 unexpected key(s): decoder_depth.extra.weight" in msg
    assert "trans_d2s.dec1.double_conv.0.conv.0.bias (99,) vs expected (8,)" in msg


def test_many_missing_keys_are_summarised(tmp_path, tiny_model):
    sd = {k: v for k, v in tiny_model.state_dict().items() if not k.startswith("trans_d2s.")}
    torch.save(sd, tmp_path / "m.pth")
    with pytest.raises(XTaskError, match=r"25 missing key\(s\): trans_d2s\..* and 20 more") as err:
        ck.load_checkpoint(tmp_path / "m.pth", "cpu")
    _one_line(err)


def test_not_a_model_state_dict(tmp_path):
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, tmp_path / "resnet.pth")
    with pytest.raises(XTaskError, match="not an xtask / xtask_mt model state dict"):
        ck.load_checkpoint(tmp_path / "resnet.pth", "cpu")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(XTaskError, match="holds a list"):
        ck.load_checkpoint(tmp_path / "list.pth", "cpu")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_inf_weights_named(tmp_path, tiny_model, bad):
    sd = dict(tiny_model.state_dict())
    sd["decoder_segmt.conv6.0.weight"] = sd["decoder_segmt.conv6.0.weight"].clone()
    sd["decoder_segmt.conv6.0.weight"][0, 0] = bad
    sd["trans_s2d.final_conv.weight"] = torch.full_like(sd["trans_s2d.final_conv.weight"], bad)
    torch.save(sd, tmp_path / "nan.pth")
    with pytest.raises(XTaskError, match="2 tensor.*NaN or Inf.*decoder_segmt.conv6.0.weight"
                       ".*trans_s2d.final_conv.weight") as err:
        ck.load_checkpoint(tmp_path / "nan.pth", "cpu")
    _one_line(err)


def test_unknown_format_version(tmp_path, tiny_model):
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in tiny_model.state_dict().items()}, tmp_path / "v9.safetensors",
              metadata={"format": "xtask/9"})
    with pytest.raises(XTaskError, match="unsupported checkpoint format 'xtask/9'"):
        ck.load_checkpoint(tmp_path / "v9.safetensors", "cpu")


# ----------------------------------------------------------------------------- model card
def test_describe(tmp_path, tiny_model):
    meta = ck.default_meta(7, "synthetic")
    meta.update(name="demo", training={"epochs": 4, "steps": 40})
    loaded = ck.load_checkpoint(ck.save_checkpoint(tmp_path / "d.safetensors", tiny_model, meta), "cpu")
    card = ck.describe(loaded)
    assert card["params"] == sum(p.numel() for p in tiny_model.parameters())
    assert card["encoder"] == "ResNet18" and card["num_classes"] == 7 and card["name"] == "demo"
    assert card["dataset"] == "synthetic" and card["depth_kind"] == "disparity"
    assert card["epochs"] == 4 and card["steps"] == 40 and card["source"] == "xtask"
    assert card["ttnet_widths"] == [4, 8, 16] and card["input_size"] == [64, 64]
    json.dumps(card)


@pytest.mark.parametrize("train_config, want", [
    (None, None),                                   # no training summary (e.g. the original's model.pth)
    ({"lr": 1e-3}, "masked"),                       # trained before the option: the masked means
    ({"loss_reduction": "original"}, "original"),
    ({"loss_reduction": "masked"}, "masked")])
def test_describe_names_the_loss_reduction(tmp_path, tiny_model, train_config, want):
    meta = ck.default_meta(7, "synthetic")
    meta["training"] = {"epochs": 1} if train_config is None else {"epochs": 1, "train_config": train_config}
    loaded = ck.load_checkpoint(ck.save_checkpoint(tmp_path / "d.safetensors", tiny_model, meta), "cpu")
    assert ck.describe(loaded)["loss_reduction"] == want


def test_shipped_demos_say_they_were_trained_with_masked_means(repo_root):
    for name in ("demo-consistency", "demo-no-consistency"):
        loaded = ck.load_checkpoint(repo_root / "checkpoints" / name / "best.safetensors", "cpu")
        assert ck.describe(loaded)["loss_reduction"] == "masked"


def test_top_level_exports(tmp_path, tiny_model):
    import xtask_core
    p = xtask_core.save_checkpoint(tmp_path / "t.safetensors", tiny_model)
    assert isinstance(xtask_core.load_checkpoint(p, "cpu"), xtask_core.Loaded)


def test_train_state_refuses_unloadable_objects(tmp_path, tiny_model):
    import numpy as np

    class Balancer:
        def state_dict(self):
            return {"initial_losses": np.array([1.0, 2.0])}

    with pytest.raises(XTaskError, match=r"train state\['balancer'\]\['initial_losses'\] is a numpy.ndarray"):
        ck.save_train_state(tmp_path / "last.pt", model=tiny_model, balancer=Balancer())
    assert not (tmp_path / "last.pt").exists()


def _raw_meta(path) -> str:
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        return f.metadata()["meta"]


def test_checkpoint_meta_round_trips_every_shipped_header(repo_root):
    paths = sorted((repo_root / "checkpoints").glob("*/best.safetensors"))
    assert len(paths) >= 3
    for path in paths:
        raw = _raw_meta(path)
        card = ck.CheckpointMeta.from_dict(json.loads(raw))
        assert json.dumps(card.to_dict()) == raw, path  # same keys, order, values: byte-equal JSON
        assert card.name == path.parent.name and card.class_names and card.training
        loaded = ck.load_checkpoint(path, "cpu")
        assert loaded.card.to_dict() == loaded.meta


def test_checkpoint_meta_keeps_unknown_and_odd_keys_in_extra():
    d = ck.default_meta(7, "synthetic")
    d["training"] = None           # a known key with an unexpected type
    d["ignore_index"] = True       # a bool is not an int here
    d["data_note"] = {"kept": [1, 2]}
    card = ck.CheckpointMeta.from_dict(d)
    assert set(card.extra) == {"training", "ignore_index", "data_note"}
    back = card.to_dict()
    assert back == d and list(back) == list(d)


@pytest.mark.parametrize("dataset,n", [("cityscapes", 7), ("cityscapes", 19), ("nyuv2", 13), ("synthetic", 7)])
def test_checkpoint_meta_for_dataset_matches_labels(dataset, n):
    from xtask_core.data import labels
    card = ck.CheckpointMeta.for_dataset(n, dataset)
    assert card.dataset == dataset
    assert list(card.class_names) == labels.class_names(dataset, n)
    assert [list(c) for c in card.palette] == labels.palette(dataset, n).tolist()
    assert card.ignore_index == labels.ignore_index(dataset)
    assert card.depth_kind == labels.depth_kind(dataset)
    assert ck.CheckpointMeta.for_dataset(n) == ck.CheckpointMeta.for_dataset(n, labels.dataset_for_classes(n))
    assert ck.default_meta(n, dataset) == card.to_dict()


def test_checkpoint_meta_is_frozen():
    import dataclasses
    card = ck.CheckpointMeta.for_dataset(13)
    with pytest.raises(dataclasses.FrozenInstanceError):
        card.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        card.training["epochs"] = 3  # type: ignore[index]
    out = card.to_dict()
    out["class_names"].append("extra")
    out["training"]["epochs"] = 3
    assert len(card.class_names) == 13 and dict(card.training) == {}
    assert dataclasses.replace(card, name="x").name == "x" and card.name == ""
