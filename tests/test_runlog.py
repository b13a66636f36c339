"""Run logs: round trip, and every bad-file case leaves an error string, never a crash."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from xtask_core.errors import XTaskError
from xtask_core.train import runlog as R

RESULTS_TXT = """==========
Experiment #001
Parameters: enc=34, lr=0.0001, beta=(0.9, 0.99), lp=L1, tsegmt=cross, alpha=0.01, gamma=0.01, smoothing=0.0
Optimizer: Adam, Scheduler: StepLR(step size=80, gamma=0.5)
# of classes: 7
transfernet type: conv, use_uncertainty: True, use gradloss: False
Pix Acc: 0.912, mIoU: 0.623
Scores - RMSE: 0.0321, iRMSE: 0.1000, iRMSE log: 0.2000, Abs: 0.0130, Abs Rel: 0.2100, Sqrt Rel: 0.0100, delta1: 0.8000, delta2: 0.9000, delta3: 0.9500
==========
Experiment #002
Parameters: enc=18, lr=0.001
Pix Acc: 0.5, mIoU: garbage
this line means nothing
"""  # noqa: E501  (the original's score line, verbatim)


def test_logger_round_trip_with_new_columns(tmp_path):
    run_dir = tmp_path / "run1"
    with R.RunLogger(run_dir, tensorboard=False) as lg:
        lg.write_config({"name": "demo run", "lr": 1e-4, "path": tmp_path, "sizes": (128, 256)})
        lg.log({"epoch": 1, "step": 10, "loss": 2.5})
        lg.log({"epoch": 2, "step": 20, "loss": 1.5, "miou": np.float32(0.25)})   # new column
        lg.log({"epoch": 3, "step": 30, "loss": float("nan"), "phase": "val"})
        lg.write_summary({"best_epoch": 2})
    text = (run_dir / "metrics.csv").read_text()
    assert text.splitlines()[0] == "epoch,step,loss,miou,phase"
    assert text.splitlines()[1] == "1,10,2.5,,"                # old row padded
    run = R.read_run(run_dir)
    assert run.source == "xtask" and run.name == "demo run" and run.errors == []
    assert run.config["lr"] == 1e-4 and run.config["sizes"] == [128, 256]
    assert run.metrics.index.name == "epoch" and list(run.metrics.index) == [1, 2, 3]
    assert run.metrics.loc[2, "miou"] == pytest.approx(0.25)
    assert np.isnan(run.metrics.loc[1, "miou"]) and np.isnan(run.metrics.loc[3, "loss"])
    assert run.metrics.loc[3, "phase"] == "val"
    assert run.summary == {"best_epoch": 2}


def test_logger_resume_drops_partial_line(tmp_path):
    (tmp_path / "metrics.csv").write_text("epoch,loss\n1,2.0\n2,1.")   # crash mid-append
    lg = R.RunLogger(tmp_path, tensorboard=False)
    lg.log({"epoch": 3, "loss": 0.5})
    assert (tmp_path / "metrics.csv").read_text() == "epoch,loss\n1,2.0\n3,0.5\n"


def test_tensorboard_scalars_written_and_read(tmp_path):
    with R.RunLogger(tmp_path / "tb", tensorboard=True) as lg:
        for e in range(1, 4):
            lg.log({"epoch": e, "loss": 1.0 / e})
    os.remove(tmp_path / "tb" / "metrics.csv")        # force the TensorBoard path
    df, errors = R.read_tensorboard(tmp_path / "tb")
    assert errors == [] and list(df.index) == [1, 2, 3]
    np.testing.assert_allclose(df["loss"], [1.0, 0.5, 1 / 3], rtol=1e-6)
    assert R.read_run(tmp_path / "tb").source == "tensorboard"   # no config/CSV left
    (tmp_path / "tb" / "config.json").write_text("{}")
    run = R.read_run(tmp_path / "tb")                          # our run without its CSV
    assert run.source == "xtask" and run.metrics.loc[2, "loss"] == pytest.approx(0.5)


def test_half_written_and_malformed_csv(tmp_path):
    (tmp_path / "metrics.csv").write_text("epoch,loss\n1,2.0\n2,1.0,extra\n3,0.5\n4,0.4")
    df, errors = R.read_metrics_csv(tmp_path / "metrics.csv")
    assert list(df.index) == [1, 3]                    # bad row skipped, partial last line dropped
    assert errors == ["metrics.csv: skipped 1 malformed row(s) (first at line 3)"]
    for content, msg in [(b"", "empty file"), (b"\x00\x01\x02", "binary data"),
                         (b"a,a\n1,2\n", "malformed header")]:
        (tmp_path / "metrics.csv").write_bytes(content)
        df, errors = R.read_metrics_csv(tmp_path / "metrics.csv")
        assert df.empty and msg in errors[0]


def test_bad_json_and_partial_run_still_loads(tmp_path):
    (tmp_path / "config.json").write_text('{"lr": 0.1,')
    (tmp_path / "metrics.csv").write_text("step,loss\n5,1.0\n6,0.9\n")
    (tmp_path / "summary.json").write_text("[1, 2]")
    run = R.read_run(tmp_path)
    assert run.config == {} and run.metrics.index.name == "step"
    assert any(e.startswith("config.json: invalid JSON (line 1") for e in run.errors)
    assert any("summary.json: expected a JSON object" in e for e in run.errors)
    assert all("\n" not in e for e in run.errors)


def test_corrupt_tensorboard_files(tmp_path):
    good = tmp_path / "good"
    with R.RunLogger(good) as lg:
        for e in range(1, 6):
            lg.log({"epoch": e, "loss": float(e)})
    data = next(good.glob("events.out.tfevents*")).read_bytes()
    cases = {
        "random": os.urandom(300),
        "flipped": data[:70] + bytes([data[70] ^ 0xFF]) + data[71:],
        "truncated": data[:-5],                      # still being written: not an error
        "empty": b"",
    }
    for name, content in cases.items():
        d = tmp_path / name
        d.mkdir()
        (d / "events.out.tfevents.1.host").write_bytes(content)
        run = R.read_run(d)
        assert run.source == "tensorboard"
        if name == "truncated":
            assert run.errors == [] and list(run.metrics.index) == [1, 2, 3, 4]
        elif name == "empty":
            assert run.errors == ["no scalar values in the event files"]
        else:
            assert "corrupt TensorBoard event file" in run.errors[0], (name, run.errors)


def test_parse_results_text():
    blocks = R.parse_results_text(RESULTS_TXT)
    b1 = blocks["001"]
    assert b1["params"]["enc"] == 34 and b1["params"]["beta"] == "(0.9, 0.99)"
    assert b1["params"]["use_uncertainty"] is True and b1["params"]["of_classes"] == 7
    assert b1["scores"] == {"pixel_acc": 0.912, "miou": 0.623, "rmse": 0.0321, "irmse": 0.1,
                            "irmse_log": 0.2, "abs": 0.013, "abs_rel": 0.21, "sqrt_rel": 0.01,
                            "delta1": 0.8, "delta2": 0.9, "delta3": 0.95}
    assert blocks["002"]["scores"] == {"pixel_acc": 0.5}     # "garbage" tolerated


def _make_exp(root, num="001"):
    exp = root / "exps" / num
    (exp / "model").mkdir(parents=True)
    (exp / "model" / "model.pth").write_bytes(b"not read by runlog")
    np.save(exp / "model" / "tr_losses.npy", np.array([3.0, 2.0, 1.0]))   # where the original saves
    np.save(exp / "va_losses.npy", np.array([3.5, 2.5]))                # a moved copy: still found
    (exp / "indv_results.txt").write_text(
        "Date: Oct-01-2020 10:00:00\narguments:\n   predicting at size [128*256]\n"
        "   batch size: 8, train for 250 epochs\n   enc=34, numclasses=7, lr=0.0001\n")
    (root / "exps" / "results.txt").write_text(RESULTS_TXT)
    return exp


def test_xtask_mt_folder(tmp_path):
    exp = _make_exp(tmp_path)
    run = R.read_run(exp)
    assert run.source == "xtask_mt" and run.name == "exps/001" and run.errors == []
    assert run.metrics.index.name == "epoch" and list(run.metrics.index) == [1, 2, 3]
    assert np.isnan(run.metrics.loc[3, "val_loss"]) and run.metrics.loc[1, "train_loss"] == 3.0
    assert run.config["numclasses"] == 7 and run.config["tsegmt"] == "cross"
    assert run.summary["miou"] == 0.623 and run.summary["checkpoint"].endswith("model.pth")


def test_xtask_mt_bad_files(tmp_path):
    exp = _make_exp(tmp_path)
    np.save(exp / "model" / "tr_losses.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (exp / "va_losses.npy").write_bytes(b"\x93NUMPY garbage")
    (exp / "indv_results.txt").write_bytes(b"\x00\xff binary")
    run = R.read_run(exp)
    assert any("tr_losses.npy: refused (pickled" in e for e in run.errors)
    assert any(e.startswith("va_losses.npy:") for e in run.errors)
    assert any("indv_results.txt: binary data" in e for e in run.errors)
    assert run.metrics.empty and run.summary["miou"] == 0.623    # results.txt still read
    # a raw pickle renamed .npy is refused too, and never unpickled
    (exp / "model" / "tr_losses.npy").write_bytes(pickle.dumps([1.0, 2.0]))
    assert any(e.startswith("tr_losses.npy:") for e in R.read_run(exp).errors)


def test_find_runs(tmp_path):
    _make_exp(tmp_path)
    with R.RunLogger(tmp_path / "runs" / "a") as lg:
        lg.log({"epoch": 1, "loss": 1.0})                   # xtask run (with its own events)
    tb = tmp_path / "tb" / "exp1"
    tb.mkdir(parents=True)
    (tb / "events.out.tfevents.1.h").write_bytes(b"")
    (tmp_path / "runs" / ".hidden").mkdir()
    (tmp_path / "runs" / ".hidden" / "metrics.csv").write_text("epoch\n1\n")
    refs = R.find_runs([tmp_path, tmp_path / "missing"])
    got = {(r.name, r.source) for r in refs}
    assert got == {("exps/001", "xtask_mt"), ("a", "xtask"), ("exp1", "tensorboard")}
    with pytest.raises(XTaskError, match="not a run folder"):
        R.read_run(tmp_path / "runs")
    with pytest.raises(XTaskError, match="not found"):
        R.read_run(tmp_path / "nope")


def test_published_results():
    df = R.published_results("cityscapes")
    ours = df[df["model"].str.startswith("xtask_mt")].iloc[0]
    assert (ours["miou"], ours["pixel_acc"], ours["abs"], ours["abs_rel"]) == (66.51, 93.56, 0.0122, 19.40)
    nyu = R.published_results("nyuv2")
    assert nyu[nyu["model"].str.startswith("xtask_mt")].iloc[0]["miou"] == 30.31
    assert all("published" in s for s in R.published_results()["source"])
    with pytest.raises(XTaskError, match="no published numbers"):
        R.published_results("kitti")


def test_logger_rejects_bad_values(tmp_path):
    lg = R.RunLogger(tmp_path, tensorboard=False)
    with pytest.raises(XTaskError, match="cannot log"):
        lg.log({"loss": [1, 2]})
    with pytest.raises(XTaskError, match="non-scalar"):
        lg.log({"loss": np.zeros(3)})
