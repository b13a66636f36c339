"""The ``finetune_job`` figure of ``xtask bench``: the Fine-tune page's job at its defaults,
click to done, against a plain loop of the same steps measured in the same run.

The job is started the way the page starts it (the code's own ``finetune_args`` with the page's
defaults: 30 steps, batch 2, λ1 = λ2 = 0.01, lr 1e-4, 8 validation images, on the small
synthetic street set rendered at the model's size; then ``jobs.start_job`` and ``jobs.poll``
until the job is finished). The driver runs in a child process whose working directory is the
source tree, so the same figure can time an older checkout of the code (a ``git worktree``,
``XTASK_BENCH_BASELINE_TREE``) on the same data, alternated with the current one.

Each job also reports the CPU seconds of its process (all threads, through the driver's
``RUSAGE_CHILDREN``) and the plain loop its own: on a shared machine, where other processes
stretch wall time, CPU seconds say what the work cost.

An *instrumented* run (:data:`_INSTRUMENT`) also says where the time goes: process start (launch to
the first line of Python), imports, set-up (model, checkpoint, data sets, path measurement),
data, steps, validation, checkpoint writes, and the rest (logging, progress, exit). It wraps the
trainer's methods by name where they exist (both the current and the older trainer), each
timer counting its own time only (nested timers are subtracted from their parent's).

The plain loop is the floor: the checkpoint loaded, a loader over the same training images,
``steps`` × :func:`~xtask_core.train.step.train_step` in fp32, contiguous, nothing else.
"""
from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from xtask_core.config import TrainConfig

__all__ = ["PAGE_DEFAULTS", "time_job", "plain_loop_s", "bench_finetune", "split_parts"]

PAGE_DEFAULTS = {"steps": 30, "batch_size": 2, "lambda_1": TrainConfig.lambda_1, "lambda_2": TrainConfig.lambda_2,
                 "lr": 1e-4, "limit_val": 8, "n_train": 32, "n_val": 8}
POLL_S = 0.1   # the page polls every second; the figure polls faster so it measures the job, not the poll

# The driver: run with ``python -c`` in the source tree (so that tree's xtask_core is imported);
# argv: checkpoint, data root, runs root, launcher ('' = this Python), page defaults as JSON.
_DRIVER = r"""
import json, os, resource, sys, time
try:
    from xtask_core.train.finetune import finetune_args
except ImportError:          # older trees kept the recipe in jobs.py
    from xtask_core.train.jobs import finetune_args
from xtask_core.checkpoint import load_checkpoint
from xtask_core.train import jobs

ckpt, data_root, runs_root, launcher, d = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5])
cfg = load_checkpoint(ckpt, device="cpu").config      # the page has the checkpoint loaded already
args = finetune_args(ckpt, cfg, data_root, steps=d["steps"], batch_size=d["batch_size"], lambda_1=d["lambda_1"],
                     lambda_2=d["lambda_2"], lr=d["lr"], limit_val=d["limit_val"])
run_dir = jobs.new_run_dir(runs_root)
kw = {"python": launcher} if launcher else {}
t_click = time.time()
h = jobs.start_job(args, run_dir, owner="bench", runs_root=runs_root, env={"XTASK_BENCH_T_CLICK": repr(t_click)},
                   **kw)
while True:
    st = jobs.poll(run_dir)
    if st.finished:
        break
    time.sleep(float(d.get("poll_s", 0.1)))
seconds = time.time() - t_click
try:
    os.waitpid(h.pid, 0)
except ChildProcessError:
    pass                     # poll reaped it already
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"seconds": seconds, "cpu_s": ru.ru_utime + ru.ru_stime, "state": st.state, "step": st.step,
                  "run_dir": str(run_dir), "message": st.message}))
"""

# Run inside the job's process (instead of ``-m xtask_core``), in the tree's working directory.
_INSTRUMENT = r"""
import json, os, sys, time
T0 = time.time()
import torch
from xtask_core import cli
from xtask_core.train import trainer as tr
import torch.utils.data.dataloader as dl
T1 = time.time()
acc, stack = {}, []

def wrap(owner, name, key):
    fn = getattr(owner, name, None)
    if fn is None:
        return
    def timed(*a, **k):
        kk = "validation" if key == "data" and any(s[0] == "validation" for s in stack) else key
        stack.append([kk, 0.0])
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            dt = time.perf_counter() - t
            _, child = stack.pop()
            acc[kk] = acc.get(kk, 0.0) + dt - child
            if stack:
                stack[-1][1] += dt
    setattr(owner, name, timed)

wrap(tr.Trainer, "__init__", "set-up")
wrap(tr.Trainer, "_setup", "set-up")
wrap(tr, "load_checkpoint", "checkpoint load")
wrap(tr, "choose_train_path", "training path measurement")
wrap(tr.Trainer, "_step", "steps")
wrap(tr.Trainer, "_train_step", "steps")
wrap(tr, "evaluate", "validation")
wrap(tr.Trainer, "_save", "checkpoint writes")
wrap(dl._BaseDataLoaderIter, "__next__", "data")
argv = sys.argv[1:]
if argv[:2] == ["-m", "xtask_core"]:
    argv = argv[2:]
rc = cli.main(argv)
T2 = time.time()
out = {"process start": T0 - float(os.environ["XTASK_BENCH_T_CLICK"]), "imports": T1 - T0, "in_process": T2 - T0,
       "parts": acc}
with open(os.environ["XTASK_BENCH_PARTS"], "w") as f:
    json.dump(out, f)
sys.exit(rc)
"""


def _launcher(folder: Path, parts_file: Path) -> Path:
    """An executable that runs :data:`_INSTRUMENT` with this Python (start_job calls it as its ``python``)."""
    code = folder / "instrument.py"
    code.write_text(_INSTRUMENT)
    script = folder / "python-instrumented"
    runner = f"exec(compile(open({str(code)!r}).read(), 'instrument.py', 'exec'))"
    script.write_text(f"#!/bin/sh\nXTASK_BENCH_PARTS={shlex.quote(str(parts_file))} exec "
                      f"{shlex.quote(sys.executable)} -c {shlex.quote(runner)} \"$@\"\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def split_parts(seconds: float, parts: dict) -> dict:
    """The instrumented run's parts (seconds) plus ``rest`` (click-to-done minus the parts):
    driver start-up, logging, progress writes, the process's exit and the last poll."""
    named = {"process start": parts["process start"], "imports": parts["imports"], **parts["parts"]}
    named["rest"] = seconds - sum(named.values())
    return named


def time_job(tree: str | os.PathLike, checkpoint: Path, data_root: Path, runs_root: Path, *,
             instrument: bool = False, defaults: dict | None = None, timeout_s: float = 1800) -> dict:
    """One fine-tune job of the code in ``tree``, click to done → ``{"seconds", "state", …}``
    (with ``"parts"`` when ``instrument``)."""
    d = {**PAGE_DEFAULTS, "poll_s": POLL_S, **(defaults or {})}
    with tempfile.TemporaryDirectory(prefix="xtask-ftbench-") as tmp:
        parts_file = Path(tmp) / "parts.json"
        launcher = str(_launcher(Path(tmp), parts_file)) if instrument else ""
        env = dict(os.environ)
        # drop PYTHONPATH entries that hold a source tree (they would shadow ``tree``'s code); keep
        # the others (e.g. bench/avx2, whose sitecustomize makes the process see an AVX2-only CPU)
        keep = [p for p in env.pop("PYTHONPATH", "").split(os.pathsep) if p and not (Path(p) / "xtask_core").is_dir()]
        if keep:
            env["PYTHONPATH"] = os.pathsep.join(keep)
        out = subprocess.run([sys.executable, "-c", _DRIVER, str(checkpoint), str(data_root), str(runs_root),
                              launcher, json.dumps(d)], cwd=str(tree), env=env, capture_output=True, text=True,
                             timeout=timeout_s)
        if out.returncode != 0:
            raise RuntimeError(f"fine-tune driver failed in {tree}: {out.stderr.strip().splitlines()[-1:]}")
        res = json.loads(out.stdout.strip().splitlines()[-1])
        if instrument and parts_file.is_file():
            res["parts"] = split_parts(res["seconds"], json.loads(parts_file.read_text()))
    return res


def plain_loop_s(checkpoint: Path, data_root: Path, steps: int, batch: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of ``steps`` plain fp32 training steps (data
    included) on the checkpoint's model."""
    from xtask_core.checkpoint import load_checkpoint
    from xtask_core.train.balancing import make_balancer
    from xtask_core.train.data import make_loader, make_split
    from xtask_core.train.losses import XTaskLoss
    from xtask_core.train.step import train_step

    loaded = load_checkpoint(checkpoint, device="cpu")
    model, mc = loaded.model.train(), loaded.config
    cfg = TrainConfig.for_dataset("synthetic", input_path=str(data_root), enc_layers=mc.enc_layers,
                                  num_classes=mc.num_classes, mid_features=mc.mid_features,
                                  ttnet_features=mc.ttnet_features, height=mc.height, width=mc.width,
                                  batch_size=batch, workers=0)
    loader = make_loader(make_split(cfg, "train", augment=True), batch, shuffle=True, workers=0,
                         device=torch.device("cpu"), generator=torch.Generator().manual_seed(0))
    loss_fn = XTaskLoss(mc.num_classes, lambda_1=cfg.lambda_1, lambda_2=cfg.lambda_2, ignore_index=cfg.ignore_index)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.99))
    balancer = make_balancer("none", device=torch.device("cpu"))
    done = 0
    t, c = time.perf_counter(), time.process_time()
    while done < steps:
        for batch_ in loader:
            train_step(model, batch_, loss_fn=loss_fn, balancer=balancer, optimizer=optimizer, scaler=None,
                       precision="fp32", channels_last=False, device=torch.device("cpu"))
            done += 1
            if done >= steps:
                break
    return time.perf_counter() - t, time.process_time() - c


def bench_finetune(checkpoint: Path, work: Path, rounds: int = 1, baseline_tree: str | None = None,
                   log=lambda msg: None) -> dict:
    """The figure: ``rounds`` × (job on this code, job on ``baseline_tree`` if given, plain loop),
    alternated, then one instrumented job of each tree; medians."""
    import statistics

    from xtask_core.checkpoint import load_checkpoint
    from xtask_core.train.finetune import small_set

    here = Path(__file__).resolve().parents[2]
    mc = load_checkpoint(checkpoint, device="cpu").config
    d = PAGE_DEFAULTS
    data_root = small_set("street", work / "data", mc.height, mc.width, n_train=d["n_train"], n_val=d["n_val"])
    runs = work / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    trees = {"current": here, **({"baseline": Path(baseline_tree)} if baseline_tree else {})}
    times: dict[str, list[float]] = {**{k: [] for k in trees}, "plain_loop": []}
    cpu: dict[str, list[float]] = {k: [] for k in times}
    for r in range(rounds):
        order = list(trees) if r % 2 == 0 else list(trees)[::-1]
        for name in order:
            log(f"finetune_job: round {r + 1}/{rounds}, {name} job")
            res = time_job(trees[name], checkpoint, data_root, runs)
            if res["state"] != "done":
                raise RuntimeError(f"the {name} fine-tune job ended {res['state']}: {res['message']}")
            times[name].append(res["seconds"])
            cpu[name].append(res["cpu_s"])
        log(f"finetune_job: round {r + 1}/{rounds}, plain loop")
        wall, cpu_s = plain_loop_s(checkpoint, data_root, d["steps"], d["batch_size"])
        times["plain_loop"].append(wall)
        cpu["plain_loop"].append(cpu_s)
    parts = {}
    for name, tree in trees.items():
        log(f"finetune_job: instrumented {name} job")
        parts[name] = time_job(tree, checkpoint, data_root, runs, instrument=True).get("parts")
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    out = {"model": f"checkpoints/{checkpoint.parent.name}/{checkpoint.name}", "defaults": dict(d),
           "input_hw": [mc.height, mc.width], "rounds": rounds, "seconds_each": times, "cpu_seconds_each": cpu,
           "threads": torch.get_num_threads(), "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
           "job_s": med["current"], "plain_loop_s": med["plain_loop"],
           "job_over_plain_loop": med["current"] / med["plain_loop"], "parts": parts,
           "job_cpu_s": med_cpu["current"], "plain_loop_cpu_s": med_cpu["plain_loop"],
           "reference": "plain loop of the same steps (fp32, contiguous, data included)",
           "fast": "the Fine-tune page's job at its defaults, click to done (start_job -> poll done)",
           "reference_ms": 1e3 * med["plain_loop"], "fast_ms": 1e3 * med["current"],
           "speedup": med["plain_loop"] / med["current"]}
    if baseline_tree:
        out.update(baseline_tree=str(baseline_tree), baseline_job_s=med["baseline"],
                   baseline_over_plain_loop=med["baseline"] / med["plain_loop"],
                   speedup_vs_baseline=med["baseline"] / med["current"], baseline_job_cpu_s=med_cpu["baseline"],
                   cpu_speedup_vs_baseline=med_cpu["baseline"] / med_cpu["current"])
    return out
