"""Per-upload cost: server time and peak-memory rise of one answer, for hostile-sized files.

Run by hand (not part of the test suite):

    python benchmarks/bench_uploads.py [--repeats 5] [--out benchmarks/uploads.json]

For each file, a fresh process loads the model, answers one small image (a warm app),
records its peak memory (VmHWM), then does what the Analyse page does with an upload:
decode (``load_image``), ``diagnose`` (answer and Grad-CAM) and the overlay at display
size. Reported: the median time of that work and the median rise of peak memory over
the warm process. Targets (issue 12): at most 1 s and at most 150 MB per upload.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "assets" / "samples" / "ISIC_0027622.jpg"

WORKER = r"""
import sys, time, json
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from skin_model.inference.predictor import SkinClassifier
from skin_model.inference.inputs import load_image
from skin_model.inference.gradcam import overlay

def hwm_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

model = SkinClassifier.load()
warm = open(sys.argv[3], "rb").read()
model.diagnose(load_image(warm))              # a warm app: one answer given
before = hwm_mb()
data = open(sys.argv[1], "rb").read()
start = time.perf_counter()
try:
    image = load_image(data)
except ValueError as err:  # refused: the cost of saying so
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "hwm_before_mb": before, "hwm_after_mb": hwm_mb(), "size": str(err)}))
    raise SystemExit
display = image.copy(); display.thumbnail((640, 640))   # as the Analyse page: Grad-CAM at display size
pred, explanation = model.diagnose(image, heatmap_size=display.size)
overlay(display, explanation.heatmap, 0.45)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "hwm_before_mb": before, "hwm_after_mb": hwm_mb(), "size": image.size}))
"""


def make_files(folder: Path) -> dict[str, Path]:
    """The files of issue 12 (a flat 6300x6300 PNG, a 24 MP JPEG, a 12 MP photo-like JPEG), the
    largest PNG accepted, and a dermoscope-sized JPEG for comparison."""
    rng = np.random.default_rng(0)
    files = {}
    flat = folder / "flat_6300.png"
    Image.new("RGB", (6300, 6300), (180, 120, 110)).save(flat, optimize=True)
    files["flat PNG 6300×6300"] = flat
    noisy = folder / "png_20mp.png"  # the largest PNG accepted (the 20 MP decoded-pixel limit)
    Image.effect_noise((5000, 4000), 40).convert("RGB").save(noisy, compress_level=1)
    files["20 MP PNG 5000×4000"] = noisy
    lesion = Image.open(SAMPLE).convert("RGB")
    for name, size in (("24 MP JPEG 6000×4000", (6000, 4000)), ("12 MP JPEG 4000×3000", (4000, 3000))):
        big = lesion.resize(size, Image.Resampling.BICUBIC)
        noise = rng.normal(0, 6, (size[1], size[0], 3))  # sensor noise, so the JPEG is camera-sized
        big = Image.fromarray(np.clip(np.asarray(big, np.float32) + noise, 0, 255).astype(np.uint8))
        path = folder / (name.split()[0] + ".jpg")
        big.save(path, quality=92)
        files[name] = path
    files["dermoscope JPEG 600×450"] = folder / "small.jpg"
    lesion.resize((600, 450)).save(files["dermoscope JPEG 600×450"], quality=92)
    return files


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "uploads.json")
    args = parser.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in make_files(Path(tmp)).items():
            runs = []
            for _ in range(args.repeats):
                done = subprocess.run(
                    [sys.executable, "-c", WORKER, str(path), str(REPO), str(SAMPLE)],
                    capture_output=True,
                    text=True,
                    check=True,
                    cwd=REPO,
                )
                runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
            rise = [r["hwm_after_mb"] - r["hwm_before_mb"] for r in runs]
            rows[name] = {
                "file_mb": round(path.stat().st_size / 2**20, 2),
                "working_size": runs[0]["size"],
                "seconds_median": round(statistics.median(r["seconds"] for r in runs), 3),
                "peak_rise_mb_median": round(statistics.median(rise), 1),
                "seconds_all": [round(r["seconds"], 3) for r in runs],
                "peak_rise_mb_all": [round(x, 1) for x in rise],
            }
            print(
                f"{name:28s} {rows[name]['file_mb']:6.2f} MB  {rows[name]['seconds_median']:.3f} s  "
                f"+{rows[name]['peak_rise_mb_median']:.0f} MB",
                flush=True,
            )
    result = {
        "machine": f"{cpu_name()}, {len(os.sched_getaffinity(0))} cores",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "repeats": args.repeats,
        "targets": {"seconds": 1.0, "peak_rise_mb": 150},
        "files": rows,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
