"""Adversarial fine-tuning: each epoch the thief perturbs its data with the fast gradient sign
method against the current model (x' = clip(x + ε·sign(∇x loss), 0, 1)) and trains on the clean
and perturbed images together, smoothing the decision boundary a trigger set or a stitched
frontier relies on. Strength is the number of epochs."""
from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F

from nnmark.attacks.base import Attack, AttackContext, clone, fine_tune, register_attack
from nnmark.models.store import Classifier


def fgsm(model: Classifier, images: torch.Tensor, labels: torch.Tensor, epsilon: float) -> torch.Tensor:
    model.eval()
    out = []
    for start in range(0, len(images), 512):
        x = images[start:start + 512].clone().requires_grad_(True)
        grad, = torch.autograd.grad(F.cross_entropy(model(x), labels[start:start + 512]), x)
        out.append((x + epsilon * grad.sign()).clamp(0, 1).detach())
    return torch.cat(out)


@register_attack("adv-train")
class AdversarialFineTune(Attack):
    summary = "fine-tune on the attacker's data and its FGSM adversarial examples"
    strength_meaning = "epochs of adversarial fine-tuning"
    strengths = (1, 5, 10)
    quick_strengths = (1, 5)
    chain_strength = 5
    settings = {"epsilon": 0.05, "lr": None}
    search = {"epsilon": (0.02, 0.05, 0.1), "lr": (0.01, 0.05)}

    def epochs(self, strength: float, context: AttackContext) -> int:
        return int(strength)

    def apply(self, model: Classifier, strength: float, context: AttackContext) -> Classifier:
        attacked = clone(model)
        data = context.data
        step = replace(context, settings={"lr": self.setting(context, "lr")})
        for epoch in range(int(strength)):
            perturbed = fgsm(attacked, data.train_x, data.train_y, float(self.setting(context, "epsilon")))
            mixed = replace(data, train_x=torch.cat([data.train_x, perturbed]), train_y=torch.cat([data.train_y] * 2))
            attacked = fine_tune(attacked, replace(step, data=mixed, seed=context.seed + epoch), 1)
        return attacked.eval()
