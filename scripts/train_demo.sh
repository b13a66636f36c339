#!/usr/bin/env bash
# Reproduces the shipped demo checkpoints (checkpoints/demo-consistency, checkpoints/demo-no-consistency).
# CPU: about an hour for both on 2 cores; a GPU takes minutes. The two runs differ ONLY in the
# cross-task weights: the paper's lambda_1 = lambda_2 = 0.01 versus 0 (no cross-task losses).
# Model: ResNet18 encoder, 32-wide decoders, 16-wide transfer nets (12.3 M parameters): small
# enough to train from scratch on a laptop CPU and to run in ~30 ms per image, big enough to
# learn the synthetic streets. The original's ResNet34/128/64 model is `--enc_layers 34` with
# the default widths.
set -euo pipefail
DATA=${DATA:-data/synth-train}
OUT=${OUT:-runs}
[ -d "$DATA/leftImg8bit" ] || xtask synth --out "$DATA" --n-train 1200 --n-val 200 --seed 0 --height 256 --width 512 -j 2
common=(--dataset synthetic --input_path "$DATA" --enc_layers 18 --mid_features 32 --ttnet_features 16
        --epochs 8 --batch_size 8 --lr 1e-3 --scheduler_step_size 5 --scheduler_gamma 0.3
        --uncertainty_weights --limit_val 100 --workers 1 --seed 0)
xtask train "${common[@]}" --lambda_1 0.01 --lambda_2 0.01 --out "$OUT/demo-consistency"
xtask train "${common[@]}" --lambda_1 0 --lambda_2 0 --out "$OUT/demo-no-consistency"
# Ship: fp16 weights + the training log of each run
for name in demo-consistency demo-no-consistency; do
  python scripts/ship_checkpoint.py "$OUT/$name" "checkpoints/$name"
done
