"""AppTest of the Fine-tune page: widgets, a real 2-step fine-tune to completion, the result."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.app_helpers import app_text, checkpoint_box, make_app_env, run_page

TIMEOUT_S = 240   # the trainer subprocess shares 2 cores with the whole team


def _button(at, label):
    return next(b for b in at.button if b.label == label)


def test_finetune_page_widgets(tmp_path, monkeypatch):
    at = run_page("finetune", make_app_env(tmp_path), monkeypatch)
    assert not at.exception
    assert at.title[0].value == "Fine-tune"
    sliders = {s.label.split(":")[0] for s in at.slider}
    assert {"λ1", "λ2", "Steps", "Batch size"} <= sliders
    assert at.select_slider[0].label == "Learning rate"
    assert {s.label for s in at.selectbox} >= {"Depth loss (lp)", "Transferred-depth loss",
                                               "Transferred-seg loss"}
    assert at.radio[0].options == ["none (fixed λ)", "uncertainty weights (Kendall)", "GradNorm"]
    start = _button(at, "Start fine-tuning")
    assert not start.disabled
    assert not any(b.label == "Cancel" for b in at.button)   # nothing to cancel yet
    assert "synthetic" in app_text(at)


@pytest.mark.slow   # a real training subprocess: ~1 min on 2 shared cores
def test_finetune_runs_to_completion(tmp_path, monkeypatch):
    env = make_app_env(tmp_path)
    at = run_page("finetune", env, monkeypatch, timeout=120)
    next(s for s in at.slider if s.label == "Steps").set_value(2)
    at.text_input[0].input("../my tune")            # sanitised, stays inside runs/
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
    assert not _button(at, "Start fine-tuning").disabled
    text = app_text(at)
    assert "Before / after on a fixed validation image" in text
    assert len(at.get("image")) >= 5                    # input, 2 seg, 2 depth (+ ground truth)
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
