"""Load test (not a unit test): N browser sessions ask the running app for a Diagnose answer,
while M programs ask its prediction API, all at once.

    python benchmarks/load_app.py [--sessions 8] [--api-clients 8] [--app-python PATH]

Each session uploads a different sample; its answer must equal the Python API's answer
for that image. Each API client posts a sample; its probabilities must equal the Python
API's, or it is refused with 503 (never lost, never wrong). Afterwards one more browser
session must still get its answer. Prints p50/p95 times and the server's peak memory (VmHWM).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import socket
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SAMPLES = sorted((REPO / "assets" / "samples").glob("*.jpg"))

from benchmarks.app_server import CHROMIUM_ARGS, peak_rss_mb, running_app  # noqa: E402
from skin_model.i18n import t  # noqa: E402  (the page's own words: a reworded page is still waited for)


async def one_session(browser, url: str, image: Path) -> tuple[str, float]:
    page = await (await browser.new_context(viewport={"width": 1280, "height": 900})).new_page()
    await page.goto(url)
    await page.get_by_text(t("diag.title")).first.wait_for(timeout=120_000)
    start = time.perf_counter()
    await page.locator("input[type=file]").first.set_input_files(str(image))
    await page.get_by_text(t("refer.number")).first.wait_for(timeout=120_000)
    await page.wait_for_function("document.querySelectorAll('[data-testid=stImage] img').length >= 2", timeout=120_000)
    seconds = time.perf_counter() - start
    # The differential's first line: "Most probable: **CODE — name**, p" or "Uncertain between
    # **CODE — name** (p) and ...": its first bold text starts with the top class's code.
    starts = "|".join(re.escape(t(key).split("**")[0]) for key in ("diag.most_probable", "diag.uncertain"))
    line = page.locator("p").filter(has_text=re.compile(f"^({starts})")).first
    return (await line.locator("strong").first.inner_text()).split()[0], seconds


async def every_page(browser, url: str) -> None:
    """A Batch of every sample, then the Model card and About pages: the app's memory after all of it."""
    page = await (await browser.new_context(viewport={"width": 1280, "height": 900})).new_page()
    await page.goto(f"{url}/batch")
    await page.locator("input[type=file]").first.set_input_files([str(p) for p in SAMPLES])
    await page.get_by_role("button", name=t("batch.run", n=len(SAMPLES))).click()
    await page.locator("[data-testid=stDataFrame]").wait_for(timeout=300_000)
    for path, text in (("model_card", t("card.title")), ("about", t("about.title"))):
        await page.goto(f"{url}/{path}")
        await page.get_by_role("heading", name=text).first.wait_for(timeout=120_000)
        await page.wait_for_timeout(1000)


async def one_api_call(client, url: str, image: Path) -> tuple[int, dict, float]:
    start = time.perf_counter()
    response = await client.post(
        f"{url}/api/v1/predict", files={"image": (image.name, image.read_bytes(), "image/jpeg")}
    )
    return response.status_code, response.json(), time.perf_counter() - start


async def run(url: str, sessions: int, api_clients: int) -> tuple[list, list, tuple[str, float] | None]:
    import httpx
    from playwright.async_api import async_playwright

    # TCP_NODELAY as requests and curl set it (see bench_api.py)
    transport = httpx.AsyncHTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    async with async_playwright() as pw, httpx.AsyncClient(timeout=600, transport=transport) as client:
        browser = await pw.chromium.launch(executable_path=shutil.which("chromium"), headless=True, args=CHROMIUM_ARGS)
        pages = [one_session(browser, url, SAMPLES[i % len(SAMPLES)]) for i in range(sessions)]
        calls = [one_api_call(client, url, SAMPLES[i % len(SAMPLES)]) for i in range(api_clients)]
        results = await asyncio.gather(*pages, *calls)
        after = await one_session(browser, url, SAMPLES[0])  # the pages still answer after the load
        await every_page(browser, url)
        await browser.close()
    return results[:sessions], results[sessions:], after


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--api-clients", type=int, default=8)
    parser.add_argument(
        "--app-python",
        default=sys.executable,
        help="interpreter that serves the app (e.g. a venv with a CPU build of torch)",
    )
    args = parser.parse_args()
    import skin_model

    model = skin_model.load_model()
    n = max(args.sessions, args.api_clients, 1)
    expected = [model.predict(SAMPLES[i % len(SAMPLES)]) for i in range(n)]
    with running_app(args.app_python) as (url, pid):
        pages, calls, after = asyncio.run(run(url, args.sessions, args.api_clients))
        peak = peak_rss_mb(pid)

    def quantiles(times):
        times = sorted(times)
        if not times:
            return None, None
        return statistics.median(times), times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]

    correct = sum(label == want.label for (label, _), want in zip(pages, expected))
    answered = [(body, t, want) for (status, body, t), want in zip(calls, expected) if status == 200]
    api_correct = sum(
        max(abs(body["probabilities"][c] - want.probabilities[c]) for c in want.probabilities) < 1e-6
        for body, _, want in answered
    )
    refused = sum(status == 503 for status, _, _ in calls)
    report = {
        "app_python": args.app_python,
        "sessions": args.sessions,
        "answered": len(pages),
        "correct": correct,
        "p50_s": quantiles([t for _, t in pages])[0],
        "p95_s": quantiles([t for _, t in pages])[1],
        "api_clients": args.api_clients,
        "api_answered": len(answered),
        "api_correct": api_correct,
        "api_refused_503": refused,
        "api_p50_s": quantiles([t for _, t, _ in answered])[0],
        "api_p95_s": quantiles([t for _, t, _ in answered])[1],
        "page_after_load_correct": after[0] == expected[0].label,
        "page_after_load_s": after[1],
        "peak_rss_mb": peak,
    }
    print(json.dumps(report, indent=2))
    if correct != args.sessions:
        sys.exit(f"{args.sessions - correct} session(s) got a wrong or no answer")
    if api_correct + refused != args.api_clients:
        sys.exit(
            f"{args.api_clients - api_correct - refused} API call(s) got a wrong answer or an error other than 503"
        )
    if not report["page_after_load_correct"]:
        sys.exit("the pages did not answer correctly after the load")


if __name__ == "__main__":
    main()
