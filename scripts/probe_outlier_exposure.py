"""Probe: would outlier exposure (a linear classifier between in-domain dermoscopy and real
images that are not dermoscopy) make the out-of-domain check of a cross-validated artifact
flag more non-dermoscopy, with each source's dermoscopy still passing at 97%?

Only the training part of ../shared/data/not_dermoscopy is read here (``splits.outlier_parts``);
its checking part is never looked at. Both the in-domain images (by lesion) and that training
part (by file) are cut in two halves: fit on one, threshold and score on the other, and back.

    python -m scripts.probe_outlier_exposure [ARTIFACT]   # an artifact without outlier exposure; ~3 min
"""

import sys
from pathlib import Path

import numpy as np
import torch

from skin_model.inference.network import encode_metadata
from skin_model.inference.ood import K_OOD, OutlierClassifier, image_statistics
from skin_model.inference.predictor import SkinClassifier
from skin_model.inference.similar import member_embedding
from skin_model.training.crossval import load_sources
from skin_model.training.evaluate import _outputs_of_cached
from skin_model.training.recipe import Recipe
from skin_model.training.splits import lesion_hash, outlier_parts

DATA = [Path("../shared/data/ham10000"), Path("../shared/data/isic2017")]
NOT_DERMOSCOPY = Path("../shared/data/not_dermoscopy")
WEIGHT_DECAYS = (1e-3, 1e-2, 1e-1, 0.3, 1.0)


def outside_features(model: SkinClassifier, paths: list[Path]):
    embeddings, stats = [], []
    for k in range(0, len(paths), 4):
        prepared = [model.prepare(p) for p in paths[k : k + 4]]
        pixels = torch.cat([p.pixels for p in prepared])
        metas = torch.stack([encode_metadata(p.metadata) for p in prepared])
        _, features = model.member_outputs(pixels, metas)
        embeddings.append(model.cases.embed(member_embedding(features)))
        stats.append(image_statistics(pixels))
    return torch.cat(embeddings), torch.cat(stats)


def main() -> None:
    artifact = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/3.0.0/artifact_without_outliers")
    recipe = Recipe.load("recipes/3.0.0.toml")
    data = load_sources(recipe, DATA, cache=Path("runs/3.0.0/images.npy"))
    model = SkinClassifier.load(artifact)
    df = data.df
    train_rows = np.flatnonzero(df["split"].eq("train").to_numpy())
    check_rows = np.flatnonzero(df["split"].eq("check").to_numpy())
    assert len(train_rows) == len(model.cases.embeddings), "the artifact's index is not this data's training rows"

    # In-domain: the index's own embeddings (each scored without its lesion) and the check part.
    _, check_features, check_stats = _outputs_of_cached(model, data, df["split"].eq("check").to_numpy())
    emb = torch.cat([model.cases.embeddings.float(), model.cases.embed(check_features)])
    stats = torch.cat([image_statistics(data.images[train_rows]), check_stats])
    rows = np.concatenate([train_rows, check_rows])
    lesions = df["lesion_id"].to_numpy()[rows]
    sources = df["source"].to_numpy()[rows]
    index_lesions = lesions[: len(train_rows)]

    outside_paths, _ = outlier_parts(NOT_DERMOSCOPY)
    out_emb, out_stats = outside_features(model, outside_paths)
    categories = np.array([p.parent.name for p in outside_paths])

    def knn(query_emb, query_lesions):
        sims = query_emb @ model.cases.embeddings.float().T
        if query_lesions is not None:
            sims[torch.from_numpy(query_lesions[:, None] == index_lesions[None, :])] = -2.0
        return 1.0 - sims.topk(K_OOD, dim=1).values[:, -1].double()

    in_knn = torch.cat([knn(emb[i : i + 512], lesions[i : i + 512]) for i in range(0, len(emb), 512)])
    out_knn = knn(out_emb, None)
    in_half = np.array([lesion_hash(x) % 2 for x in lesions])
    by_file = np.array([lesion_hash(p.name) % 2 for p in outside_paths])
    # What export calibrates on: HAM10000's out-of-fold images and ISIC 2017's check part, not
    # ISIC 2017's training part (every fold model trained on it).
    other_training = np.zeros(len(rows), dtype=bool)
    other_training[: len(train_rows)] = df["fold"].to_numpy()[train_rows] < 0
    ood_class = type(model.ood)

    def flags(weight_decay, scored_outside, fit_on_other_training) -> dict[str, np.ndarray]:
        """Per design: which scored outside images are flagged, fitting on the rest; the in-domain
        images alternate halves; the threshold passes 97% of each source's held half."""
        flagged: dict[str, list] = {"distances (today)": [], "classifier": [], "max of both": []}
        for i, scored in enumerate(scored_outside):
            fit_in, fit_out = in_half != i % 2, ~scored
            held = ~fit_in & ~other_training
            if not fit_on_other_training:
                fit_in = fit_in & ~other_training
            ood = ood_class.fit(stats[torch.from_numpy(fit_in)])
            in_maha, out_maha = ood.statistics_distance(stats), ood.statistics_distance(out_stats)
            today_in, today_out = torch.stack([in_knn, in_maha], 1), torch.stack([out_knn, out_maha], 1)
            ood._set_scales(today_in[torch.from_numpy(fit_in)])
            clf = OutlierClassifier.fit(
                (emb[fit_in], stats[fit_in], in_knn[fit_in], in_maha[fit_in]),
                (out_emb[fit_out], out_stats[fit_out], out_knn[fit_out], out_maha[fit_out]),
                weight_decay,
            )
            today = (ood._combine(today_in), ood._combine(today_out))
            learnt = (clf.distance(emb, stats, in_knn, in_maha), clf.distance(out_emb, out_stats, out_knn, out_maha))
            scale = float(np.quantile(learnt[0][fit_in].numpy(), 0.985))
            variants = {
                "distances (today)": today,
                "classifier": learnt,
                "max of both": tuple(torch.maximum(a, b / scale) for a, b in zip(today, learnt)),
            }
            for name, (s_in, s_out) in variants.items():
                s_in, s_out = s_in.numpy(), s_out.numpy()
                threshold = max(
                    np.quantile(s_in[held & (sources == s)], 0.97, method="higher") for s in sorted(set(sources))
                )
                flagged[name].append(np.where(scored, s_out > threshold, False))
        return {name: np.logical_or.reduce(parts) for name, parts in flagged.items()}

    def show(label, flagged_by_design):
        for name, flagged in flagged_by_design.items():
            by_kind = {str(c): round(float(flagged[categories == c].mean()), 2) for c in sorted(set(categories))}
            print(f"{label}: {name:18s} flags {flagged.mean():.2f} {by_kind}")

    print(
        f"in-domain {len(emb)} ({other_training.sum()} of them other sources' training parts), "
        f"not dermoscopy (fitting part) {len(out_emb)}"
    )
    halves = [by_file == 0, by_file == 1]
    kinds = [categories == c for c in sorted(set(categories))]  # fit on three kinds, score the fourth
    for other in (True, False):
        show(f"ISIC 2017 training part fitted as dermoscopy: {other}", flags(0.1, halves, other))
    for weight_decay in WEIGHT_DECAYS:
        show(f"weight decay {weight_decay:g}, halves by file", flags(weight_decay, halves, True))
        show(f"weight decay {weight_decay:g}, unseen kind   ", flags(weight_decay, kinds, True))


if __name__ == "__main__":
    main()
