"""Does a candidate artifact meet the shipping rule of docs/model.md against the shipped model?

    python -m scripts.shipping_rule ../runs/4.0.0/artifact [--shipped skin_model/model]

Reads both model cards (the candidate's evaluated: ``python -m skin_model train --recipe ...
--run ... --evaluate-only`` redoes that step) and prints each condition with the candidate's
number and its bar; exits 1 if one is missed, 2 if the candidate has no evaluation. Out of fold
only: the test split plays no part. The budget (Analyse time, the app's memory) is measured by
``benchmarks/`` and is not read here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from skin_model.config import PACKAGE_DIR
from skin_model.inference.card import read_card
from skin_model.inference.ood import PASS_RATE as OOD_PASS  # of every source's images
from skin_model.inference.referral import TARGET_SENSITIVITY as SENSITIVITY

SPECIFICITY = 0.75  # the referral's, at the candidate's own threshold (its sensitivity: the export's target)
AT_HOME_LOSS = 0.01  # the suggested diagnosis's BA and the melanoma AUC may fall this much at most
NOT_DERMOSCOPY_LOSS = 0.02  # the kept-aside images that are not dermoscopy, flagged


def conditions(candidate: dict, shipped: dict) -> list[tuple[str, float, str, bool]]:
    """(condition, the candidate's number, its bar, met) for each part of the rule."""
    rows = []

    def at_least(name: str, value: float, bar: float) -> None:
        rows.append((name, value, f">= {bar:.3f}", value >= bar))

    referral, answer = candidate["referral"]["validation"], candidate["evaluation"]["out_of_fold"]["answer"]
    home = shipped["evaluation"]["out_of_fold"]["answer"]
    same = (referral["n"], answer["images"]) == (shipped["referral"]["validation"]["n"], home["images"])
    rows.append(("the same out-of-fold images as the shipped model", answer["images"], f"= {home['images']}", same))
    at_least("referral sensitivity (out of fold)", referral["sensitivity"], SENSITIVITY)
    at_least("referral specificity (out of fold)", referral["specificity"], SPECIFICITY)
    for key, name in (("balanced_accuracy_present", "suggested diagnosis BA"), ("melanoma_auc", "melanoma AUC")):
        at_least(f"{name} (out of fold)", answer[key], home[key] - AT_HOME_LOSS)
    for source, rate in sorted(candidate["ood"]["pass_rate_by_source"].items()):
        at_least(f"{source}: passes the out-of-domain check", rate, OOD_PASS)
    outside = candidate["evaluation"]["not_dermoscopy"]["all"]["flagged"]
    at_least(
        "kept-aside not-dermoscopy flagged",
        outside,
        shipped["evaluation"]["not_dermoscopy"]["all"]["flagged"] - NOT_DERMOSCOPY_LOSS,
    )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("candidate", type=Path, help="the candidate's artifact folder")
    p.add_argument("--shipped", type=Path, default=PACKAGE_DIR / "model")
    args = p.parse_args()
    candidate, shipped = read_card(args.candidate), read_card(args.shipped)
    if not candidate.get("evaluation"):
        print(f"{args.candidate} has no evaluation yet: train with --evaluate-only first", file=sys.stderr)
        sys.exit(2)
    rows = conditions(candidate, shipped)
    print(f"| condition ({candidate['model_version']} against {shipped['model_version']}) | value | bar | |")
    print("|---|---|---|---|")
    for name, value, bar, met in rows:
        shown = f"{value:.3f}" if isinstance(value, float) else value
        print(f"| {name} | {shown} | {bar} | {'met' if met else '**missed**'} |")
    outside = candidate["evaluation"]["not_dermoscopy"]["all"]["flagged"]
    print(
        f"\n(issue 33's 90% of the kept-aside not-dermoscopy images flagged: {'met' if outside >= 0.90 else 'missed'})"
    )
    sys.exit(0 if all(met for *_, met in rows) else 1)


if __name__ == "__main__":
    main()
