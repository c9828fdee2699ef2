#!/usr/bin/env bash
# Trains the shipped ensemble (both members), exports and evaluates it.
# Resumable: rerun the same command after an interruption.
set -euo pipefail
DATA=${DATA:-../shared/data/ham10000}
RUN=${RUN:-runs/v1}
PY=${PY:-python}
$PY -m skin_model train --data "$DATA" --run "$RUN" --size 128 --arch mobilenet_v2:12 \
    --pretrained mobilenet_v2 --lr 5e-4 --resume
$PY -m skin_model train --data "$DATA" --run "$RUN" --size 128 --arch resnet18:20 --lr 1e-3 --resume \
    --out skin_model/model --export-members auto
$PY -m skin_model evaluate --data "$DATA" --run "$RUN" --model skin_model/model --write-card
