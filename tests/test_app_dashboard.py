"""AppTest of the Training dashboard: a good run, a malformed run and an original exps/ folder."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.app_helpers import app_text, make_app_env, run_page


def write_good_run(root: Path, name: str = "good-run") -> Path:
    """A run folder in the trainer's format: config.json + metrics.csv (step and epoch rows)."""
    run = root / name
    run.mkdir(parents=True)
    train = dict(dataset="synthetic", enc_layers=18, num_classes=7, epochs=3, batch_size=2, lr=1e-4,
                 lambda_1=0.01, lambda_2=0.02, lp="L1", tdep_loss="L1", tseg_loss="cross",
                 uncertainty_weights=True, gradnorm=False)
    (run / "config.json").write_text(json.dumps({"train": train, "model": {"enc_layers": 18}}))
    rows = ["kind,epoch,step,lr,train_loss,train_seg,train_depth,train_tseg,train_tdep,val_loss,"
            "val_seg,val_depth,val_tseg,val_tdep,val_miou,val_pixel_acc,val_abs,val_abs_rel,w_image,w_label"]
    for e in (1, 2, 3):
        rows.append(f"step,{e},{2 * e - 1},0.0001,{2.0 - 0.3 * e},{1.5 - 0.2 * e},0.2,0.1,0.05,,,,,,,,,,"
                    f"{1.0 + 0.1 * e},{1.0 - 0.1 * e}")
        rows.append(f"epoch,{e},{2 * e},0.0001,{1.9 - 0.3 * e},{1.4 - 0.2 * e},0.2,0.1,0.05,{1.8 - 0.25 * e},"
                    f"1.2,0.2,0.1,0.05,{0.2 + 0.1 * e},{0.5 + 0.1 * e},0.05,0.3,{1.0 + 0.1 * e},{1.0 - 0.1 * e}")
    (run / "metrics.csv").write_text("\n".join(rows) + "\n")
    return run


def write_bad_run(root: Path, name: str = "broken-run") -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "config.json").write_text("{this is not json")
    (run / "metrics.csv").write_bytes(b"\x00\xff garbage \x00\n\x01,\x02\n")
    return run


def write_original_exps(root: Path) -> Path:
    """An original-code exps/ folder: exps/001 with per-epoch loss arrays and a results file."""
    exp = root / "exps" / "001"
    (exp / "model").mkdir(parents=True)
    np.save(exp / "tr_losses.npy", np.array([2.0, 1.5, 1.2, 1.0], dtype=np.float32))
    np.save(exp / "va_losses.npy", np.array([2.1, 1.7, 1.4, 1.3], dtype=np.float32))
    results = ("Experiment #001\n"
               "Parameters: enc_layers=34 alpha=0.01 gamma=0.01 lr=0.0001\n"
               "Pix Acc: 0.9, mIoU: 0.6\n"
               "Scores - RMSE: 0.03, Abs: 0.012, Abs Rel: 0.19\n")
    (exp / "indv_results.txt").write_text(results)
    (root / "exps" / "results.txt").write_text(results)
    return root / "exps"


def test_dashboard_good_bad_and_original(tmp_path, monkeypatch):
    env = make_app_env(tmp_path, n_checkpoints=1)
    runs = Path(env["XTASK_RUNS_DIR"])
    write_good_run(runs)
    write_bad_run(runs)
    exps = write_original_exps(tmp_path / "orig")

    at = run_page("dashboard", env, monkeypatch)
    assert not at.exception, at.exception
    assert at.title[0].value == "Training dashboard"
    picker = at.multiselect(key="dash_runs")
    assert any(o.startswith("good-run") for o in picker.options)

    # Select everything: the broken run shows its own problem; the good run still plots.
    picker.set_value(list(picker.options)).run()
    assert not at.exception, at.exception
    problems = [e.value for e in at.error] + [w.value for w in at.warning]
    assert any("broken-run" in p for p in problems), problems
    charts = at.get("plotly_chart")
    assert len(charts) >= 4            # total, components, metrics, weights, lr (good run)
    table = next(d.value for d in at.dataframe if "run" in d.value.columns)
    good = table[table["run"].str.startswith("good-run")].iloc[0]
    assert good["lambda_2"] == 0.02 and good["final val_miou"] == 0.5    # last epoch row
    assert abs(good["best val_loss"] - 1.05) < 1e-9
    text = app_text(at)
    assert "published numbers, not produced by this app" in text
    published = at.dataframe[-1].value
    assert len(published) >= 2
    assert at.get("download_button")

    # An original exps/ folder typed by the user (inside XTASK_ALLOWED_ROOTS) joins the list.
    at.text_input(key="dash_folder").input(str(exps)).run()
    assert not at.exception, at.exception
    new = [o for o in at.multiselect(key="dash_runs").options if o not in picker.options]
    assert new, at.multiselect(key="dash_runs").options
    at.multiselect(key="dash_runs").set_value(new).run()
    assert not at.exception
    assert len(at.get("plotly_chart")) >= 1          # train/val loss per epoch of the original run

    # A folder outside the allowed roots is refused with one line, the page still renders.
    at.text_input(key="dash_folder").input("/etc").run()
    assert not at.exception
    assert any("outside the allowed folders" in e.value for e in at.error)


def _write_card_checkpoint(path: Path, seed: int, miou: float, abs_err: float, lam: float) -> Path:
    """A tiny checkpoint whose card records validation metrics and its λ, as shipped ones do."""
    from tests.app_helpers import tiny_model
    from xtask_core.checkpoint import default_meta, save_checkpoint
    meta = default_meta(7, "synthetic")
    meta["name"] = path.stem
    meta["training"] = {"metrics": {"miou": miou, "pixel_acc": 0.9, "abs": abs_err, "abs_rel": 0.2},
                        "train_config": {"dataset": "synthetic", "lambda_1": lam, "lambda_2": lam}, "best_epoch": 3}
    return save_checkpoint(path, tiny_model(seed), meta)


def _write_stl_run(root: Path, name: str, task: str, metrics: dict) -> Path:
    run = root / name
    run.mkdir(parents=True)
    train = dict(dataset="synthetic", task=task, lambda_1=0.0, lambda_2=0.0, epochs=1)
    (run / "config.json").write_text(json.dumps({"train": train}))
    cols = ["kind", "epoch", "step", "val_loss", *[f"val_{k}" for k in metrics]]
    vals = ["epoch", "1", "10", "0.5", *[str(v) for v in metrics.values()]]
    (run / "metrics.csv").write_text(",".join(cols) + "\n" + ",".join(vals) + "\n")
    return run


def _tradeoff_points(at) -> list[str]:
    """Hover labels of the run/checkpoint points the trade-off figure draws."""
    figs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    fig = next(f for f in figs if "coloraxis" in f.get("layout", {}))   # the only figure coloured by λ
    texts = []
    for trace in fig["data"]:
        if not str(trace.get("name", "")).startswith("published"):
            texts += [t.split("</b>")[0].replace("<b>", "") for t in trace.get("hovertext", [])]
    return texts


def test_dashboard_tradeoff_and_delta_m(tmp_path, monkeypatch):
    env = make_app_env(tmp_path, n_checkpoints=0)
    ck, runs = Path(env["XTASK_CHECKPOINT_DIR"]), Path(env["XTASK_RUNS_DIR"])
    _write_card_checkpoint(ck / "mtl_a.safetensors", 0, 0.66, 0.030, 0.01)
    _write_card_checkpoint(ck / "mtl_b.safetensors", 1, 0.60, 0.020, 0.0)
    at = run_page("dashboard", env, monkeypatch)
    assert not at.exception, at.exception
    assert "Trade-off: segmentation against depth, every run and checkpoint" in app_text(at)
    assert sorted(_tradeoff_points(at)) == ["shipped: mtl_a", "shipped: mtl_b"]   # one point per checkpoint
    assert "Δm% needs a segmentation and a depth single-task baseline" in app_text(at)

    # single-task baselines of the same dataset: reference lines and a Δm table
    _write_stl_run(runs, "stl-seg", "segmt", {"miou": 0.60, "pixel_acc": 0.9})
    _write_stl_run(runs, "stl-depth", "depth", {"abs": 0.025, "abs_rel": 0.25})
    at = run_page("dashboard", env, monkeypatch)
    assert not at.exception, at.exception
    assert sorted(_tradeoff_points(at)) == ["shipped: mtl_a", "shipped: mtl_b"]   # baselines are lines
    dm = next(d.value for d in at.dataframe if "Δm %" in d.value.columns)
    a = dm[dm["label"] == "shipped: mtl_a"].iloc[0]
    # by hand: miou +10 %, pixel acc 0 %, abs −20 %, abs rel +20 %  →  +2.5 %
    assert abs(a["Δm %"] - 2.5) < 1e-9
    assert set(dm["segmentation baseline"]) == {"stl-seg (runs/)"}
