"""Regularised fine-tuning (Shafieinejad et al. 2021, "On the robustness of backdoor-based
watermarking in deep neural networks"): fine-tune all layers at a high rate under strong weight
decay, which pulls the weights toward zero and erases what the small task signal does not
renew, then fine-tune at the usual rate without it to win accuracy back. Strength is the number
of epochs of each phase.

``feature-regularised`` (WRT's ``feature_regularization``) puts the penalty on what the hidden
layers output instead of on the weights: an L1 pull of every hidden activation toward zero,
then the same recovery phase."""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from nnmark.attacks.space import LogUniform
from nnmark.attacks.base import Attack, AttackContext, clone, fine_tune, register_attack
from nnmark.models.store import Classifier
from nnmark.training.hooks import StepOutputs, TrainingHook


@register_attack("regularised")
class RegularisedFineTune(Attack):
    summary = "fine-tune under strong weight decay at a high rate, then recover (Shafieinejad et al. 2021)"
    strength_meaning = "epochs of each phase (regularised, then recovery)"
    strengths = (2, 5, 10)
    quick_strengths = (2, 5)
    chain_strength = 5
    prunable = False  # its harsh phase is meant to cost accuracy, which the recovery phase restores
    settings = {"lr": 0.05, "weight_decay": 0.01}
    search = {"lr": (0.01, 0.05, 0.1), "weight_decay": (0.005, 0.02)}
    space = {"lr": LogUniform(0.005, 0.2), "weight_decay": LogUniform(0.001, 0.05)}

    def epochs(self, strength: float, context: AttackContext) -> int:
        return 2 * int(strength)

    def apply(self, model: Classifier, strength: float, context: AttackContext) -> Classifier:
        attacked = clone(model)
        harsh = replace(context, settings={"lr": self.setting(context, "lr"),
                                           "weight_decay": self.setting(context, "weight_decay")})
        attacked = fine_tune(attacked, harsh, int(strength))
        recover = replace(context, settings={}, seed=context.seed + 1)
        return fine_tune(attacked, recover, int(strength))


class ActivationPenalty(TrainingHook):
    """weight × the mean absolute output of each hidden activation layer, for the data samples."""

    def __init__(self, layers: tuple[str, ...], weight: float) -> None:
        self.layers, self.weight = layers, weight

    def feature_layers(self) -> tuple[str, ...]:
        return self.layers

    def extra_loss(self, model: nn.Module, outputs: StepOutputs) -> torch.Tensor | None:
        count = outputs.data_count
        return self.weight * sum(outputs.features[name][:count].abs().mean() for name in self.layers)


def hidden_activations(model: nn.Module) -> tuple[str, ...]:
    """The names of the model's activation layers (each ReLU-like module but none after the output)."""
    kinds = (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SiLU)
    return tuple(name for name, module in model.named_modules() if isinstance(module, kinds))


@register_attack("feature-regularised")
class FeatureRegularisedFineTune(Attack):
    summary = "fine-tune with an L1 pull on every hidden activation, then recover (WRT's feature regularisation)"
    strength_meaning = "epochs of each phase (regularised, then recovery)"
    strengths = (2, 5, 10)
    quick_strengths = (2, 5)
    chain_strength = 5
    prunable = False  # as regularised: judged after its recovery phase only
    settings = {"lr": 0.05, "penalty": 0.01}
    search = {"lr": (0.01, 0.05), "penalty": (0.001, 0.01, 0.1)}

    def epochs(self, strength: float, context: AttackContext) -> int:
        return 2 * int(strength)

    def apply(self, model: Classifier, strength: float, context: AttackContext) -> Classifier:
        attacked = clone(model)
        layers = hidden_activations(attacked)
        harsh = replace(context, settings={"lr": self.setting(context, "lr")})
        attacked = fine_tune(attacked, harsh, int(strength),
                             hooks=[ActivationPenalty(layers, float(self.setting(context, "penalty")))] if layers else ())
        recover = replace(context, settings={}, seed=context.seed + 1)
        return fine_tune(attacked, recover, int(strength))
