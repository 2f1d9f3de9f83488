"""Adi et al.'s four fine-tuning attacks (seed 000): strength is the number of epochs.

* FTLL — fine-tune the last layer only; * FTAL — fine-tune all layers;
* RTLL — re-initialise the last layer, then train it only; * RTAL — re-initialise it, train all.

Also label noising (WRT's ``label_noising``): fine-tune all layers on the thief's data with a share
of its labels replaced by random classes, which unsettles what the labels do not pin down.
"""
from __future__ import annotations

import torch

from nnmark.attacks.space import LogUniform, Uniform
from nnmark.attacks.base import Attack, AttackContext, clone, fine_tune, last_linear, register_attack, seeded
from nnmark.models.store import Classifier


class FineTuneAttack(Attack):
    strength_meaning = "epochs of training on the attacker's data"
    strengths = (1, 5, 10)
    quick_strengths = (1, 5)
    chain_strength = 5
    reinit_last: bool = False
    last_only: bool = False
    # None: the recipe of the attack context (Adi et al. fine-tune at the end-of-training rate, 0.01
    # of their 0.1). A thief is free to use any rate, and one near the original moves weights far more.
    settings = {"lr": None, "label_smoothing": None}
    search = {"lr": (0.001, 0.01, 0.05, 0.1), "label_smoothing": (0.0, 0.1)}
    space = {"lr": LogUniform(0.0005, 0.2), "label_smoothing": Uniform(0.0, 0.2)}
    streams = True

    def epochs(self, strength: float, context: AttackContext) -> int:
        return int(strength)

    def apply(self, model: Classifier, strength: float, context: AttackContext) -> Classifier:
        attacked = clone(model)
        last = last_linear(attacked)
        if self.reinit_last:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(context.seed)
                last.reset_parameters()
        parameters = last.parameters() if self.last_only else None
        return fine_tune(attacked, context, int(strength), parameters=parameters, freeze_batchnorm=self.last_only)


@register_attack("ftll")
class FTLL(FineTuneAttack):
    summary = "fine-tune the last layer"
    last_only = True


@register_attack("ftal")
class FTAL(FineTuneAttack):
    summary = "fine-tune all layers"


@register_attack("rtll")
class RTLL(FineTuneAttack):
    summary = "re-initialise the last layer and train it"
    reinit_last = True
    last_only = True


@register_attack("rtal")
class RTAL(FineTuneAttack):
    summary = "re-initialise the last layer and train all layers"
    reinit_last = True


@register_attack("label-noise")
class LabelNoise(FineTuneAttack):
    summary = "fine-tune all layers with a share of the labels replaced by random classes"
    settings = {"lr": None, "noise": 0.2}
    search = {"lr": (0.01, 0.05), "noise": (0.1, 0.3)}
    space = {"lr": LogUniform(0.005, 0.1), "noise": Uniform(0.05, 0.4)}
    streams = False  # it rewrites the labels it holds

    def apply(self, model: Classifier, strength: float, context: AttackContext) -> Classifier:
        labels = context.data.train_y.clone()
        generator = seeded(context.seed + 17)
        noisy = torch.rand(len(labels), generator=generator) < float(self.setting(context, "noise"))
        labels[noisy] = torch.randint(0, context.spec.num_classes, (int(noisy.sum()),), generator=generator)
        return fine_tune(clone(model), context, int(strength), labels=labels)
