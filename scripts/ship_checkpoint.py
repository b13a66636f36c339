"""Ship a trained run as a demo checkpoint: ``python scripts/ship_checkpoint.py RUN_DIR DEST_DIR``.

Writes DEST_DIR/best.safetensors (the run's best weights in fp16, named after DEST_DIR) and copies
the run's training log (config.json, metrics.csv, TensorBoard events) beside it. Used by
scripts/train_demo.sh and scripts/train_demo_nyuv2.sh.
"""
import shutil
import sys
from pathlib import Path

from xtask_core.checkpoint import load_checkpoint, save_checkpoint


def ship(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    loaded = load_checkpoint(src / "best.safetensors", device="cpu")
    save_checkpoint(dst / "best.safetensors", loaded.model, dict(loaded.meta, name=dst.name), half=True)
    for f in ["config.json", "metrics.csv", *[p.name for p in src.glob("events.out.tfevents.*")]]:
        shutil.copy2(src / f, dst / f)


if __name__ == "__main__":
    ship(Path(sys.argv[1]), Path(sys.argv[2]))
