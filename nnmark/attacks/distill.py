"""Knowledge distillation / model extraction: a fresh model of the victim's architecture trained
only on the victim's outputs (softmax probabilities) for the attacker's images — no labels, no
access to weights. Strength is the number of epochs."""
from __future__ import annotations

from dataclasses import replace

import torch

from nnmark.attacks.base import Attack, AttackContext, register_attack
from nnmark.models.store import Classifier, create_model
from nnmark.training.trainer import fit
from nnmark.models.inference import predict_logits


@register_attack("distill")
class Distill(Attack):
    summary = "train a fresh model on the victim's soft outputs (extraction)"
    strength_meaning = "epochs of training the fresh model"
    strengths = (5, 10, 20)
    quick_strengths = (10,)
    chain_strength = 10

    def epochs(self, strength: float, context: AttackContext) -> int:
        return int(strength)

    def apply(self, model: Classifier, strength: float, context: AttackContext) -> Classifier:
        soft = torch.softmax(predict_logits(model, context.data.train_x, device=context.train.device), dim=1)
        student = create_model(context.spec, seed=context.seed + 1)
        # A fresh model needs a from-scratch recipe, not the gentle fine-tuning one.
        config = replace(context.train, epochs=int(strength), lr=0.05, schedule="step", seed=context.seed)
        fit(student, context.data.train_x, soft, config, progress=context.progress, description="attack distill")
        return student.to("cpu").eval()
