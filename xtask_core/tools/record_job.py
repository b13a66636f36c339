"""Per-image records as a background job: the Dataset page's evaluation, reusing the fine-tune
job machinery (:mod:`xtask_core.train.jobs`: own process group, pid + start-time identity,
one job per owner, cancel file then signals).

The child is ``python -m xtask_core.tools.record_job RUN_DIR SPEC_JSON``. It writes into its job
folder (a fresh folder under the jobs root, never reused)::

    job.json          the launcher's (pid, pid_start, argv, owner)
    spec.json         what is evaluated (checkpoints, source, batch size)
    progress.json     step = rows done, total_steps = rows to do, status, message, eta_s
    records.parquet   the records (chunks in .records.parquet.parts/ while it runs, so a
                      reader sees rows as they arrive: load_records(partial=True))
    train.log         stdout + stderr (one line per skipped file)
    cancel            created by :func:`cancel`: the run stops before its next batch

A spec is a JSON object: ``{"checkpoints": [paths], "source": {"kind": "dataset", "dataset",
"root", "split", "size": [h, w], "num_classes"} or {"kind": "folder", "root", "size"},
"batch_size": 4}``. Rows are also cached (``cache_dir()/records``), so a re-run of the same
checkpoint on the same source only reads.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from xtask_core.errors import XTaskError
from xtask_core.evaluate.record_store import empty_frame, load_records
from xtask_core.evaluate.records import RecordsProgress, records_for
from xtask_core.evaluate.sources import Source, dataset_source, folder_source
from xtask_core.train import jobs
from xtask_core.train.run_dir import ProgressFile, RunDir

__all__ = ["RECORDS", "SPEC", "make_source", "start", "poll", "cancel", "records", "spec_of", "find_active",
           "latest", "main"]

RECORDS = "records.parquet"
SPEC = "spec.json"
PREFIX = "records"


def _owner(owner: str) -> str:
    return f"records:{owner}"   # never the same lock as the owner's fine-tune job


def make_source(src: dict[str, Any]) -> Source:
    """The :class:`Source` a spec's ``source`` describes (one-line XTaskError when it cannot be)."""
    kind = src.get("kind")
    size = tuple(int(v) for v in src.get("size", ()))
    if len(size) != 2:
        raise XTaskError(f"source size must be [height, width], got {src.get('size')!r}")
    if kind == "dataset":
        return dataset_source(str(src["dataset"]), src["root"], str(src.get("split", "val")), size,
                              num_classes=src.get("num_classes"), limit=int(src.get("limit", 0)))
    if kind == "folder":
        return folder_source(src["root"], size, limit=int(src.get("limit", 0)))
    raise XTaskError(f"unknown source kind {kind!r} (valid: dataset, folder)")


def _check_spec(spec: dict[str, Any]) -> dict[str, Any]:
    cks = [str(c) for c in spec.get("checkpoints", [])]
    if not cks:
        raise XTaskError("pick at least one checkpoint")
    for c in cks:
        if not Path(c).is_file():
            raise XTaskError(f"checkpoint {c} does not exist")
    if int(spec.get("batch_size", 4)) < 1:
        raise XTaskError("batch size must be >= 1")
    make_source(spec.get("source") or {})          # fails now, in one line, not in the child
    return {**spec, "checkpoints": cks}


def start(spec: dict[str, Any], jobs_root: str | os.PathLike, owner: str = "app",
          env: dict[str, str] | None = None) -> Path:
    """Check ``spec``, make a new job folder under ``jobs_root`` and start the child; its folder.

    One records job per ``owner`` at a time (XTaskError while one runs)."""
    spec = _check_spec(dict(spec))
    run_dir = jobs.new_run_dir(jobs_root, prefix=PREFIX)
    argv = ["-m", "xtask_core.tools.record_job", str(run_dir), json.dumps(spec)]
    try:
        jobs.start_job(None, run_dir, owner=_owner(owner), runs_root=jobs_root, argv=argv,
                       env={"XTASK_NO_TQDM": "1", **(env or {})})
    except BaseException:
        if run_dir.is_dir() and not any(run_dir.iterdir()):
            run_dir.rmdir()
        raise
    return run_dir


def poll(run_dir: str | os.PathLike) -> jobs.JobStatus:
    """The job's state (:func:`xtask_core.train.jobs.poll`): ``step``/``total`` count records rows."""
    return jobs.poll(run_dir)


def cancel(run_dir: str | os.PathLike, grace_s: float = 10.0) -> jobs.JobStatus:
    """Stop the job (it stops before its next batch; the rows so far stay in its records file)."""
    return jobs.cancel(run_dir, grace_s=grace_s)


def records(run_dir: str | os.PathLike) -> pd.DataFrame:
    """The rows written so far (finished chunks of a running job included); empty when none."""
    path = Path(run_dir) / RECORDS
    try:
        return load_records(path, partial=True)
    except XTaskError:
        if path.exists():
            raise
        return empty_frame()


def spec_of(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The spec a job ran with ({} when its spec.json is missing or unreadable)."""
    try:
        data = json.loads((Path(run_dir) / SPEC).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def find_active(owner: str, jobs_root: str | os.PathLike) -> Path | None:
    """The owner's running records job (to re-attach after a reload), or None."""
    job = jobs.find_active_job(_owner(owner), jobs_root)
    return job.run_dir if job is not None else None


def latest(owner: str, jobs_root: str | os.PathLike) -> Path | None:
    """The owner's most recently started records job, running or not (None when there is none)."""
    root = Path(jobs_root)
    best: tuple[float, Path] | None = None
    for job_file in root.glob(f"{PREFIX}-*/{RunDir.JOB}") if root.is_dir() else ():
        job = jobs.read_job(job_file.parent)
        if job is not None and job.owner == _owner(owner) and (best is None or job.started > best[0]):
            best = (job.started, job_file.parent)
    return best[1] if best else None


# --------------------------------------------------------------------------- the child
def run(run_dir: Path, spec: dict[str, Any]) -> int:
    """The job's body (in the child process); its exit status."""
    rd = RunDir(run_dir)
    pf = ProgressFile(rd.progress)
    pf.update(status="running", message="listing the images", force=True)
    (run_dir / SPEC).write_text(json.dumps(spec, indent=1), encoding="utf-8")
    stopped = {"flag": False}

    def stop() -> bool:
        stopped["flag"] = stopped["flag"] or rd.cancel.exists()
        return stopped["flag"]

    def progress(p: RecordsProgress) -> None:
        eta = p.eta_s if math.isfinite(p.eta_s) else None
        pf.update(step=p.done, total_steps=p.total, eta_s=eta, skipped=p.skipped,
                  message=f"{p.done} of {p.total} rows, {p.rate:.2f} rows/s", rate=p.rate)

    def warn(line: str) -> None:
        print(f"warning: {line}", flush=True)

    t0 = time.perf_counter()
    try:
        source = make_source(spec["source"])
        pf.update(message=f"{len(source)} files; loading the checkpoints", force=True)
        df = records_for(spec["checkpoints"], source, out=run_dir / RECORDS, batch_size=int(spec.get("batch_size", 4)),
                         progress=progress, warn=warn, stop=stop)
    except KeyboardInterrupt:
        pf.update(status="cancelled", message="cancelled by the user", force=True)
        return 1
    except (XTaskError, OSError, ValueError) as err:
        if stopped["flag"]:   # cancelled before any row: "no usable images" is not the story
            pf.update(status="cancelled", message="cancelled by the user before the first rows", force=True)
            return 0
        msg = " ".join(str(err).split())
        print(f"error: {msg}", flush=True)
        pf.update(status="failed", message=msg, force=True)
        return 1
    skipped = int(df.attrs.get("skipped", 0))
    took = time.perf_counter() - t0
    tail = f"; {skipped} file(s) skipped (not usable images)" if skipped else ""
    if stopped["flag"]:
        pf.update(status="cancelled", message=f"cancelled by the user after {len(df)} rows{tail}", force=True)
        return 0
    pf.update(status="done", step=len(df), total_steps=len(df), force=True,
              message=f"{len(df)} rows ({df['image'].nunique()} images × {df['checkpoint'].nunique()} "
                      f"checkpoint(s)) in {took:.1f} s{tail}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m xtask_core.tools.record_job RUN_DIR SPEC_JSON", file=sys.stderr)
        return 2
    return run(Path(args[0]), json.loads(args[1]))


if __name__ == "__main__":
    sys.exit(main())
