"""The out-of-domain check: is this image like the dermoscopy the model was trained on?

Two distances from the training images, each divided by its own ``PART_QUANTILE`` on
in-domain images:
- the k-nearest-neighbour distance of Sun et al. (ICML 2022): 1 - cosine similarity to
  the k-th nearest training image in the model's features (``similar.CaseIndex``);
- the Mahalanobis distance (Lee et al. 2018) of cheap image statistics (colour, contrast,
  texture) from the training images': deep features of a flat or synthetic image can land
  near real ones, its statistics cannot.
Without more, the score is the larger of the two. With outlier exposure (Hendrycks et al.,
ICLR 2019) the score is ``OutlierClassifier``'s: a logistic regression that has seen real
images that are not dermoscopy, reading the embedding, the statistics and both distances.
A distance alone cannot both pass other clinics' wide-field dermoscopy and reject photos
(docs/model.md); the classifier learns the direction that separates them.
Higher means less like the training images. The threshold is set on in-domain images, so
that a stated share of each source's images passes.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import torch
import torch.nn.functional as F

from skin_model.inference.similar import CaseIndex

K_OOD = 5
PASS_RATE = 0.97
PART_QUANTILE = 0.985  # each distance's scale: its in-domain quantile
OUTLIER_WEIGHT_DECAY = 0.1  # chosen on the fitting part of not_dermoscopy (scripts/probe_outlier_exposure.py)
METHOD = (
    f"max of two distances, each over its {PART_QUANTILE} quantile on in-domain images: kNN distance in the "
    f"model's features (Sun et al. 2022), k={K_OOD}, embedding PCA of the members' L2-normalised features; "
    "Mahalanobis distance of 9 image statistics (colour, contrast, edges, fine texture; Lee et al. 2018)"
)
METHOD_WITH_OUTLIERS = (
    "-log P(dermoscopy) of a logistic regression fitted against real images that are not dermoscopy "
    "(outlier exposure, Hendrycks et al. 2019), over its in-domain "
    f"{PART_QUANTILE} quantile; its inputs: the embedding, 9 image statistics (colour, contrast, edges, fine "
    f"texture), the kNN distance in the model's features (Sun et al. 2022, k={K_OOD}) and the statistics' "
    "Mahalanobis distance (Lee et al. 2018)"
)


STATISTICS_CHUNK = 256  # images at once: the float copy of 20,000 images would take 7 GB


def image_statistics(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> (N, 9): chromaticity (r, g) mean and spread, brightness mean and
    spread, saturation, and in log scale edge strength and fine texture (mean absolute
    Laplacian). Dermoscopy has skin colours, a lesion and fine texture; flat colours and
    smooth gradients have none (their Laplacian is near zero, where dermoscopy never is)."""
    if len(pixels) > STATISTICS_CHUNK:
        return torch.cat([_statistics(chunk) for chunk in pixels.split(STATISTICS_CHUNK)])
    return _statistics(pixels)


def _statistics(pixels: torch.Tensor) -> torch.Tensor:
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


def _stable_half(lesion_id: str) -> int:
    """0 or 1 by a hash of the lesion id (``training.splits.lesion_hash`` % 2): the same on every
    machine (Python's ``hash`` is salted)."""
    return int(hashlib.sha256(str(lesion_id).encode()).hexdigest()[:12], 16) % 2


class OutlierClassifier:
    """Outlier exposure (Hendrycks et al., ICLR 2019) in its simplest form: a logistic
    regression telling training dermoscopy from real images that are not dermoscopy, on the
    image's embedding, its statistics and both distances (each column standardised on the
    dermoscopy). Its ``distance`` is -log P(dermoscopy): 0 for typical dermoscopy, growing
    without bound."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, weight: torch.Tensor, bias: float):
        self.mean, self.std, self.weight, self.bias = mean.double(), std.double(), weight.double(), float(bias)

    @staticmethod
    def columns(embedded, stats, knn, mahalanobis) -> torch.Tensor:
        return torch.cat([embedded.double(), stats.double(), knn.double()[:, None], mahalanobis.double()[:, None]], 1)

    @classmethod
    def fit(cls, inside: tuple, outside: tuple, weight_decay: float = OUTLIER_WEIGHT_DECAY) -> OutlierClassifier:
        """``inside``/``outside``: (embedded, stats, knn, mahalanobis) of dermoscopy and of images
        that are not; the two groups weigh the same in the loss, whatever their sizes."""
        x_in, x_out = cls.columns(*inside), cls.columns(*outside)
        mean, std = x_in.mean(0), x_in.std(0).clamp(min=1e-6)
        x = (torch.cat([x_in, x_out]) - mean) / std
        y = torch.cat([torch.zeros(len(x_in)), torch.ones(len(x_out))]).double()
        w = torch.cat([torch.full((len(x_in),), 0.5 / len(x_in)), torch.full((len(x_out),), 0.5 / len(x_out))])
        params = torch.zeros(x.shape[1] + 1, dtype=torch.float64, requires_grad=True)
        optimiser = torch.optim.LBFGS([params], max_iter=500, tolerance_grad=1e-9, line_search_fn="strong_wolfe")

        def loss():
            optimiser.zero_grad()
            logits = x @ params[:-1] + params[-1]
            value = (w * F.binary_cross_entropy_with_logits(logits, y, reduction="none")).sum()
            value = value + weight_decay * params[:-1].square().sum()
            value.backward()
            return value

        with torch.enable_grad():
            optimiser.step(loss)
        params = params.detach()
        return cls(mean, std, params[:-1], float(params[-1]))

    def logit(self, embedded, stats, knn, mahalanobis) -> torch.Tensor:
        """(N,) log-odds that an image is not dermoscopy."""
        return ((self.columns(embedded, stats, knn, mahalanobis) - self.mean) / self.std) @ self.weight + self.bias

    def distance(self, embedded, stats, knn, mahalanobis) -> torch.Tensor:
        return F.softplus(self.logit(embedded, stats, knn, mahalanobis))


class OodCheck:
    """The training images' statistics, the optional outlier classifier, each distance's scale
    and the threshold."""

    def __init__(
        self,
        stats_mean: torch.Tensor,
        stats_precision: torch.Tensor,
        scales: tuple[float, ...] = (1.0, 1.0),
        threshold: float | None = None,
        outliers: OutlierClassifier | None = None,
    ):
        self.stats_mean, self.stats_precision = stats_mean.double(), stats_precision.double()
        self.scales = tuple(scales)  # kNN, statistics (and outlier classifier) distance scales
        self.threshold = threshold  # None until calibrated: an uncalibrated check refuses to answer
        self.outliers = outliers

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

    def distances(self, embedded: torch.Tensor, sims: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        """(N, parts): the kNN distance (from the similarities to the training images), the
        statistics' Mahalanobis distance, and the outlier classifier's distance if there is one.
        ``embedded``: ``CaseIndex.embed`` of the images' features."""
        knn = 1.0 - sims.topk(K_OOD, dim=1).values[:, -1].double()
        mahalanobis = self.statistics_distance(stats)
        parts = [knn, mahalanobis]
        if self.outliers is not None:
            parts.append(self.outliers.distance(embedded, stats, knn, mahalanobis))
        return torch.stack(parts, 1)

    def scores(self, embedded: torch.Tensor, sims: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        """(N,) scores; above ``threshold``: not like the training images."""
        return self._combine(self.distances(embedded, sims, stats))

    def flags(self, scores: torch.Tensor) -> torch.Tensor:
        """(N,) bool: not like the training images. Fails closed: a score that is not a number is
        flagged, and a check that was never calibrated refuses instead of passing everything."""
        if self.threshold is None or not np.isfinite(self.threshold):
            raise RuntimeError("the out-of-domain check has no threshold: export the model again")
        return ~(scores <= self.threshold)  # NaN compares False: flagged

    def _combine(self, distances: torch.Tensor) -> torch.Tensor:
        if self.outliers is not None:  # the classifier has weighed both distances already
            return distances[:, 2] / self.scales[2]
        return (distances[:, :2] / torch.tensor(self.scales[:2], dtype=torch.float64)).max(1).values

    def score_features(self, cases: CaseIndex, features: torch.Tensor, stats: torch.Tensor, batch: int = 512):
        """``scores`` for many images' ``member_embedding`` features, a batch at a time."""
        out = []
        for i in range(0, len(features), batch):
            embedded = cases.embed(features[i : i + batch])
            out.append(self.scores(embedded, cases.similarities_of(embedded), stats[i : i + batch]))
        return torch.cat(out)

    def calibrate_by_source(
        self,
        cases: CaseIndex,
        parts: dict,
        index_lesions: list[str],
        pass_rate: float = PASS_RATE,
        outside: tuple[torch.Tensor, torch.Tensor] | None = None,
        also_inside: tuple | None = None,
        weight_decay: float = OUTLIER_WEIGHT_DECAY,
    ) -> dict:
        """Scales and threshold from in-domain images whose own lesion may be in the index: each
        is scored without its lesion's images (leave-lesion-out). ``parts``: name -> (features,
        statistics, table with ``lesion_id`` and ``source``). The threshold lets at least
        ``pass_rate`` of each source's images pass.

        ``outside``: (features, statistics) of real images that are not dermoscopy. With them the
        score is an ``OutlierClassifier``'s (outlier exposure), fitted against the images of
        ``parts`` and of ``also_inside`` (a part like them that sets no threshold: images every
        model trained on). The in-domain distances that set the threshold are cross-fitted: each
        half of the lesions is scored by a classifier fitted on the other half (and every outside
        image), so that no image sets the threshold with a score its own fit made small."""
        codes = {lesion: i for i, lesion in enumerate(dict.fromkeys(index_lesions))}
        index_codes = torch.tensor([codes[x] for x in index_lesions])
        groups = [(part, True) for part in parts.values()]  # (part, whether it sets the threshold)
        if outside is not None and also_inside is not None:
            groups.append((also_inside, False))
        embedded, stats, distances, sources, lesions, sets_threshold = [], [], [], [], [], []
        self.outliers = None
        for (features, statistics, table), counts in groups:
            query = torch.tensor([codes.get(x, -1) for x in table["lesion_id"]])
            for i in range(0, len(features), 512):
                e = cases.embed(features[i : i + 512])
                sims = cases.similarities_of(e)
                sims[query[i : i + 512, None] == index_codes[None, :]] = -2.0  # its own lesion is not a neighbour
                embedded.append(e)
                distances.append(self.distances(e, sims, statistics[i : i + 512]))
            stats.append(statistics)
            sources += list(table["source"])
            lesions += list(table["lesion_id"])
            sets_threshold += [counts] * len(features)
        embedded, stats, distances = torch.cat(embedded), torch.cat(stats), torch.cat(distances)
        sources, sets_threshold = np.array(sources), np.array(sets_threshold)
        outlier_card = {}
        if outside is not None:
            outlier_distance, outlier_card = self._fit_outliers(
                cases, embedded, stats, distances, lesions, outside, weight_decay
            )
            distances = torch.cat([distances, outlier_distance[:, None]], 1)
        distances, sources = distances[torch.from_numpy(sets_threshold)], sources[sets_threshold]
        self._set_scales(distances)
        scores = self._combine(distances).numpy()
        per_source = {
            s: float(np.quantile(scores[sources == s], pass_rate, method="higher")) for s in sorted(set(sources))
        }
        self.threshold = max(per_source.values())
        return self._card(
            target_pass_rate_per_source=pass_rate,
            calibrated_on="every source's out-of-fold or check images, each scored without its own lesion",
            pass_rate_by_source={s: float((scores[sources == s] <= self.threshold).mean()) for s in per_source},
            **outlier_card,
        )

    def _fit_outliers(self, cases, embedded, stats, distances, lesions, outside, weight_decay):
        """The outlier classifier (kept in ``self.outliers``) and the in-domain images'
        cross-fitted classifier distances."""
        out_features, out_stats = outside
        out_embedded = cases.embed(out_features)
        out_distances = self.distances(out_embedded, cases.similarities_of(out_embedded), out_stats)

        def fit(rows) -> OutlierClassifier:
            inside = (embedded[rows], stats[rows], distances[rows, 0], distances[rows, 1])
            return OutlierClassifier.fit(
                inside, (out_embedded, out_stats, out_distances[:, 0], out_distances[:, 1]), weight_decay
            )

        half = torch.tensor([_stable_half(x) for x in lesions])
        crossfitted = torch.zeros(len(embedded), dtype=torch.float64)
        for h in (0, 1):
            other = half != h
            crossfitted[~other] = fit(other).distance(
                embedded[~other], stats[~other], distances[~other, 0], distances[~other, 1]
            )
        self.outliers = fit(torch.ones(len(embedded), dtype=torch.bool))
        card = {
            "outlier_exposure": {
                "classifier": "logistic regression on the embedding, the image statistics and both distances, "
                f"L2 weight decay {weight_decay:g}; dermoscopy and non-dermoscopy weigh the same",
                "outside_images": len(out_features),
                "in_domain_images": len(embedded),
                "crossfitted": "in-domain distances setting the scale and threshold come from a classifier fitted "
                "on the other half of the lesions",
            }
        }
        return crossfitted, card

    def _card(self, **calibration) -> dict:
        """The model card's ``ood`` section."""
        names = ("knn", "statistics", "outlier_classifier")
        scales = dict(zip(names, self.scales))
        method = METHOD if self.outliers is None else METHOD_WITH_OUTLIERS
        return {"method": method, "k": K_OOD, "scales": scales, "threshold": self.threshold, **calibration}

    def _set_scales(self, distances: torch.Tensor) -> None:
        self.scales = tuple(float(np.quantile(d.numpy(), PART_QUANTILE)) for d in distances.T)

    # -- storage (artifact.save_index / load_index) ------------------------------------------
    def to_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        tensors = {"stats_mean": self.stats_mean.contiguous(), "stats_precision": self.stats_precision.contiguous()}
        metadata = {"threshold": repr(self.threshold), "scales": json.dumps(list(self.scales))}
        if self.outliers is not None:
            tensors |= {
                "outlier_mean": self.outliers.mean.contiguous(),
                "outlier_std": self.outliers.std.contiguous(),
                "outlier_weight": self.outliers.weight.contiguous(),
            }
            metadata["outlier_bias"] = repr(self.outliers.bias)
        return tensors, metadata

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> OodCheck:
        if tensors["stats_mean"].shape != (N_STATISTICS,):
            raise ValueError(
                f"it was built with {tensors['stats_mean'].shape[0]} image statistics, this code computes "
                f"{N_STATISTICS}: rebuild the artifact with the export stage"
            )
        outliers = None
        if "outlier_weight" in tensors:
            outliers = OutlierClassifier(
                tensors["outlier_mean"],
                tensors["outlier_std"],
                tensors["outlier_weight"],
                float(metadata["outlier_bias"]),
            )
        scales = tuple(json.loads(metadata["scales"]))
        if len(scales) != 2 + (outliers is not None):
            raise ValueError(
                "its out-of-domain scales do not match its parts: rebuild the artifact with the export stage"
            )
        threshold = None if metadata["threshold"] == "None" else float(metadata["threshold"])
        return cls(tensors["stats_mean"], tensors["stats_precision"], scales, threshold, outliers)
