"""Inference benchmark: cold start, predict, predict + Grad-CAM, their floors, batch, app memory.

Run by hand (not part of the test suite):

    python benchmarks/bench_inference.py [--repeats 20] [--skip-app] [--out benchmarks/results.json]

Every figure is the median over repeated runs in a warm process (cold start: over
fresh processes). Floors are measured in the same run, so ratios hold on a noisy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SAMPLES = REPO / "assets" / "samples"

from benchmarks.app_server import CHROMIUM_ARGS, peak_rss_mb, running_app  # noqa: E402


def median_seconds(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cold_start(repeats: int) -> dict:
    """Process start -> model ready, split into import and load, in fresh processes."""
    code = (
        "import time, json; t0 = time.time(); from skin_model.inference.predictor import SkinClassifier; "
        "t1 = time.time(); SkinClassifier.load(); t2 = time.time(); print(json.dumps([t0, t1, t2]))"
    )
    totals, imports, loads = [], [], []
    for _ in range(repeats):
        start = time.time()
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
        t0, t1, t2 = json.loads(out.stdout.strip().splitlines()[-1])
        totals.append(t2 - start)
        imports.append(t1 - t0)
        loads.append(t2 - t1)
    return {
        "total_s": statistics.median(totals),
        "import_s": statistics.median(imports),
        "load_s": statistics.median(loads),
    }


def in_process(repeats: int) -> dict:
    import torch

    from skin_model.inference.gradcam import LayerCAM
    from skin_model.inference.inputs import Metadata
    from skin_model.inference.network import encode_metadata
    from skin_model.inference.predictor import SkinClassifier, on_torch_thread
    from skin_model.inference.torch_thread import map_lanes
    from skin_model.serving.batch import predict_paths

    model = SkinClassifier.load()
    data = (SAMPLES / "ISIC_0027622.jpg").read_bytes()
    meta = dict(age=40, sex="female", site="upper extremity")
    views = len(model.views)
    # The floor: each member's bare network on its own input shape, all test-time views as one batch.
    xs = [on_torch_thread(torch.randn, views, 3, inp.height, inp.width) for inp in model.member_inputs]
    m = encode_metadata(Metadata(40, "female", "upper extremity")).unsqueeze(0).expand(views, -1)

    # The floors run where the model's own passes run: on its torch thread, the members side by
    # side on its lanes.
    def bare_forward(batches=xs, metas=m):
        @torch.inference_mode()
        def member(i):
            model.members[i](batches[i], metas)

        on_torch_thread(map_lanes, member, range(len(model.members)))

    def bare_forward_backward():
        # The least a Grad-CAM needs: the forward pass, and the backward pass from the
        # score down to the member's Grad-CAM layer (where the graph starts).
        def member(i):
            with LayerCAM(model.members[i].cam_layer):
                model.members[i](xs[i], m).sum().backward()

        on_torch_thread(map_lanes, member, range(len(model.members)))

    results = {
        "predict_s": median_seconds(lambda: model.predict(data, **meta), repeats),
        "predict_gradcam_s": median_seconds(lambda: model.diagnose(data, **meta), repeats),
        "bare_forward_s": median_seconds(bare_forward, repeats),
        "bare_forward_backward_s": median_seconds(bare_forward_backward, repeats),
    }
    x32 = [on_torch_thread(torch.randn, 32 * views, 3, inp.height, inp.width) for inp in model.member_inputs]
    m32 = m[:1].expand(32 * views, -1)
    results["bare_forward_batch32_img_s"] = 32 / median_seconds(lambda: bare_forward(x32, m32), max(3, repeats // 4))
    with tempfile.TemporaryDirectory() as folder:
        images = sorted(SAMPLES.glob("*.jpg"))
        for i in range(256):  # a folder of 256 files made from the samples
            shutil.copy(images[i % len(images)], Path(folder) / f"img{i:03d}.jpg")
        import logging

        logging.disable(logging.INFO)
        seconds = median_seconds(
            lambda: predict_paths([Path(folder)], out_csv=Path(folder) / "out.csv"), max(3, repeats // 4), warmup=1
        )
        results["batch_cli_img_s"] = 256 / seconds
    return results


def app_memory(answers: int = 20, python: str = sys.executable) -> dict:
    """Peak resident memory (VmHWM) of `streamlit run`, read from outside, driven by a real browser.

    First after ``answers`` Diagnose answers (the target), then again after a Batch run
    of every sample image (14) and a visit to every other page (the whole app loaded).
    """
    from playwright.sync_api import sync_playwright

    from skin_model.i18n import t  # the page's own words, so that a reworded page is still waited for

    chromium = shutil.which("chromium")
    if chromium is None:
        return {"skipped": "no chromium on PATH"}
    images = sorted(SAMPLES.glob("*.jpg"))
    with running_app(python) as (url, pid), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(url)
        page.get_by_text(t("diag.title")).first.wait_for(timeout=60_000)
        for i in range(answers):
            page.locator("input[type=file]").first.set_input_files(str(images[i % len(images)]))
            page.get_by_text(t("refer.number")).first.wait_for(timeout=60_000)
            page.wait_for_function("document.querySelectorAll('[data-testid=stImage] img').length >= 2")
            page.wait_for_timeout(300)
        after_diagnose = peak_rss_mb(pid)

        page.goto(f"{url}/batch")
        page.locator("input[type=file]").first.set_input_files([str(p) for p in images])
        page.get_by_role("button", name=t("batch.run", n=len(images))).click()
        page.locator("[data-testid=stDataFrame]").wait_for(timeout=60_000)
        for path, text in (("model_card", t("card.title")), ("about", t("about.title"))):
            page.goto(f"{url}/{path}")
            page.get_by_role("heading", name=text).first.wait_for(timeout=60_000)
            page.wait_for_timeout(1000)
        browser.close()
        return {"peak_rss_mb": after_diagnose, "peak_rss_all_pages_mb": peak_rss_mb(pid)}


def app_memory_runs(python: str, repeats: int, answers: int = 20) -> dict:
    """Median (min, max) of ``app_memory`` over fresh app processes served by ``python``."""
    torch_version = subprocess.run(
        [python, "-c", "import torch; print(torch.__version__)"], capture_output=True, text=True, check=True
    ).stdout.strip()
    runs = [app_memory(answers, python) for _ in range(repeats)]
    if "skipped" in runs[0]:
        return runs[0]
    summary = {"interpreter": python, "torch": torch_version, "answers": answers, "runs": repeats}
    for key in runs[0]:
        values = [r[key] for r in runs]
        summary[key] = statistics.median(values)
        summary[key.replace("_mb", "_range_mb")] = [min(values), max(values)]
    return summary


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--skip-app", action="store_true")
    parser.add_argument(
        "--app-python",
        action="append",
        default=None,
        help="interpreter that serves the app for the memory figures, repeatable "
        "(e.g. a venv with a CPU build of torch); default: this one",
    )
    parser.add_argument("--memory-repeats", type=int, default=3, help="app processes measured per interpreter")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results.json")
    args = parser.parse_args()

    import torch

    results = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
    }
    results["cold_start"] = cold_start(max(3, args.repeats // 4))
    results.update(in_process(args.repeats))
    results["ratios"] = {
        "predict_vs_bare_forward": results["predict_s"] / results["bare_forward_s"],
        "predict_gradcam_vs_bare_forward_backward": results["predict_gradcam_s"] / results["bare_forward_backward_s"],
        "batch_cli_vs_bare_forward_batch32": results["batch_cli_img_s"] / results["bare_forward_batch32_img_s"],
    }
    if not args.skip_app:
        results["app_memory"] = [
            app_memory_runs(python, args.memory_repeats) for python in args.app_python or [sys.executable]
        ]
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    rows = [
        (
            "cold start (total / import / load)",
            "{total_s:.2f} s / {import_s:.2f} s / {load_s:.2f} s".format(**results["cold_start"]),
        ),
        ("predict, one image with metadata", f"{results['predict_s'] * 1000:.1f} ms"),
        ("predict + Grad-CAM", f"{results['predict_gradcam_s'] * 1000:.1f} ms"),
        ("bare forward (all members)", f"{results['bare_forward_s'] * 1000:.1f} ms"),
        ("bare forward + backward", f"{results['bare_forward_backward_s'] * 1000:.1f} ms"),
        ("bare forward, batch 32", f"{results['bare_forward_batch32_img_s']:.1f} img/s"),
        ("CLI over a folder (256 images)", f"{results['batch_cli_img_s']:.1f} img/s"),
    ]
    rows += [(f"ratio {k}", f"{v:.2f}") for k, v in results["ratios"].items()]
    if "app_memory" in results:
        for mem in results["app_memory"]:
            if "skipped" in mem:
                rows.append(("app memory", mem["skipped"]))
                continue
            rows.append((f"app peak memory after 20 answers (torch {mem['torch']})", f"{mem['peak_rss_mb']:.0f} MB"))
            rows.append(
                (
                    f"app peak memory, every page visited (torch {mem['torch']})",
                    f"{mem['peak_rss_all_pages_mb']:.0f} MB",
                )
            )
    width = max(len(r[0]) for r in rows)
    print(
        f"{results['date']} · {results['cores']} cores · torch {results['torch']} · {results['torch_threads']} threads"
    )
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
