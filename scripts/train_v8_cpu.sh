#!/usr/bin/env bash
# Model 2.3 candidate on CPU (2 cores), in the background and resumable (rerun after an
# interruption): run v7's five members (copied from runs/v7) plus two more seeds of its
# strongest recipe, MobileNetV2 at 200x150, on a shorter schedule. v7's log showed that member
# best at epochs 5-7 of 12 (validation AUC fell after epoch 5 while training loss kept
# falling), so an 8-epoch cosine schedule ends its learning-rate decay where it was best.
# Export (to $OUT, not the shipped folder) picks the subset best on validation; evaluation
# fills the card. Ship it only if export chooses a different subset and the app stays within
# 690 MB (decided before the run).
# Outcome (runs/README.md): the seeds scored 0.768 and 0.722 alone against seed 0's 0.798,
# export chose v7's three members again (byte-identical weights), so model 2.2.0 stays.
set -euo pipefail
DATA=${DATA:-../shared/data/ham10000}
RUN=${RUN:-runs/v8}
OUT=${OUT:-/tmp/skin-model-v8}
PY=${PY:-python}
RECIPE=(--height 150 --width 200 --label-smoothing 0.1 --ema-decay 0.995 --meta-drop-all 0.2 --threads 2 --resume)
mkdir -p "$RUN"
[ -f "$RUN/split.csv" ] || cp runs/v1/split.csv "$RUN/"
for member in mobilenet_v2_v1 efficientnet_lite0 mobilenet_v2_160 mobilenet_v2_200 efficientnet_lite0_200; do
    if [ ! -f "$RUN/$member/done.json" ]; then cp -r "runs/v7/$member" "$RUN/"; fi
done
for seed in 1 2; do
    [ -f "$RUN/mobilenet_v2_200_s$seed/done.json" ] || $PY -m skin_model train --data "$DATA" --run "$RUN" \
        --arch "mobilenet_v2_200_s$seed=mobilenet_v2:8" --pretrained mobilenet_v2 --lr 5e-4 --weight-decay 0.02 \
        --seed "$seed" "${RECIPE[@]}"
done
[ "${1:-}" = --members-only ] && exit 0
$PY -m skin_model train --data "$DATA" --run "$RUN" --out "$OUT" --export-members auto --model-version 2.3.0
$PY -m skin_model evaluate --data "$DATA" --run "$RUN" --model "$OUT" --write-card
