"""Input reconstruction: the thief passes every query through a model of what its own data looks
like and answers the reconstruction, so whatever a trigger adds that ordinary images lack is
projected away. Here the model is linear (principal components of the thief's images, a linear
autoencoder), which needs no training loop and no extra dependency; WRT's input_reconstruction
trains a convolutional autoencoder for the same role. Strength is the number of components kept
(fewer is stronger)."""
from __future__ import annotations

import copy

import torch

from nnmark.attacks.base import Attack, AttackContext, register_attack
from nnmark.attacks.input_transform import InputTransformed
from nnmark.models.store import Classifier


class Reconstruction:
    """x ↦ mean + P Pᵀ (x − mean) on flattened images, clamped to [0, 1]."""

    def __init__(self, images: torch.Tensor, components: int, seed: int) -> None:
        flat = images.flatten(1).double()
        self.mean = flat.mean(0)
        components = max(1, min(int(components), *flat.shape))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            _, _, basis = torch.pca_lowrank(flat - self.mean, q=components, center=False, niter=4)
        self.basis = basis[:, :components]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1).double().cpu() - self.mean
        restored = self.mean + (flat @ self.basis) @ self.basis.T
        return restored.reshape(x.shape).to(dtype=x.dtype, device=x.device).clamp(0, 1)


@register_attack("input-reconstruct")
class InputReconstruct(Attack):
    summary = "answer each query's reconstruction from the thief's data (principal components)"
    strength_meaning = "principal components kept (fewer is stronger)"
    strengths = (64, 32, 16, 8)
    quick_strengths = (32, 16)
    chain_strength = 32
    threat_model = "the model behind the thief's own query front end, fitted to a share of the training images"

    def apply(self, model: Classifier, strength: float, context: AttackContext) -> Classifier:
        front = Reconstruction(context.data.train_x, int(strength), context.seed)
        return InputTransformed(copy.deepcopy(model), [front]).eval()
