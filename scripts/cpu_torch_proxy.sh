#!/usr/bin/env bash
# A venv that serves the app on a CPU build of torch, for memory measurements on a
# machine whose pip cannot reach the PyTorch CPU index (this build machine).
#
# Streamlit Cloud and the Docker image install torch 2.14.1 CPU from that index; here
# only torch 2.13.0 CPU is on disk. PyPI's torchvision 0.28.0 (torch 2.13's) ships a
# C extension built against CUDA torch, which cannot load beside the CPU build, and
# two of its modules register operators of that extension at import. This script
# empties those two modules, in this throwaway venv only: the app's models
# (ResNet18, MobileNetV2) use none of torchvision's custom operators.
#
#   bash scripts/cpu_torch_proxy.sh [VENV, default /tmp/cpu-proxy]
#   python benchmarks/bench_inference.py --app-python "$VENV/bin/python" --app-python .venv/bin/python
set -euo pipefail
VENV=${1:-/tmp/cpu-proxy}
cd "$(dirname "$0")/.."

python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --retries 0 torch==2.13.0
"$VENV/bin/pip" install -q --retries 0 --no-deps torchvision==0.28.0
# The app's other pins, from requirements.txt (everything but torch and torchvision).
grep -vE '^(#|--|torch==|torchvision==)' requirements.txt | xargs "$VENV/bin/pip" install -q --retries 0

site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
for module in _meta_registrations _autograd_registrations; do
    echo '"""Emptied in this measurement venv: it registers operators of a C extension that cannot load here."""' \
        > "$site/torchvision/$module.py"
done

"$VENV/bin/python" - <<'EOF'
import torch
import skin_model

model = skin_model.load_model()
prediction, explanation = model.diagnose("assets/samples/ISIC_0027622.jpg", age=40, sex="female", site="back")
print(f"torch {torch.__version__}: {prediction.label} {prediction.confidence:.3f}, heatmap {explanation.heatmap.shape}")
EOF
