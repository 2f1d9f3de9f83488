"""Magnitude pruning: zero the smallest-magnitude weights of every convolution and linear layer,
each layer on its own (``scope="layer"``) or ranked across the whole network (``"global"``),
optionally followed by a short fine-tune that keeps the pruned weights at zero. Strength is the
fraction pruned. Uses ``torch.nn.utils.prune``."""
from __future__ import annotations

from torch.nn.utils import prune

from nnmark.attacks.space import LogUniform
from nnmark.attacks.base import Attack, AttackContext, clone, fine_tune, prunable_weights, register_attack
from nnmark.models.store import Classifier


def magnitude_prune(model: Classifier, fraction: float, scope: str = "layer") -> list:
    targets = prunable_weights(model)
    if scope == "global":
        prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=fraction)
    else:
        for module, name in targets:
            prune.l1_unstructured(module, name, amount=fraction)
    return targets


def make_permanent(targets: list) -> None:
    for module, name in targets:
        prune.remove(module, name)


class PruneAttack(Attack):
    threat_model = 'a white-box copy of the weights; no data (prune-tune: and a share of the training data)'
    strength_meaning = "fraction of weights set to zero"
    strengths = (0.2, 0.4, 0.6, 0.8, 0.9)
    quick_strengths = (0.5, 0.9)
    chain_strength = 0.5
    scope = "layer"
    finetune_epochs = 0
    uses_training_data = False

    def epochs(self, strength: float, context: AttackContext) -> int:
        return self.finetune_epochs

    def apply(self, model: Classifier, strength: float, context: AttackContext) -> Classifier:
        attacked = clone(model)
        targets = magnitude_prune(attacked, float(strength), self.scope)
        # While the pruning masks are attached, fine-tuning cannot revive a pruned weight.
        fine_tune(attacked, context, self.finetune_epochs)
        make_permanent(targets)
        return attacked.eval()


@register_attack("prune")
class LayerPrune(PruneAttack):
    summary = "magnitude pruning, layer by layer"


@register_attack("prune-global")
class GlobalPrune(PruneAttack):
    standard = False
    summary = "magnitude pruning, ranked across all layers"
    scope = "global"


@register_attack("prune-tune")
class PruneThenTune(PruneAttack):
    standard = False
    summary = "layer-wise magnitude pruning, then 2 epochs of fine-tuning with the mask held"
    finetune_epochs = 2
    uses_training_data = True
    settings = {"lr": None}
    search = {"lr": (0.01, 0.05)}
    space = {"lr": LogUniform(0.001, 0.1)}
