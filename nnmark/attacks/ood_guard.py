"""Query-time evasion: an out-of-distribution guard in front of the stolen model. Inputs that look
unlike the thief's own data get a random answer, everything else the model's. Trigger sets made of
unusual images (abstract art, stamped or foreign images) are then answered at chance, while real
queries, almost never flagged, keep the model's accuracy. Weights are not touched.

The guard is Lee et al. 2018's Mahalanobis detector on the stolen model's penultimate features:
class means and one shared covariance fitted on the thief's data; the score of an input is its
smallest squared distance to a class mean; the threshold is set by cross-fitting on that data so
that the guard flags at most the strength's share of ordinary inputs (its false-alarm rate, e.g.
0.01). The false alarms it raises on the owner's real test inputs are reported beside the verdict.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from nnmark.attacks.base import Attack, AttackContext, last_linear, register_attack
from nnmark.models.store import Classifier


class GuardedModel(Classifier):
    """The victim's network behind the guard; same parameters and names as the victim."""

    def __init__(self, victim: Classifier, means: torch.Tensor, precision: torch.Tensor, threshold: float,
                 seed: int) -> None:
        super().__init__(victim.net, tuple(victim.mean.flatten().tolist()), tuple(victim.std.flatten().tolist()))
        self.register_buffer("class_means", means)
        self.register_buffer("precision", precision)
        self.threshold, self.seed = float(threshold), seed
        self._head = last_linear(self.net)

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        taken = []
        handle = self._head.register_forward_pre_hook(lambda _m, inputs: taken.append(inputs[0]))
        try:
            logits = super().forward(x)
        finally:
            handle.remove()
        return taken[0].flatten(1), logits

    def scores(self, features: torch.Tensor) -> torch.Tensor:
        centred = features.unsqueeze(1) - self.class_means.unsqueeze(0)  # (N, K, D)
        return torch.einsum("nkd,de,nke->nk", centred, self.precision, centred).min(1).values

    def flagged(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.scores(self.features_and_logits(x)[0]) > self.threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features, logits = self.features_and_logits(x)
        flagged = self.scores(features) > self.threshold
        if bool(flagged.any()):
            generator = torch.Generator(device=x.device).manual_seed(self.seed + int(1e6 * float(x.sum())) % 2**31)
            noise = torch.randn(logits.shape, generator=generator, device=x.device, dtype=logits.dtype)
            logits = torch.where(flagged.unsqueeze(1), noise * 10, logits)
        return logits

    def attack_facts(self, test_images: torch.Tensor) -> dict[str, float]:
        """The share of the owner's real test inputs the guard flags (its false alarms there)."""
        rates = [self.flagged(test_images[i:i + 1000]).float() for i in range(0, len(test_images), 1000)]
        return {"guard_false_alarm_on_test": float(torch.cat(rates).mean())}


def _fit_gaussians(features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Class means and the inverse of one shared covariance (with a little shrinkage: few samples
    per feature make the covariance singular)."""
    features = features.double()
    present = torch.unique(labels)
    means = torch.stack([features[labels == c].mean(0) for c in present])
    centred = features - means[torch.searchsorted(present, labels)]
    covariance = centred.T @ centred / max(1, len(centred) - len(present))
    covariance += 1e-3 * covariance.diagonal().mean() * torch.eye(len(covariance), dtype=covariance.dtype)
    return means.float(), torch.linalg.inv(covariance).float()


def fit_guard(model: Classifier, images: torch.Tensor, labels: torch.Tensor, false_alarm: float, seed: int,
              folds: int = 5) -> GuardedModel:
    """The guard fitted on all of the thief's data, its threshold set by cross-fitting: each fifth
    of the data is scored by a guard fitted on the other four, and the threshold is the conformal
    (1 − ``false_alarm``) quantile of those held-out scores."""
    guard = GuardedModel(copy.deepcopy(model).cpu().eval(), torch.zeros(1, 1), torch.zeros(1, 1), 0.0, seed)
    with torch.no_grad():
        features = torch.cat([guard.features_and_logits(images[i:i + 1000])[0] for i in range(0, len(images), 1000)])
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
        held_out = []
        for fold in order.chunk(folds):
            rest = order[~torch.isin(order, fold)]
            guard.class_means, guard.precision = _fit_gaussians(features[rest], labels[rest])
            held_out.append(guard.scores(features[fold]))
        scores = torch.cat(held_out).sort().values
        rank = min(len(scores), int(math.ceil((len(scores) + 1) * (1 - false_alarm))))
        guard.class_means, guard.precision = _fit_gaussians(features, labels)
        guard.threshold = float(scores[rank - 1]) if rank < len(scores) + 1 else float("inf")
    return guard.eval()


@register_attack("ood-guard")
class OodGuard(Attack):
    summary = "answer queries unlike the thief's data at random (Mahalanobis guard in front of the model)"
    strength_meaning = "the guard's target false-alarm rate on ordinary inputs"
    strengths = (0.01, 0.02, 0.05)
    quick_strengths = (0.01, 0.02)
    chain_strength = 0.02
    threat_model = "the model and a share of its training data; answers queries through its own front end"

    def apply(self, model: Classifier, strength: float, context: AttackContext) -> Classifier:
        if isinstance(model, nn.Module) and not hasattr(model, "net"):
            raise ValueError("ood-guard needs one of nnmark's classifiers")
        return fit_guard(model, context.data.train_x, context.data.train_y, float(strength), context.seed)
