#!/usr/bin/env bash
# N replicas of the app behind nginx, on this machine, without Docker.
#   deploy/run_replicas.sh [N=2] [PORT=8500]     (Ctrl-C stops them all)
# Replica k listens on 127.0.0.1:(PORT+k); nginx on 127.0.0.1:PORT. Every replica gets the same
# cookie secret (Streamlit's XSRF cookies must verify on any of them). Needs nginx (Debian's package).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2}
PORT=${2:-8500}
PYTHON=${PYTHON:-.venv/bin/python}
PREFIX=${SKIN_DEPLOY_DIR:-$(mktemp -d /tmp/skin-deploy.XXXXXX)}
SECRET=${SKIN_COOKIE_SECRET:-$(head -c 32 /dev/urandom | base64 | tr -d '/+=')}
mkdir -p "$PREFIX"
pids=()
stop() { kill "${pids[@]}" 2>/dev/null || true; [ -f "$PREFIX/nginx.pid" ] && kill "$(cat "$PREFIX/nginx.pid")" 2>/dev/null || true; }
trap stop EXIT INT TERM

servers=""
for k in $(seq 1 "$N"); do
    port=$((PORT + k))
    # Streamlit takes the cookie secret from its environment (not from a flag).
    STREAMLIT_SERVER_COOKIE_SECRET="$SECRET" "$PYTHON" -m streamlit run streamlit_app.py --server.address 127.0.0.1 \
        --server.port "$port" --server.headless true >"$PREFIX/replica$k.log" 2>&1 &
    pids+=($!)
    servers+="        server 127.0.0.1:$port max_fails=1 fail_timeout=10s;"$'\n'
done
python3 - "$PREFIX" "$PORT" "$servers" <<'PY'
import sys
prefix, port, servers = sys.argv[1:]
text = open("deploy/nginx.conf.template").read()
open(f"{prefix}/nginx.conf", "w").write(text.replace("@PREFIX@", prefix).replace("@LISTEN@", f"127.0.0.1:{port}").replace("@SERVERS@", servers.rstrip("\n")))
PY
nginx -p "$PREFIX" -c "$PREFIX/nginx.conf" -e "$PREFIX/error.log" -g "daemon on;"
# Each replica answers pages at once and the API once its model has loaded (/api/v1/ready).
for k in $(seq 1 "$N"); do
    port=$((PORT + k))
    for attempt in $(seq 1 180); do
        curl -fs "http://127.0.0.1:$port/api/v1/ready" >/dev/null 2>&1 && break
        kill -0 "${pids[$((k - 1))]}" 2>/dev/null || { echo "replica $k died: see $PREFIX/replica$k.log" >&2; exit 1; }
        [ "$attempt" = 180 ] && { echo "replica $k not ready after 180 s" >&2; exit 1; }
        sleep 1
    done
done
echo "ready: http://127.0.0.1:$PORT ($N replicas; logs in $PREFIX)"
wait "${pids[@]}"
