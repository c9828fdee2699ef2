"""Pin the shipped model's answers on the committed samples (tests/sample_expectations.json).

Run after a deliberate model change (python -m scripts.pin_samples); the shipped-model
test then catches any unintended change of model, preprocessing or decision rule.
"""

import json
from pathlib import Path

import pandas as pd

import skin_model
from skin_model.inference.card import read_card_of_shipped

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "assets" / "samples"
OUT = REPO / "tests" / "sample_expectations.json"


def main() -> None:
    model = skin_model.load_model()
    rows = pd.read_csv(SAMPLES / "metadata.csv", dtype={"image_id": str})
    answers = {}
    for row in rows.itertuples():
        pred = model.predict(SAMPLES / f"{row.image_id}.jpg", row.age, row.sex, row.localization)
        answers[row.image_id] = {
            "label": pred.label,
            "probabilities": {c: round(p, 5) for c, p in pred.probabilities.items()},
            "uncertain_between": list(pred.uncertain_between or ()),
            "ood": pred.ood,
        }
    OUT.write_text(
        json.dumps({"model_version": read_card_of_shipped()["model_version"], "samples": answers}, indent=1) + "\n"
    )
    print(f"pinned {len(answers)} samples in {OUT}")


if __name__ == "__main__":
    main()
