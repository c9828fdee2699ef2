"""Temperature scaling (Guo et al. 2017), fitted on validation logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 200) -> float:
    """The temperature T > 0 that minimises the NLL of ``softmax(logits / T)``."""
    logits = logits.detach().double()
    labels = labels.detach().long()
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    opt.step(closure)
    return log_t.detach().exp().item()


def fit_bias_temperature(logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 500) -> tuple[float, torch.Tensor]:
    """Bias-corrected temperature scaling (Alexandari et al. 2020): T > 0 and a bias per class
    minimising the NLL of ``softmax(logits / T + bias)``.

    At the optimum each class's mean predicted probability equals its frequency in
    ``labels`` (the NLL's gradient in a bias is their difference): a class-weighted model's
    leaning towards rare classes is taken out, and the result is calibrated to the prior
    of the data it was fitted on. The bias is centred (softmax ignores a shared shift).
    """
    logits = logits.detach().double()
    labels = labels.detach().long()
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(logits.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t, bias], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp() + bias, labels)
        loss.backward()
        return loss

    opt.step(closure)
    b = bias.detach()
    return log_t.detach().exp().item(), b - b.mean()


def calibrated_balanced_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The epoch rule's score (export, a fold's log and the held-out harness alike): balanced accuracy
    of the logits calibrated as export calibrates them (``fit_bias_temperature``, ``ensemble.calibrate``)
    and decided under the equal prior (the plain Bayes correction from ``labels``' frequencies)."""
    from skin_model import vocab
    from skin_model.inference.ensemble import calibrate
    from skin_model.inference.priors import PRIORS, apply_prior, class_frequencies
    from skin_model.training.metrics import classification_report

    t, bias = fit_bias_temperature(logits, labels)
    probs = calibrate(logits[None], t, bias)
    frequencies = class_frequencies(labels, len(vocab.CLASSES))
    equal = apply_prior(probs, frequencies, PRIORS["equal"](frequencies))
    return classification_report(equal.numpy(), labels.numpy())["balanced_accuracy"]
