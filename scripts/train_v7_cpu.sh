#!/usr/bin/env bash
# Model 2.2 on CPU (2 cores), in the background and resumable (rerun after an interruption):
# run v5's three members (copied from runs/v5 where present, else trained) plus v5's two recipes
# at HAM10000's full working size, 200x150 instead of 160x120 (1.56x the pixels: dermoscopic
# structures such as dots and network lines are a few pixels wide at this size).
# MobileNetV2 first (~40 min), EfficientNet-Lite0 second (~60 min).
# Export picks the subset best on validation; evaluation fills the card.
set -euo pipefail
DATA=${DATA:-../shared/data/ham10000}
RUN=${RUN:-runs/v7}
OUT=${OUT:-skin_model/model}
PY=${PY:-python}
RECIPE=(--height 150 --width 200 --label-smoothing 0.1 --ema-decay 0.995 --meta-drop-all 0.2 --threads 2 --resume)
mkdir -p "$RUN"
[ -f "$RUN/split.csv" ] || cp runs/v1/split.csv "$RUN/"
for member in mobilenet_v2_v1 efficientnet_lite0 mobilenet_v2_160; do
    if [ ! -f "$RUN/$member/done.json" ] && [ -f "runs/v5/$member/done.json" ]; then cp -r "runs/v5/$member" "$RUN/"; fi
done
RUN="$RUN" OUT=/tmp/skin-model-v5-unused PY="$PY" DATA="$DATA" bash scripts/train_v5_cpu.sh --members-only
[ -f "$RUN/mobilenet_v2_200/done.json" ] || $PY -m skin_model train --data "$DATA" --run "$RUN" \
    --arch mobilenet_v2_200=mobilenet_v2:12 --pretrained mobilenet_v2 --lr 5e-4 --weight-decay 0.02 "${RECIPE[@]}"
[ -f "$RUN/efficientnet_lite0_200/done.json" ] || $PY -m skin_model train --data "$DATA" --run "$RUN" \
    --arch efficientnet_lite0_200=efficientnet_lite0:12 --pretrained efficientnet_lite0 --lr 3e-4 --weight-decay 0.02 \
    "${RECIPE[@]}"
[ "${1:-}" = --members-only ] && exit 0
$PY -m skin_model train --data "$DATA" --run "$RUN" --out "$OUT" --export-members auto --model-version 2.2.0
$PY -m skin_model evaluate --data "$DATA" --run "$RUN" --model "$OUT" --write-card
