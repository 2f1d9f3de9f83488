"""Gaussian weight noise: each convolution and linear weight gets noise of standard deviation
``strength`` x that tensor's own standard deviation."""
from __future__ import annotations

import torch

from nnmark.attacks.base import Attack, AttackContext, clone, prunable_weights, register_attack, seeded
from nnmark.models.store import Classifier


@register_attack("weight-noise")
class WeightNoise(Attack):
    threat_model = 'a white-box copy of the weights; no data'
    uses_training_data = False
    summary = "add Gaussian noise to every weight, relative to the layer's spread"
    strength_meaning = "noise std as a fraction of each layer's weight std"
    strengths = (0.05, 0.1, 0.2, 0.5, 1.0)
    quick_strengths = (0.1, 0.5)
    chain_strength = 0.1

    def apply(self, model: Classifier, strength: float, context: AttackContext) -> Classifier:
        attacked = clone(model)
        generator = seeded(context.seed)
        with torch.no_grad():
            for module, name in prunable_weights(attacked):
                weight = getattr(module, name)
                noise = torch.randn(weight.shape, generator=generator) * weight.std() * float(strength)
                weight.add_(noise)
        return attacked.eval()
