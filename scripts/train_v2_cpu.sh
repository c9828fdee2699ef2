#!/usr/bin/env bash
# Model v2 on CPU (2 cores): the EfficientNet-Lite0 member, trained in the background and
# resumable (rerun the same command after an interruption). The MobileNetV2 member of v1
# is imported from the v1 artifact (scripts/import_v1_member.py); export picks the subset.
set -euo pipefail
DATA=${DATA:-../shared/data/ham10000}
RUN=${RUN:-runs/v4}
PY=${PY:-python}
mkdir -p "$RUN" && [ -f "$RUN/split.csv" ] || cp runs/v1/split.csv "$RUN/"
$PY -m skin_model train --data "$DATA" --run "$RUN" --arch efficientnet_lite0:24 --pretrained efficientnet_lite0 \
    --height 120 --width 160 --lr 1e-3 --label-smoothing 0.1 --ema-decay 0.995 --meta-drop-all 0.2 \
    --threads 2 --resume
