"""Two replicas of the app behind nginx (deploy/run_replicas.sh), as a clinic network runs it:
page sessions stick to one replica, API requests spread over both, and when one replica dies the
API keeps answering and a page on it works again after a reload."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import httpx
import pytest

from skin_model.i18n import t

from .conftest import REPO, SAMPLES_DIR
from .test_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.skipif(
    shutil.which("nginx") is None or CHROMIUM is None, reason="needs nginx and chromium (CI installs them)"
)
SAMPLE = SAMPLES_DIR / "ISIC_0027622.jpg"
ORIGINAL = REPO.parent / "shared" / "data" / "ham10000_originals" / "images"


def _free_port_block(n: int) -> int:
    for base in range(18500, 19500, 10):
        try:
            sockets = [socket.create_server(("127.0.0.1", base + k)) for k in range(n + 1)]
        except OSError:
            continue
        for s in sockets:
            s.close()
        return base
    raise RuntimeError("no free ports")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    prefix = tmp_path_factory.mktemp("deploy")
    port = _free_port_block(2)
    env = dict(os.environ, SKIN_DEPLOY_DIR=str(prefix), PYTHON=str(REPO / ".venv" / "bin" / "python"))
    if not (REPO / ".venv" / "bin" / "python").exists():
        import sys

        env["PYTHON"] = sys.executable
    process = subprocess.Popen(
        ["bash", str(REPO / "deploy" / "run_replicas.sh"), "2", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    lines = []
    while time.monotonic() < deadline:
        line = process.stdout.readline().decode()
        lines.append(line)
        if line.startswith("ready:"):
            break
        if process.poll() is not None:
            pytest.fail("the replicas did not start:\n" + "".join(lines))
    yield {"url": f"http://127.0.0.1:{port}", "port": port, "prefix": prefix}
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=60)


def _predict(url: str, image: bytes) -> httpx.Response:
    return httpx.post(f"{url}/api/v1/predict", files={"image": ("lesion.jpg", image, "image/jpeg")}, timeout=120)


def test_api_requests_spread_over_both_replicas(deployment):
    image = SAMPLE.read_bytes()
    answers = [_predict(deployment["url"], image) for _ in range(8)]
    assert {a.status_code for a in answers} == {200}
    replicas = {a.headers["x-replica"] for a in answers}
    assert len(replicas) == 2, replicas
    first = answers[0].json()
    assert all(a.json()["referral_probability"] == first["referral_probability"] for a in answers)


def test_eight_page_sessions_get_their_answer_and_heatmap_through_the_proxy(deployment):
    from playwright.sync_api import sync_playwright

    upload = next(iter(sorted(ORIGINAL.glob("*.jpg"))), SAMPLE) if ORIGINAL.is_dir() else SAMPLE
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        contexts = [browser.new_context(viewport={"width": 1280, "height": 900}) for _ in range(8)]
        pages, replicas = [], []
        for context in contexts:
            page = context.new_page()
            response = page.goto(deployment["url"])
            replicas.append(response.headers.get("x-replica"))
            page.get_by_text(t("diag.title", "en")).wait_for(timeout=120_000)
            pages.append(page)
        for page in pages:
            page.locator("input[type=file]").first.set_input_files(str(upload))
        for n, page in enumerate(pages):
            try:  # the verdict, then the image and its heatmap
                page.locator("h4").first.wait_for(timeout=180_000)
                page.wait_for_function(
                    "document.querySelectorAll('[data-testid=stImage] img').length >= 2", timeout=120_000
                )
            finally:
                page.screenshot(path=str(deployment["prefix"] / f"session{n}.png"))
            assert page.locator("[data-testid=stException]").count() == 0
        # Each session stuck to the replica it started on: its cookie routes it there.
        cookies = {c["name"] for context in contexts for c in context.cookies()}
        assert "skin_route" in cookies
        assert len(set(replicas)) == 2, replicas  # eight browsers, both replicas used
        browser.close()


def test_a_replica_that_dies_leaves_the_api_answering_and_its_pages_work_after_a_reload(deployment):
    from playwright.sync_api import sync_playwright

    image = SAMPLE.read_bytes()
    url, port = deployment["url"], deployment["port"]
    statuses: list[int] = []
    stop = threading.Event()

    def client():
        while not stop.is_set():
            statuses.append(_predict(url, image).status_code)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        # A page session on the replica that will die (its cookie routes it there).
        victim = f"127.0.0.1:{port + 1}"
        page = None
        for _ in range(20):
            context = browser.new_context()
            candidate = context.new_page()
            if candidate.goto(url).headers.get("x-replica") == victim:
                page = candidate
                break
            context.close()
        assert page is not None, "no session landed on the first replica"
        page.get_by_text(t("diag.title", "en")).wait_for(timeout=120_000)
        threads = [threading.Thread(target=client) for _ in range(2)]
        for thread in threads:
            thread.start()
        time.sleep(3)
        pid = subprocess.run(["fuser", f"{port + 1}/tcp"], capture_output=True, text=True).stdout.split()
        if not pid:  # fuser missing: find the replica by its command line
            pid = subprocess.run(
                ["pgrep", "-f", f"server.port {port + 1}"], capture_output=True, text=True
            ).stdout.split()
        for p in pid:
            os.kill(int(p), signal.SIGKILL)
        time.sleep(10)
        stop.set()
        for thread in threads:
            thread.join(timeout=180)
        assert statuses and all(s == 200 for s in statuses), statuses  # the API kept answering
        # The page lost its session with its replica; after a reload it is served by the other one.
        response = page.reload()
        assert response.headers.get("x-replica") != victim
        page.get_by_text(t("diag.title", "en")).wait_for(timeout=120_000)
        page.locator("input[type=file]").first.set_input_files(str(SAMPLE))
        page.locator("h4").first.wait_for(timeout=180_000)
        browser.close()
