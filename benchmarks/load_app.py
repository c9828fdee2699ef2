"""Load test (not a unit test): N browser sessions ask the running app for a Diagnose answer at once.

    python benchmarks/load_app.py [--sessions 8] [--app-python PATH]

Each session uploads a different sample; its answer must equal the Python API's answer
for that image. Prints p50/p95 time to answer and the server's peak memory (VmHWM).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SAMPLES = sorted((REPO / "assets" / "samples").glob("*.jpg"))

from benchmarks.app_server import CHROMIUM_ARGS, peak_rss_mb, running_app  # noqa: E402


async def one_session(browser, url: str, image: Path) -> tuple[str, float]:
    page = await (await browser.new_context(viewport={"width": 1280, "height": 900})).new_page()
    await page.goto(url)
    await page.get_by_text("Analyse a lesion").wait_for(timeout=120_000)
    start = time.perf_counter()
    await page.locator("input[type=file]").first.set_input_files(str(image))
    await page.get_by_text("Probability of a malignant").wait_for(timeout=120_000)
    await page.wait_for_function("document.querySelectorAll('[data-testid=stImage] img').length >= 2", timeout=120_000)
    seconds = time.perf_counter() - start
    text = await page.locator("h3").filter(has_text=re.compile("Most likely|Uncertain between")).first.inner_text()
    # "Most likely: CODE — name" or "Uncertain between CODE and OTHER: ..." (CODE: the top class)
    first = text.split(":", 1)[1] if text.startswith("Most likely") else text.removeprefix("Uncertain between")
    return first.replace("—", " ").split()[0], seconds


async def run(url: str, sessions: int) -> list[tuple[str, float]]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=shutil.which("chromium"), headless=True, args=CHROMIUM_ARGS)
        images = [SAMPLES[i % len(SAMPLES)] for i in range(sessions)]
        results = await asyncio.gather(*(one_session(browser, url, img) for img in images))
        await browser.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument(
        "--app-python",
        default=sys.executable,
        help="interpreter that serves the app (e.g. a venv with a CPU build of torch)",
    )
    args = parser.parse_args()
    import skin_model

    model = skin_model.load_model()
    expected = [model.predict(SAMPLES[i % len(SAMPLES)]).label for i in range(args.sessions)]
    with running_app(args.app_python) as (url, pid):
        results = asyncio.run(run(url, args.sessions))
        peak = peak_rss_mb(pid)
    times = sorted(t for _, t in results)
    correct = sum(label == want for (label, _), want in zip(results, expected))
    report = {
        "app_python": args.app_python,
        "sessions": args.sessions,
        "answered": len(results),
        "correct": correct,
        "p50_s": statistics.median(times),
        "p95_s": times[min(len(times) - 1, round(0.95 * (len(times) - 1)))],
        "peak_rss_mb": peak,
    }
    print(json.dumps(report, indent=2))
    if correct != args.sessions:
        sys.exit(f"{args.sessions - correct} session(s) got a wrong or no answer")


if __name__ == "__main__":
    main()
