#!/usr/bin/env bash
# Rebuilds the shipped model v2 on CPU: v1's MobileNetV2 member (release 1.0.0, from git
# history), a newly trained EfficientNet-Lite0 member, export of the subset best on
# validation (plus priors, uncertainty gap, similar-cases index, out-of-domain threshold)
# and evaluation into the card. Resumable: rerun after an interruption.
set -euo pipefail
DATA=${DATA:-../shared/data/ham10000}
RUN=${RUN:-runs/v4}
PY=${PY:-python}
V1=${V1:-4c8ac1d}   # the commit that shipped model 1.0.0
mkdir -p "$RUN" /tmp/skin-model-v1
[ -f "$RUN/split.csv" ] || cp runs/v1/split.csv "$RUN/"
for file in model.safetensors model_card.json; do
    git show "$V1:skin_model/model/$file" > "/tmp/skin-model-v1/$file"
done
[ -f "$RUN/mobilenet_v2_v1/done.json" ] || $PY -m scripts.import_member /tmp/skin-model-v1 "$RUN" mobilenet_v2_v1
DATA=$DATA RUN=$RUN PY=$PY bash scripts/train_v2_cpu.sh
$PY -m skin_model train --data "$DATA" --run "$RUN" --out skin_model/model --export-members auto --model-version 2.0.0
$PY -m skin_model evaluate --data "$DATA" --run "$RUN" --model skin_model/model --write-card
