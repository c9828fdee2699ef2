"""Similar confirmed cases: the training images nearest to a query in the model's own feature space.

The embedding: each member's pooled image features (averaged over the test-time flips),
L2-normalised, concatenated, centred and projected by PCA to ``DIM`` dimensions, then
L2-normalised again. The index keeps every training image's embedding (fp16), diagnosis,
how the diagnosis was confirmed (``dx_type``), the patient's recorded age, sex and body site
(indexes from 4.0 on) and a small JPEG thumbnail. Neighbours are
the largest cosine similarities: one matrix product. The out-of-domain check (``ood.py``)
reads the same similarities.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from skin_model import vocab
from skin_model.inference.inputs import Metadata

DIM = 128
THUMB_SIZE = (96, 72)
# How a diagnosis was confirmed: HAM10000's four ways, and ISIC 2017's (histopathology or consensus, untold)
# Appended only: an index stores each case's position in this tuple. "isic2019": BCN20000's
# images as the ISIC 2019 challenge published them (histopathology for most malignant lesions).
DX_TYPES = ("histo", "follow_up", "consensus", "confocal", "isic2017", "isic2019")


@dataclass(frozen=True)
class Neighbour:
    image_id: str
    dx: str  # confirmed diagnosis
    dx_type: str  # how it was confirmed (one of DX_TYPES)
    similarity: float  # cosine similarity in the model's feature space
    thumbnail: bytes  # JPEG
    patient: Metadata = Metadata()  # as recorded with the image (unknown in indexes before 4.0)

    def as_dict(self) -> dict:
        return {
            "image_id": self.image_id,
            "dx": self.dx,
            "dx_type": self.dx_type,
            "similarity": self.similarity,
            **self.patient.as_dict(),
        }


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
    """The training images' embeddings and what a clinician sees of each neighbour."""

    def __init__(
        self,
        mean: torch.Tensor,
        projection: torch.Tensor,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        dx_types: torch.Tensor,
        image_ids: list[str],
        thumbnails: list[bytes],
        patients: list[Metadata] | None = None,
        lesion_ids: list[str] | None = None,
    ):
        self.mean, self.projection = mean.float(), projection.float()
        self.embeddings = embeddings  # (N, DIM) fp16, unit length
        self.labels, self.dx_types = labels.long(), dx_types.long()
        self.image_ids, self.thumbnails = image_ids, thumbnails
        self.patients = patients or [Metadata()] * len(image_ids)
        self.lesion_ids = lesion_ids or list(image_ids)  # a lesion photographed twice is one case

    @classmethod
    def build(
        cls,
        train_features: torch.Tensor,
        labels: torch.Tensor,
        dx_types: list[str],
        image_ids: list[str],
        thumbnails: list[bytes],
        patients: list[Metadata] | None = None,
        lesion_ids: list[str] | None = None,
        dim: int = DIM,
    ) -> CaseIndex:
        """From the training images' ``member_embedding`` (export stage)."""
        mean = train_features.mean(0)
        centred = train_features - mean
        dim = min(dim, *centred.shape)
        # PCA: the directions of largest variance among the training images. Randomised SVD
        # (Halko et al. 2011), seeded so that an export is reproducible: a full SVD of
        # 9,000 x 6,400 features (5 fold models) takes minutes, this takes seconds.
        with torch.random.fork_rng():
            torch.manual_seed(0)
            _, _, v = torch.svd_lowrank(centred.double(), q=min(2 * dim, *centred.shape), niter=6)
        index = cls(
            mean,
            v[:, :dim].float(),
            torch.zeros(0, dim),
            labels,
            torch.tensor([DX_TYPES.index(t) for t in dx_types]),
            list(image_ids),
            list(thumbnails),
            patients,
            None if lesion_ids is None else list(lesion_ids),
        )
        index.embeddings = index.embed(train_features).half()
        return index

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize((features.float() - self.mean) @ self.projection, dim=1)

    def similarities(self, features: torch.Tensor) -> torch.Tensor:
        """(N, training images) cosine similarities of ``member_embedding`` features."""
        return self.similarities_of(self.embed(features))

    def similarities_of(self, embedded: torch.Tensor) -> torch.Tensor:
        """The same, for features already through ``embed``."""
        return embedded @ self.embeddings.float().T

    def neighbours(self, sims: torch.Tensor, k: int = 6) -> list[Neighbour]:
        """The k most similar training lesions for one query's similarity row: each lesion once, by
        its most similar image."""
        values, idx = sims.topk(min(4 * k, len(sims)))  # a lesion has at most a few images
        found, seen = [], set()
        for v, i in zip(values.tolist(), idx.tolist()):
            if self.lesion_ids[i] in seen:
                continue
            seen.add(self.lesion_ids[i])
            found.append(
                Neighbour(
                    self.image_ids[i],
                    vocab.CLASSES[self.labels[i]],
                    DX_TYPES[self.dx_types[i]],
                    float(v),
                    self.thumbnails[i],
                    self.patients[i],
                )
            )
            if len(found) == k:
                break
        return found

    # -- storage (artifact.save_index / load_index) ------------------------------------------
    def to_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        blob = np.frombuffer(b"".join(self.thumbnails), dtype=np.uint8).copy()
        offsets = np.cumsum([0] + [len(t) for t in self.thumbnails]).astype(np.int64)
        tensors = {
            "mean": self.mean.contiguous(),
            "projection": self.projection.contiguous(),
            "embeddings": self.embeddings.half().contiguous(),
            "labels": self.labels.to(torch.uint8),
            "dx_types": self.dx_types.to(torch.uint8),
            "thumbnails": torch.from_numpy(blob),
            "thumbnail_offsets": torch.from_numpy(offsets),
            # Patients: age in years (NaN: unknown), sex and site as positions in the vocabulary.
            "ages": torch.tensor([float("nan") if m.age is None else m.age for m in self.patients]).half(),
            "sexes": torch.tensor([vocab.SEXES.index(m.sex) for m in self.patients], dtype=torch.uint8),
            "sites": torch.tensor([vocab.SITES.index(m.site) for m in self.patients], dtype=torch.uint8),
        }
        metadata = {
            "image_ids": json.dumps(self.image_ids),
            "lesion_ids": json.dumps(self.lesion_ids),
            "licence": "thumbnails, where their source is in the index: HAM10000 CC BY-NC-SA 4.0 (Tschandl et al. "
            "2018); ISIC 2017 CC BY-NC or CC-0; BCN20000 CC BY-NC 4.0 (Combalia et al. 2019)",
        }
        return tensors, metadata

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> CaseIndex:
        blob, offsets = tensors["thumbnails"].numpy().tobytes(), tensors["thumbnail_offsets"].tolist()
        return cls(
            tensors["mean"],
            tensors["projection"],
            tensors["embeddings"],
            tensors["labels"],
            tensors["dx_types"],
            json.loads(metadata["image_ids"]),
            [blob[a:b] for a, b in zip(offsets[:-1], offsets[1:])],
            _patients(tensors) if "ages" in tensors else None,  # indexes before 4.0 kept none
            json.loads(metadata["lesion_ids"]) if "lesion_ids" in metadata else None,  # before 3.0.1: by image
        )


def _patients(tensors: dict[str, torch.Tensor]) -> list[Metadata]:
    return [
        Metadata(None if age != age else age, vocab.SEXES[sex], vocab.SITES[site])  # age != age: NaN
        for age, sex, site in zip(
            tensors["ages"].float().tolist(), tensors["sexes"].tolist(), tensors["sites"].tolist()
        )
    ]
