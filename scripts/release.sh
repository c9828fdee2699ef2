#!/usr/bin/env bash
# The release build: wheel and sdist into dist/, `twine check` on both, and the wheel's
# smoke test (it installs into a clean venv and predicts with the model it carries).
# Publishing is the CI job's, and only where a token is configured (see the README).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
rm -rf dist
"$PYTHON" -m build --outdir dist .
"$PYTHON" -m twine check --strict dist/*
ls -l dist
PYTHON="$PYTHON" bash scripts/wheel_smoke.sh
