"""The out-of-domain check: is this image like the dermoscopy the model was trained on?

The score combines two distances, each divided by its own ``PART_QUANTILE`` on in-domain
images, taking the larger:
- the k-nearest-neighbour distance of Sun et al. (ICML 2022): 1 - cosine similarity to
  the k-th nearest training image in the model's features (``similar.CaseIndex``);
- the Mahalanobis distance (Lee et al. 2018) of cheap image statistics (colour, contrast,
  texture) from the training images': deep features of a flat or synthetic image can land
  near real ones, its statistics cannot.
Higher means less like the training images. The threshold is set on in-domain images that
were not trained on, so that a stated share of each source's images passes.
"""

from __future__ import annotations

import json

import numpy as np
import torch

from .similar import CaseIndex

K_OOD = 5
PASS_RATE = 0.97
PART_QUANTILE = 0.985  # each distance's scale: its in-domain quantile
METHOD = (
    f"max of two distances, each over its {PART_QUANTILE} quantile on in-domain images: kNN distance in the "
    f"model's features (Sun et al. 2022), k={K_OOD}, embedding PCA of the members' L2-normalised features; "
    "Mahalanobis distance of 9 image statistics (colour, contrast, edges, fine texture; Lee et al. 2018)"
)


def image_statistics(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> (N, 9): chromaticity (r, g) mean and spread, brightness mean and
    spread, saturation, and in log scale edge strength and fine texture (mean absolute
    Laplacian). Dermoscopy has skin colours, a lesion and fine texture; flat colours and
    smooth gradients have none (their Laplacian is near zero, where dermoscopy never is)."""
    x = pixels.float() / 255.0
    total = x.sum(1).clamp(min=1e-3)
    chroma = x[:, :2] / total[:, None]
    gray = x.mean(1)
    edges = (gray[:, 1:, :] - gray[:, :-1, :]).abs().mean((1, 2)) + (gray[:, :, 1:] - gray[:, :, :-1]).abs().mean(
        (1, 2)
    )
    inner = gray[:, 1:-1, 1:-1]
    laplacian = 4 * inner - gray[:, :-2, 1:-1] - gray[:, 2:, 1:-1] - gray[:, 1:-1, :-2] - gray[:, 1:-1, 2:]
    top, low = x.max(1).values, x.min(1).values
    saturation = ((top - low) / top.clamp(min=1e-3)).mean((1, 2))
    return torch.stack(
        [
            chroma[:, 0].mean((1, 2)),
            chroma[:, 1].mean((1, 2)),
            chroma[:, 0].std((1, 2)),
            chroma[:, 1].std((1, 2)),
            gray.mean((1, 2)),
            gray.std((1, 2)),
            saturation,
            torch.log(edges + 1e-4),
            torch.log(laplacian.abs().mean((1, 2)) + 1e-4),
        ],
        1,
    )


N_STATISTICS = image_statistics(torch.zeros(1, 3, 3, 3, dtype=torch.uint8)).shape[1]


class OodCheck:
    """The training images' statistics, both distances' scales and the threshold."""

    def __init__(
        self,
        stats_mean: torch.Tensor,
        stats_precision: torch.Tensor,
        scales: tuple[float, float] = (1.0, 1.0),
        threshold: float = float("inf"),
    ):
        self.stats_mean, self.stats_precision = stats_mean.double(), stats_precision.double()
        self.scales = scales  # (kNN, statistics) distance scales
        self.threshold = threshold

    @classmethod
    def fit(cls, train_stats: torch.Tensor) -> OodCheck:
        """From the training images' ``image_statistics``; uncalibrated (``calibrate*`` sets the rest)."""
        stats = train_stats.double()
        covariance = torch.cov(stats.T) + 1e-6 * torch.eye(stats.shape[1], dtype=torch.float64)
        return cls(stats.mean(0), torch.linalg.inv(covariance))

    def statistics_distance(self, stats: torch.Tensor) -> torch.Tensor:
        """(N,) Mahalanobis distance of ``image_statistics`` from the training images'."""
        d = stats.double() - self.stats_mean
        return torch.einsum("ni,ij,nj->n", d, self.stats_precision, d).clamp(min=0).sqrt()

    def distances(self, sims: torch.Tensor, stats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """kNN distance from similarities to the training images, and the statistics' Mahalanobis distance."""
        knn = 1.0 - sims.topk(K_OOD, dim=1).values[:, -1]
        return knn.double(), self.statistics_distance(stats)

    def scores(self, sims: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        """(N,) scores from ``CaseIndex.similarities``; above ``threshold``: not like the training images."""
        return self._combine(*self.distances(sims, stats))

    def _combine(self, knn: torch.Tensor, mahalanobis: torch.Tensor) -> torch.Tensor:
        return torch.maximum(knn / self.scales[0], mahalanobis / self.scales[1])

    def score_features(self, cases: CaseIndex, features: torch.Tensor, stats: torch.Tensor, batch: int = 512):
        """``scores`` for many images' features, a batch of similarity rows at a time."""
        return torch.cat(
            [
                self.scores(cases.similarities(features[i : i + batch]), stats[i : i + batch])
                for i in range(0, len(features), batch)
            ]
        )

    def calibrate(self, cases: CaseIndex, features: torch.Tensor, stats: torch.Tensor, pass_rate=PASS_RATE) -> dict:
        """Scales and threshold from in-domain images that are not in the index (one validation split)."""
        knn, mahalanobis = self.distances(cases.similarities(features), stats)
        self._set_scales(knn, mahalanobis)
        scores = self._combine(knn, mahalanobis)
        self.threshold = float(np.quantile(scores.numpy(), pass_rate, method="higher"))  # at least pass_rate pass
        return self._card(
            target_validation_pass_rate=pass_rate,
            validation_pass_rate=float((scores <= self.threshold).double().mean()),
        )

    def calibrate_by_source(
        self, cases: CaseIndex, parts: dict, index_lesions: list[str], pass_rate: float = PASS_RATE
    ) -> dict:
        """Scales and threshold from in-domain images whose own lesion may be in the index: each
        is scored without its lesion's images (leave-lesion-out). ``parts``: name -> (features,
        statistics, table with ``lesion_id`` and ``source``). The threshold lets at least
        ``pass_rate`` of each source's images pass."""
        codes = {lesion: i for i, lesion in enumerate(dict.fromkeys(index_lesions))}
        index_codes = torch.tensor([codes[x] for x in index_lesions])
        knn, stats, sources = [], [], []
        for features, statistics, table in parts.values():
            query = torch.tensor([codes.get(x, -1) for x in table["lesion_id"]])
            for i in range(0, len(features), 512):
                sims = cases.similarities(features[i : i + 512])
                sims[query[i : i + 512, None] == index_codes[None, :]] = -2.0  # its own lesion is not a neighbour
                d_knn, d_stats = self.distances(sims, statistics[i : i + 512])
                knn.append(d_knn)
                stats.append(d_stats)
            sources += list(table["source"])
        knn, stats, sources = torch.cat(knn), torch.cat(stats), np.array(sources)
        self._set_scales(knn, stats)
        scores = self._combine(knn, stats).numpy()
        per_source = {
            s: float(np.quantile(scores[sources == s], pass_rate, method="higher")) for s in sorted(set(sources))
        }
        self.threshold = max(per_source.values())
        return self._card(
            target_pass_rate_per_source=pass_rate,
            calibrated_on="every source's out-of-fold or check images, each scored without its own lesion",
            pass_rate_by_source={s: float((scores[sources == s] <= self.threshold).mean()) for s in per_source},
        )

    def _card(self, **calibration) -> dict:
        """The model card's ``ood`` section."""
        scales = {"knn": self.scales[0], "statistics": self.scales[1]}
        return {"method": METHOD, "k": K_OOD, "scales": scales, "threshold": self.threshold, **calibration}

    def _set_scales(self, knn: torch.Tensor, mahalanobis: torch.Tensor) -> None:
        self.scales = (
            float(np.quantile(knn.numpy(), PART_QUANTILE)),
            float(np.quantile(mahalanobis.numpy(), PART_QUANTILE)),
        )

    # -- storage (artifact.save_index / load_index) ------------------------------------------
    def to_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        tensors = {"stats_mean": self.stats_mean.contiguous(), "stats_precision": self.stats_precision.contiguous()}
        return tensors, {"threshold": repr(self.threshold), "scales": json.dumps(list(self.scales))}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> OodCheck:
        if tensors["stats_mean"].shape != (N_STATISTICS,):
            raise ValueError(
                f"it was built with {tensors['stats_mean'].shape[0]} image statistics, this code computes "
                f"{N_STATISTICS}: rebuild the artifact with the export stage"
            )
        knn, statistics = json.loads(metadata["scales"])
        return cls(tensors["stats_mean"], tensors["stats_precision"], (knn, statistics), float(metadata["threshold"]))
