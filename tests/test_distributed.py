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
# Logits of the same fold model trained by 1 and by 2 processes: floating-point noise only (the
# order of sums differs: the ranks' shares, the all-reduced batch-norm statistics and gradients).
TOLERANCE = 1e-3


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    return env


def _recipe(cv_run, tmp_path: Path, epochs: int) -> Path:
    text = cv_run.recipe.path.read_text().replace("epochs = 2", f"epochs = {epochs}")
    path = tmp_path / "recipe.toml"
    path.write_text(text)
    return path


def _fold(recipe: Path, run: Path, cv_run, processes: int = 1, wait: bool = True):
    args = [str(REPO / "tests" / "ddp_fold.py"), str(recipe), str(run), *map(str, cv_run.data_dirs)]
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


def _logits(run: Path, epoch: int) -> torch.Tensor:
    return load_file(str(run / "fold0" / f"val_logits_{epoch:02d}.safetensors"))["logits"]


def test_two_processes_train_the_same_model_as_one(cv_run, tmp_path):
    recipe = _recipe(cv_run, tmp_path, epochs=2)
    _fold(recipe, tmp_path / "one", cv_run, 1)
    _fold(recipe, tmp_path / "two", cv_run, 2)
    one, two = _logits(tmp_path / "one", 2), _logits(tmp_path / "two", 2)
    assert one.shape == two.shape and one.abs().max() > 0.1  # a trained model, not zeros
    assert (one - two).abs().max() < TOLERANCE
    log = pd.read_csv(tmp_path / "two" / "fold0" / "log.csv")
    assert list(log["processes"]) == [2, 2] and list(log["epoch"]) == [1, 2]  # rank 0 alone wrote


def test_a_run_of_two_processes_resumes_in_one(cv_run, tmp_path):
    """Stopped during its second epoch, a 2-process run resumes from its checkpoint in 1 process
    and ends where an uninterrupted run ends."""
    recipe = _recipe(cv_run, tmp_path, epochs=3)
    _fold(recipe, tmp_path / "straight", cv_run, 1)
    process = _fold(recipe, tmp_path / "resumed", cv_run, 2, wait=False)
    log = tmp_path / "resumed" / "fold0" / "log.csv"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (log.exists() and len(log.read_text().splitlines()) >= 2):
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)  # during epoch 2: torchrun stops its workers
    process.communicate(timeout=120)
    assert not (tmp_path / "resumed" / "fold0" / "done.json").exists()
    _fold(recipe, tmp_path / "resumed", cv_run, 1)
    assert (_logits(tmp_path / "straight", 3) - _logits(tmp_path / "resumed", 3)).abs().max() < TOLERANCE
    assert pd.read_csv(log)["processes"].tolist()[0] == 2


def test_a_rank_that_dies_ends_the_run_with_an_error_not_a_hang(cv_run, tmp_path):
    recipe = _recipe(cv_run, tmp_path, epochs=50)
    process = _fold(recipe, tmp_path / "run", cv_run, 2, wait=False)
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
    assert two.stderr.decode().count("rank 0:") >= 1 and "rank 1" not in two.stderr.decode()  # progress once
    assert not list(tmp_path.glob("two.csv.rank*"))  # the shares are gone
