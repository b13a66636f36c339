"""AppTest: Compare shows Δm% when single-task checkpoints are compared beside a cross-task one."""
from __future__ import annotations

from pathlib import Path

from tests.app_helpers import app_text, make_app_env, run_page


def _write_stl(path: Path, task: str) -> Path:
    import torch

    from tests.tiny import tiny_model_config
    from xtask_core.checkpoint import default_meta, save_checkpoint
    from xtask_core.model.stl import build_model
    torch.manual_seed(1)
    cfg = tiny_model_config(task=task)
    meta = default_meta(7, "synthetic")
    meta["name"] = path.stem
    return save_checkpoint(path, build_model(cfg).eval(), meta)


def test_compare_delta_m_with_single_task_checkpoints(tmp_path, monkeypatch):
    env = make_app_env(tmp_path, n_checkpoints=1)
    ck = Path(env["XTASK_CHECKPOINT_DIR"])
    _write_stl(ck / "stl_depth.safetensors", "depth")
    _write_stl(ck / "stl_segmt.safetensors", "segmt")
    at = run_page("compare", env, monkeypatch, timeout=120)
    assert not at.exception, at.exception
    # two picked by default: one baseline is missing, so Δm says what it needs instead of a table
    assert "Δm% needs a segmentation and a depth single-task baseline" in app_text(at)
    assert not any("Δm %" in d.value.columns for d in at.dataframe)
    at.multiselect(key="cmp_models").set_value(["shipped: tiny_a", "shipped: stl_segmt", "shipped: stl_depth"]).run()
    assert not at.exception, at.exception
    metrics = next(d.value for d in at.dataframe if "model" in d.value.columns)
    dm = next(d.value for d in at.dataframe if "Δm %" in d.value.columns)
    assert list(dm["label"]) == ["shipped: tiny_a"]
    assert dm.iloc[0]["segmentation baseline"] == "shipped: stl_segmt"
    assert dm.iloc[0]["depth baseline"] == "shipped: stl_depth"
    terms = [c for c in dm.columns if c.startswith("Δ ") and c.endswith(" %")]
    assert terms and abs(dm.iloc[0]["Δm %"] - dm.iloc[0][terms].mean()) < 1e-9
    assert len(metrics) == 3
    assert any("the first" in c.value and "same images" in c.value for c in at.caption)
