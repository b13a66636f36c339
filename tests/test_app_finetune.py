"""AppTest of the Fine-tune page: widgets, λ on a log scale, the "before" view without a run, the
data decision (disabled start for labels no data here has), a real 2-step fine-tune to completion."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.app_helpers import app_text, checkpoint_box, make_app_env, run_page


def write_model(path: Path, num_classes: int, dataset: str) -> Path:
    """A tiny 64×64 checkpoint with ``num_classes`` classes whose card says ``dataset``."""
    import torch

    from tests.tiny import tiny_model_config
    from xtask_core.checkpoint import default_meta, save_checkpoint
    from xtask_core.model import XTaskNet
    torch.manual_seed(0)
    cfg = tiny_model_config(num_classes=num_classes)
    meta = default_meta(num_classes, dataset)
    meta["name"] = path.stem
    return save_checkpoint(path, XTaskNet(cfg).eval(), meta)

TIMEOUT_S = 240   # the trainer subprocess shares 2 cores with the whole team


def _button(at, label):
    return next(b for b in at.button if b.label == label)


def test_finetune_page_widgets(tmp_path, monkeypatch):
    at = run_page("finetune", make_app_env(tmp_path), monkeypatch)
    assert not at.exception
    assert at.title[0].value == "Fine-tune"
    assert {s.label for s in at.slider} == {"Steps", "Batch size"}
    lams = {s.label.split(":")[0]: s for s in at.select_slider if s.label.startswith("λ")}
    assert set(lams) == {"λ1", "λ2"}
    for s in lams.values():   # a log scale that includes 0 and covers 1e-5 … 1, the default on it
        assert s.options[0] == "0" and s.options[-1] == "1" and "1e-05" in s.options and "0.0001" in s.options
        assert s.value == 0.01      # the Cityscapes default, for this 7-class model
    lams["λ1"].set_value(1e-4).run()
    assert not at.exception and at.session_state["ft_lambda_1"] == 1e-4
    assert next(s for s in at.select_slider if s.label == "Learning rate")
    assert {s.label for s in at.selectbox} >= {"Depth loss (lp)", "Transferred-depth loss",
                                               "Transferred-seg loss"}
    reduction = next(s for s in at.selectbox if s.label == "Loss reduction")
    assert reduction.options == ["original", "masked"] and reduction.value == "original"
    balancing = next(r for r in at.radio if r.label == "Loss balancing")
    assert balancing.options[:3] == ["none (fixed λ)", "uncertainty weights (Kendall)", "GradNorm"]
    source = next(r for r in at.radio if r.label == "Training data")
    assert source.value == "street" and "indoor" not in source.options   # Cityscapes labels: street scenes
    start = _button(at, "Start fine-tuning")
    assert not start.disabled
    assert not any(b.label == "Cancel" for b in at.button)   # nothing to cancel yet
    # "Before": the current model on the fixed validation image, with no run at all
    assert "Before: the current checkpoint on a fixed validation image" in app_text(at)
    assert len(at.get("image")) >= 4            # input, ground truth, segmentation, depth
    assert not at.error


def test_finetune_sweep_controls(tmp_path, monkeypatch):
    at = run_page("finetune", make_app_env(tmp_path, n_checkpoints=1), monkeypatch)
    at.toggle(key="ft_sweep").set_value(True).run()
    assert not at.exception
    values = at.multiselect(key="ft_sweep_values")
    assert values.value == [0.0, 0.001, 0.01, 0.1]   # 0 and the decades around the default
    assert _button(at, "Start the sweep") and not _button(at, "Start the sweep").disabled
    values.set_value([0.001]).run()                   # one value is not a sweep: one line, no run
    _button(at, "Start the sweep").click().run()
    assert not at.exception
    assert any("a sweep needs 2 to" in e.value for e in at.error)
    assert not any(p.is_dir() and not p.name.startswith(".") for p in (tmp_path / "runs").iterdir())


def test_finetune_unfitting_labels_disable_start(tmp_path, monkeypatch):
    env = make_app_env(tmp_path, n_checkpoints=0)
    write_model(Path(env["XTASK_CHECKPOINT_DIR"]) / "five.safetensors", 5, "custom")
    at = run_page("finetune", env, monkeypatch)
    assert not at.exception
    assert _button(at, "Start fine-tuning").disabled
    info = [i.value for i in at.info]
    assert any("No fine-tune data here has this model's labels (5 classes" in i for i in info), info
    assert not any(r.label == "Training data" for r in at.radio)


def test_finetune_nyuv2_model_offers_indoor_data(tmp_path, monkeypatch):
    env = make_app_env(tmp_path, n_checkpoints=0)
    write_model(Path(env["XTASK_CHECKPOINT_DIR"]) / "nyu.safetensors", 13, "nyuv2")
    at = run_page("finetune", env, monkeypatch, timeout=120)
    assert not at.exception
    source = next(r for r in at.radio if r.label == "Training data")
    assert source.options == ["synthetic indoor rooms (NYUv2 labels)", "a dataset folder you name"]
    assert not _button(at, "Start fine-tuning").disabled
    assert at.select_slider(key="ft_lambda_1").value == 1e-4          # the NYUv2 default
    assert "Before: the current checkpoint on a fixed validation image" in app_text(at)
    # a folder without the NYUv2 layout: one line, start disabled
    source.set_value("folder").run()
    at.text_input(key="ft_folder").input(str(tmp_path / "samples")).run()
    assert not at.exception
    assert _button(at, "Start fine-tuning").disabled
    assert any("not an NYUv2 .npy-layout folder" in i.value for i in at.info), [i.value for i in at.info]


@pytest.mark.slow   # a real training subprocess: ~1 min on 2 shared cores
def test_finetune_runs_to_completion(tmp_path, monkeypatch):
    env = make_app_env(tmp_path)
    at = run_page("finetune", env, monkeypatch, timeout=120)
    next(s for s in at.slider if s.label == "Steps").set_value(2)
    at.text_input[0].input("../my tune")            # sanitised, stays inside runs/
    next(s for s in at.selectbox if s.label == "Loss reduction").set_value("masked")
    _button(at, "Start fine-tuning").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    run_dir = Path(at.session_state["ft_run"])
    assert run_dir.parent == (tmp_path / "runs").resolve() and run_dir.name == "my-tune"
    assert (run_dir / "job.json").is_file()

    saw_running = False
    deadline = time.monotonic() + TIMEOUT_S
    while not any("Done: saved as a new run" in s.value for s in at.success):
        if any(b.label == "Cancel" for b in at.button):
            saw_running = True
            assert _button(at, "Start fine-tuning").disabled      # one job at a time
        assert not at.exception, at.exception
        assert not any("failed" in e.value for e in at.error), [e.value for e in at.error]
        assert time.monotonic() < deadline, app_text(at)
        time.sleep(1.0)
        at.run()
    assert not at.exception
    assert saw_running or (run_dir / "best.safetensors").exists()
    assert (run_dir / "best.safetensors").is_file() and (run_dir / "metrics.csv").is_file()
    import json
    assert json.loads((run_dir / "config.json").read_text())["train"]["loss_reduction"] == "masked"
    assert not _button(at, "Start fine-tuning").disabled
    text = app_text(at)
    assert "Before / after on a fixed validation image" in text
    assert len(at.get("image")) >= 2                    # input and ground truth beside the wipe
    wipes = [h.proto.body for h in at.get("html")]
    assert len(wipes) == 1 and wipes[0].count("data:image/png;base64,") == 2 and 'id="ft-wipe-segmentation"' in wipes[0]
    next(r for r in at.radio if r.label == "Wipe").set_value("depth").run()
    assert 'id="ft-wipe-depth"' in at.get("html")[0].proto.body
    table = at.dataframe[-1].value
    assert list(table.columns[:3]) == ["metric", "before", "after"]
    assert {"pixel accuracy", "mIoU (dataset)", "depth Abs"} <= set(table["metric"])
    # The new run is offered by the shared checkpoint picker, next to the shipped ones …
    assert "run: my-tune" in checkpoint_box(at).options and checkpoint_box(at).value == "shipped: tiny_a"
    # … and one click makes it the current model of every page.
    _button(at, "Use the fine-tuned model now").click().run()
    assert not at.exception and checkpoint_box(at).value == "run: my-tune"
    assert "already uses this fine-tuned checkpoint" in app_text(at)
    assert not any(b.label == "Use the fine-tuned model now" for b in at.button)


def test_finetune_sweep_results_show_one_point_per_run(tmp_path, monkeypatch):
    """A finished sweep (folders written by hand: no training) shows its runs, one trade-off point
    per run plus the base evaluated on the same images, and the before/after of a picked run."""
    import json
    import shutil

    from xtask_core.train import finetune
    env = make_app_env(tmp_path, n_checkpoints=1)
    runs, base = Path(env["XTASK_RUNS_DIR"]), Path(env["XTASK_CHECKPOINT_DIR"]) / "tiny_a.safetensors"
    data = finetune.small_set("street", runs / ".cache", 64, 64, n_train=1, n_val=2)
    sweep = runs / "sweep-x"
    sweep.mkdir()
    plan = []
    for i, lam in enumerate((0.001, 0.01), 1):
        child = runs / f"sweep-x-{i}"
        child.mkdir()
        train = dict(dataset="synthetic", lambda_1=lam, lambda_2=lam, init_checkpoint=str(base), input_path=str(data))
        (child / "config.json").write_text(json.dumps({"train": train}))
        (child / "metrics.csv").write_text("kind,epoch,step,val_loss,val_miou,val_abs\n"
                                           f"epoch,1,2,0.5,{0.3 + lam},{0.05 - lam}\n")
        (child / "progress.json").write_text(json.dumps({"status": "done", "step": 2, "total_steps": 2}))
        shutil.copy(base, child / "best.safetensors")
        plan.append({"run_dir": str(child), "lambda_1": lam, "lambda_2": lam, "args": {"max_steps": 2}})
    (sweep / finetune.SWEEP_FILE).write_text(json.dumps({"runs": plan}))
    (sweep / "progress.json").write_text(json.dumps({"status": "done", "step": 4, "total_steps": 4,
                                                     "message": "2 of 2 runs finished"}))
    at = run_page("finetune", env, monkeypatch, timeout=120)
    at.session_state["ft_run"] = str(sweep)
    at.run()
    assert not at.exception, at.exception
    assert "done: 2 of 2 runs finished" in app_text(at)
    table = next(d.value for d in at.dataframe if "λ1" in d.value.columns)
    assert list(table["status"]) == ["done", "done"] and list(table["λ1"]) == [0.001, 0.01]
    figs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    fig = next(f for f in figs if "λ sweep" in str(f["layout"].get("title", {}).get("text", "")))
    names = {t["name"]: t.get("text") for t in fig["data"]}
    assert names["sweep"] == ["λ 0.001", "λ 0.01"]
    assert names["base (λ unknown)"] == ["base"]             # a card without a training config: grey
    assert "Run of the sweep to look at" in [s.label for s in at.selectbox]
    assert "Before / after on a fixed validation image" in app_text(at)


def test_finetune_lambda_follows_the_label_set(tmp_path, monkeypatch):
    env = make_app_env(tmp_path, n_checkpoints=1)
    write_model(Path(env["XTASK_CHECKPOINT_DIR"]) / "nyu.safetensors", 13, "nyuv2")
    at = run_page("finetune", env, monkeypatch, timeout=120)
    assert {"shipped: nyu", "shipped: tiny_a"} <= set(checkpoint_box(at).options)
    checkpoint_box(at).set_value("shipped: tiny_a").run()
    assert at.select_slider(key="ft_lambda_1").value == 0.01
    at.select_slider(key="ft_lambda_1").set_value(0.3).run()
    at.select_slider(key="ft_lambda_1").set_value(0.1).run()     # the user's choice stays …
    assert at.select_slider(key="ft_lambda_1").value == 0.1
    checkpoint_box(at).set_value("shipped: nyu").run()            # … until the label set changes
    assert not at.exception, at.exception
    assert at.select_slider(key="ft_lambda_1").value == at.select_slider(key="ft_lambda_2").value == 1e-4
