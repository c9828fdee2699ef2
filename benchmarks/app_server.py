"""A `streamlit run` of the app on a free loopback port, for the benchmark scripts."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"]


@contextmanager
def running_app(python: str = sys.executable, script: str = "streamlit_app.py"):
    """Yields (url, pid) once the health URL answers and the model has loaded; stops the server
    afterwards.

    ``python`` is the interpreter that serves the app (another venv, e.g. one
    with a CPU build of torch), while the caller drives it from this one;
    ``script`` is the Streamlit script it serves (another page, for a comparison).
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [
            python,
            "-m",
            "streamlit",
            "run",
            script,
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(f"{url}/_stcore/health", 120, "the app did not become healthy")
        # The server loads the model at start-up: wait until it has.
        _wait_for(f"{url}/api/v1/ready", 240, "the app's model did not load")
        yield url, server.pid
    finally:
        server.terminate()
        server.wait(timeout=30)


def _wait_for(url: str, tries: int, failure: str) -> None:
    """Until ``url`` answers 200 (a 503 raises OSError too), every 0.5 s."""
    for _ in range(tries):
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(failure)


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the peak resident memory of a running process, read from outside it."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]) / 1024
