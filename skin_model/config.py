"""Paths and run-time settings, each overridable by an environment variable."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# The shipped artifact lives inside the package (found via importlib.resources).
MODEL_PACKAGE = "skin_model.model"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "index.safetensors"  # similar cases and the out-of-domain check
CARD_FILE = "model_card.json"
REPO_DIR = PACKAGE_DIR.parent
DEFAULT_DATA_DIR = REPO_DIR.parent / "shared" / "data" / "ham10000"


@dataclass(frozen=True)
class Settings:
    model_dir: Path | None  # None: the artifact shipped inside the package
    data_dir: Path
    device: str
    num_threads: int | None  # None: torch's default
    max_image_pixels: int  # larger JPEGs are refused (decompression bombs); JPEGs decode at reduced scale
    max_decoded_pixels: int  # larger images of other formats are refused: they decode at full size
    min_image_side: int  # smaller images carry too little to read
    max_working_side: int  # decoded images are shrunk to this longest side at once
    max_batch_files: int  # images per batch in the app (the command line has no limit)
    max_batch_bytes: int  # their total size in the app, checked before any is read
    memory_limit: int | None  # bytes the server may hold (serving.memory); None: its container's limit, if any


def settings() -> Settings:
    env = os.environ.get
    threads = env("SKIN_MODEL_THREADS")
    return Settings(
        model_dir=Path(env("SKIN_MODEL_DIR")) if env("SKIN_MODEL_DIR") else None,
        data_dir=Path(env("SKIN_MODEL_DATA", str(DEFAULT_DATA_DIR))),
        device=env("SKIN_MODEL_DEVICE", "cpu"),
        num_threads=int(threads) if threads else None,
        max_image_pixels=int(env("SKIN_MODEL_MAX_PIXELS", str(40_000_000))),
        # 20 MP at Pillow's 4 bytes a pixel: 80 MB, so that an upload costs under 150 MB in all
        max_decoded_pixels=int(env("SKIN_MODEL_MAX_DECODED_PIXELS", str(20_000_000))),
        min_image_side=int(env("SKIN_MODEL_MIN_SIDE", "32")),
        max_working_side=int(env("SKIN_MODEL_MAX_SIDE", "1024")),
        max_batch_files=int(env("SKIN_MODEL_MAX_BATCH", "100")),
        max_batch_bytes=int(env("SKIN_MODEL_MAX_BATCH_MB", "200")) * 2**20,
        memory_limit=int(env("SKIN_MODEL_MEMORY_LIMIT_MB")) * 2**20 if env("SKIN_MODEL_MEMORY_LIMIT_MB") else None,
    )
