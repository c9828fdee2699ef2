"""The similar-cases index and the out-of-domain check, on synthetic features."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from skin_model import vocab
from skin_model.inference.inputs import Metadata
from skin_model.inference.ood import OodCheck, image_statistics
from skin_model.inference.similar import CaseIndex


def _index(n: int = 200, features: int = 64, seed: int = 0) -> tuple[CaseIndex, OodCheck, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(n, features, generator=g)
    pixels = torch.randint(60, 200, (n, 3, 24, 32), generator=g, dtype=torch.uint8)
    stats = image_statistics(pixels)
    labels = torch.arange(n) % len(vocab.CLASSES)
    cases = CaseIndex.build(feats, labels, ["histo"] * n, [f"img{i}" for i in range(n)], [b"jpeg"] * n, dim=32)
    return cases, OodCheck.fit(stats), feats, stats


def test_each_case_keeps_its_patient_through_storage():
    g = torch.Generator().manual_seed(3)
    n = 30
    feats, labels = torch.randn(n, 16, generator=g), torch.arange(n) % len(vocab.CLASSES)
    patients = [
        Metadata(None if i % 4 == 0 else 5.0 * i, vocab.SEXES[i % len(vocab.SEXES)], vocab.SITES[i % len(vocab.SITES)])
        for i in range(n)
    ]
    ids = [f"img{i}" for i in range(n)]
    cases = CaseIndex.build(feats, labels, ["histo"] * n, ids, [b"jpeg"] * n, patients, dim=8)
    tensors, metadata = cases.to_tensors()
    again = CaseIndex.from_tensors(tensors, metadata)
    assert again.patients == patients
    nearest = again.neighbours(again.similarities(feats[5:6])[0], k=1)[0]
    assert nearest.image_id == "img5" and nearest.patient == patients[5]
    assert nearest.as_dict()["age"] == 25.0 and nearest.as_dict()["site"] == patients[5].site
    # An index stored before patients were kept: every case's patient unknown.
    older = {k: v for k, v in tensors.items() if k not in ("ages", "sexes", "sites")}
    assert CaseIndex.from_tensors(older, metadata).patients == [Metadata()] * n


@pytest.mark.parametrize("i", [0, 17, 199])
def test_a_training_image_finds_itself_first(i):
    cases, _, feats, _ = _index()
    nearest = cases.neighbours(cases.similarities(feats[i : i + 1])[0])
    assert nearest[0].image_id == f"img{i}" and nearest[0].similarity == pytest.approx(1.0, abs=1e-2)
    assert nearest[0].dx == vocab.CLASSES[i % len(vocab.CLASSES)]
    assert [n.similarity for n in nearest] == sorted((n.similarity for n in nearest), reverse=True)


def test_the_score_grows_with_the_distance_from_the_training_images():
    cases, ood, feats, stats = _index()
    table = pd.DataFrame({"lesion_id": [f"new{i}" for i in range(50)], "source": "near"})
    near = feats[:50] + 0.1 * torch.randn(50, feats.shape[1])
    ood.calibrate_by_source(cases, {"near": (near, stats[:50], table)}, [f"img{i}" for i in range(200)])
    # Farther in the features: the k-th nearest training image less similar.
    sims = torch.linspace(1.0, -0.5, 7)[:, None] * torch.ones(7, 200)
    unused = torch.zeros(7, 32)  # the embedding: read only by an outlier classifier, none here
    by_features = ood.scores(unused, sims, stats[:1].repeat(7, 1)).tolist()
    assert _non_decreasing(by_features) and by_features[-1] > by_features[0]
    # Farther in the image statistics (colour, contrast, texture), the features left as they are.
    steps = torch.linspace(0, 3, 7)[:, None] * stats.std(0)
    by_statistics = ood.scores(unused, torch.ones(7, 200), stats.mean(0) + steps).tolist()
    assert _non_decreasing(by_statistics) and by_statistics[-1] > by_statistics[0]


def _non_decreasing(values: list[float]) -> bool:
    return all(b >= a - 1e-12 for a, b in zip(values, values[1:]))


@pytest.mark.parametrize("rate", [0.9, 0.97])
def test_the_threshold_passes_the_stated_share_of_each_source(rate):
    cases, ood, feats, stats = _index(seed=1)
    g = torch.Generator().manual_seed(2)
    near = feats[:80] + 0.3 * torch.randn(80, feats.shape[1], generator=g)  # a source close to training
    far = feats[80:160] + 1.5 * torch.randn(80, feats.shape[1], generator=g)  # one further away
    parts = {
        "a": (near, stats[:80], pd.DataFrame({"lesion_id": [f"new{i}" for i in range(80)], "source": "near"})),
        "b": (far, stats[80:160], pd.DataFrame({"lesion_id": [f"new{i}" for i in range(80, 160)], "source": "far"})),
    }
    report = ood.calibrate_by_source(cases, parts, [f"img{i}" for i in range(200)], pass_rate=rate)
    for source, (f, s, _) in (("near", parts["a"]), ("far", parts["b"])):
        passed = (ood.score_features(cases, f, s) <= ood.threshold).double().mean().item()
        assert passed >= rate and report["pass_rate_by_source"][source] == pytest.approx(passed)
    # the stricter source sets the threshold: at most one image of it more would have failed
    strict = min(report["pass_rate_by_source"].values())
    assert strict < rate + 2 / 80


def test_a_training_image_scored_without_its_own_lesion_is_not_trivially_in_domain():
    """Leave-lesion-out: an image in the index is not its own nearest neighbour when calibrating."""
    cases, ood, feats, stats = _index()
    lesions = [f"img{i}" for i in range(200)]
    own = pd.DataFrame({"lesion_id": lesions[:100], "source": "ham"})
    ood.calibrate_by_source(cases, {"oof": (feats[:100], stats[:100], own)}, lesions, pass_rate=0.97)
    # With its own copy counted as a neighbour, every kNN distance would be smaller.
    left_out_scale = ood.scales[0]
    ood.calibrate_by_source(
        cases,
        {"oof": (feats[:100], stats[:100], own.assign(lesion_id=[f"other{i}" for i in range(100)]))},
        lesions,
        pass_rate=0.97,
    )
    assert ood.scales[0] < left_out_scale


def _outside(cases: CaseIndex, feats: torch.Tensor, stats: torch.Tensor, n: int, seed: int):
    """Images that are not dermoscopy, and would pass the distances: a shift along the index's
    main directions (cosine neighbours stay near), typical statistics."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.randint(0, len(feats), (n,), generator=g)
    direction = cases.projection[:, :4].sum(1)
    shift = direction / direction.norm() * feats.norm(dim=1).mean()
    return feats[rows] + 0.3 * torch.randn(n, feats.shape[1], generator=g) + shift, stats[rows]


def test_outlier_exposure_flags_the_kind_of_image_it_was_shown_and_each_source_still_passes():
    cases, ood, feats, stats = _index(n=400, seed=3)
    g = torch.Generator().manual_seed(4)
    inside = feats[:200] + 0.3 * torch.randn(200, feats.shape[1], generator=g)
    table = pd.DataFrame({"lesion_id": [f"new{i}" for i in range(200)], "source": ["a", "b"] * 100})
    parts = {"in": (inside, stats[:200], table)}
    lesions = [f"img{i}" for i in range(400)]
    fitting, kept_aside = _outside(cases, feats, stats, 60, 5), _outside(cases, feats, stats, 60, 6)

    ood.calibrate_by_source(cases, parts, lesions, pass_rate=0.9)
    without = (ood.score_features(cases, *kept_aside) > ood.threshold).double().mean().item()
    # Images every model trained on (another source's training part): learnt from, no threshold.
    also = (feats[200:300], stats[200:300], pd.DataFrame({"lesion_id": lesions[200:300], "source": "trained on"}))
    report = ood.calibrate_by_source(cases, parts, lesions, pass_rate=0.9, outside=fitting, also_inside=also)
    assert set(report["pass_rate_by_source"]) == {"a", "b"}
    assert report["outlier_exposure"]["in_domain_images"] == 300
    with_outliers = (ood.score_features(cases, *kept_aside) > ood.threshold).double().mean().item()
    assert without < 0.5 and with_outliers > 0.9
    assert report["outlier_exposure"]["outside_images"] == 60 and len(ood.scales) == 3
    for source in ("a", "b"):
        mask = torch.tensor((table["source"] == source).to_numpy())
        passed = (ood.score_features(cases, inside[mask], stats[:200][mask]) <= ood.threshold).double().mean()
        # each in-domain image's classifier distance came from a fit on the other half of the
        # lesions: the final fit (on all) can only make them look more in-domain
        assert passed.item() >= 0.9 - 1e-9


def test_the_outlier_classifier_survives_storage():
    cases, ood, feats, stats = _index(n=300, seed=7)
    table = pd.DataFrame({"lesion_id": [f"new{i}" for i in range(100)], "source": "a"})
    outside = _outside(cases, feats, stats, 40, 8)
    lesions = [f"img{i}" for i in range(300)]
    ood.calibrate_by_source(cases, {"in": (feats[:100], stats[:100], table)}, lesions, outside=outside)
    tensors, metadata = ood.to_tensors()
    again = OodCheck.from_tensors(tensors, metadata)
    query = torch.cat([feats[200:220], outside[0][:20]])
    query_stats = torch.cat([stats[200:220], outside[1][:20]])
    assert torch.equal(ood.score_features(cases, query, query_stats), again.score_features(cases, query, query_stats))
    assert again.threshold == ood.threshold and again.outliers is not None


def test_an_uncalibrated_check_refuses_and_a_nan_score_is_flagged():
    stats = image_statistics(torch.randint(0, 255, (20, 3, 16, 16), dtype=torch.uint8))
    check = OodCheck.fit(stats)
    with pytest.raises(RuntimeError, match="no threshold"):
        check.flags(torch.tensor([0.1]))  # never "everything passes"
    check.threshold = 1.0
    assert check.flags(torch.tensor([0.5, 2.0, float("nan")])).tolist() == [False, True, True]
    tensors, metadata = OodCheck.fit(stats).to_tensors()
    with pytest.raises(RuntimeError, match="no threshold"):  # stored uncalibrated, loaded: still refuses
        OodCheck.from_tensors(tensors, metadata).flags(torch.tensor([0.1]))


def test_every_source_s_confirmation_can_be_indexed_and_named():
    """BCN20000's rows say 'isic2019': the held-out harness crashed building an index with them."""
    from skin_model.i18n import TEXT
    from skin_model.inference.similar import DX_TYPES

    n = len(DX_TYPES)
    cases = CaseIndex.build(
        torch.randn(n, 16), torch.arange(n) % 7, list(DX_TYPES), [f"i{k}" for k in range(n)], [b""] * n, dim=8
    )
    assert [c.dx_type for c in cases.neighbours(cases.similarities(torch.randn(1, 16))[0])] and "isic2019" in DX_TYPES
    assert all(f"dx_type.{t}" in TEXT for t in DX_TYPES)
