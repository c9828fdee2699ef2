"""The training split in the model's own feature space: similar confirmed cases and the
out-of-domain check.

Built by the export stage and shipped beside the weights (``index.safetensors``):
- an embedding: each member's pooled image features (averaged over the test-time
  flips), L2-normalised, concatenated, centred and projected by PCA to ``DIM``
  dimensions, then L2-normalised again;
- the training images' embeddings (fp16), diagnoses, how each was confirmed
  (``dx_type``) and a small JPEG thumbnail of each.

Similar cases are the nearest training embeddings by cosine similarity (one
matrix product). The out-of-domain score combines two distances, each divided by
its own 98.5th percentile on the validation split, taking the larger:
- the k-nearest-neighbour distance of Sun et al. (ICML 2022): 1 - cosine
  similarity to the k-th nearest training image, in the model's features;
- the Mahalanobis distance (Lee et al. 2018) of cheap image statistics (colour,
  contrast, texture) from the training images': deep features of a flat or
  synthetic image can land near real ones, its statistics cannot.
Higher means less like the training images. The threshold on the combined score
is fixed on the validation split so that ``PASS_RATE`` of in-domain images pass.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, safe_open, save_file

from . import vocab

INDEX_FILE = "index.safetensors"
DIM = 128
K_OOD = 5
PASS_RATE = 0.97
PART_QUANTILE = 0.985  # each distance's scale: its validation quantile
THUMB_SIZE = (96, 72)
# How a diagnosis was confirmed: HAM10000's four ways, and ISIC 2017's (histopathology or consensus, untold)
DX_TYPES = ("histo", "follow_up", "consensus", "confocal", "isic2017")


@dataclass(frozen=True)
class Neighbour:
    image_id: str
    dx: str  # confirmed diagnosis
    dx_type: str  # how it was confirmed (one of DX_TYPES)
    similarity: float  # cosine similarity in the model's feature space
    thumbnail: bytes  # JPEG

    def as_dict(self) -> dict:
        return {"image_id": self.image_id, "dx": self.dx, "dx_type": self.dx_type, "similarity": self.similarity}


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


def member_embedding(features: list[torch.Tensor]) -> torch.Tensor:
    """Per-member features (N, F_i) -> one (N, sum F_i) vector, each member's part L2-normalised."""
    return torch.cat([F.normalize(f.float(), dim=1) for f in features], dim=1)


def thumbnail_jpeg(pixels: torch.Tensor) -> bytes:
    """uint8 (3, H, W) -> a small JPEG."""
    img = Image.fromarray(pixels.permute(1, 2, 0).numpy()).resize(
        THUMB_SIZE, Image.Resampling.BILINEAR, reducing_gap=2.0
    )
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=80)
    return buf.getvalue()


class CaseIndex:
    """Embedding, neighbours and out-of-domain score over the training split."""

    def __init__(
        self,
        mean: torch.Tensor,
        projection: torch.Tensor,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        dx_types: torch.Tensor,
        image_ids: list[str],
        thumbnails: list[bytes],
        stats_mean: torch.Tensor,
        stats_precision: torch.Tensor,
        scales: tuple[float, float] = (1.0, 1.0),
        threshold: float = float("inf"),
    ):
        self.mean, self.projection = mean.float(), projection.float()
        self.embeddings = embeddings  # (N, DIM) fp16, unit length
        self.labels, self.dx_types = labels.long(), dx_types.long()
        self.image_ids, self.thumbnails = image_ids, thumbnails
        self.stats_mean, self.stats_precision = stats_mean.double(), stats_precision.double()
        self.scales = scales  # (kNN, statistics) distance scales
        self.threshold = threshold

    # -- building (export stage) -------------------------------------------------------------
    @classmethod
    def build(
        cls,
        train_features: torch.Tensor,
        train_stats: torch.Tensor,
        labels: torch.Tensor,
        dx_types: list[str],
        image_ids: list[str],
        thumbnails: list[bytes],
        dim: int = DIM,
    ) -> CaseIndex:
        mean = train_features.mean(0)
        centred = train_features - mean
        dim = min(dim, *centred.shape)
        # PCA: the directions of largest variance among the training images. Randomised SVD
        # (Halko et al. 2011), seeded so that an export is reproducible: a full SVD of
        # 9,000 x 6,400 features (5 fold models) takes minutes, this takes seconds.
        with torch.random.fork_rng():
            torch.manual_seed(0)
            _, _, v = torch.svd_lowrank(centred.double(), q=min(2 * dim, *centred.shape), niter=6)
        projection = v[:, :dim].float()
        stats = train_stats.double()
        covariance = torch.cov(stats.T) + 1e-6 * torch.eye(stats.shape[1], dtype=torch.float64)
        index = cls(
            mean,
            projection,
            torch.zeros(0, dim),
            labels,
            torch.tensor([DX_TYPES.index(t) for t in dx_types]),
            list(image_ids),
            list(thumbnails),
            stats.mean(0),
            torch.linalg.inv(covariance),
        )
        index.embeddings = index.embed(train_features).half()
        return index

    def calibrate(self, val_features: torch.Tensor, val_stats: torch.Tensor) -> dict:
        """Fix the scales and the threshold so that ``PASS_RATE`` of these in-domain images pass."""
        knn, stats = self._distances(self.similarities(val_features), val_stats)
        self.scales = (float(np.quantile(knn.numpy(), PART_QUANTILE)), float(np.quantile(stats.numpy(), PART_QUANTILE)))
        scores = self.ood_scores(val_features, val_stats)
        self.threshold = float(np.quantile(scores.numpy(), PASS_RATE, method="higher"))  # at least PASS_RATE pass
        return {
            "method": f"max of two distances, each over its validation {PART_QUANTILE} quantile: kNN distance "
            f"in the model's features (Sun et al. 2022), k={K_OOD}, embedding PCA-"
            f"{self.projection.shape[1]} of the members' L2-normalised features; Mahalanobis "
            "distance of 9 image statistics (colour, contrast, edges, fine texture; Lee et al. 2018)",
            "k": K_OOD,
            "scales": {"knn": self.scales[0], "statistics": self.scales[1]},
            "threshold": self.threshold,
            "target_validation_pass_rate": PASS_RATE,
            "validation_pass_rate": float((scores <= self.threshold).double().mean()),
        }

    def calibrate_by_source(self, parts: dict, index_lesions: list[str], pass_rate: float = PASS_RATE) -> dict:
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
                sims = self.similarities(features[i : i + 512])
                sims[query[i : i + 512, None] == index_codes[None, :]] = -2.0  # its own lesion is not a neighbour
                d_knn, d_stats = self._distances(sims, statistics[i : i + 512])
                knn.append(d_knn)
                stats.append(d_stats)
            sources += list(table["source"])
        knn, stats, sources = torch.cat(knn), torch.cat(stats), np.array(sources)
        self.scales = (float(np.quantile(knn.numpy(), PART_QUANTILE)), float(np.quantile(stats.numpy(), PART_QUANTILE)))
        scores = torch.maximum(knn / self.scales[0], stats / self.scales[1]).numpy()
        per_source = {
            s: float(np.quantile(scores[sources == s], pass_rate, method="higher")) for s in sorted(set(sources))
        }
        self.threshold = max(per_source.values())
        return {
            "method": f"max of two distances, each over its {PART_QUANTILE} quantile on in-domain images: kNN "
            f"distance in the model's features (Sun et al. 2022), k={K_OOD}, embedding PCA-{self.projection.shape[1]} "
            "of the members' L2-normalised features; Mahalanobis distance of 9 image statistics (colour, "
            "contrast, edges, fine texture; Lee et al. 2018)",
            "k": K_OOD,
            "scales": {"knn": self.scales[0], "statistics": self.scales[1]},
            "threshold": self.threshold,
            "target_pass_rate_per_source": pass_rate,
            "calibrated_on": "every source's out-of-fold or check images, each scored without its own lesion",
            "pass_rate_by_source": {s: float((scores[sources == s] <= self.threshold).mean()) for s in per_source},
        }

    # -- queries -------------------------------------------------------------------------------
    def embed(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize((features.float() - self.mean) @ self.projection, dim=1)

    def similarities(self, features: torch.Tensor) -> torch.Tensor:
        return self.embed(features) @ self.embeddings.float().T  # (N, train)

    def _distances(self, sims: torch.Tensor, stats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """kNN distance from similarities to the training images, and the statistics' Mahalanobis distance."""
        knn = 1.0 - sims.topk(K_OOD, dim=1).values[:, -1]
        d = stats.double() - self.stats_mean
        mahalanobis = torch.einsum("ni,ij,nj->n", d, self.stats_precision, d).clamp(min=0).sqrt()
        return knn.double(), mahalanobis

    def scores_from_similarities(self, sims: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        """(N,) out-of-domain scores from ``similarities(features)``; above ``threshold``: not like
        the training images."""
        knn, mahalanobis = self._distances(sims, stats)
        return torch.maximum(knn / self.scales[0], mahalanobis / self.scales[1])

    def ood_scores(self, features: torch.Tensor, stats: torch.Tensor, batch: int = 512) -> torch.Tensor:
        return torch.cat(
            [
                self.scores_from_similarities(self.similarities(features[i : i + batch]), stats[i : i + batch])
                for i in range(0, len(features), batch)
            ]
        )

    def neighbours(self, sims: torch.Tensor, k: int = 6) -> list[Neighbour]:
        """The k most similar training images for one query's similarity row."""
        values, idx = sims.topk(min(k, len(sims)))
        return [
            Neighbour(
                self.image_ids[i],
                vocab.CLASSES[self.labels[i]],
                DX_TYPES[self.dx_types[i]],
                float(v),
                self.thumbnails[i],
            )
            for v, i in zip(values.tolist(), idx.tolist())
        ]

    # -- storage ---------------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        blob = np.frombuffer(b"".join(self.thumbnails), dtype=np.uint8).copy()
        offsets = np.cumsum([0] + [len(t) for t in self.thumbnails]).astype(np.int64)
        save_file(
            {
                "mean": self.mean.contiguous(),
                "projection": self.projection.contiguous(),
                "embeddings": self.embeddings.half().contiguous(),
                "labels": self.labels.to(torch.uint8),
                "dx_types": self.dx_types.to(torch.uint8),
                "stats_mean": self.stats_mean.contiguous(),
                "stats_precision": self.stats_precision.contiguous(),
                "thumbnails": torch.from_numpy(blob),
                "thumbnail_offsets": torch.from_numpy(offsets),
            },
            str(Path(folder) / INDEX_FILE),
            metadata={
                "image_ids": json.dumps(self.image_ids),
                "threshold": repr(self.threshold),
                "scales": json.dumps(list(self.scales)),
                "licence": "HAM10000 thumbnails: CC BY-NC-SA 4.0 (Tschandl et al. 2018)",
            },
        )

    @classmethod
    def load(cls, folder: Path) -> CaseIndex:
        path = str(Path(folder) / INDEX_FILE)
        tensors = load_file(path)
        with safe_open(path, "pt") as f:
            meta = f.metadata()
        expected = image_statistics(torch.zeros(1, 3, 3, 3, dtype=torch.uint8)).shape[1]
        if tensors["stats_mean"].shape != (expected,):
            raise ValueError(
                f"it was built with {tensors['stats_mean'].shape[0]} image statistics, this code computes "
                f"{expected}: rebuild the artifact with the export stage"
            )
        blob, offsets = tensors["thumbnails"].numpy().tobytes(), tensors["thumbnail_offsets"].tolist()
        thumbs = [blob[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
        return cls(
            tensors["mean"],
            tensors["projection"],
            tensors["embeddings"],
            tensors["labels"],
            tensors["dx_types"],
            json.loads(meta["image_ids"]),
            thumbs,
            tensors["stats_mean"],
            tensors["stats_precision"],
            tuple(json.loads(meta["scales"])),
            float(meta["threshold"]),
        )
