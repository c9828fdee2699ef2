"""Prediction over files and folders, as the ``predict`` command and the app's batch page use it."""

from __future__ import annotations

import io
import logging
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from skin_model import vocab
from skin_model.i18n import unread_field_text
from skin_model.inference.inputs import (
    IMAGE_SUFFIXES,
    InvalidInputError,
    MetadataError,
    MetadataFileError,
    parse_metadata_leniently,
)
from skin_model.inference.referral import BORDERLINE, CANNOT_JUDGE, NOT_SUSPICIOUS, SUSPICIOUS, answer_state
from skin_model.inference.torch_thread import TorchThreadError
from skin_model.vocab import DEFAULT_PRIOR

if TYPE_CHECKING:
    from skin_model.inference.predictor import Prepared


# Views per member's forward pass (images x test-time views): the peak memory grows faster than
# the batch (CPU build of torch). Model 2.1.0 (2 members x 4 views): 2 images +30 MB, 4 +130 MB,
# 32 +920 MB, more than Streamlit Cloud's 690 MB. Model 2.2.0 (3 members, one at 200x150): 1 image
# +33 MB at 5.9 img/s, 2 images +91 MB at 7.0 img/s, which took the app past 690 MB after a Batch.
# Models 3.0.0-3.1.0 (4 views) ran one image at a time; 3.2.0 (2 views) runs two in the same memory.
VIEWS_PER_PASS = 4
# The predict command runs in its own process, on the user's machine, not in the app's 690 MB:
# model 3.2.0 with 8 images a pass answered 64 images at 27-28 img/s against 22-23 with 2, for a
# peak 130 MB higher (CUDA build of torch on 2 cores; docs/performance.md).
CLI_VIEWS_PER_PASS = 16


def images_per_pass(model, views_per_pass: int = VIEWS_PER_PASS) -> int:
    """How many images go through the network at once: as many as keep a pass to ``views_per_pass``."""
    return max(1, views_per_pass // len(model.views))


RESULT_COLUMNS = (
    "rank",
    "image_id",
    "prediction",
    "uncertain_between",
    "malignant_probability",
    "refer",
    "verdict",
    "refer_threshold",
    "borderline",
    *vocab.CLASSES,
    "prior",
    "ood",
    "ood_score",
    "answered_anyway",
    "warning",
    "error",
)
# Riskiest first: suspicious, near the line (either side), cannot judge, not suspicious, each by
# P(malignant) from the highest; refused files last. The page, the CSV and the CLI share it.
RISK_ORDER = {SUSPICIOUS: 0, BORDERLINE: 1, CANNOT_JUDGE: 2, NOT_SUSPICIOUS: 3}


# Probabilities to 0.01 percentage point, in the CSV and where rows are ranked: finer is noise, not
# information (the same image in another batch differs by ~1e-7).
CSV_DIGITS = "%.4f"


def ranked(table: pd.DataFrame) -> pd.DataFrame:
    """The table riskiest first (``RISK_ORDER``), with its ``rank`` from 1; ties (equal as the CSV
    writes them) keep their order."""
    state = [answer_state(v, b == 1) if v else "" for v, b in zip(table["verdict"], table["borderline"])]
    risk = pd.to_numeric(table["malignant_probability"], errors="coerce").fillna(-1.0)
    as_written = [-float(CSV_DIGITS % p) for p in risk]
    order = table.assign(_state=[RISK_ORDER.get(x, len(RISK_ORDER)) for x in state], _p=as_written).sort_values(
        ["_state", "_p"], kind="stable"
    )
    out = order.drop(columns=["_state", "_p"]).reset_index(drop=True)
    out["rank"] = range(1, len(out) + 1)
    return out


@dataclass
class Collected:
    """What was found in the given paths: images, each with a unique id, and files skipped."""

    images: list[tuple[str, Path]]
    skipped: list[Path]


def collect_images(paths: Iterable[Path]) -> Collected:
    """Image files given directly or found (sorted) inside the given folders.

    An image's id is its file name without extension, or, where two images share that
    name (``a/x.jpg``, ``b/x.jpg``), its path without extension, so that ids are unique.
    Other files inside folders are skipped and listed; a file named directly is always
    tried (it gets a clear error if it is no image).
    """
    files, skipped = [], []
    for path in map(Path, paths):
        if path.is_dir():
            for child in sorted(path.iterdir()):
                if child.is_file() and child.suffix.lower() in IMAGE_SUFFIXES:
                    files.append(child)
                elif child.is_file() and not child.name.startswith("."):
                    skipped.append(child)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"No such file or folder: {path}")
    files = list(dict.fromkeys(files))  # the same file named twice is analysed once
    stems = Counter(f.stem for f in files)
    ids = [f.stem if stems[f.stem] == 1 else f.with_suffix("").as_posix().lstrip("/") for f in files]
    return Collected(list(zip(ids, files)), skipped)


def upload_ids(names: list[str]) -> list[str]:
    """Unique ids for uploaded files, as ``collect_images`` makes them for paths: the name without
    extension, or the whole name where two share a stem (``x.jpg``, ``x.png``), numbered where
    the same name is given twice (``x.jpg``, ``x.jpg (2)``)."""
    stems = Counter(Path(n).stem for n in names)
    ids = [Path(n).stem if stems[Path(n).stem] == 1 else n for n in names]
    seen: Counter = Counter()
    unique = []
    for image_id in ids:
        seen[image_id] += 1
        unique.append(image_id if seen[image_id] == 1 else f"{image_id} ({seen[image_id]})")
    return unique


log = logging.getLogger(__name__)


class UnexpectedError(RuntimeError):
    """A row's analysis that failed for a reason of the server's, not of the input: worded like a
    refusal (``key`` for the app's language) so that the row says it and the run goes on."""

    def __init__(self, message: str, key: str):
        super().__init__(message)
        self.key, self.params = key, {}


def cam_file(cam_dir: Path, image_id: str) -> Path:
    """Where an image's heatmap goes: ``<cam_dir>/<id>.png``, the id's folders kept but never a way
    out of ``cam_dir`` (``..``, a leading ``/`` and empty parts are dropped)."""
    parts = [p for p in Path(image_id).as_posix().split("/") if p not in ("", ".", "..")] or ["image"]
    path = Path(cam_dir).joinpath(*parts[:-1], parts[-1] + ".png")
    if not path.resolve().is_relative_to(Path(cam_dir).resolve()):  # a symlinked folder inside cam_dir
        raise ValueError(f"the heatmap of {image_id!r} would be written outside {cam_dir}")
    return path


def read_metadata_table(source) -> dict[str, dict]:
    """``image_id -> {age, sex, localization}`` from a CSV in the HAM10000 columns.

    Only ``image_id`` is required; absent columns and empty cells mean unknown.
    A repeated ``image_id`` is refused, since it would be ambiguous.
    """
    data = Path(source).read_bytes() if isinstance(source, (str, Path)) else source.read()
    try:
        if b"\x00" in data[:65536]:
            raise ValueError("binary data")  # an image or an archive given as the table
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = data.decode("cp1252", errors="replace")  # as spreadsheets save CSV on Windows
        table = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError as err:
        raise MetadataFileError("The metadata file is empty.", "metadata.empty") from err
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise MetadataFileError(
            "The metadata file is not a CSV table (text with comma-separated columns).", "metadata.not_csv"
        ) from err
    table.columns = [c.strip().lower() for c in table.columns]
    if "image_id" not in table.columns:
        raise MetadataFileError("The metadata CSV needs an 'image_id' column (HAM10000 columns).", "metadata.no_id")
    ids = table["image_id"].str.strip()
    duplicated = sorted(set(ids[ids.duplicated()]))
    if duplicated:
        raise MetadataFileError(
            f"The metadata CSV repeats image_id {duplicated[0]!r}.", "metadata.repeated_id", image_id=duplicated[0]
        )
    fields = [c for c in ("age", "sex", "localization") if c in table.columns]
    return {i: {f: row[f] for f in fields} for i, (_, row) in zip(ids, table.iterrows())}


def metadata_for(table: dict[str, dict], image_id: str) -> dict:
    """A row of the metadata table by image id, or by file name where ids are paths."""
    return table.get(image_id) or table.get(Path(image_id).name, {})


@dataclass
class BatchItem:
    image_id: str
    source: object  # path, bytes or a file object (an upload, read when its turn comes)
    metadata: dict  # raw age / sex / localization, read by the batch rule


def predict_items(
    model,
    items: list[BatchItem],
    cam_dir: Path | None = None,
    progress=None,
    batch_size: int | None = None,
    prior: str = DEFAULT_PRIOR,
    error_text: Callable[[Exception], str] = str,
    warning_text: Callable[[MetadataError], str] = unread_field_text,
    answer_anyway: bool = False,
    on_answer: Callable | None = None,
) -> pd.DataFrame:
    """One row per item, in the items' order (``ranked`` sorts them riskiest first): rank, image_id, prediction, the uncertain pair if any, P(malignant or
    pre-malignant) (the referral's number: calibrated, HAM10000's frequencies, whatever ``prior``),
    ``refer`` (0/1: 1 also when out of domain), the ``verdict`` in words, the referral threshold,
    ``borderline`` (0/1), the 7 class values under ``prior``, the out-of-domain verdict (``ood``
    0/1) and score, a ``warning`` for metadata fields taken as unknown, an ``error`` for refusals.

    A metadata field that cannot be read never refuses the image: it becomes unknown and
    the row says so (``parse_metadata_leniently``). Without heatmaps, images go through the
    network in batches (``batch_size``, by default ``images_per_pass``); with heatmaps, one at a
    time (each needs its own backward pass).
    ``error_text`` and ``warning_text`` word the messages (the app passes its language's).
    """
    from skin_model.inference.gradcam import grayscale_png

    batch_size = batch_size or images_per_pass(model)
    rows: dict[int, dict] = {}
    pending: list[tuple[int, Prepared]] = []
    warnings: dict[int, str] = {}
    written: set[Path] = set()  # heatmap files of this run: two ids never share one

    def refuse(n, item, err):
        rows[n] = {
            "rank": None,
            "image_id": item.image_id,
            "prediction": "",
            "uncertain_between": "",
            "malignant_probability": None,
            "refer": None,
            "verdict": "",
            "refer_threshold": None,
            "borderline": None,
            **{c: None for c in vocab.CLASSES},
            "prior": prior,
            "ood": None,
            "ood_score": None,
            "answered_anyway": None,
            "warning": warnings.get(n, ""),
            "error": error_text(err),
        }

    def accept(n, item, pred):
        if answer_anyway:
            pred = pred.anyway()
        answer = pred.as_dict()  # an image that cannot be judged: no number, no diagnosis
        rows[n] = {
            "rank": None,
            "image_id": item.image_id,
            "prediction": answer["prediction"] or "",
            "uncertain_between": "/".join(answer["uncertain_between"] or ()),
            "malignant_probability": answer["malignant_probability"],
            "refer": None if answer["refer"] is None else int(answer["refer"]),
            "verdict": pred.verdict,
            "refer_threshold": answer["refer_threshold"],
            "borderline": None if answer["borderline"] is None else int(answer["borderline"]),
            **{c: answer["probabilities"].get(c) for c in vocab.CLASSES},
            "prior": pred.prior,
            "ood": int(pred.ood),
            "ood_score": pred.ood_score,
            "answered_anyway": int(pred.answered_anyway),
            "warning": warnings.get(n, ""),
            "error": "",
        }

    def flush():
        preds = model.predict_prepared([p for _, p in pending], prior)
        for (n, prepared), pred in zip(pending, preds):
            accept(n, items[n], pred)
            if on_answer is not None:  # e.g. the page's thumbnail and report, from the image decoded once
                on_answer(n, prepared.image, pred.anyway() if answer_anyway else pred)
        pending.clear()

    for n, item in enumerate(items):
        raw = item.metadata
        meta, unread = parse_metadata_leniently(raw.get("age"), raw.get("sex"), raw.get("localization"))
        if unread:
            warnings[n] = "; ".join(warning_text(err) for err in unread)
        kwargs = dict(age=meta.age, sex=meta.sex, site=meta.site)
        try:
            if cam_dir is None:
                pending.append((n, model.prepare(item.source, **kwargs)))
                if len(pending) == batch_size:
                    flush()
            else:
                pred, explanation = model.diagnose(item.source, **kwargs, prior=prior)
                try:
                    cam_path = cam_file(cam_dir, item.image_id)
                    while cam_path in written:  # "../a/x" and "a/x" both became a/x.png
                        cam_path = cam_path.with_name(cam_path.stem + "_.png")
                    written.add(cam_path)
                    cam_path.parent.mkdir(parents=True, exist_ok=True)
                    grayscale_png(explanation.heatmap).save(cam_path)
                except (OSError, ValueError) as err:  # the answer stands; only its heatmap file is missing
                    warnings[n] = "; ".join(filter(None, (warnings.get(n), f"heatmap not written: {err}")))
                accept(n, item, pred)
        except InvalidInputError as err:
            refuse(n, item, err)
        except TorchThreadError:
            raise  # busy: the whole batch is asked again later (the page keeps the uploads)
        except Exception as err:  # one image's fault never ends the run; the log names no image content
            log.exception("image %d of %d could not be analysed", n + 1, len(items))
            refuse(n, item, UnexpectedError(f"The analysis failed ({type(err).__name__}); see the log.", "unexpected"))
        if progress:
            progress(n + 1, len(items))
    if pending:
        flush()
    return pd.DataFrame([rows[n] for n in range(len(items))], columns=list(RESULT_COLUMNS))


def write_csv(table: pd.DataFrame, target) -> None:
    """The batch table as CSV (the command line's and the Batch page's download): numbers rounded."""
    table.to_csv(target, index=False, float_format=CSV_DIGITS)


@dataclass
class BatchOutcome:
    """What ``predict_paths`` did, for the command line's summary and exit status."""

    table: pd.DataFrame
    skipped: list[Path]
    written: bool = True  # False on the ranks other than 0, whose share rank 0 wrote

    @property
    def predicted(self) -> int:
        return int((self.table["error"] == "").sum())

    @property
    def failed(self) -> int:
        return len(self.table) - self.predicted

    @property
    def warned(self) -> int:
        return int((self.table["warning"] != "").sum())


def predict_paths(
    paths,
    metadata_csv: Path | None = None,
    out_csv: Path | None = None,
    cam_dir: Path | None = None,
    model_dir: Path | None = None,
    prior: str = DEFAULT_PRIOR,
    answer_anyway: bool = False,
) -> BatchOutcome:
    from skin_model.inference.predictor import SkinClassifier

    collected = collect_images(paths)
    if not collected.images:
        raise FileNotFoundError(f"No image files found in the given paths (looked for {', '.join(IMAGE_SUFFIXES)}).")
    table = read_metadata_table(metadata_csv) if metadata_csv else {}
    items = [BatchItem(image_id, path, metadata_for(table, image_id)) for image_id, path in collected.images]
    dist = _processes()
    if dist.world > 1 and out_csv is None:
        raise ValueError("several processes write one CSV: name it with --out")
    model = SkinClassifier.load(model_dir)
    # Under torchrun each rank takes a contiguous share of the images; rank 0 joins the shares in
    # the images' order, so the CSV is the one a single process writes.
    shares = np.array_split(np.arange(len(items)), dist.world)
    mine = [items[i] for i in shares[dist.rank]]
    progress = _progress(len(mine)) if dist.main and dist.world > 1 else None
    result = predict_items(
        model,
        mine,
        cam_dir=cam_dir,
        prior=prior,
        answer_anyway=answer_anyway,
        progress=progress,
        batch_size=images_per_pass(model, CLI_VIEWS_PER_PASS),
    )
    if dist.world > 1:
        part = Path(f"{out_csv}.rank{dist.rank}.csv")
        result.to_csv(part, index=False)  # full precision: rounding happens once, in write_csv
        dist.barrier()
        if not dist.main:
            dist.close()
            return BatchOutcome(result, collected.skipped, written=False)
        parts = [Path(f"{out_csv}.rank{r}.csv") for r in range(dist.world)]
        result = pd.concat([read_part(p) for p in parts], ignore_index=True)
        for p in parts:
            p.unlink()
        dist.close()
    result = ranked(result)
    write_csv(result, sys.stdout if out_csv is None else out_csv)
    return BatchOutcome(result, collected.skipped)


TEXT_COLUMNS = ("image_id", "prediction", "uncertain_between", "verdict", "prior", "warning", "error")


def read_part(path: Path) -> pd.DataFrame:
    """A rank's share as it wrote it: text as text (an empty cell stays empty), numbers as numbers."""
    part = pd.read_csv(path, dtype=str, keep_default_na=False)
    for column in part.columns.difference(TEXT_COLUMNS):
        part[column] = pd.to_numeric(part[column], errors="coerce").astype(object).where(part[column] != "", None)
    return part


def _processes():
    """This process's place under torchrun (one process otherwise). ``training.distributed`` needs
    torch alone, and only the command line gets here: the app never imports it."""
    from skin_model.training.distributed import Distributed

    return Distributed.from_environment("cpu")


def _progress(total: int):
    """Rank 0's progress on stderr, every tenth of its share: shown once, not once per rank."""
    step = max(1, total // 10)

    def show(done: int, _n: int) -> None:
        if done % step == 0 or done == total:
            print(f"rank 0: {done} of {total} images", file=sys.stderr, flush=True)

    return show
