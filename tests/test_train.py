"""Trainer behaviour: exact resume, NaN stop, cancel, max_steps, balancers, init_checkpoint."""
from __future__ import annotations

import pytest
import torch

from tests.tiny import tiny_train_config
from xtask_core.config import TrainConfig
from xtask_core.errors import XTaskError
from xtask_core.train.trainer import (
    LOSS_KEYS,
    ProgressFile,
    Trainer,
    evaluate,
    read_progress,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")   # tests/conftest.py


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    from xtask_core.data import synthetic

    root = tmp_path_factory.mktemp("synth_train")
    synthetic.write_dataset(root, n_train=6, n_val=3, seed=5, height=64, width=128, workers=0)
    return root


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("XTASK_NO_TQDM", "1")


def tiny_cfg(root, out, **kw) -> TrainConfig:
    return tiny_train_config(root, out, **kw)


def _state(path):
    from safetensors.torch import load_file

    return load_file(str(path))


def test_resume_matches_an_uninterrupted_run(synth_root, tmp_path):
    """2 epochs straight == 1 epoch + resume for 1 more (weights, step, lr, metrics)."""
    straight = Trainer(tiny_cfg(synth_root, tmp_path / "a", epochs=2, scheduler_step_size=1,
                                scheduler_gamma=0.5)).fit()
    Trainer(tiny_cfg(synth_root, tmp_path / "b", epochs=1, scheduler_step_size=1, scheduler_gamma=0.5)).fit()
    resumed = Trainer(tiny_cfg(synth_root, tmp_path / "b", epochs=2, scheduler_step_size=1,
                               scheduler_gamma=0.5, resume=True)).fit()
    assert straight["step"] == resumed["step"] == 2  # limit_train=3, batch 3: one step per epoch
    a, b = _state(tmp_path / "a" / "last.safetensors"), _state(tmp_path / "b" / "last.safetensors")
    assert a.keys() == b.keys()
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert worst < 1e-5, worst
    assert straight["last_row"]["lr"] == resumed["last_row"]["lr"] == pytest.approx(0.5e-4)
    assert straight["last_row"]["val_loss"] == pytest.approx(resumed["last_row"]["val_loss"], rel=1e-5)


def test_nan_loss_stops_without_touching_checkpoints(synth_root, tmp_path, monkeypatch):
    run = tmp_path / "nan"
    Trainer(tiny_cfg(synth_root, run)).fit()
    best_before = (run / "best.safetensors").read_bytes()
    last_before = (run / "last.state.pt").read_bytes()

    from xtask_core.train import losses as losses_mod

    real_forward = losses_mod.XTaskLoss.forward

    def poisoned(self, outputs, batch):
        out = real_forward(self, outputs, batch)
        out["tdep"] = out["tdep"] * float("nan")
        out["total"] = out["total"] + out["tdep"]
        return out

    monkeypatch.setattr(losses_mod.XTaskLoss, "forward", poisoned)
    with pytest.raises(XTaskError, match="NaN/Inf at epoch 2, step 2"):
        Trainer(tiny_cfg(synth_root, run, epochs=2, resume=True)).fit()
    assert (run / "best.safetensors").read_bytes() == best_before
    assert (run / "last.state.pt").read_bytes() == last_before
    progress = read_progress(run)
    assert progress["status"] == "failed" and "NaN" in progress["message"]


def test_cancel_file_stops_at_next_step(synth_root, tmp_path):
    run = tmp_path / "cancel"

    def cancel_after_first(event, info):
        if event == "step" and info["step"] == 1:
            (run / "cancel").touch()

    summary = Trainer(tiny_cfg(synth_root, run, epochs=2, limit_train=6), callbacks=[cancel_after_first]).fit()
    assert summary["status"] == "cancelled" and summary["step"] == 1 and summary["epochs_done"] == 0
    assert read_progress(run)["status"] == "cancelled"
    assert not (run / "best.safetensors").exists()  # nothing saved from a partial epoch


@pytest.mark.parametrize("flags", [dict(uncertainty_weights=True), dict(gradnorm=True)])
def test_max_steps_and_balancers(synth_root, tmp_path, flags):
    run = tmp_path / "steps"
    summary = Trainer(tiny_cfg(synth_root, run, epochs=5, max_steps=1, limit_val=1, **flags)).fit()
    assert summary["step"] == 1 and summary["epochs_done"] == 1 and summary["status"] == "done"
    row = summary["last_row"]
    assert row["w_image"] > 0 and row["w_label"] > 0
    if flags.get("gradnorm"):
        assert row["w_image"] + row["w_label"] == pytest.approx(2.0, abs=1e-5)  # renormalised
    else:  # uncertainty weights moved away from sigma = 1 after one Adam step
        assert row["w_image"] != 1.0
    progress = read_progress(run)
    assert progress["total_steps"] == 1 and progress["status"] == "done"


def test_init_checkpoint_loads_weights_and_checks_architecture(synth_root, tmp_path):
    from xtask_core.checkpoint import save_checkpoint
    from xtask_core.model import XTaskNet

    cfg = tiny_cfg(synth_root, tmp_path / "ft")
    torch.manual_seed(123)
    source = XTaskNet(cfg.model_config())
    ckpt = save_checkpoint(tmp_path / "src.safetensors", source, None)
    trainer = Trainer(tiny_cfg(synth_root, tmp_path / "ft", init_checkpoint=str(ckpt)))
    for k, v in source.state_dict().items():
        assert torch.equal(trainer.model.state_dict()[k].cpu(), v), k
    trainer.logger.close()

    with pytest.raises(XTaskError, match="enc_layers 18 .checkpoint. vs 34"):
        Trainer(tiny_cfg(synth_root, tmp_path / "ft2", init_checkpoint=str(ckpt), enc_layers=34))


def test_evaluate_averages_losses_per_image(synth_root, tiny_config):
    """evaluate()'s loss = image-weighted mean of per-batch losses (batches of 2 and 1)."""
    from torch.utils.data import DataLoader

    from xtask_core.data import make_dataset
    from xtask_core.model import XTaskNet
    from xtask_core.train.losses import XTaskLoss

    ds = make_dataset("cityscapes", str(synth_root), "val", num_classes=7, height=64, width=128)
    torch.manual_seed(0)
    model = XTaskNet(tiny_config).eval()
    loss_fn = XTaskLoss(7)
    loader = DataLoader(ds, batch_size=2)
    res = evaluate(model, loader, num_classes=7, ignore_index=250, device="cpu", loss_fn=loss_fn)
    manual, n = 0.0, 0
    with torch.no_grad():
        for batch in loader:
            out = model(batch["image"])
            manual += float(loss_fn(out, batch)["total"]) * len(batch["image"])
            n += len(batch["image"])
    assert res["n_images"] == n == 3
    assert res["loss"] == pytest.approx(manual / n, rel=1e-5)
    assert set(f"loss_{k}" for k in LOSS_KEYS) <= set(res)
    assert 0.0 <= res["miou"] <= 1.0 and not model.training


def test_progress_file_is_valid_json_and_rejects_bad_status(tmp_path):
    p = ProgressFile(tmp_path / "progress.json", min_interval=3600)
    p.update(status="running", step=1, total_steps=10, force=True)
    p.update(step=2)  # throttled: not written
    assert read_progress(tmp_path)["step"] == 1
    p.update(status="done", step=10)  # status change: always written
    assert read_progress(tmp_path)["status"] == "done" and read_progress(tmp_path)["step"] == 10
    with pytest.raises(ValueError):
        p.update(status="exploded")
    assert read_progress(tmp_path / "nowhere") is None


def _step_parts(tiny_config, kind):
    from xtask_core.model import XTaskNet
    from xtask_core.train.balancing import make_balancer
    from xtask_core.train.losses import XTaskLoss

    torch.manual_seed(0)
    model = XTaskNet(tiny_config).train()
    bal = make_balancer(kind)
    opt = torch.optim.Adam(list(model.parameters()) + bal.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(1)
    batch = {"image": torch.randn(2, 3, 64, 64, generator=gen),
             "seg": torch.randint(0, tiny_config.num_classes, (2, 64, 64), generator=gen),
             "depth": torch.rand(2, 1, 64, 64, generator=gen) + 0.5,
             "depth_mask": torch.ones(2, 1, 64, 64)}
    return model, batch, dict(loss_fn=XTaskLoss(tiny_config.num_classes), balancer=bal, optimizer=opt)


@pytest.mark.parametrize("kind", ["none", "uncertainty", "gradnorm"])
def test_train_step_steps_every_balancer_through_the_base_class(tiny_config, kind):
    from xtask_core.train.step import STEP_KEYS, train_step

    model, batch, parts = _step_parts(tiny_config, kind)
    before = [p.detach().clone() for p in model.parameters()]
    w0 = parts["balancer"].weights()
    out = train_step(model, batch, **parts, precision="fp32", channels_last=False)
    assert tuple(out) == STEP_KEYS and all(v.dim() == 0 and not v.requires_grad for v in out.values())
    assert all(torch.isfinite(v) for v in out.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    if kind != "none":  # the learned balancer weights moved
        assert parts["balancer"].weights() != w0


def test_train_step_refuses_a_nan_loss_before_stepping(tiny_config):
    from xtask_core.train.step import DivergedError, train_step

    model, batch, parts = _step_parts(tiny_config, "none")
    batch["depth"][0, 0, 0, 0] = float("nan")
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(DivergedError, match="NaN/Inf"):
        train_step(model, batch, **parts)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


class FakeClock:
    """Time advances only when a fake candidate 'runs' (seconds per call by candidate)."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _fake_candidates(clock, seconds: dict, losses: dict | None = None, calls: dict | None = None):
    def builder(name):
        def build():
            def run():
                if calls is not None:
                    calls[name] = calls.get(name, 0) + 1
                clock.now += seconds[name]
                return (losses or {}).get(name, 1.0)
            return run
        return build
    return {name: builder(name) for name in seconds}


def test_train_path_picks_the_fastest_measured_never_the_slowest(tmp_path):
    from xtask_core.inference.autotune import DecisionCache
    from xtask_core.train.train_path import decide

    DecisionCache.clear_memory()
    clock = FakeClock()
    seconds = {"fp32": 1.0, "fp32+channels_last": 0.6, "bf16": 2.5, "bf16+channels_last": 0.3}
    losses = {"bf16+channels_last": 1.5}  # fastest, but its loss is 50 % off fp32's: rejected
    path = decide(_fake_candidates(clock, seconds, losses), {"what": "t1"}, cache=DecisionCache(tmp_path),
                  clock=clock, budget_s=10.0)
    assert path.source == "measured"
    assert (path.precision, path.channels_last) == ("fp32", True)
    assert "bf16+channels_last" in path.rejected and path.name != "bf16"
    assert path.times_ms["fp32+channels_last"] == pytest.approx(600.0)
    assert path.to_dict()["chosen"] == "fp32+channels_last"


def test_train_path_reuses_the_cached_decision_and_remeasures_a_new_key(tmp_path):
    from xtask_core.inference.autotune import DecisionCache
    from xtask_core.train.train_path import decide

    DecisionCache.clear_memory()
    clock = FakeClock()
    seconds = {"fp32": 0.5, "fp32+channels_last": 1.0}
    calls: dict = {}
    first = decide(_fake_candidates(clock, seconds, calls=calls), {"what": "t2", "input": [2, 3, 64, 64]},
                   cache=DecisionCache(tmp_path), clock=clock)
    assert first.source == "measured" and first.name == "fp32" and calls
    DecisionCache.clear_memory()   # a new process: only the file remains
    calls.clear()
    again = decide(_fake_candidates(clock, seconds, calls=calls), {"what": "t2", "input": [2, 3, 64, 64]},
                   cache=DecisionCache(tmp_path), clock=clock)
    assert again.source == "cached" and again.name == "fp32" and calls == {}   # nothing ran
    other = decide(_fake_candidates(clock, seconds, calls=calls), {"what": "t2", "input": [4, 3, 64, 64]},
                   cache=DecisionCache(tmp_path), clock=clock)
    assert other.source == "measured" and calls


def test_train_path_as_requested_measures_nothing(tiny_config):
    from xtask_core.train.train_path import candidate_paths

    cpu = torch.device("cpu")
    assert candidate_paths(cpu, "fp32", False) == ["fp32"]
    assert candidate_paths(cpu, "bf16", None) == ["bf16", "bf16+channels_last"]
    auto = candidate_paths(cpu, "auto", None)
    assert auto[:2] == ["fp32", "fp32+channels_last"]   # the fp32 reference first


def test_trainer_logs_the_measured_path_in_config_json(synth_root, tmp_path, monkeypatch):
    import json

    monkeypatch.setenv("XTASK_CACHE_DIR", str(tmp_path / "cache"))
    run = tmp_path / "auto"
    trainer = Trainer(tiny_cfg(synth_root, run, channels_last=None, precision="auto", max_steps=1))
    chosen = json.loads((run / "config.json").read_text())["train_path"]
    assert chosen["source"] == "measured" and chosen["chosen"] in chosen["times_ms"]
    assert trainer.channels_last == chosen["channels_last"]
    assert set(chosen["times_ms"]) | set(chosen["rejected"]) >= {"fp32", "fp32+channels_last"}
    trainer.fit()
    again = Trainer(tiny_cfg(synth_root, tmp_path / "auto2", channels_last=None, precision="auto"))
    assert again.path_choice.source == "cached" and again.path_choice.name == chosen["chosen"]
    again.logger.close()
