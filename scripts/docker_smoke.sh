#!/usr/bin/env bash
# Builds the image, runs it, waits until it is healthy, makes one real prediction
# inside the container, and removes it. Prints the build time and the image size.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${IMAGE:-skin-lesion-app:smoke}
NAME=skin-lesion-smoke-$$
PORT=${PORT:-8501}

start=$(date +%s)
docker build -t "$IMAGE" .
echo "build: $(( $(date +%s) - start )) s; image size: $(docker image inspect "$IMAGE" --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}')"

docker run -d --name "$NAME" -p "$PORT:8501" "$IMAGE" >/dev/null
trap 'docker rm -f "$NAME" >/dev/null 2>&1 || true' EXIT

for _ in $(seq 1 90); do
    curl -fsS "http://127.0.0.1:$PORT/_stcore/health" >/dev/null 2>&1 && break
    sleep 2
done
curl -fsS "http://127.0.0.1:$PORT/_stcore/health" && echo " <- health URL"
for _ in $(seq 1 60); do
    status=$(docker inspect "$NAME" --format '{{.State.Health.Status}}')
    [ "$status" = healthy ] && break
    sleep 2
done
echo "docker health: $status"
[ "$status" = healthy ]

user=$(docker exec "$NAME" id -un)
echo "runs as: $user"
[ "$user" != root ]

out=$(docker exec "$NAME" python -m skin_model predict assets/samples/ISIC_0027622.jpg)
echo "$out"
# The CSV's header is the package's own column list (batch.RESULT_COLUMNS), not a copy of it.
columns=$(docker exec "$NAME" python -c "from skin_model.serving.batch import RESULT_COLUMNS; print(','.join(RESULT_COLUMNS))")
[ "$(echo "$out" | head -1)" = "$columns" ]
echo "$out" | sed -n 2p | grep -Eq '^ISIC_0027622,(akiec|bcc|bkl|df|mel|nv|vasc),'
# The prediction API, served by the same process as the pages; the model loads at start-up.
curl -fsS "http://127.0.0.1:$PORT/api/v1/version" | grep -q '"model_version"'
for _ in $(seq 1 120); do
    curl -fsS "http://127.0.0.1:$PORT/api/v1/ready" >/dev/null 2>&1 && break
    sleep 1
done
curl -fsS "http://127.0.0.1:$PORT/api/v1/ready" | grep -q '"ready"'
api=$(curl -sS -F image=@assets/samples/ISIC_0027622.jpg -F age=45 -F sex=male "http://127.0.0.1:$PORT/api/v1/predict")
echo "API: ${api:0:160}..."
echo "$api" | grep -Eq '"verdict": ?"(suspicious|not_suspicious|cannot_judge)"'
status=$(curl -s -o /dev/null -w '%{http_code}' -F image=@README.md "http://127.0.0.1:$PORT/api/v1/predict")
[ "$status" = 415 ] || { echo "a text file got HTTP $status, not 415"; exit 1; }
echo "docker smoke test passed"
