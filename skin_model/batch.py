"""Prediction over files and folders, as the ``predict`` command and the app's batch page use it."""
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import pandas as pd

from . import vocab
from .inputs import IMAGE_SUFFIXES, InvalidInputError
from .vocab import DEFAULT_PRIOR

if TYPE_CHECKING:
    from .predictor import Prepared

log = logging.getLogger(__name__)

RESULT_COLUMNS = ("image_id", "prediction", "uncertain_between", "malignant_probability", *vocab.CLASSES, "prior",
                  "ood", "ood_score")


def collect_images(paths: Iterable[Path]) -> list[Path]:
    """Image files given directly or found (sorted) inside the given folders."""
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"No such file or folder: {path}")
    return files


def read_metadata_table(source) -> dict[str, dict]:
    """``image_id -> {age, sex, localization}`` from a CSV in the HAM10000 columns.

    Only ``image_id`` is required; absent columns and empty cells mean unknown.
    A repeated ``image_id`` is refused, since it would be ambiguous.
    """
    try:
        table = pd.read_csv(source, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InvalidInputError(f"The metadata file is not a readable CSV: {err}") from err
    table.columns = [c.strip().lower() for c in table.columns]
    if "image_id" not in table.columns:
        raise InvalidInputError("The metadata CSV needs an 'image_id' column (HAM10000 columns).")
    ids = table["image_id"].str.strip()
    duplicated = sorted(set(ids[ids.duplicated()]))
    if duplicated:
        raise InvalidInputError(f"The metadata CSV repeats image_id {duplicated[0]!r}.")
    fields = [c for c in ("age", "sex", "localization") if c in table.columns]
    return {i: {f: row[f] for f in fields} for i, (_, row) in zip(ids, table.iterrows())}


@dataclass
class BatchItem:
    image_id: str
    source: object              # path or bytes
    metadata: dict              # raw age / sex / localization (validated by the model)


def predict_items(model, items: list[BatchItem], cam_dir: Path | None = None, progress=None,
                  batch_size: int = 32, prior: str = DEFAULT_PRIOR) -> pd.DataFrame:
    """One row per item: image_id, prediction, the uncertain pair if any, P(malignant or
    pre-malignant), 7 probabilities under ``prior``, the out-of-domain verdict (``ood`` 0/1)
    and score; an ``error`` column for refusals.

    Without heatmaps, images go through the network in batches; with heatmaps,
    one at a time (each needs its own backward pass).
    """
    from .gradcam import grayscale_png

    rows: dict[int, dict] = {}
    pending: list[tuple[int, Prepared]] = []

    def refuse(n, item, err):
        rows[n] = {"image_id": item.image_id, "prediction": "", "uncertain_between": "", "malignant_probability": None,
                   **{c: None for c in vocab.CLASSES}, "prior": prior, "ood": None, "ood_score": None,
                   "error": str(err)}

    def accept(n, item, pred):
        rows[n] = {"image_id": item.image_id, "prediction": pred.label,
                   "uncertain_between": "/".join(pred.uncertain_between or ()),
                   "malignant_probability": pred.malignant_probability, **pred.probabilities,
                   "prior": pred.prior, "ood": int(pred.ood), "ood_score": pred.ood_score, "error": ""}

    def flush():
        preds = model.predict_prepared([p for _, p in pending], prior)
        for (n, _), pred in zip(pending, preds):
            accept(n, items[n], pred)
        pending.clear()

    for n, item in enumerate(items):
        meta = item.metadata
        kwargs = dict(age=meta.get("age"), sex=meta.get("sex"), site=meta.get("localization"))
        try:
            if cam_dir is None:
                pending.append((n, model.prepare(item.source, **kwargs)))
                if len(pending) == batch_size:
                    flush()
            else:
                pred, explanation = model.diagnose(item.source, **kwargs, prior=prior)
                grayscale_png(explanation.heatmap).save(Path(cam_dir) / f"{item.image_id}.png")
                accept(n, item, pred)
        except InvalidInputError as err:
            refuse(n, item, err)
        if progress:
            progress(n + 1, len(items))
    if pending:
        flush()
    return pd.DataFrame([rows[n] for n in range(len(items))], columns=[*RESULT_COLUMNS, "error"])


def predict_paths(paths, metadata_csv: Path | None = None, out_csv: Path | None = None,
                  cam_dir: Path | None = None, model_dir: Path | None = None,
                  prior: str = DEFAULT_PRIOR) -> pd.DataFrame:
    from .predictor import SkinClassifier

    files = collect_images(paths)
    if not files:
        raise FileNotFoundError("No image files found in the given paths.")
    table = read_metadata_table(metadata_csv) if metadata_csv else {}
    items = [BatchItem(p.stem, p, table.get(p.stem, {})) for p in files]
    if cam_dir is not None:
        Path(cam_dir).mkdir(parents=True, exist_ok=True)
    model = SkinClassifier.load(model_dir)
    result = predict_items(model, items, cam_dir=cam_dir, prior=prior)
    if not result["error"].any():
        result = result.drop(columns="error")
    if out_csv is None:
        result.to_csv(sys.stdout, index=False)
    else:
        result.to_csv(out_csv, index=False)
        log.info("wrote %d predictions to %s", len(result), out_csv)
    return result
