"""Command line: ``python -m skin_model {train,evaluate,referral,predict}`` (also ``skin-model``)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import __version__
from .config import settings
from .vocab import DEFAULT_PRIOR, PRIOR_NAMES

log = logging.getLogger(__name__)


def _train_recipe(args) -> int:
    """A recipe: every member x fold (resuming), then the artifact (into the run unless --out names
    another folder), then its evaluation on the test split and every source."""
    from .crossval import load_sources, train_folds
    from .export import export_recipe
    from .recipe import Recipe

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
    data = load_sources(recipe, data_dirs, cache=run / "images.npy")
    out = Path(args.out or run / "artifact")
    if not args.evaluate_only:
        if not args.export_only:
            train_folds(recipe, data, run)
        export_recipe(recipe, data, data_dirs, run, out, outliers)
        print(f"artifact written to {out}")
    if not args.no_evaluate:
        from .evaluate import evaluate_sources

        evaluate_sources(data, out, write_card=True, outliers=outliers)
    return 0


def _train(args) -> int:
    import torch

    from .preprocess import SourceSize
    from .train import Run, TrainConfig, export, load_splits, train_member

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.recipe:
        return _train_recipe(args)
    args.data = (args.data or [settings().data_dir])[0]
    args.run = args.run or Path("runs/default")
    run = Run(args.run)
    height = args.height or args.size
    width = args.width or args.size
    tuning = {
        k: v
        for k, v in (
            ("class_weight_power", args.class_weight_power),
            ("meta_dropout", args.meta_dropout),
            ("meta_drop_all", args.meta_drop_all),
            ("label_smoothing", args.label_smoothing),
            ("ema_decay", args.ema_decay),
            ("weight_decay", args.weight_decay),
        )
        if v is not None
    }
    for spec in args.arch or []:
        name, _, rest = spec.rpartition("=")
        arch, _, epochs = rest.partition(":")
        cfg = TrainConfig(
            arch=arch,
            name=name,
            epochs=int(epochs or args.epochs),
            height=height,
            width=width,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            device=args.device,
            pretrained=arch in args.pretrained,
            **tuning,
        )
        data = load_splits(args.data, run, SourceSize.for_inputs(cfg.height), cfg.seed)
        train_member(data, run, cfg, resume=args.resume)
    if args.out:
        export(run, args.data, Path(args.out), args.model_version, names=args.export_members)
    return 0


def _evaluate(args) -> int:
    from .evaluate import evaluate, summary_table

    results = evaluate(args.data, Path(args.run), args.model, write_card=args.write_card, cam_limit=args.cam_limit)
    print(summary_table(results))
    return 0


def _referral(args) -> int:
    from .evaluate import write_referral

    section = write_referral(args.data, Path(args.run), args.model, write_card=args.write_card)
    for split in ("validation", "test"):
        point = section[split]
        print(
            f"{split}: threshold {section['threshold']:.3f}, sensitivity {point['sensitivity']:.3f}, "
            f"specificity {point['specificity']:.3f}, melanoma sensitivity {point['melanoma_sensitivity']:.3f}, "
            f"AUC {point['auc']:.3f} (n={point['n']})"
        )
    return 0


def _predict(args) -> int:
    """Exit 0 when at least one image was predicted (with a one-line summary on stderr if some
    were not), 1 when none was."""
    from .batch import predict_paths

    outcome = predict_paths(
        args.paths,
        metadata_csv=args.metadata,
        out_csv=args.out,
        cam_dir=args.cam_dir,
        model_dir=args.model,
        prior=args.prior,
    )
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
        help="train a recipe's fold models, export and evaluate them (--recipe); or single members (--arch)",
        description="With --recipe: train every member of the recipe on every fold (resuming where a run "
        "stopped), export the artifact into <run>/artifact (or --out), and evaluate it. "
        "Example: python -m skin_model train --recipe recipes/3.0.0.toml "
        "--data ../shared/data/ham10000 --data ../shared/data/isic2017",
    )
    train.add_argument("--recipe", type=Path, default=None, help="a recipe file (recipes/<version>.toml)")
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
    train.add_argument(
        "--export-only", action="store_true", help="with --recipe: export the finished folds, no training"
    )
    train.add_argument(
        "--outliers",
        type=Path,
        default=None,
        help="with --recipe: real images that are not dermoscopy, in category folders; half fits the "
        "out-of-domain check, half is kept aside to check it (default: not_dermoscopy beside the first --data)",
    )
    train.add_argument("--no-evaluate", action="store_true", help="with --recipe: skip the evaluation after export")
    train.add_argument(
        "--evaluate-only", action="store_true", help="with --recipe: evaluate the exported artifact again, nothing else"
    )
    train.add_argument(
        "--out",
        type=Path,
        default=None,
        help="export the artifact here (with --recipe, default <run>/artifact: a run never writes into "
        "skin_model/model unless it is named here)",
    )
    legacy = train.add_argument_group(
        "single members without a recipe (how models before 3.0.0 were made; see docs/decisions.md)"
    )
    legacy.add_argument(
        "--arch",
        action="append",
        default=None,
        help="member [NAME=]ARCH[:EPOCHS] to train, repeatable (ARCH: resnet18, mobilenet_v2, "
        "efficientnet_lite0; NAME defaults to ARCH); none: only export",
    )
    legacy.add_argument(
        "--pretrained",
        action="append",
        default=[],
        help="architecture(s) to start from ImageNet weights (sha256-checked files on disk)",
    )
    legacy.add_argument("--epochs", type=int, default=14)
    legacy.add_argument("--size", type=int, default=112, help="square input side (see --height/--width)")
    legacy.add_argument("--height", type=int, default=None, help="input height (default: --size)")
    legacy.add_argument("--width", type=int, default=None, help="input width (default: --size)")
    legacy.add_argument("--batch-size", type=int, default=64)
    legacy.add_argument("--lr", type=float, default=1e-3)
    legacy.add_argument("--weight-decay", type=float, default=None)
    legacy.add_argument("--seed", type=int, default=0)
    legacy.add_argument("--device", default=settings().device, help="cpu or cuda (default: SKIN_MODEL_DEVICE or cpu)")
    legacy.add_argument(
        "--class-weight-power",
        type=float,
        default=None,
        help="loss weight of a class ~ (1 / frequency) ** POWER (0: none, 1: fully balanced; default: TrainConfig's)",
    )
    legacy.add_argument(
        "--meta-dropout",
        type=float,
        default=None,
        help="chance that each metadata field is hidden during training (default: TrainConfig's)",
    )
    legacy.add_argument(
        "--meta-drop-all",
        type=float,
        default=None,
        help="chance that the whole metadata vector is hidden (trains the image-only view)",
    )
    legacy.add_argument("--label-smoothing", type=float, default=None)
    legacy.add_argument("--ema-decay", type=float, default=None, help="EMA of the weights (0: off)")
    legacy.add_argument("--threads", type=int, default=None)
    legacy.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    legacy.add_argument("--model-version", default=__version__)
    legacy.add_argument(
        "--export-members",
        nargs="+",
        default=None,
        help="member names to put in the artifact (default: every finished member; "
        "'auto': the subset that scores best on validation)",
    )
    train.set_defaults(func=_train)

    ev = sub.add_parser("evaluate", help="test-split metrics of an artifact")
    ev.add_argument("--data", type=Path, default=settings().data_dir)
    ev.add_argument("--run", type=Path, required=True, help="run folder holding split.csv")
    ev.add_argument("--model", type=Path, default=None, help="artifact folder (default: the shipped one)")
    ev.add_argument("--write-card", action="store_true", help="store the metrics in the model card")
    ev.add_argument("--cam-limit", type=int, default=None, help="images for the Grad-CAM mask check (default all)")
    ev.set_defaults(func=_evaluate)

    rf = sub.add_parser(
        "referral", help="choose the referral threshold on validation and score it on test (an existing artifact)"
    )
    rf.add_argument("--data", type=Path, default=settings().data_dir)
    rf.add_argument("--run", type=Path, required=True, help="run folder holding split.csv")
    rf.add_argument("--model", type=Path, default=None, help="artifact folder (default: the shipped one)")
    rf.add_argument("--write-card", action="store_true", help="store the rule in the model card")
    rf.set_defaults(func=_referral)

    pr = sub.add_parser("predict", help="predict image files or folders")
    pr.add_argument("paths", nargs="+", type=Path)
    pr.add_argument("--metadata", type=Path, default=None, help="CSV in the HAM10000 columns")
    pr.add_argument("--out", type=Path, default=None, help="CSV to write (default: stdout)")
    pr.add_argument("--cam-dir", type=Path, default=None, help="write <image_id>.png Grad-CAM heatmaps here")
    pr.add_argument("--model", type=Path, default=None, help="artifact folder (default: the shipped one)")
    pr.add_argument(
        "--prior",
        choices=PRIOR_NAMES,
        default=DEFAULT_PRIOR,
        help="equal: every diagnosis equally likely before the image is seen (default); "
        "training: HAM10000's own frequencies (nv 67%%)",
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
        from .card import read_card_of_shipped

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
