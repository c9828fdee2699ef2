"""Command line: ``python -m skin_model {train,predict}`` (also ``skin-model``)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from skin_model import __version__
from skin_model.config import settings
from skin_model.vocab import DEFAULT_PRIOR, PRIOR_NAMES

log = logging.getLogger(__name__)
UNSEEN_SOURCES = ("bcn20000",)  # scored as clinics never seen when a recipe does not train on them


def _train_recipe(args) -> int:
    """A recipe: every member x fold (resuming), then the artifact (into the run unless --out names
    another folder), then its evaluation on the test split and every source."""
    from skin_model.training.crossval import load_sources, train_folds
    from skin_model.training.export import export_recipe
    from skin_model.training.recipe import Recipe

    recipe = Recipe.load(args.recipe)
    run = Path(args.run or f"runs/{recipe.model_version}")
    data_dirs = args.data or [settings().data_dir]
    outliers = Path(args.outliers or Path(data_dirs[0]).parent / "not_dermoscopy")
    if recipe.outlier_exposure and not outliers.is_dir() and not args.evaluate_only:
        print(
            f"The recipe fits the out-of-domain check on real images that are not dermoscopy, and {outliers} "
            "is not a folder: name it with --outliers DIR (category folders of .jpg files).",
            file=sys.stderr,
        )
        return 2
    from skin_model.training.distributed import Distributed

    # One process, or one of the N that `torchrun --nproc_per_node=N -m skin_model train ...` starts:
    # they train together; rank 0 alone decodes the cache first, writes, exports and evaluates.
    dist = Distributed.from_environment(args.device or settings().device)
    try:
        if not dist.main:
            dist.barrier()  # rank 0 decodes the images and writes the cache; the others read it
        data = load_sources(recipe, data_dirs, cache=run / "images.npy")
        if dist.main:
            dist.barrier()
        out = Path(args.out or run / "artifact")
        if not args.evaluate_only and not args.export_only and not args.from_artifact:
            train_folds(recipe, data, run, dist=dist, start=args.start_from)
        if not dist.main:
            return 0
        if not args.evaluate_only:
            if args.from_artifact:
                from skin_model.training.export import unpack_artifact

                unpack_artifact(args.from_artifact, recipe, data, run)
            export_recipe(recipe, data, data_dirs, run, out, outliers)
            print(f"artifact written to {out}")
    finally:
        dist.close()
    if not args.no_evaluate:
        from skin_model.training.evaluate import evaluate_sources

        shared = Path(data_dirs[0]).parent
        originals = shared / "ham10000_originals"  # full-size uploads, where present
        # Labelled sources beside the data that the recipe never trained on: a clinic it never saw.
        unseen = tuple(
            shared / name for name in UNSEEN_SOURCES if name not in recipe.sources and (shared / name).is_dir()
        )
        results = evaluate_sources(data, out, recipe.sources, True, outliers, originals, Path(data_dirs[0]), unseen)
        print(summary(results))
    return 0


def _number(value, digits: int = 3) -> str:
    """A metric for the terminal: a dash where there is none (a split without melanoma has no
    melanoma recall, one with a single class no AUC)."""
    return "–" if value is None else f"{value:.{digits}f}"


def summary(results: dict) -> str:
    """The evaluation in a few lines: each scored split, then each source, then the images that
    are not dermoscopy (all of it is in the card's ``evaluation``)."""
    lines = []
    oof = results.get("out_of_fold")
    if oof:
        answer = oof["answer"]
        lines.append(
            f"out of fold ({oof['images']} images): balanced accuracy "
            f"{_number(answer['balanced_accuracy_present'])}, melanoma recall {_number(answer['melanoma_recall'])}, "
            f"melanoma AUC {_number(answer['melanoma_auc'])}"
        )
    for name, split in results["splits"].items():
        answer, rule = split["answer"], split["referral"]
        lines.append(
            f"{name} ({answer['images']} images): balanced accuracy {_number(answer['balanced_accuracy_present'])}, "
            f"melanoma recall {_number(answer['melanoma_recall'])}, melanoma AUC {_number(answer['melanoma_auc'])}; "
            f"referral sensitivity {_number(rule['sensitivity'])}, specificity {_number(rule['specificity'])}, "
            f"melanoma sensitivity {_number(rule['melanoma_sensitivity'])}"
        )
    for source, r in results["by_source"].items():
        lines.append(
            f"  {source}: {r['images']} images, melanoma recall {_number(r['melanoma_recall'])}, "
            f"melanoma AUC {_number(r['melanoma_auc'])}, flagged out of domain {_number(r['ood_flagged'])}"
        )
    uploads = results.get("full_size_uploads")
    if uploads:
        lines.append(
            f"full-size uploads ({uploads['images']} originals against their copies): verdicts agree "
            f"{_number(uploads['verdicts_agree'])}, mean |ΔP(malignant)| {_number(uploads['mean_abs_delta_p_malignant'])}"
        )
    for name, r in (results.get("unseen_sources") or {}).items():
        lines.append(
            f"{name}, never seen ({r['lesions']} lesions): cannot judge {_number(r['cannot_judge'])}; judged: referral "
            f"sensitivity {_number(r['sensitivity'])}, specificity {_number(r['specificity'])}, "
            f"melanoma AUC {_number(r['melanoma_auc'])}"
        )
    outside = results.get("not_dermoscopy")
    if outside:
        lines.append(
            f"not dermoscopy (kept aside) flagged: {_number(outside['all']['flagged'])} (n={outside['all']['n']})"
        )
    return "\n".join(lines)


def _lesion_finder(args) -> int:
    """Train the quality check's lesion finder from its recipe and write its artifact."""
    from skin_model.inference.lesion_finder import FILE
    from skin_model.training.lesion_finder import FinderRecipe, train_lesion_finder

    recipe = FinderRecipe.load(args.recipe)
    out = Path(args.out or Path("runs") / "lesion_finder" / recipe.version / FILE)
    train_lesion_finder(recipe, args.ham, args.isic, out, args.threads, bcn=args.bcn)
    print(f"wrote {out}")
    return 0


def _train(args) -> int:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    return _train_recipe(args)


def _predict(args) -> int:
    """Exit 0 when at least one image was predicted (with a one-line summary on stderr if some
    were not), 1 when none was."""
    from skin_model.serving.batch import predict_paths

    outcome = predict_paths(
        args.paths,
        metadata_csv=args.metadata,
        out_csv=args.out,
        cam_dir=args.cam_dir,
        model_dir=args.model,
        prior=args.prior,
        answer_anyway=args.answer_anyway,
    )
    if not outcome.written:  # a rank other than 0 under torchrun: rank 0 wrote the CSV and speaks
        return 0
    # Messages for the person at the terminal go to stderr, not to the log: they name files.
    if outcome.skipped:
        names = ", ".join(str(p) for p in outcome.skipped[:10])
        more = f" and {len(outcome.skipped) - 10} more" if len(outcome.skipped) > 10 else ""
        print(f"warning: skipped {len(outcome.skipped)} file(s) that are not images: {names}{more}", file=sys.stderr)
    total = len(outcome.table)
    if outcome.warned:
        print(
            f"warning: {outcome.warned} of {total} image(s) had metadata taken as unknown (see the warning column)",
            file=sys.stderr,
        )
    if outcome.predicted == 0:
        print(f"error: none of the {total} image(s) could be predicted (see the error column)", file=sys.stderr)
        return 1
    if outcome.failed:
        print(
            f"predicted {outcome.predicted} of {total} image(s); {outcome.failed} could not be read "
            "(see the error column)",
            file=sys.stderr,
        )
    elif args.out is not None:
        print(f"predicted {total} image(s) into {args.out}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="skin-model", description=__doc__)
    parser.add_argument("--version", action="store_true", help="print package and model versions")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command")

    train = sub.add_parser(
        "train",
        help="train a recipe's fold models, export and evaluate them",
        description="With --recipe: train every member of the recipe on every fold (resuming where a run "
        "stopped), export the artifact into <run>/artifact (or --out), and evaluate it. "
        "Example: python -m skin_model train --recipe recipes/3.0.0.toml "
        "--data ../shared/data/ham10000 --data ../shared/data/isic2017",
    )
    train.add_argument("--recipe", type=Path, required=True, help="a recipe file (recipes/<version>.toml)")
    train.add_argument(
        "--data",
        type=Path,
        action="append",
        default=None,
        help="a data folder in HAM10000's layout, repeatable (default: SKIN_MODEL_DATA or ../shared/data/ham10000)",
    )
    train.add_argument(
        "--run", type=Path, default=None, help="run folder (default: runs/<model version> or runs/default)"
    )
    train.add_argument("--export-only", action="store_true", help="export the finished folds, no training")
    train.add_argument(
        "--from-artifact",
        type=Path,
        default=None,
        help="re-export: the fold models of this artifact (made from the same recipe) instead of training them",
    )
    train.add_argument(
        "--start-from",
        type=Path,
        default=None,
        help="the artifact folder a recipe's start_from names (its version and weights' sha256 are checked)",
    )
    train.add_argument(
        "--outliers",
        type=Path,
        default=None,
        help="real images that are not dermoscopy, in category folders; half fits the "
        "out-of-domain check, half is kept aside to check it (default: not_dermoscopy beside the first --data)",
    )
    train.add_argument("--no-evaluate", action="store_true", help="skip the evaluation after export")
    train.add_argument(
        "--evaluate-only", action="store_true", help="evaluate the exported artifact again, nothing else"
    )
    train.add_argument(
        "--out",
        type=Path,
        default=None,
        help="export the artifact here (default <run>/artifact: a run never writes into "
        "skin_model/model unless it is named here)",
    )
    train.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    train.add_argument(
        "--device",
        default=None,
        help="cpu or cuda (default: SKIN_MODEL_DEVICE, else cpu); under torchrun each rank takes its local GPU",
    )
    train.set_defaults(func=_train)

    finder = sub.add_parser(
        "lesion-finder",
        help="train the image-quality check's lesion finder from its recipe",
        description="Learn HAM10000's lesion masks (training folds but the recipe's validation fold) and "
        "choose the framing thresholds on the validation fold, ISIC 2017's training part and BCN20000. Example: "
        "python -m skin_model lesion-finder --recipe recipes/quality/lesion_finder.toml --ham ../shared/data/ham10000 "
        "--isic ../shared/data/isic2017 --bcn ../shared/data/bcn20000 --out skin_model/model/lesion_finder.safetensors",
    )
    finder.add_argument("--recipe", type=Path, required=True)
    finder.add_argument("--ham", type=Path, required=True, help="HAM10000 with its masks/ folder")
    finder.add_argument("--isic", type=Path, default=None, help="ISIC 2017 (thresholds only)")
    finder.add_argument("--bcn", type=Path, default=None, help="BCN20000 (thresholds only)")
    finder.add_argument("--out", type=Path, default=None, help="default runs/lesion_finder/<version>/")
    finder.add_argument("--threads", type=int, default=None)
    finder.set_defaults(func=_lesion_finder)

    pr = sub.add_parser("predict", help="predict image files or folders")
    pr.add_argument("paths", nargs="+", type=Path)
    pr.add_argument("--metadata", type=Path, default=None, help="CSV in the HAM10000 columns")
    pr.add_argument("--out", type=Path, default=None, help="CSV to write (default: stdout)")
    pr.add_argument("--cam-dir", type=Path, default=None, help="write <image_id>.png Grad-CAM heatmaps here")
    pr.add_argument("--model", type=Path, default=None, help="artifact folder (default: the shipped one)")
    pr.add_argument(
        "--answer-anyway",
        action="store_true",
        help="give the numbers and the diagnosis of images that cannot be judged too (marked answered_anyway=1)",
    )
    pr.add_argument(
        "--prior",
        choices=PRIOR_NAMES,
        default=DEFAULT_PRIOR,
        help="what the seven class columns state (default: %(default)s). training: the calibrated "
        "probabilities under HAM10000's frequencies (nv 67%%), whose mel + bcc + akiec is malignant_probability; "
        "equal: the view before base rates (every diagnosis equally likely), not probabilities",
    )
    pr.set_defaults(func=_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.version:
        from skin_model.inference.card import read_card_of_shipped

        print(f"skin_model {__version__}, model {read_card_of_shipped().get('model_version', '?')}")
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except ModuleNotFoundError as err:  # training and evaluation need more than the app
        log.error(
            "%s is not installed: training and evaluation need `pip install -r requirements-dev.txt` "
            "(or the package's [train] extra)",
            (err.name or "a module").split(".")[0],
        )
        return 1
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        if args.verbose:
            log.exception("%s", err)  # -v: the whole traceback, for a bug report
        else:
            log.error("%s (run with -v for the details)", err)
        return 1
