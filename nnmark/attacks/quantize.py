"""Post-training quantisation of weights: every convolution and linear weight rounded to a
symmetric per-output-channel grid of ``strength`` bits (8 = int8) and stored back in float, as
a deployed quantised model would compute. Biases and batch-norm stay in float, as in int8 PTQ."""
from __future__ import annotations

import torch

from nnmark.attacks.base import Attack, AttackContext, clone, prunable_weights, register_attack
from nnmark.errors import NNMarkError
from nnmark.models.store import Classifier


@torch.no_grad()
def quantize_weight(weight: torch.Tensor, bits: int) -> torch.Tensor:
    levels = 2 ** (bits - 1) - 1
    flat = weight.reshape(weight.shape[0], -1)
    scale = (flat.abs().amax(dim=1) / levels).clamp_min(1e-12)
    zero = torch.zeros(weight.shape[0], dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(weight.float(), scale.float(), zero, 0, -levels, levels)


@register_attack("quantize")
class Quantize(Attack):
    threat_model = 'a white-box copy of the weights; no data'
    uses_training_data = False
    summary = "round weights to an n-bit per-channel grid (post-training quantisation)"
    strength_meaning = "bits per weight (fewer is stronger)"
    strengths = (8, 6, 4, 3, 2)
    quick_strengths = (8, 4)
    chain_strength = 8

    def apply(self, model: Classifier, strength: float, context: AttackContext) -> Classifier:
        bits = int(strength)
        if not 2 <= bits <= 16:
            raise NNMarkError("quantisation needs 2 to 16 bits", field="strength", got=strength)
        attacked = clone(model)
        with torch.no_grad():
            for module, name in prunable_weights(attacked):
                weight = getattr(module, name)
                weight.copy_(quantize_weight(weight, bits))
        return attacked.eval()
