"""Print the model card's evidence as the markdown tables of docs/model.md.

    python -m scripts.card_tables [MODEL_DIR]      # default: the shipped artifact

Nothing is computed here: every figure is read from the card that the export and evaluation
stages wrote (``python -m skin_model train --recipe ...``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from skin_model import vocab
from skin_model.inference.card import model_folder, read_card


def _f(x, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def main(model_dir: Path | None = None) -> None:
    with model_folder(model_dir) as folder:
        card = read_card(folder)
    oof, ev = card["out_of_fold"], card["evaluation"]
    test = ev["splits"]["test"]
    answer, oof_answer = test["answer"], ev["out_of_fold"]["answer"]
    print(f"## Model {card['model_version']}: out-of-fold beside test\n")
    print(
        "The answer: the most probable class of the calibrated probabilities (training frequencies); AUCs rank "
        "by the same probabilities.\n"
    )
    print("| measure | out-of-fold | test |\n|---|---|---|")
    report = test["equal_prior_report"]
    rows = [
        ("images", ev["out_of_fold"]["images"], answer["images"]),
        ("balanced accuracy", _f(oof_answer["balanced_accuracy_present"]), _f(answer["balanced_accuracy_present"])),
        ("melanoma recall", _f(oof_answer["melanoma_recall"]), _f(answer["melanoma_recall"])),
        ("melanoma AUC", _f(oof_answer["melanoma_auc"]), _f(answer["melanoma_auc"])),
        ("P(malignant) AUC", _f(oof_answer["malignant_auc"]), _f(answer["malignant_auc"])),
        ("macro AUC", _f(oof["macro_auc"]), _f(report["macro_auc"])),
        ("training prior: ECE (15 bins)", _f(oof["training_prior"]["ece_15"]), _f(test["training_prior"]["ece_15"])),
        (
            "training prior: mean P(malignant) / malignant share",
            f"{_f(oof['training_prior']['mean_malignant_probability'])} / {_f(oof['training_prior']['malignant_share'])}",
            f"{_f(test['training_prior']['mean_malignant_probability'])} / {_f(test['training_prior']['malignant_share'])}",
        ),
        (
            "referral: sensitivity / specificity / melanoma sensitivity",
            " / ".join(
                _f(card["referral"]["validation"][k]) for k in ("sensitivity", "specificity", "melanoma_sensitivity")
            ),
            " / ".join(_f(test["referral"][k]) for k in ("sensitivity", "specificity", "melanoma_sensitivity")),
        ),
        ("flagged out of domain", "–", _f(answer["ood_flagged"])),
    ]
    for row in rows:
        print("| " + " | ".join(str(x) for x in row) + " |")
    print("\nPer-class recall on test: " + " · ".join(f"{c} {report['recall'][c]:.2f}" for c in vocab.CLASSES))
    print("\nTraining prior, mean probability / frequency (out-of-fold; test):")
    for c in vocab.CLASSES:
        o, t = oof["training_prior"], test["training_prior"]
        print(
            f"- {c}: {o['mean_probability'][c]:.3f} / {o['frequency'][c]:.3f}; {t['mean_probability'][c]:.3f} / {t['frequency'][c]:.3f}"
        )
    print("\nThe top class under each prior (out-of-fold; test): balanced accuracy / melanoma recall")
    for prior in vocab.PRIOR_NAMES:
        t = test["training_prior_answer" if prior == "training" else "equal_prior"]
        o = ev["out_of_fold"][prior]
        print(
            f"- {prior}: {_f(o['balanced_accuracy_present'])} / {_f(o['melanoma_recall'])}; "
            f"{_f(t['balanced_accuracy_present'])} / {_f(t['melanoma_recall'])}"
        )
    print("\n## By source (the suggested diagnosis; AUCs of the calibrated probabilities)\n")
    print(
        "| source (part) | images | melanomas | melanoma recall | melanoma AUC | BA (classes present) | P(malignant) AUC | flagged out of domain |"
    )
    print("|---|---|---|---|---|---|---|---|")
    oof_sources = {f"{s} (out-of-fold)": r | {"ood_flagged": None} for s, r in ev["out_of_fold"]["by_source"].items()}
    for name, r in {**ev["by_source"], **oof_sources}.items():
        print(
            f"| {name} | {r['images']} | {r['melanomas']} | {_f(r['melanoma_recall'])} | {_f(r['melanoma_auc'])} | "
            f"{_f(r['balanced_accuracy_present'])} | {_f(r['malignant_auc'])} | {_f(r['ood_flagged'])} |"
        )
    print("\n## Out-of-domain check\n")
    print(f"Threshold {card['ood']['threshold']:.3f}; pass rate by source (out-of-fold or check, leave-lesion-out):")
    for s, rate in card["ood"]["pass_rate_by_source"].items():
        print(f"- {s}: {rate:.3f}")
    outside, fitted = ev.get("not_dermoscopy"), ev.get("not_dermoscopy_fitting_part") or {}
    if outside:
        print(
            "\n| not dermoscopy | kept aside: images | flagged | fitting part: images | flagged |\n|---|---|---|---|---|"
        )
        for name, r in outside.items():
            f = fitted.get(name, {})
            print(f"| {name} | {r['n']} | {r['flagged']:.3f} | {f.get('n', '–')} | {_f(f.get('flagged'))} |")
    print(f"\nEpoch by pooled out-of-fold BA: {card['selection']['out_of_fold_balanced_accuracy_by_epoch']}")
    print(
        f"Temperature {card['temperature']:.3f}; bias {card['bias']}; referral threshold {card['referral']['threshold']:.3f}"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else None)
