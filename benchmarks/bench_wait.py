"""What a person waits for, in real Chromium: the app against a bare Streamlit page.

Run by hand (not part of the test suite), on a quiet machine:

    python benchmarks/bench_wait.py [--repeats 7] [--out benchmarks/wait.json]

The bare page decodes the same upload with Pillow and shows it beside a blended copy
under an opacity slider: the least any Streamlit page does with an image. Both serve
from this machine in the same run, one after the other, driven by the same browser.
Measured (medians): upload -> answer on screen, one opacity step, and the same two with
a 12-megapixel camera photo. Targets (issue 11): upload -> answer within 2x the bare
page, an opacity step within 2x the bare page's slider step, camera photos no slower
than small ones apart from their upload.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SAMPLES = sorted((REPO / "assets" / "samples").glob("*.jpg"))
FULL_SIZE = REPO / "tests" / "fixtures" / "full_size" / "ISIC_0030119.jpg"  # a dermatoscope's 600x450 original

from benchmarks.app_server import CHROMIUM_ARGS, running_app  # noqa: E402

BARE_PAGE = """
import io
import numpy as np
import streamlit as st
from PIL import Image

upload = st.file_uploader("image")
if upload is not None:
    image = Image.open(io.BytesIO(upload.getvalue())).convert("RGB")
    opacity = st.slider("opacity", 0.0, 1.0, 0.45, 0.05)
    heat = np.zeros((image.height, image.width, 3), np.uint8)
    heat[..., 0] = 255
    blended = Image.blend(image, Image.fromarray(heat), opacity)
    left, right = st.columns(2)
    left.image(image)
    right.image(blended)
"""

# The overlay is the second picture on both pages; the answer is done when it changed
# and Streamlit's "running" indicator is gone.
SETTLED = """(before) => {
    const imgs = [...document.querySelectorAll('[data-testid=stImage] img')];
    const running = document.querySelector('[data-testid=stStatusWidget]');
    return imgs.length >= 2 && imgs[1].src !== before && !running;
}"""


# The felt answer: the first thing that answers the upload. On the app, the verdict's heading (its
# picture is the new image's); on the bare page, the image itself. Neither waits for the rest.
FIRST = """(before) => {
    const verdict = document.querySelector('h4 img');
    const shown = verdict || document.querySelector('[data-testid=stImage] img');
    return shown && shown.src !== before;
}"""


FIRST_SRC = "(() => { const i = document.querySelector('h4 img') || document.querySelector('[data-testid=stImage] img'); return i ? i.src : ''; })()"
OVERLAY_SRC = "(() => { const i = document.querySelectorAll('[data-testid=stImage] img'); return i.length > 1 ? i[1].src : ''; })()"
IDLE = "() => !document.querySelector('[data-testid=stStatusWidget]')"


def timed(page, action, done: str = SETTLED, src: str = OVERLAY_SRC) -> float:
    """Seconds from ``action`` until ``done`` holds of the picture ``src`` names; then the page's
    run is let finish, so that the next measure starts from an idle page."""
    before = page.evaluate(src)
    start = time.perf_counter()
    action()
    page.wait_for_function(done, arg=before, timeout=120_000, polling=10)
    elapsed = time.perf_counter() - start
    page.wait_for_function(IDLE, timeout=120_000, polling=50)
    return elapsed


def timed_first(page, action) -> float:
    return timed(page, action, FIRST, FIRST_SRC)


def measure(browser, url: str, files: list[Path], camera: Path, repeats: int, full_size: Path = FULL_SIZE) -> dict:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(url)
    upload = page.locator("input[type=file]").first
    upload.wait_for(state="attached", timeout=120_000)
    timed(page, lambda: upload.set_input_files(str(files[-1])))  # warm-up answer

    def slider_step():
        page.locator("[data-testid=stSlider] input[type=range]").last.focus()
        page.keyboard.press("ArrowRight" if step_right[0] else "ArrowLeft")
        step_right[0] = not step_right[0]

    step_right = [True]
    answers = [timed(page, lambda f=f: upload.set_input_files(str(f))) for f in files[:repeats]]
    others = files[repeats : 2 * repeats] or list(reversed(files[: repeats - 1]))  # not the image shown now
    firsts = [timed_first(page, lambda f=f: upload.set_input_files(str(f))) for f in others]
    steps = [timed(page, slider_step) for _ in range(repeats)]
    camera_answers, camera_steps, full_size_answers = [], [], []
    for i in range(max(3, repeats // 2)):
        timed(page, lambda i=i: upload.set_input_files(str(files[i])))  # a different image between photos
        camera_answers.append(timed(page, lambda: upload.set_input_files(str(camera))))
        camera_steps.append(timed(page, slider_step))
        timed(page, lambda i=i: upload.set_input_files(str(files[i])))
        full_size_answers.append(timed(page, lambda: upload.set_input_files(str(full_size))))
    page.close()
    median = statistics.median
    return {
        "upload_to_first_answer_s": median(firsts),
        "upload_to_answer_s": median(answers),
        "opacity_step_s": median(steps),
        "camera_upload_to_answer_s": median(camera_answers),
        "camera_opacity_step_s": median(camera_steps),
        "full_size_upload_to_answer_s": median(full_size_answers),
        "all": {
            "first_answers": firsts,
            "answers": answers,
            "steps": steps,
            "camera_answers": camera_answers,
            "camera_steps": camera_steps,
            "full_size_answers": full_size_answers,
        },
    }


def camera_photo(folder: Path) -> Path:
    """A 12-megapixel JPEG with sensor noise, like a phone camera's."""
    big = Image.open(SAMPLES[0]).convert("RGB").resize((4000, 3000), Image.Resampling.BICUBIC)
    noise = np.random.default_rng(0).normal(0, 6, (3000, 4000, 3))
    path = folder / "camera_12mp.jpg"
    Image.fromarray(np.clip(np.asarray(big, np.float32) + noise, 0, 255).astype(np.uint8)).save(path, quality=92)
    return path


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "wait.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp) / "bare_page.py"
        bare.write_text(BARE_PAGE)
        camera = camera_photo(Path(tmp))
        results = {}
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=shutil.which("chromium"), headless=True, args=CHROMIUM_ARGS)
            for name, script in (("bare page", str(bare)), ("app", "streamlit_app.py")):
                with running_app(script=script) as (url, _):
                    results[name] = measure(browser, url, SAMPLES, camera, args.repeats)
                print(name, {k: round(v, 3) for k, v in results[name].items() if k != "all"}, flush=True)
            browser.close()
    app, bare_page = results["app"], results["bare page"]
    ratios = {
        # issue 41: the verdict on screen against the bare page's image, target <= 1.5x
        "upload_to_verdict": app["upload_to_first_answer_s"] / bare_page["upload_to_first_answer_s"],
        "upload_to_answer": app["upload_to_answer_s"] / bare_page["upload_to_answer_s"],
        "opacity_step": app["opacity_step_s"] / bare_page["opacity_step_s"],
        "camera_vs_small_answer": app["camera_upload_to_answer_s"] / app["upload_to_answer_s"],
        "camera_vs_small_step": app["camera_opacity_step_s"] / app["opacity_step_s"],
        "full_size_vs_small_answer": app["full_size_upload_to_answer_s"] / app["upload_to_answer_s"],
    }
    print({k: round(v, 2) for k, v in ratios.items()})
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        "?",
    )
    args.out.write_text(
        json.dumps(
            {
                "machine": f"{cpu}, {len(os.sched_getaffinity(0))} cores (browser and server on the same cores)",
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "repeats": args.repeats,
                "results": results,
                "ratios": ratios,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
