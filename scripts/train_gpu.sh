#!/usr/bin/env bash
# Model v2's whole recipe on one GPU: three members (two EfficientNet-Lite0 seeds and a
# MobileNetV2, 160x120, EMA, label smoothing, whole-metadata dropout), then export (the
# subset best on validation, priors, uncertainty gap, similar-cases index, out-of-domain
# threshold) and evaluation into the card. Resumable: rerun after an interruption.
#
#   bash scripts/train_gpu.sh                                   # one CUDA GPU, HAM10000 beside the repo
#   DEVICE=cpu EPOCHS=1 DATA=/tmp/synth SPLIT_FROM= OUT=/tmp/out RUN=/tmp/run bash scripts/train_gpu.sh
#                                                               # the same steps, tiny, on CPU (a check)
set -euo pipefail
DATA=${DATA:-../shared/data/ham10000}
RUN=${RUN:-runs/gpu}
OUT=${OUT:-skin_model/model}
PY=${PY:-python}
DEVICE=${DEVICE:-cuda}
EPOCHS=${EPOCHS:-30}
BATCH=${BATCH:-128}
SPLIT_FROM=${SPLIT_FROM-runs/v1/split.csv}   # empty: make a new lesion-grouped split
mkdir -p "$RUN"
if [ -n "$SPLIT_FROM" ] && [ ! -f "$RUN/split.csv" ]; then cp "$SPLIT_FROM" "$RUN/split.csv"; fi

common=(--data "$DATA" --run "$RUN" --device "$DEVICE" --height 120 --width 160 --batch-size "$BATCH"
        --label-smoothing 0.1 --ema-decay 0.998 --meta-drop-all 0.2 --resume)
$PY -m skin_model train "${common[@]}" --arch "effnet_s0=efficientnet_lite0:$EPOCHS" \
    --pretrained efficientnet_lite0 --lr 1e-3 --seed 0
$PY -m skin_model train "${common[@]}" --arch "effnet_s1=efficientnet_lite0:$EPOCHS" \
    --pretrained efficientnet_lite0 --lr 1e-3 --seed 1
$PY -m skin_model train "${common[@]}" --arch "mobilenet_v2:$EPOCHS" \
    --pretrained mobilenet_v2 --lr 1e-3 --seed 2 --out "$OUT" --export-members auto
SKIN_MODEL_DEVICE=$DEVICE $PY -m skin_model evaluate --data "$DATA" --run "$RUN" --model "$OUT" --write-card
