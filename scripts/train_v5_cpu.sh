#!/usr/bin/env bash
# Model v2.1 on CPU (2 cores), in the background and resumable (rerun after an interruption):
# v1's MobileNetV2 member (from git history), EfficientNet-Lite0 at a lower learning rate than
# run v4 (whose validation AUC fell after epoch 6 at lr 1e-3) and a MobileNetV2 at 160x120 with
# the v2 recipe. Export picks the subset best on validation; evaluation fills the card.
set -euo pipefail
DATA=${DATA:-../shared/data/ham10000}
RUN=${RUN:-runs/v5}
OUT=${OUT:-skin_model/model}
PY=${PY:-python}
V1=${V1:-4c8ac1d}   # the commit that shipped model 1.0.0
RECIPE=(--height 120 --width 160 --label-smoothing 0.1 --ema-decay 0.995 --meta-drop-all 0.2 --threads 2 --resume)
mkdir -p "$RUN" /tmp/skin-model-v1
[ -f "$RUN/split.csv" ] || cp runs/v1/split.csv "$RUN/"
for file in model.safetensors model_card.json; do
    git show "$V1:skin_model/model/$file" > "/tmp/skin-model-v1/$file"
done
[ -f "$RUN/mobilenet_v2_v1/done.json" ] || $PY -m scripts.import_member /tmp/skin-model-v1 "$RUN" mobilenet_v2_v1
[ -f "$RUN/efficientnet_lite0/done.json" ] || $PY -m skin_model train --data "$DATA" --run "$RUN" \
    --arch efficientnet_lite0:12 --pretrained efficientnet_lite0 --lr 3e-4 --weight-decay 0.02 "${RECIPE[@]}"
[ -f "$RUN/mobilenet_v2_160/done.json" ] || $PY -m skin_model train --data "$DATA" --run "$RUN" \
    --arch mobilenet_v2_160=mobilenet_v2:12 --pretrained mobilenet_v2 --lr 5e-4 --weight-decay 0.02 "${RECIPE[@]}"
[ "${1:-}" = --members-only ] && exit 0   # train_v6_cpu.sh reuses the members above
$PY -m skin_model train --data "$DATA" --run "$RUN" --out "$OUT" --export-members auto --model-version 2.1.0
$PY -m skin_model evaluate --data "$DATA" --run "$RUN" --model "$OUT" --write-card
