"""Training and scoring across processes (torchrun, gloo on the CPU): the same weights and the same
CSV as one process, a run resumed with another number of processes, and a rank that dies ends
the run with an error rather than a hang."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from .conftest import REPO

TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
pytestmark = pytest.mark.skipif(TORCHRUN is None, reason="torchrun is not installed")
# One training step of 1 and of 2 processes: the same update but for floating-point noise (the
# order of sums differs: the ranks' shares, the all-reduced batch-norm statistics and gradients).
# Later steps drift apart as a 1-process run drifts from itself with another thread count: Adam
# turns noise in near-zero gradients into +-lr steps (docs/scale.md has the figures).
ONE_STEP_TOLERANCE = 0.01  # logits whose spread is about 3


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    return env


def _recipe(cv_run, tmp_path: Path, epochs: int) -> Path:
    text = cv_run.recipe.path.read_text().replace("epochs = 2", f"epochs = {epochs}")
    path = tmp_path / "recipe.toml"
    path.write_text(text)
    return path


def _fold(recipe: Path, run: Path, cv_run, processes: int = 1, limit: int = 0, wait: bool = True):
    args = [str(REPO / "tests" / "ddp_fold.py"), str(recipe), str(run), str(limit), *map(str, cv_run.data_dirs)]
    if processes == 1:
        command = [sys.executable, *args]
    else:
        command = [TORCHRUN, "--standalone", f"--nproc_per_node={processes}", *args]
    process = subprocess.Popen(command, env=_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if not wait:
        return process
    out, _ = process.communicate(timeout=600)
    assert process.returncode == 0, out.decode()[-3000:]
    return process


def _member(run: Path) -> Path:
    return run / "tiny"


def _logits(run: Path, epoch: int) -> torch.Tensor:
    return load_file(str(_member(run) / f"val_logits_{epoch:02d}.safetensors"))["logits"]


def test_one_step_of_two_processes_is_one_process_s_step(cv_run, tmp_path):
    """One global batch of 16, split over 2 ranks: the same weights, hence the same out-of-fold
    logits, as one process computing the whole batch."""
    recipe = _recipe(cv_run, tmp_path, epochs=1)
    _fold(recipe, tmp_path / "one", cv_run, 1, limit=16)
    _fold(recipe, tmp_path / "two", cv_run, 2, limit=16)
    one, two = _logits(tmp_path / "one", 1), _logits(tmp_path / "two", 1)
    assert one.shape == two.shape and one.std() > 0.5  # a model that moved, not zeros
    assert (one - two).abs().max() < ONE_STEP_TOLERANCE
    log = pd.read_csv(_member(tmp_path / "two") / "log.csv")
    assert list(log["processes"]) == [2] and list(log["epoch"]) == [1]  # rank 0 alone wrote


def test_a_run_of_two_processes_resumes_in_one(cv_run, tmp_path):
    """Stopped during its second epoch, a 2-process run resumes from its checkpoint in 1 process:
    epoch 1 stays the 2 processes' own, epoch 2 is trained by the one."""
    recipe = _recipe(cv_run, tmp_path, epochs=2)
    process = _fold(recipe, tmp_path / "run", cv_run, 2, limit=64, wait=False)
    log = _member(tmp_path / "run") / "log.csv"
    checkpoint = _member(tmp_path / "run") / "checkpoint.pt"  # written whole, last, at each epoch's end
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not checkpoint.exists():
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)  # during epoch 2: torchrun stops its workers
    process.communicate(timeout=120)
    assert not (_member(tmp_path / "run") / "done.json").exists(), "epoch 2 ended before the stop"
    first = (_member(tmp_path / "run") / "epoch_01.safetensors").read_bytes()
    _fold(recipe, tmp_path / "run", cv_run, 1, limit=64)
    assert (_member(tmp_path / "run") / "done.json").exists()
    assert (_member(tmp_path / "run") / "epoch_01.safetensors").read_bytes() == first  # not trained again
    rows = pd.read_csv(log)
    assert list(rows["epoch"]) == [1, 2] and list(rows["processes"]) == [2, 1]
    assert torch.isfinite(_logits(tmp_path / "run", 2)).all()


def test_a_rank_that_dies_ends_the_run_with_an_error_not_a_hang(cv_run, tmp_path):
    recipe = _recipe(cv_run, tmp_path, epochs=50)
    process = _fold(recipe, tmp_path / "run", cv_run, 2, wait=False)  # minutes of training
    workers = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(workers) < 2:
        found = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()
        workers = [int(pid) for pid in found]
        time.sleep(0.2)
    assert len(workers) == 2, "torchrun started no workers"
    time.sleep(5)  # both are training
    os.kill(workers[1], signal.SIGKILL)
    started = time.monotonic()
    out, _ = process.communicate(timeout=120)
    assert process.returncode != 0
    assert time.monotonic() - started < 90  # ended, not hung
    assert b"failed" in out.lower() or b"error" in out.lower()


def test_two_processes_write_the_one_process_csv(model_dir, tmp_path):
    from .conftest import synthetic_lesion

    images = tmp_path / "images"
    images.mkdir()
    for i, dx in enumerate(["mel", "nv", "bkl", "bcc", "df", "vasc", "akiec"] * 2):
        synthetic_lesion(dx, 300 + i).save(images / f"img_{i:02d}.jpg")
    (images / "notes.txt").write_text("not an image")
    base = [sys.executable, "-m", "skin_model", "predict", str(images), "--model", str(model_dir)]
    one = subprocess.run([*base, "--out", str(tmp_path / "one.csv")], env=_env(), cwd=REPO, capture_output=True)
    assert one.returncode == 0, one.stderr.decode()
    two = subprocess.run(
        [
            TORCHRUN,
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "skin_model",
            *base[3:],
            "--out",
            str(tmp_path / "two.csv"),
        ],
        env=_env(),
        cwd=REPO,
        capture_output=True,
    )
    assert two.returncode == 0, two.stderr.decode()[-3000:]
    a, b = pd.read_csv(tmp_path / "one.csv"), pd.read_csv(tmp_path / "two.csv")
    assert list(a.columns) == list(b.columns) and len(a) == len(b) == 14
    numbers = a.select_dtypes("number").columns
    assert a.drop(columns=numbers).fillna("").equals(b.drop(columns=numbers).fillna(""))
    assert np.allclose(a[numbers].to_numpy(float), b[numbers].to_numpy(float), atol=1e-4, equal_nan=True)
    assert two.stderr.decode().count("rank 0:") >= 1 and "rank 1:" not in two.stderr.decode()  # progress once
    assert not list(tmp_path.glob("two.csv.rank*"))  # the shares are gone
