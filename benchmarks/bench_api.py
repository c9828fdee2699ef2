"""The prediction API's own cost (not a unit test): one client, warm server, predict without CAM,
against the same image predicted in-process (``SkinClassifier.predict``), in one run.

    python benchmarks/bench_api.py [--repeats 30] [--app-python PATH]

Prints both medians and their ratio (target: API <= 1.3x the in-process predict).
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SAMPLE = sorted((REPO / "assets" / "samples").glob("*.jpg"))[0]

from benchmarks.app_server import peak_rss_mb, running_app  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--app-python", default=sys.executable)
    args = parser.parse_args()
    import httpx

    data = SAMPLE.read_bytes()
    # TCP_NODELAY, as requests and curl set it: without it httpx's small writes wait ~40 ms for a
    # delayed ACK on loopback (GET /version took 44 ms instead of 1 ms), which is the client's cost.
    transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    with running_app(args.app_python) as (url, pid), httpx.Client(timeout=300, transport=transport) as client:
        files = {"image": (SAMPLE.name, data, "image/jpeg")}
        for _ in range(3):  # warm: the model loads on the first call
            client.post(f"{url}/api/v1/predict", files=files).raise_for_status()
        api = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            client.post(f"{url}/api/v1/predict", files=files).raise_for_status()
            api.append(time.perf_counter() - start)
        peak = peak_rss_mb(pid)
    # In-process, after the server has stopped: the two never share the cores.
    import skin_model

    model = skin_model.load_model()
    for _ in range(3):
        model.predict(data)
    local = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        model.predict(data)
        local.append(time.perf_counter() - start)
    report = {
        "repeats": args.repeats,
        "api_median_ms": 1000 * statistics.median(api),
        "in_process_median_ms": 1000 * statistics.median(local),
        "ratio": statistics.median(api) / statistics.median(local),
        "server_peak_rss_mb": peak,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
