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
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        else:
            raise RuntimeError("the app did not become healthy")
        for _ in range(240):  # the server loads the model at start-up: wait until it has
            try:
                urllib.request.urlopen(f"{url}/api/v1/ready", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        else:
            raise RuntimeError("the app's model did not load")
        yield url, server.pid
    finally:
        server.terminate()
        server.wait(timeout=30)


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the peak resident memory of a running process, read from outside it."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]) / 1024
