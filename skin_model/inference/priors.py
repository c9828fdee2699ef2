"""Decisions under a stated prior: Bayes correction of calibrated probabilities.

The calibrated probabilities reflect HAM10000's own mix of diagnoses (nv 67%).
Under another prior pi' they become p'(c|x) ~ p(c|x) * pi'(c) / pi_train(c)
(Saerens et al. 2002). ``equal`` (every diagnosis as likely before the image is
seen) is what balanced accuracy, the ISIC challenge metric, rewards; ``training``
keeps the dataset's frequencies. The correction may be tempered by a strength
in [0, 1], recorded in the model card (export sets 1: the plain Bayes correction).
"""

from __future__ import annotations

import torch

from skin_model.vocab import DEFAULT_PRIOR

# Keyed as vocab.PRIOR_NAMES, the list the CLI and the app offer.
PRIORS = {
    "equal": lambda train: torch.full_like(train, 1.0 / len(train)),
    "training": lambda train: train.clone(),
}
__all__ = ["DEFAULT_PRIOR", "PRIORS", "apply_prior", "class_frequencies"]


def apply_prior(
    probs: torch.Tensor, train_prior: torch.Tensor, prior: torch.Tensor, strength: float = 1.0
) -> torch.Tensor:
    """(..., classes) probabilities under ``train_prior`` -> the same under ``prior``."""
    ratio = (prior.to(probs) / train_prior.to(probs)) ** strength
    out = probs * ratio
    return out / out.sum(-1, keepdim=True)


def class_frequencies(labels: torch.Tensor, classes: int) -> torch.Tensor:
    """Each class's share of ``labels`` (float64): the ``training`` prior of data labelled so."""
    counts = torch.bincount(labels, minlength=classes).double()
    return counts / counts.sum()
