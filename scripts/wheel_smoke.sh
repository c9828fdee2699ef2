#!/usr/bin/env bash
# Builds the wheel, installs it into a clean venv, and predicts a sample image from
# outside the repository: the shipped model must come with the package.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
WORK=$(mktemp -d)
PYTHON=${PYTHON:-python3}

"$PYTHON" -m build --wheel --outdir "$WORK/dist" . >/dev/null
wheel=$(ls "$WORK"/dist/*.whl)
echo "wheel: $(basename "$wheel") ($(du -h "$wheel" | cut -f1))"
"$PYTHON" -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install -q --retries 0 "$wheel"
cp "$REPO/assets/samples/ISIC_0027622.jpg" "$WORK/"
cd "$WORK"   # no checkout around: the model must come from site-packages
"$WORK/venv/bin/skin-model" --version
"$WORK/venv/bin/skin-model" predict ISIC_0027622.jpg --out pred.csv --cam-dir cams
cat pred.csv
"$WORK/venv/bin/python" - <<'PY'
import skin_model, pathlib
assert "site-packages" in skin_model.__file__, skin_model.__file__
from skin_model.inference.predictor import SkinClassifier
pred = SkinClassifier.load().predict("ISIC_0027622.jpg", age=40, sex="female", site="upper extremity")
print("API:", pred.label, f"{pred.confidence:.3f}")
assert pathlib.Path("cams/ISIC_0027622.png").exists()
PY
# The app's install has no training stack: `train` says what to install, no traceback.
if "$WORK/venv/bin/skin-model" train --recipe "$REPO/recipes/3.0.0.toml" 2> train.err; then
    echo "train ran without scikit-learn and tqdm installed?"; exit 1
fi
grep "is not installed" train.err
! grep -q Traceback train.err
echo "wheel smoke test passed ($WORK)"
