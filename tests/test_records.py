"""Per-image records (xtask_core.evaluate.records): exact metrics, schema, resume, sharding, bad files, cache."""
from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from tests import bad_files
from tests.tiny import tiny_model_config
from xtask_core import cli
from xtask_core.errors import XTaskError
from xtask_core.evaluate import record_summary as rs
from xtask_core.evaluate.metrics import SegDepthMetrics, consistency_energy, reference_metrics_loop
from xtask_core.evaluate.record_store import COLUMNS, RecordStore, load_records, parts_dir
from xtask_core.evaluate.records import (
    cache_path,
    dataset_source,
    folder_source,
    records_for,
)
from xtask_core.io.cache import file_sha256

pytestmark = pytest.mark.usefixtures("one_torch_thread")   # tests/conftest.py
SIZE = (64, 128)


def _net(seed: int):
    """Tiny XTaskNet with random BatchNorm statistics (non-degenerate logits)."""
    from xtask_core.model import XTaskNet

    torch.manual_seed(seed)
    net = XTaskNet(tiny_model_config(height=SIZE[0], width=SIZE[1]))
    g = torch.Generator().manual_seed(seed + 1)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
    return net.eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from xtask_core.checkpoint import save_checkpoint
    from xtask_core.data.synthetic import write_dataset

    base = tmp_path_factory.mktemp("records")
    write_dataset(base / "synth", n_train=0, n_val=5, seed=4242, height=SIZE[0], width=SIZE[1])
    save_checkpoint(base / "a.safetensors", _net(0))
    save_checkpoint(base / "b.safetensors", _net(5))
    return base


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XTASK_CACHE_DIR", str(tmp_path / "cache"))


def _src(files):
    return dataset_source("synthetic", files / "synth", "val", SIZE, num_classes=7)


def _numeric(df):
    return df.drop(columns=["confusion"])


def test_records_equal_the_per_image_metrics_exactly(files):
    from xtask_core.checkpoint import load_checkpoint
    from xtask_core.inference.predictor import Predictor

    ckpt = str(files / "a.safetensors")
    src = _src(files)
    df = records_for([ckpt], src, cache=False, batch_size=2, fast=False, device="cpu")
    assert len(df) == 5 and list(df["index"]) == list(range(5))
    assert list(df["image"]) == src.names and df["image"][0].startswith("leftImg8bit/val/")

    loaded = load_checkpoint(ckpt, device="cpu")
    pred = Predictor(loaded, device="cpu", precision="fp32", fast=False)
    ds = src._dataset
    split_metrics = SegDepthMetrics(7, 250)  # what evaluate_split accumulates over the split
    for start in range(0, 5, 2):  # the same batches as the records run
        items = [ds[i] for i in range(start, min(5, start + 2))]
        x = torch.stack([it["image"] for it in items])
        seg, seg_t, depth, depth_t = pred.forward(x)
        target = {k: torch.stack([it[k] for it in items]) for k in ("seg", "depth", "depth_mask")}
        split_metrics.update(seg, depth, target["seg"], target["depth"], target["depth_mask"])
        for j, it in enumerate(items):
            row = df.iloc[start + j]
            for prefix, (s, d) in (("", (seg, depth)), ("t_", (seg_t, depth_t))):
                m = SegDepthMetrics(7, 250)
                m.update(s[j:j + 1], d[j:j + 1], it["seg"][None], it["depth"][None], it["depth_mask"][None])
                r = m.compute()
                assert row[prefix + "pixel_acc"] == r["pixel_acc"]
                assert row[prefix + "miou"] == r["miou_per_image"]
                for k in ("abs", "abs_rel", "rmse", "delta1", "delta2", "delta3"):
                    assert row[prefix + k] == r[k], (prefix, k)
                if not prefix:
                    assert np.array_equal(row["confusion"], np.asarray(r["confusion"]).reshape(-1))
                    assert row["n_pixels"] == r["n_pixels"] and row["n_depth_pixels"] == r["n_depth_pixels"]
                # an independent check: the original-style loop
                ref = reference_metrics_loop(s[j:j + 1], d[j:j + 1], it["seg"][None], it["depth"][None], 7, 250,
                                             depth_mask=it["depth_mask"][None])
                assert row[prefix + "miou"] == pytest.approx(ref["miou_per_image"], rel=1e-12)
                assert row[prefix + "pixel_acc"] == pytest.approx(ref["pixel_acc"], rel=1e-12)
                assert row[prefix + "rmse"] == pytest.approx(ref["rmse"], rel=1e-9)
            e = consistency_energy(seg[j:j + 1], seg_t[j:j + 1], depth[j:j + 1], depth_t[j:j + 1])
            assert row["seg_energy"] == e["seg_kl_mean"] and row["depth_energy"] == e["depth_abs_mean"]
            p = torch.softmax(seg[j].double(), 0)
            assert row["seg_entropy"] == pytest.approx(float(-(p * p.clamp_min(1e-300).log()).sum(0).mean()),
                                                       rel=1e-5, abs=1e-7)
            lab, lab_t = seg[j].argmax(0), seg_t[j].argmax(0)
            assert row["seg_disagree"] == float((lab != lab_t).double().mean())
            assert (row["height"], row["width"]) == SIZE
    # the records add up to the split's figures (dataset-level confusion exactly)
    split = split_metrics.compute()
    assert np.array_equal(rs.confusion_matrix(df), np.asarray(split["confusion"]))
    tot = rs.totals(df)[ckpt]
    for k in ("pixel_acc", "miou", "miou_per_image", "abs", "abs_rel", "rmse", "delta1"):
        assert tot[k] == pytest.approx(split[k], rel=1e-9), k


def test_schema_of_the_file(files, tmp_path):
    out = tmp_path / "r.parquet"
    records_for([str(files / "a.safetensors"), str(files / "b.safetensors")], _src(files), out=out,
                batch_size=4, device="cpu")
    table = pq.read_table(out)
    assert [(f.name, f.type) for f in table.schema] == list(COLUMNS)
    df = load_records(out)
    assert len(df) == 10 and not parts_dir(out).exists()
    assert list(df["checkpoint"]) == [str(files / "a.safetensors")] * 5 + [str(files / "b.safetensors")] * 5
    assert all(len(v) == 49 for v in df["confusion"])
    assert (df["checkpoint_sha256"].str.len() == 64).all()
    for col in ("pixel_acc", "miou", "t_pixel_acc", "seg_energy", "seg_entropy", "seg_disagree", "depth_energy"):
        assert df[col].between(0, math.log(7) + 1e-6).all(), col


def test_resume_after_a_kill(files, tmp_path):
    ckpts = [str(files / "a.safetensors"), str(files / "b.safetensors")]
    src = _src(files)
    out = tmp_path / "r.parquet"

    class Killed(Exception):
        pass

    def die(rows):
        raise Killed  # after the first chunk was written: as a kill between two chunks

    with pytest.raises(Killed):
        records_for(ckpts, src, out=out, cache=False, batch_size=2, device="cpu", on_rows=die)
    assert not out.exists()
    partial = load_records(out)  # the finished chunk is readable meanwhile
    assert len(partial) == 4
    # a kill during a part's write leaves a hidden temporary file: it is ignored
    (parts_dir(out) / ".part-x.parquet.abc123.tmp").write_bytes(b"PAR1 half")
    seen = []
    df = records_for(ckpts, src, out=out, cache=False, batch_size=2, device="cpu", progress=seen.append)
    assert seen[-1].total == 6 and seen[-1].done == 6  # only the 6 missing rows were computed
    assert len(df) == 10 and not df.duplicated(["checkpoint", "image"]).any()
    full = records_for(ckpts, src, out=tmp_path / "full.parquet", cache=False, batch_size=2, device="cpu")
    pd.testing.assert_frame_equal(_numeric(df), _numeric(full))
    assert pq.read_table(out).equals(pq.read_table(tmp_path / "full.parquet"))
    # a third run computes nothing
    seen.clear()
    records_for(ckpts, src, out=out, cache=False, batch_size=2, device="cpu", progress=seen.append)
    assert all(p.total == 0 for p in seen)


def _torchrun() -> list[str] | None:
    exe = Path(sys.executable).with_name("torchrun")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("torchrun")
    return [found] if found else None


@pytest.mark.slow
def test_two_processes_write_the_single_process_file(files, tmp_path):
    runner = _torchrun()
    if runner is None:
        pytest.skip("torchrun not installed")
    args = ["eval", "--checkpoint", str(files / "a.safetensors"), "--checkpoint", str(files / "b.safetensors"),
            "--dataset", "synthetic", "--input_path", str(files / "synth"), "--split", "val", "--cpu",
            "-b", "1", "--no-cache"]
    env = dict(os.environ, XTASK_NO_TQDM="1", OMP_NUM_THREADS="1", XTASK_CACHE_DIR=str(tmp_path / "cache"))
    two = tmp_path / "two.parquet"
    proc = subprocess.run([*runner, "--standalone", "--nproc_per_node", "2", "-m", "xtask_core", *args,
                           "--per-image", str(two)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert proc.stdout.count("per-image records:") == 1  # rank 0 only talks
    one = tmp_path / "one.parquet"
    assert cli.main([*args, "--per-image", str(one)]) == 0
    assert pq.read_table(two).equals(pq.read_table(one))
    assert not parts_dir(two).exists()


def _bad_folder(root: Path, files: Path) -> Path:
    sub = root / "photos" / "nested"
    sub.mkdir(parents=True)
    imgs = sorted((files / "synth" / "leftImg8bit" / "val").rglob("*.png"))
    shutil.copy(imgs[0], root / "photos" / "a.png")
    from PIL import Image

    Image.open(imgs[1]).convert("RGB").save(sub / "b.jpg", quality=90)
    (root / "photos" / "notes.txt").write_text("not an image")
    (sub / "empty.png").write_bytes(b"")
    (sub / "bomb.png").write_bytes(bad_files.png_claiming(100_000, 100_000))
    (root / "photos" / ".hidden.png").write_bytes(b"junk")  # hidden files are not listed
    return root / "photos"


def test_unlabelled_folder_with_bad_files(files, tmp_path):
    folder = _bad_folder(tmp_path, files)
    src = folder_source(folder, SIZE)
    assert src.names == ["a.png", "nested/b.jpg", "nested/bomb.png", "nested/empty.png", "notes.txt"]
    warnings: list[str] = []
    df = records_for([str(files / "a.safetensors")], src, out=tmp_path / "f.parquet", batch_size=2,
                     device="cpu", warn=warnings.append)
    assert list(df["image"]) == ["a.png", "nested/b.jpg"] and df.attrs["skipped"] == 3
    assert len(warnings) == 3 and all("\n" not in w for w in warnings)
    assert any("bomb.png" in w and "too large" in w for w in warnings)
    assert df[["pixel_acc", "miou", "abs", "t_rmse"]].isna().all().all()
    assert (df["n_pixels"] == 0).all() and all(len(v) == 0 for v in df["confusion"])
    assert df[["seg_energy", "depth_energy", "seg_entropy", "seg_disagree"]].notna().all().all()
    assert list(df["height"]) == [SIZE[0]] * 2


def test_cli_folder_warns_once_per_file_and_counts(files, tmp_path, capsys):
    folder = _bad_folder(tmp_path, files)
    out = folder / "records.parquet"  # written inside the folder: not taken for an input
    code = cli.main(["eval", "--checkpoint", str(files / "a.safetensors"), "--images", str(folder),
                     "--per-image", str(out), "--cpu"])
    err = capsys.readouterr()
    assert code == 0
    assert err.err.count("xtask: warning: skipped") == 3
    assert "3 file(s) skipped" in err.out and "2 images" in err.out
    code = cli.main(["eval", "--checkpoint", str(files / "a.safetensors"), "--images", str(folder),
                     "--per-image", str(out), "--cpu"])  # rerun: still one warning per bad file
    assert code == 0 and capsys.readouterr().err.count("warning") == 3
    assert len(load_records(out)) == 2


def test_zero_usable_images_is_an_error(files, tmp_path):
    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / "a.txt").write_text("hello")
    (folder / "b.png").write_bytes(b"")
    with pytest.raises(XTaskError, match="no usable images"):
        records_for([str(files / "a.safetensors")], folder_source(folder, SIZE), device="cpu", warn=lambda m: None)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(XTaskError, match="no files"):
        folder_source(empty, SIZE)


def test_cache_is_reused_and_keyed_by_the_checkpoint_bytes(files, tmp_path):
    from xtask_core.checkpoint import save_checkpoint

    src = _src(files)
    ckpt = tmp_path / "c.safetensors"
    shutil.copy(files / "a.safetensors", ckpt)
    key_a = cache_path(file_sha256(ckpt), src)
    seen = []
    first = records_for([str(ckpt)], src, batch_size=4, device="cpu")
    assert key_a.is_file() and not parts_dir(key_a).exists()
    again = records_for([str(ckpt)], src, batch_size=4, device="cpu", progress=seen.append)
    assert all(p.total == 0 for p in seen)  # nothing recomputed
    pd.testing.assert_frame_equal(_numeric(first), _numeric(again))
    # another label for the same bytes still hits the cache
    other = tmp_path / "same-bytes.safetensors"
    shutil.copy(ckpt, other)
    seen.clear()
    df = records_for([str(other)], src, batch_size=4, device="cpu", progress=seen.append)
    assert all(p.total == 0 for p in seen) and set(df["checkpoint"]) == {str(other)}
    # new bytes, new key
    save_checkpoint(ckpt, _net(9), overwrite=True)
    key_b = cache_path(file_sha256(ckpt), src)
    assert key_b != key_a
    # input size and source are in the key too
    assert cache_path(file_sha256(ckpt), dataset_source("synthetic", files / "synth", "val", (64, 64))) != key_b
    seen.clear()
    records_for([str(ckpt)], src, batch_size=4, device="cpu", progress=seen.append)
    assert seen[-1].total == 5 and key_b.is_file()


def test_truncated_and_foreign_records_files_are_one_line_errors(files, tmp_path, capsys):
    good = tmp_path / "good.parquet"
    records_for([str(files / "a.safetensors")], _src(files), out=good, cache=False, device="cpu")
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(bad_files.truncated(good.read_bytes(), 0.6))
    with pytest.raises(XTaskError) as info:
        load_records(cut)
    assert "truncated" in str(info.value) and "\n" not in str(info.value)
    foreign = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"a": [1, 2]}), foreign)
    with pytest.raises(XTaskError, match="another schema"):
        load_records(foreign)
    # the CLI refuses to resume into either, in one line, and leaves them as they were
    for bad in (cut, foreign):
        before = bad.read_bytes()
        code = cli.main(["eval", "--checkpoint", str(files / "a.safetensors"), "--dataset", "synthetic",
                         "--input_path", str(files / "synth"), "--per-image", str(bad), "--cpu"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and err.startswith("xtask: error:")
        assert bad.read_bytes() == before
    # a file made for another source is refused too
    store = RecordStore(good, {"kind": "folder", "root": "/elsewhere"})
    with pytest.raises(XTaskError, match="another source"):
        store.read()


def test_summary_helpers():
    df = pd.DataFrame({
        "checkpoint": ["A"] * 4 + ["B"] * 4,
        "image": ["i0", "i1", "i2", "i3"] * 2, "index": [0, 1, 2, 3] * 2,
        "pixel_acc": [0.9, 0.5, 0.7, np.nan, 0.8, 0.7, 0.6, 0.2],
        "miou": [0.8, 0.4, 0.6, np.nan, 0.7, 0.1, 0.6, 0.1],
        "seg_energy": [0.1, 0.9, 0.3, 0.5, 0.1, 0.2, 0.3, 0.9],
        "seg_entropy": [0.4, 0.3, 0.2, 0.1, 0.4, 0.3, 0.2, 0.1],
        "confusion": [np.array([5, 1, 2, 0]), np.array([0, 0, 3, 4]), np.array([1, 4, 0, 1]), np.zeros(0, np.int64),
                      np.array([6, 0, 0, 1])] * 1 + [np.array([1, 0, 0, 1])] * 3,
    })
    # precision at k by hand
    assert rs.precision_at_k([0.1, 0.9, 0.3], [0.1, 0.5, 0.3], 2) == 1.0
    assert rs.precision_at_k([0.9, 0.1, 0.3], [0.1, 0.5, 0.3], 1) == 0.0
    assert math.isnan(rs.precision_at_k([1, 2], [1, 2], 3))
    table = rs.score_vs_error(df, k=2)
    row = table[(table.checkpoint == "A") & (table.score == "seg_energy") & (table.error == "pixel_error")].iloc[0]
    assert row["n"] == 3 and row["spearman"] == pytest.approx(1.0) and row["precision_at_k"] == 1.0
    row = table[(table.checkpoint == "B") & (table.score == "seg_entropy") & (table.error == "pixel_error")].iloc[0]
    assert row["spearman"] == pytest.approx(-1.0) and row["precision_at_k"] == 0.0
    delta = rs.checkpoint_delta(df, "miou", "A", "B")
    assert list(delta["image"][:3]) == ["i1", "i0", "i2"] and delta["delta"][0] == pytest.approx(-0.3)
    assert math.isnan(delta["delta"].iloc[-1])
    ranked = rs.rank_by_confusion(df[df.checkpoint == "A"], 1, 0)
    assert list(ranked["image"]) == ["i1", "i0"] and list(ranked["pixels"]) == [3, 2]
    assert ranked["share"][0] == pytest.approx(3 / 7)
    assert rs.confusion_matrix(df[df.checkpoint == "A"]).tolist() == [[6, 5], [5, 5]]
    with pytest.raises(XTaskError):
        rs.rank_by_confusion(df, 2, 0)


def test_single_task_checkpoint_is_refused_in_one_line(files, tmp_path):
    from xtask_core.checkpoint import save_checkpoint
    from xtask_core.model.stl import STLNet

    torch.manual_seed(0)
    cfg = tiny_model_config(height=SIZE[0], width=SIZE[1], task="segmt")
    path = save_checkpoint(tmp_path / "stl.safetensors", STLNet(cfg).eval())
    with pytest.raises(XTaskError, match="single-task baseline"):
        records_for([str(path)], _src(files), cache=False, batch_size=2, device="cpu")
