"""Single-task baselines, PCGrad and task-balance logging wired into training (issue 17)."""
from __future__ import annotations

import csv
import math

import pytest
import torch

from tests.tiny import tiny_train_config
from xtask_core.config import ModelConfig, TrainConfig
from xtask_core.errors import XTaskError
from xtask_core.model import XTaskNet
from xtask_core.model.stl import STLNet
from xtask_core.train.balancing import make_balancer
from xtask_core.train.pcgrad import flat_grad, grad_cosine
from xtask_core.train.step import STEP_KEYS, train_step
from xtask_core.train.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")   # tests/conftest.py


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    from xtask_core.data import synthetic

    root = tmp_path_factory.mktemp("synth_stl")
    synthetic.write_dataset(root, n_train=6, n_val=2, seed=3, height=64, width=128, workers=0)
    return root


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("XTASK_NO_TQDM", "1")


def tiny_cfg(root, out, **kw) -> TrainConfig:
    return tiny_train_config(root, out, **{"limit_train": 6, "limit_val": 2, **kw})


def _batch(n=2, h=64, w=64, classes=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    depth = torch.rand(n, 1, h, w, generator=g) + 0.1
    return {"image": torch.randn(n, 3, h, w, generator=g),
            "seg": torch.randint(0, classes, (n, h, w), generator=g),
            "depth": depth, "depth_mask": torch.ones_like(depth)}


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------ config
def test_config_refuses_balancing_a_single_task_and_pcgrad_with_another_balancer():
    with pytest.raises(XTaskError, match="at most one of"):
        TrainConfig(pcgrad=True, uncertainty_weights=True)
    with pytest.raises(XTaskError, match="at most one of"):
        TrainConfig(pcgrad=True, gradnorm=True)
    for flag in ("pcgrad", "uncertainty_weights", "gradnorm"):
        with pytest.raises(XTaskError, match="single-task run"):
            TrainConfig(task="depth", **{flag: True})
    with pytest.raises(XTaskError, match="task must be one of"):
        TrainConfig(task="normals")
    assert TrainConfig(task="segmt").model_config().task == "segmt"


# ------------------------------------------------------------------ PCGrad in the step
class _ConflictLoss(torch.nn.Module):
    """label and image groups that pull the shared weights in opposite-ish directions."""

    def forward(self, outputs, batch):
        seg, _, depth, _ = outputs
        label = seg[:, 0].mean() + 0.1 * depth.mean()
        image = -0.5 * seg[:, 0].mean() + depth.pow(2).mean()
        zero = label.new_zeros(())
        return {"total": label + image, "seg": label, "depth": image, "tseg": zero, "tdep": zero,
                "label": label, "image": image}


def _flat(model):
    """Every parameter's .grad flattened (a parameter no loss reaches counts as 0)."""
    return torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad).reshape(-1) for p in model.parameters()])


def _grads_after(model, batch, **kw):
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: .grad is what the step computed
    train_step(model, batch, loss_fn=_ConflictLoss(), balancer=make_balancer("none"), optimizer=opt, **kw)
    return _flat(model)


def test_pcgrad_step_projects_conflicting_group_gradients(tiny_config):
    torch.manual_seed(0)
    model = XTaskNet(tiny_config).train()
    batch = _batch()
    params = list(model.parameters())
    losses = _ConflictLoss()(model(batch["image"]), batch)
    g1, g2 = flat_grad(losses["label"], params), flat_grad(losses["image"], params, retain_graph=False)
    dot = float(torch.dot(g1, g2))
    assert dot < 0, "the hand-made groups must conflict for this test to mean anything"
    # the projection written out by hand (two objectives: order does not matter)
    p1 = g1 - dot / float(torch.dot(g2, g2)) * g2
    p2 = g2 - dot / float(torch.dot(g1, g1)) * g1
    plain = _grads_after(model, batch)
    pc = _grads_after(model, batch, pcgrad=True, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(plain, g1 + g2, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(pc, p1 + p2, rtol=1e-4, atol=1e-6)
    assert float((pc - plain).abs().max()) > 1e-3 * float(plain.abs().max())
    # after projection neither group's gradient has a component against the other
    assert float(torch.dot(p1, g2)) == pytest.approx(0.0, abs=1e-4 * float(g1.norm() * g2.norm()))


def test_pcgrad_step_equals_the_plain_sum_when_groups_agree(tiny_config):
    class Agree(_ConflictLoss):
        def forward(self, outputs, batch):
            out = super().forward(outputs, batch)
            out["image"] = 2.0 * out["label"]  # same direction: dot > 0
            return out

    torch.manual_seed(0)
    model, batch = XTaskNet(tiny_config).train(), _batch(seed=1)
    grads = []
    for pc in (False, True):
        opt = torch.optim.SGD(model.parameters(), lr=0.0)
        train_step(model, batch, loss_fn=Agree(), balancer=make_balancer("none"), optimizer=opt, pcgrad=pc)
        grads.append(_flat(model))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-5 * float(grads[0].abs().max()))


def test_pcgrad_step_refuses_a_learning_balancer(tiny_config):
    model = XTaskNet(tiny_config).train()
    bal = make_balancer("uncertainty")
    opt = torch.optim.SGD(list(model.parameters()) + bal.parameters(), lr=0.0)
    with pytest.raises(XTaskError, match="pcgrad replaces the loss balancing"):
        train_step(model, _batch(), loss_fn=_ConflictLoss(), balancer=bal, optimizer=opt, pcgrad=True)


@pytest.mark.parametrize("pcgrad", [False, True])
def test_step_cosine_is_the_encoder_cosine_of_the_two_groups(tiny_config, pcgrad):
    torch.manual_seed(0)
    model, batch = XTaskNet(tiny_config).train(), _batch(seed=2)
    losses = _ConflictLoss()(model(batch["image"]), batch)
    expected = grad_cosine(model, losses)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    out = train_step(model, batch, loss_fn=_ConflictLoss(), balancer=make_balancer("none"), optimizer=opt,
                     pcgrad=pcgrad, measure_cosine=True)
    assert set(out) == set(STEP_KEYS) | {"grad_cos"}
    assert -1.0 <= float(out["grad_cos"]) <= 1.0
    assert float(out["grad_cos"]) == pytest.approx(expected, abs=1e-5)
    assert expected < 0  # the groups of _ConflictLoss conflict at the encoder too


@pytest.mark.parametrize("kind", ["uncertainty", "gradnorm"])
def test_cosine_is_measured_beside_the_learning_balancers(tiny_config, kind):
    torch.manual_seed(0)
    model, batch = XTaskNet(tiny_config).train(), _batch(seed=3)
    bal = make_balancer(kind)
    with torch.no_grad():  # unequal group weights, so the weighted backward is not a plain sum
        if kind == "uncertainty":
            bal.s_img.fill_(1.0)
        else:
            bal.w.copy_(torch.tensor([1.5, 0.5]))
    opt = torch.optim.Adam(list(model.parameters()) + bal.parameters(), lr=1e-3)
    before = bal.weights()
    expected = grad_cosine(model, _ConflictLoss()(model(batch["image"]), batch))
    out = train_step(model, batch, loss_fn=_ConflictLoss(), balancer=bal, optimizer=opt, measure_cosine=True)
    # the step reads the image group's gradient off the weighted backward: same cosine as measured apart
    assert float(out["grad_cos"]) == pytest.approx(expected, abs=1e-4)
    assert bal.weights() != before  # the balancer still learned on the same step


# ------------------------------------------------------------------ trainer
@pytest.mark.slow
def test_single_task_runs_train_one_decoder_and_log_one_task(synth_root, tmp_path):
    for task, present, absent in (("segmt", "val_miou", "val_abs"), ("depth", "val_abs", "val_miou")):
        tr = Trainer(tiny_cfg(synth_root, tmp_path / task, task=task))
        assert isinstance(tr.model, STLNet) and tr.model.task == task
        summary = tr.fit()
        row = summary["last_row"]
        assert math.isfinite(row[present]) and math.isnan(row[absent])
        group = "label" if task == "segmt" else "image"
        other = "image" if task == "segmt" else "label"
        assert row[f"train_{group}"] > 0 and row[f"train_{other}"] == 0
        assert f"ratio_{group}" in row and f"ratio_{other}" not in row and "grad_cos" not in row
        import json
        saved = json.loads((tmp_path / task / "config.json").read_text())
        assert saved["model"]["task"] == saved["train"]["task"] == task


def test_cross_task_run_logs_gradient_cosine_and_loss_ratios(synth_root, tmp_path):
    from xtask_core.train.run_readers import read_run

    out = tmp_path / "cos"
    Trainer(tiny_cfg(synth_root, out, epochs=2, cosine_every=1, log_every=1)).fit()
    rows = _rows(out / "metrics.csv")
    steps = [r for r in rows if r["kind"] == "step"]
    epochs = [r for r in rows if r["kind"] == "epoch"]
    assert len(steps) == 4 and len(epochs) == 2
    for r in steps + epochs:
        assert -1.0 <= float(r["grad_cos"]) <= 1.0
        assert float(r["ratio_label"]) > 0 and float(r["ratio_image"]) > 0
    assert float(steps[0]["ratio_label"]) == pytest.approx(1.0)  # the first step is the reference
    # an epoch row's cosine is the mean of its epoch's measurements
    assert float(epochs[0]["grad_cos"]) == pytest.approx(
        (float(steps[0]["grad_cos"]) + float(steps[1]["grad_cos"])) / 2, rel=1e-6)
    run = read_run(out)
    for col in ("grad_cos", "ratio_label", "ratio_image"):
        assert col in run.metrics.columns, col
        assert run.metrics[col].notna().sum() == len(rows)


def test_cosine_every_spaces_the_measurements_and_zero_turns_it_off(synth_root, tmp_path):
    Trainer(tiny_cfg(synth_root, tmp_path / "every2", epochs=2, cosine_every=2, log_every=1)).fit()
    steps = [r for r in _rows(tmp_path / "every2" / "metrics.csv") if r["kind"] == "step"]
    assert [bool(r["grad_cos"]) for r in steps] == [False, True, False, True]
    Trainer(tiny_cfg(synth_root, tmp_path / "off", cosine_every=0, log_every=1)).fit()
    assert all(not r.get("grad_cos") for r in _rows(tmp_path / "off" / "metrics.csv"))


@pytest.mark.slow
def test_pcgrad_run_trains_and_resumes(synth_root, tmp_path):
    out = tmp_path / "pc"
    first = Trainer(tiny_cfg(synth_root, out, pcgrad=True, cosine_every=1)).fit()
    assert first["status"] == "done" and math.isfinite(first["last_row"]["val_loss"])
    again = Trainer(tiny_cfg(synth_root, out, pcgrad=True, cosine_every=1, epochs=2, resume=True)).fit()
    assert again["step"] == 4 and "grad_cos" in again["last_row"]
    # the ratios keep the first run's first step as their reference after a resume
    assert again["last_row"]["ratio_label"] != pytest.approx(1.0)


@pytest.mark.slow
def test_init_checkpoint_of_another_task_is_refused(synth_root, tmp_path):
    Trainer(tiny_cfg(synth_root, tmp_path / "seg", task="segmt")).fit()
    with pytest.raises(XTaskError, match="task segmt"):
        Trainer(tiny_cfg(synth_root, tmp_path / "ft", task="depth",
                         init_checkpoint=str(tmp_path / "seg" / "best.safetensors")))


def test_stl_model_config_round_trips_the_task():
    cfg = ModelConfig(enc_layers=18, mid_features=8, task="depth")
    assert ModelConfig.from_dict(cfg.to_dict()).task == "depth"


# ------------------------------------------------------------------ CLI
TINY = ["--dataset", "synthetic", "--enc_layers", "18", "--mid_features", "8", "--ttnet_features", "4",
        "--height", "64", "--width", "128", "--batch_size", "3", "--cpu", "--precision", "fp32",
        "--workers", "0", "--epochs", "1", "--limit_train", "3", "--limit_val", "2"]


def _cli(argv, capsys):
    from xtask_core import cli

    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv, needle", [
    (["--pcgrad", "--uncertainty_weights"], "at most one of uncertainty_weights, gradnorm and pcgrad"),
    (["--pcgrad", "--gradnorm"], "at most one of"),
    (["--task", "segmt", "--uncertainty_weights"], "single-task run (task segmt) has one loss"),
    (["--task", "normals"], "invalid choice"),
])
def test_cli_refuses_incompatible_balancing_in_one_line(synth_root, tmp_path, capsys, argv, needle):
    code, _, err = _cli(["train", *TINY, "--input_path", str(synth_root), "--out", str(tmp_path / "r"), *argv],
                        capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and needle in lines[0], err
    assert not (tmp_path / "r" / "best.safetensors").exists()


@pytest.mark.slow
def test_cli_trains_and_evaluates_a_single_task_baseline(synth_root, tmp_path, capsys):
    import json

    run = tmp_path / "depth"
    code, out, err = _cli(["train", *TINY, "--input_path", str(synth_root), "--out", str(run), "--task", "depth"],
                          capsys)
    assert code == 0, err
    saved = json.loads((run / "config.json").read_text())
    assert saved["model"]["task"] == "depth" and saved["train"]["pcgrad"] is False
    report = tmp_path / "eval.json"
    code, out, err = _cli(["eval", "--checkpoint", str(run / "best.safetensors"), "--input_path", str(synth_root),
                           "--cpu", "--exact", "--json", str(report)], capsys)
    assert code == 0, err
    assert "single-task baseline (depth)" in out
    res = json.loads(report.read_text())
    assert res["task"] == "depth" and res["miou"] is None and res["pixel_acc"] is None
    assert res["abs"] > 0 and res["loss"]["total"] == pytest.approx(res["loss"]["depth"])


@pytest.mark.slow
def test_cli_pcgrad_run_records_the_choice_and_the_cosine(synth_root, tmp_path, capsys):
    import json

    run = tmp_path / "pc"
    code, _, err = _cli(["train", *TINY, "--input_path", str(synth_root), "--out", str(run), "--pcgrad",
                         "--cosine_every", "1", "--limit_train", "6"], capsys)
    assert code == 0, err
    saved = json.loads((run / "config.json").read_text())
    assert saved["train"]["pcgrad"] is True and saved["train"]["cosine_every"] == 1
    (row,) = _rows(run / "metrics.csv")
    assert -1.0 <= float(row["grad_cos"]) <= 1.0


def test_pcgrad_is_refused_under_torchrun_before_joining_the_process_group(synth_root, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")  # what torchrun sets; no process group must be started
    with pytest.raises(XTaskError, match="pcgrad runs in one process only"):
        Trainer(tiny_cfg(synth_root, tmp_path / "ddp", pcgrad=True))
    assert not torch.distributed.is_initialized() and not (tmp_path / "ddp").exists()
