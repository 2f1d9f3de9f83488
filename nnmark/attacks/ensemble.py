"""The ensemble attack (WRT's ``ensemble``): the thief trains a few models of its own on its share
of the data and answers every query with the average of their probabilities and the stolen
model's. A trigger only the stolen model knows is outvoted, while ordinary inputs, on which all
members agree, keep their answers. Strength is the number of the thief's own models."""
from __future__ import annotations

import copy
from dataclasses import replace

import torch
from torch import nn

from nnmark.attacks.base import Attack, AttackContext, register_attack
from nnmark.models.store import Classifier, create_model
from nnmark.training.trainer import fit


class Ensemble(Classifier):
    """The stolen network (under its own parameter names, as a front end keeps it) voting with the
    thief's models: log of the mean of their softmax probabilities, so argmax is the vote."""

    def __init__(self, victim: Classifier, others: list[nn.Module]) -> None:
        super().__init__(victim.net, tuple(victim.mean.flatten().tolist()), tuple(victim.std.flatten().tolist()))
        self.others = nn.ModuleList(others)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        answers = [super().forward(x), *(other(x) for other in self.others)]
        probabilities = torch.stack([logits.softmax(dim=1) for logits in answers]).mean(0)
        return probabilities.clamp_min(1e-12).log()


@register_attack("ensemble")
class EnsembleAttack(Attack):
    summary = "average the stolen model's answers with models the thief trains on its own data"
    strength_meaning = "the thief's own models in the ensemble"
    strengths = (1, 2, 4)
    quick_strengths = (1, 2)
    chain_strength = 2
    settings = {"lr": 0.05, "epochs": 10}
    search = {"lr": (0.01, 0.05)}
    threat_model = "the model behind the thief's own query front end and a share of its labelled training data"

    def epochs(self, strength: float, context: AttackContext) -> int:
        return int(strength) * int(self.setting(context, "epochs"))

    def apply(self, model: Classifier, strength: float, context: AttackContext) -> Classifier:
        config = replace(context.train, epochs=int(self.setting(context, "epochs")), lr=float(self.setting(context, "lr")),
                         schedule="step")
        members: list[nn.Module] = []
        for index in range(int(strength)):
            own = create_model(context.spec, seed=context.seed + 101 + index)
            fit(own, context.data.train_x, context.data.train_y, replace(config, seed=context.seed + index),
                augmentation=context.data.augmentation, progress=context.progress, description="attack ensemble")
            members.append(own.to("cpu").eval())
        return Ensemble(copy.deepcopy(model), members).eval()
