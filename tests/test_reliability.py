"""Reliability and security, end to end: real bad files through the public surfaces.

Every bad file is written by the test (see ``tests/bad_files.py``) and handed to the real
``python -m xtask_core`` command in a subprocess, or to the real readers / job runner: no
mocks. For each the contract is the same: a non-zero exit, ONE line on stderr, no traceback,
nothing executed, nothing written over. Sizes are tiny (64×128 synthetic scenes, ResNet18
with 8-wide decoders and 4-wide TTNets, one torch thread). The module costs ~85 CPU-seconds
(about a minute of wall time on two free cores; the bad-checkpoint commands run two at a
time); most of it is subprocess start-up (torch import) and five short trainings.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests import bad_files as bf
from tests.tiny import tiny_model_config
from xtask_core import cli
from xtask_core.errors import XTaskError
from xtask_core.train import finetune, jobs

ENV = dict(os.environ, OMP_NUM_THREADS="1", XTASK_NO_TQDM="1", PYTHONUNBUFFERED="1")
ENV.pop("XTASK_DEBUG", None)  # the one-line contract is what users get
H, W = 64, 128
ARCH = ["--enc_layers", "18", "--mid_features", "8", "--ttnet_features", "4",
        "--height", str(H), "--width", str(W)]
TINY = [*ARCH, "--cpu", "--precision", "fp32", "--workers", "0"]
TIMEOUT_S = 240


# --------------------------------------------------------------------------- helpers
def xtask(*args, timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess:
    """Run ``python -m xtask_core ARGS`` as a user would; capture both streams."""
    return subprocess.run([sys.executable, "-m", "xtask_core", *map(str, args)], capture_output=True,
                          text=True, env=ENV, timeout=timeout)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Non-zero exit, exactly one non-empty stderr line starting 'xtask: error:', no traceback,
    and the line contains every needle (a needle 'a|b' matches either). Returns the line."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("xtask: error: "), line
    for needle in needles:
        assert any(alt in line for alt in needle.split("|")), f"{needle!r} not in {line!r}"
    return line


def snapshot(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under ``folder``."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def csv_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    assert cli.main(["synth", "--out", str(root), "--n-train", "6", "--n-val", "2",
                     "--height", str(H), "--width", str(W), "--seed", "5"]) == 0
    return root


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    """A valid xtask checkpoint of the tiny 64×128 model (random weights are enough here)."""
    import torch

    from xtask_core.checkpoint import save_checkpoint
    from xtask_core.model import XTaskNet

    torch.manual_seed(0)
    model = XTaskNet(tiny_model_config(height=H, width=W)).eval()
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", model, None)


@pytest.fixture(scope="module")
def good_png(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "street.png"
    path.write_bytes(bf.encode(Image.fromarray(bf.noise_rgb(48, 80)), "PNG"))
    return path


@pytest.fixture(scope="module")
def trained_run(synth_root, tmp_path_factory) -> Path:
    """One finished epoch of ``xtask train`` (2 steps), run as a subprocess. Tests copy it."""
    run = tmp_path_factory.mktemp("runs") / "base"
    proc = xtask("train", "--dataset", "synthetic", "--input_path", synth_root, "--out", run,
                 "--epochs", "1", "--batch_size", "3", *TINY)
    assert proc.returncode == 0, proc.stderr
    return run


# =========================================================================== images
BAD_IMAGES = {
    # name: (bytes factory, words the error must contain)
    "random.png": (lambda: bf.random_bytes(4096, seed=1), "not an image"),
    "empty.png": (lambda: b"", "empty file"),
    "cut.png": (lambda: bf.truncated(bf.encode(Image.fromarray(bf.noise_rgb(64, 64)), "PNG")),
                "truncated or corrupt"),
    "cut.jpg": (lambda: bf.truncated(bf.encode(Image.fromarray(bf.noise_rgb(64, 64)), "JPEG")),
                "truncated or corrupt"),
    "notes.jpg": (lambda: bf.TEXT, "not an image"),
    "bomb.png": (lambda: bf.png_claiming(50_000, 50_000), "image too large"),
    "dot.png": (lambda: bf.encode(Image.new("RGB", (1, 1)), "PNG"), "image too small"),
}


@pytest.mark.parametrize("name", sorted(BAD_IMAGES))
def test_predict_refuses_bad_image_in_one_line(name, tiny_ckpt, tmp_path):
    make, needle = BAD_IMAGES[name]
    img = tmp_path / name
    img.write_bytes(make())
    out = tmp_path / "out"
    t0 = time.monotonic()
    proc = xtask("predict", "--checkpoint", tiny_ckpt, "--image", img, "--out", out, "--cpu")
    line = assert_one_line_error(proc, needle, name)
    # The bomb's header claims 2.5 GP: refused from the header, so no 7.5 GB buffer was made
    # and it took no longer than any other refusal.
    assert time.monotonic() - t0 < 60, line
    assert not out.exists(), "nothing may be written for a refused image"


def test_bad_image_among_good_ones_writes_nothing(tiny_ckpt, good_png, tmp_path):
    """Several --image: the bad third file is found before any output is written."""
    bad = tmp_path / "zz_cut.png"
    bad.write_bytes(bf.truncated(good_png.read_bytes()))
    second = tmp_path / "second.png"
    shutil.copy(good_png, second)
    out = tmp_path / "out"
    proc = xtask("predict", "--checkpoint", tiny_ckpt, "--image", good_png, second, bad, "--out", out,
                 "--cpu")
    assert_one_line_error(proc, "truncated or corrupt", "zz_cut.png")
    assert not out.exists()


def test_predict_accepts_awkward_but_valid_images(tiny_ckpt, good_png, tmp_path):
    """CMYK, 16-bit, palette, EXIF-rotated, and a PNG named .jpg: decoded by content, converted
    explicitly, oriented upright. One CLI run predicts all five (one model load)."""
    files = {
        "cmyk.jpg": bf.cmyk_jpeg(40, 56),
        "grey16.png": bf.png16(48, 64, 257 * 100),         # 16-bit 25700 → 8-bit exactly 100
        "palette.png": bf.palette_png(32, 64),
        "rotated.jpg": bf.exif_rotated_jpeg(32, 48),        # stored 32×48, upright 48×32
        "disguised.jpg": good_png.read_bytes(),              # a PNG with a .jpg name
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    out = tmp_path / "out"
    proc = xtask("predict", "--checkpoint", tiny_ckpt, "--image", *[tmp_path / n for n in files],
                 "--out", out, "--cpu", "--precision", "fp32")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr

    def result(stem):
        summary = json.loads((out / stem / "summary.json").read_text())
        fed = np.asarray(Image.open(out / stem / "input.png").convert("RGB")).astype(int)
        assert fed.shape == (H, W, 3) and summary["model_input_size"] == [H, W]
        assert np.load(out / stem / "depth.npy").shape == (H, W)
        return summary["image_size"], fed

    size, fed = result("cmyk")
    assert size == [40, 56]
    assert np.abs(fed.mean(axis=(0, 1)) - [255, 0, 255]).max() < 12      # magenta, not inverted
    size, fed = result("grey16")
    assert size == [48, 64] and (fed == 100).all()                       # /257, not >>8 or clipped
    size, fed = result("palette")
    assert size == [32, 64]
    assert (fed[:, :56] == [255, 0, 0]).all() and (fed[:, 72:] == [0, 0, 255]).all()
    size, fed = result("rotated")
    assert size == [48, 32]                                              # EXIF turn applied
    top, bottom = fed[:24].mean(axis=(0, 1)), fed[40:].mean(axis=(0, 1))
    assert top[0] > 200 and top[2] < 60 and bottom[2] > 200 and bottom[0] < 60
    size, _ = result("disguised")
    assert size == [48, 80]


# =========================================================================== checkpoints
def _wrong_arch(state):
    """Drop one decoder weight and widen one BN: what a checkpoint of another model looks like."""
    import torch

    del state["decoder_depth.conv6.0.weight"]
    state["decoder_segmt.conv1.conv1.1.weight"] = torch.ones(9)


def _nan_weights(state):
    state["trans_s2d.final_conv.weight"][0, 0, 0, 0] = float("nan")
    state["pretrained_encoder.layer0.0.weight"][0, 0, 0, 0] = float("inf")


def _write_bad_checkpoint(kind: str, tmp_path: Path, tiny_ckpt: Path, marker: Path) -> Path:
    """Write the bad checkpoint ``kind`` under tmp_path and return its path."""
    if kind == "malicious-pickle":
        p = tmp_path / "model.pth"
        p.write_bytes(bf.malicious_pickle(marker))
    elif kind == "malicious-torch-zip":
        p = bf.malicious_torch_zip(tmp_path / "evil.pt", marker)
    elif kind == "zero-bytes":
        p = tmp_path / "empty.safetensors"
        p.write_bytes(b"")
    elif kind == "truncated-safetensors":
        p = tmp_path / "cut.safetensors"
        p.write_bytes(bf.truncated(tiny_ckpt.read_bytes(), 0.6))
    elif kind == "random-bytes":
        p = tmp_path / "noise.pth"
        p.write_bytes(bf.random_bytes(100_000, seed=7))
    elif kind == "whole-model":
        from xtask_core.checkpoint import load_checkpoint

        p = bf.whole_model_pickle(tmp_path / "whole.pt", load_checkpoint(tiny_ckpt, device="cpu").model)
    elif kind == "wrong-architecture":
        p = bf.rewrite_safetensors(tiny_ckpt, tmp_path / "other.safetensors", _wrong_arch)
    elif kind == "nan-weights":
        p = bf.rewrite_safetensors(tiny_ckpt, tmp_path / "diverged.safetensors", _nan_weights)
    elif kind == "over-size-cap":
        # A sparse 3 GB file: no disk used, and the cap must refuse it before reading a byte.
        p = tmp_path / "huge.safetensors"
        with open(p, "wb") as fh:
            fh.write(tiny_ckpt.read_bytes()[:4096])
            fh.truncate(3 * 1024 ** 3)
    else:
        raise AssertionError(kind)
    return p


SYSTEM = f"{os.system.__module__}.system"   # what the payload imports: posix.system on Linux
BAD_CHECKPOINTS = {
    "malicious-pickle": (SYSTEM, "nothing was executed"),
    "malicious-torch-zip": (SYSTEM, "nothing was executed"),
    "zero-bytes": ("empty (0 bytes)",),
    "truncated-safetensors": ("truncated or corrupt",),
    "random-bytes": ("not a checkpoint|corrupt",),
    "whole-model": ("pickled whole model", "xtask_core.model", "state_dict()"),
    "wrong-architecture": ("does not match the model architecture", "decoder_depth.conv6.0.weight",
                           "decoder_segmt.conv1.conv1.1.weight"),
    "nan-weights": ("NaN or Inf", "trans_s2d.final_conv.weight", "pretrained_encoder.layer0.0.weight"),
    "over-size-cap": ("limit",),
}


def test_malicious_payload_is_live(tmp_path):
    """Control: the test pickle really runs its command when unpickled the unsafe way, so the
    refusals below prove something."""
    marker = tmp_path / "pwned"
    pickle.loads(bf.malicious_pickle(marker))   # noqa: S301 - deliberately, on our own payload
    assert marker.exists()


@pytest.fixture(scope="module")
def checkpoint_refusals(tiny_ckpt, good_png, tmp_path_factory):
    """Write every bad checkpoint and start ``xtask predict`` on each, two at a time in the
    background (each start pays ~2 s of torch import); the tests below collect one each."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=2)
    jobs_ = {}
    for kind in BAD_CHECKPOINTS:
        folder = tmp_path_factory.mktemp(kind)
        marker = folder / "pwned"
        ckpt = _write_bad_checkpoint(kind, folder, tiny_ckpt, marker)
        out = folder / "out"
        future = pool.submit(xtask, "predict", "--checkpoint", ckpt, "--image", good_png, "--out", out,
                             "--cpu")
        jobs_[kind] = (future, marker, out)
    yield jobs_
    pool.shutdown(wait=True)


@pytest.mark.parametrize("kind", list(BAD_CHECKPOINTS))
def test_bad_checkpoint_is_refused_in_one_line(kind, checkpoint_refusals):
    future, marker, out = checkpoint_refusals[kind]
    assert_one_line_error(future.result(timeout=TIMEOUT_S), *BAD_CHECKPOINTS[kind])
    assert not marker.exists(), "the pickle's payload ran"
    assert not out.exists()


# =========================================================================== training runs
@pytest.mark.parametrize("sig", ["SIGINT", "SIGKILL"])
def test_interrupted_train_resumes_with_consistent_metrics(sig, synth_root, tmp_path):
    """Kill ``xtask train`` in the middle of epoch 2, then ``--resume``: it restarts epoch 2
    from last.state.pt and metrics.csv ends with every step exactly once, no torn rows."""
    run = tmp_path / "run"
    argv = [sys.executable, "-m", "xtask_core", "train", "--dataset", "synthetic", "--input_path",
            str(synth_root), "--out", str(run), "--epochs", "2", "--batch_size", "1",
            "--log_every", "1", "--limit_val", "1", *TINY]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.monotonic() + TIMEOUT_S
    sent_at = None
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            # 6 steps per epoch: step 7+ logged means epoch 1 is saved and epoch 2 under way.
            try:
                step = json.loads((run / "progress.json").read_text()).get("step", 0)
            except (OSError, ValueError):
                step = 0
            if step >= 7 and (run / "last.state.pt").exists():
                proc.send_signal(getattr(signal, sig))
                sent_at = step
                break
            time.sleep(0.01)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert sent_at is not None, f"training ended before it could be interrupted: {err}"
    progress = json.loads((run / "progress.json").read_text())
    assert progress["step"] < 12, "the signal came too late to interrupt epoch 2"
    if sig == "SIGINT":
        assert proc.returncode == 130
        assert err.strip() == "xtask: interrupted"
        assert progress["status"] == "cancelled" and "--resume" in progress["message"]
    else:
        assert proc.returncode == -signal.SIGKILL
        assert progress["status"] == "running"      # nobody could write the end: a dead job
    assert not list(run.glob(".*.tmp")), "a half-written checkpoint was left behind"

    resumed = xtask("train", "--out", run, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "[resume]" in resumed.stdout
    header, rows = csv_rows(run / "metrics.csv")
    assert all(len(r) == len(header) for r in rows), "torn or garbled row"
    col = {name: i for i, name in enumerate(header)}
    steps = [int(r[col["step"]]) for r in rows if r[col["kind"]] == "step"]
    assert steps == list(range(1, 13)), f"steps logged: {steps}"
    epochs = [(int(r[col["epoch"]]), int(r[col["step"]])) for r in rows if r[col["kind"]] == "epoch"]
    assert epochs == [(1, 6), (2, 12)]
    assert all(np.isfinite(float(r[col["train_loss"]])) for r in rows)
    assert json.loads((run / "progress.json").read_text())["status"] == "done"

    from xtask_core.checkpoint import load_checkpoint, load_train_state

    state = load_train_state(run / "last.state.pt")
    assert (state["epoch"], state["step"]) == (2, 12)
    assert load_checkpoint(run / "best.safetensors", device="cpu").meta["training"]["epochs"] in (1, 2)


def test_train_refuses_a_folder_with_checkpoints_byte_identical(trained_run, synth_root):
    before = snapshot(trained_run)
    proc = xtask("train", "--dataset", "synthetic", "--input_path", synth_root, "--out", trained_run,
                 "--epochs", "1", "--batch_size", "3", *TINY)
    assert_one_line_error(proc, "already has checkpoints", "--resume")
    # every file, progress.json included: the finished run must not turn "failed"
    assert snapshot(trained_run) == before


def test_nan_loss_stops_with_a_message_and_saves_nothing(trained_run, synth_root, tmp_path):
    fresh = tmp_path / "fresh"
    proc = xtask("train", "--dataset", "synthetic", "--input_path", synth_root, "--out", fresh,
                 "--epochs", "1", "--batch_size", "3", "--lr", "1e30", *TINY)
    assert_one_line_error(proc, "training diverged", "NaN")
    assert not [p.name for p in fresh.iterdir() if "safetensors" in p.name or p.suffix == ".pt"]
    progress = json.loads((fresh / "progress.json").read_text())
    assert progress["status"] == "failed" and "diverged" in progress["message"]

    # Resuming a good run with an absurd --lr: the new lr must be used (it diverges) and the
    # existing checkpoints and metrics must come out untouched.
    run = tmp_path / "resumed"
    shutil.copytree(trained_run, run)
    keep = {n: h for n, h in snapshot(run).items() if n.endswith((".safetensors", ".pt", ".csv"))}
    proc = xtask("train", "--out", run, "--resume", "--epochs", "2", "--lr", "1e30")
    assert_one_line_error(proc, "training diverged")
    assert {n: h for n, h in snapshot(run).items() if n in keep} == keep


# =========================================================================== paths
@pytest.mark.parametrize("typed, expected", [
    ("../../etc/passwd", "etc-passwd"),
    ("/abs/path", "abs-path"),
    ("..", None),
    ("run\x00name", "run-name"),
    ("my run (v2)", "my-run-v2"),
    (".hidden", "hidden"),
    ("a/../../b", "a-..-..-b"),   # dots inside one name are harmless: no separator survives
])
def test_run_names_typed_in_the_app_cannot_escape(typed, expected, tmp_path):
    root = tmp_path / "runs"
    if expected is None:
        with pytest.raises(XTaskError, match="no usable characters"):
            jobs.new_run_dir(root, typed)
        return
    assert jobs.sanitize_run_name(typed) == expected
    made = jobs.new_run_dir(root, typed)
    assert made.parent == root.resolve() and made.name == expected and "/" not in made.name
    assert jobs.new_run_dir(root, typed) != made      # never reuses an existing run


def test_symlinked_run_folder_outside_the_root_is_refused(tiny_ckpt, synth_root, tmp_path):
    from xtask_core.checkpoint import load_checkpoint

    root, outside = tmp_path / "runs", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    args = finetune.finetune_args(tiny_ckpt, load_checkpoint(tiny_ckpt, device="cpu").config, synth_root)
    with pytest.raises(XTaskError, match="outside the runs folder"):
        jobs.start_job(args, root / "link" / "job", runs_root=root, owner="path-test")
    with pytest.raises(XTaskError, match="outside the runs folder"):
        jobs.start_job(args, root / ".." / "elsewhere" / "job2", runs_root=root, owner="path-test")
    assert list(outside.iterdir()) == [] and not (root / ".jobs").exists()


# =========================================================================== logs
def test_each_broken_log_source_errors_alone(trained_run, tmp_path):
    from xtask_core.train import run_readers as runlog

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    good, _ = runlog.read_metrics_csv(run / "metrics.csv")
    n = len(good)

    # still training: a half-written last line is not a row, for the dashboard nor the job page
    with open(run / "metrics.csv", "a") as fh:
        fh.write("epoch,2,4,0.0001,2.3")
    r = runlog.read_run(run)
    assert len(r.metrics) == n and r.errors == []
    assert len(jobs.read_metrics(run)) == n
    assert np.isfinite(jobs.read_metrics(run)["val_loss"]).all()

    # malformed config.json and a garbage TensorBoard file: each reported, metrics still load
    (run / "config.json").write_text('{"train": {"lr": 0.1,')
    (run / "events.out.tfevents.123.garbage").write_bytes(bf.random_bytes(3000, seed=3))
    r = runlog.read_run(run)
    assert len(r.metrics) == n
    assert any("config.json" in e for e in r.errors), r.errors
    tb, tb_errors = runlog.read_tensorboard(run)
    assert "val_loss" in tb.columns and any("garbage" in e for e in tb_errors), tb_errors
    assert all("\n" not in e for e in r.errors + tb_errors)

    # an empty metrics.csv (crashed before the first row): one error, the config still there
    (run / "config.json").write_text(json.dumps({"name": "ok"}))
    (run / "metrics.csv").write_bytes(b"")
    r = runlog.read_run(run)
    assert r.metrics.empty and r.config == {"name": "ok"}
    assert any("empty" in e for e in r.errors), r.errors


def test_pickled_npy_in_original_folder_is_refused_not_run(tmp_path):
    from xtask_core.train import run_readers as runlog

    marker = tmp_path / "pwned"
    model = tmp_path / "exps" / "003" / "model"
    model.mkdir(parents=True)
    np.save(model / "tr_losses.npy", np.array([bf.CreatesMarker(marker)], dtype=object),
            allow_pickle=True)
    np.save(model / "va_losses.npy", np.array([0.9, 0.7, 0.6]))
    (model / "half.npy").write_bytes(b"\x93NUMPY")  # not read: the original names only
    r = runlog.read_run(model.parent)
    assert not marker.exists()
    assert list(r.metrics["val_loss"]) == [0.9, 0.7, 0.6]
    assert any("tr_losses.npy" in e and "pickle" in e for e in r.errors), r.errors


# =========================================================================== concurrency
def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


def test_threads_predict_on_a_shared_model_while_a_finetune_job_runs(tiny_ckpt, synth_root, tmp_path):
    """The app's situation: one cached model, several sessions predicting at once, and a
    fine-tune job of the same checkpoint running in the background."""
    import torch

    from xtask_core.checkpoint import load_checkpoint
    from xtask_core.inference.predictor import Predictor

    base_hash = hashlib.sha256(tiny_ckpt.read_bytes()).hexdigest()
    loaded = load_checkpoint(tiny_ckpt, device="cpu")
    before = {k: v.detach().clone() for k, v in loaded.model.state_dict().items()}

    root = tmp_path / "runs"
    run_dir = jobs.new_run_dir(root, "finetune")
    args = finetune.finetune_args(tiny_ckpt, loaded.config, synth_root, steps=100_000, batch_size=2,
                              limit_val=1, precision="fp32")
    job = jobs.start_job(args, run_dir, owner="session-a", runs_root=root, env={"OMP_NUM_THREADS": "1"})
    try:
        # a double click: one job only, and the second folder stays empty
        second = jobs.new_run_dir(root, "finetune")
        with pytest.raises(XTaskError, match="already running"):
            jobs.start_job(args, second, owner="session-a", runs_root=root)
        assert list(second.iterdir()) == []
        # a page reload finds the running job again from disk
        again = jobs.find_active_job("session-a", root)
        assert again is not None and again.pid == job.pid and again.run_dir == run_dir

        rng = np.random.default_rng(0)
        images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                  for h, w in ((64, 128), (100, 150), (37, 61), (480, 640))]
        predictors = [Predictor(loaded, device="cpu", precision="fp32", fast=True),
                      Predictor(loaded, device="cpu", precision="fp32", fast=False)]
        reference = [[p.predict(im) for im in images] for p in predictors]

        # the job must really be training (not just importing torch) while we predict
        deadline = time.monotonic() + TIMEOUT_S
        while jobs.poll(run_dir).step < 1:
            assert not jobs.poll(run_dir).finished, jobs.poll(run_dir).log_tail
            assert time.monotonic() < deadline, "fine-tune job never started training"
            time.sleep(0.2)
        step_before = jobs.poll(run_dir).step

        try:   # reset the peak-RSS counter (VmHWM) so it measures only what follows
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass
        rss0 = _rss_kb("VmRSS")
        counts, errors, mid_rss = [0, 0, 0, 0], [], []
        n_total, lock = 200, threading.Lock()

        def worker(t: int) -> None:
            pred = predictors[t % 2]
            try:
                for i in range(n_total // 4):
                    k = (t + i) % len(images)
                    got = pred.predict(images[k])
                    ref = reference[t % 2][k]
                    np.testing.assert_allclose(got.seg_logits, ref.seg_logits, rtol=1e-5, atol=1e-5)
                    np.testing.assert_allclose(got.depth_t, ref.depth_t, rtol=1e-5, atol=1e-5)
                    counts[t] += 1
                    with lock:
                        if sum(counts) == 40:
                            mid_rss.append(_rss_kb("VmRSS"))
            except Exception as err:  # noqa: BLE001 - re-raised in the main thread
                errors.append(err)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
        t0 = time.monotonic()
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=TIMEOUT_S)
        seconds = time.monotonic() - t0
        assert not errors, errors[0]
        assert sum(counts) == n_total
        rss1, hwm = _rss_kb("VmRSS"), _rss_kb("VmHWM")
        peak_growth_mb = (max(hwm, rss1) - rss0) / 1024
        steady_growth_mb = (rss1 - mid_rss[0]) / 1024 if mid_rss else 0.0
        print(f"\n[reliability] {n_total} predictions in 4 threads in {seconds:.1f} s during a fine-tune; "
              f"predicting process RSS {rss0 / 1024:.0f} MB -> peak {max(hwm, rss1) / 1024:.0f} MB "
              f"(+{peak_growth_mb:.1f} MB), +{steady_growth_mb:.1f} MB over the last 160 predictions")
        assert peak_growth_mb < 300, peak_growth_mb
        assert steady_growth_mb < 40, f"memory keeps growing: +{steady_growth_mb:.1f} MB"

        status = jobs.poll(run_dir)
        assert status.state == "running" and status.step > step_before, \
            "the fine-tune did not run alongside the predictions"
    finally:
        final = jobs.cancel(run_dir, grace_s=20)

    # the shared model is untouched: same weights, same BN statistics, still in eval mode
    after = loaded.model.state_dict()
    assert after.keys() == before.keys()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert not changed, changed[:5]
    assert not loaded.model.training
    # cancel stopped and freed the process, released the lock, and kept the base checkpoint
    assert final.state == "cancelled" and not final.alive
    assert not Path(f"/proc/{job.pid}").exists(), "cancelled trainer still has a process entry"
    assert jobs.find_active_job("session-a", root) is None
    assert hashlib.sha256(tiny_ckpt.read_bytes()).hexdigest() == base_hash
    if (run_dir / "last.safetensors").exists():   # whatever the job saved is a whole checkpoint
        load_checkpoint(run_dir / "last.safetensors", device="cpu")
