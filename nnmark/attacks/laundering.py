"""Neural laundering (Aiken et al. 2021, "Neural network laundering: removing black-box backdoor
watermarks from deep neural networks"): reverse-engineer a trigger for every class as Neural
Cleanse does, find the units whose activations the reversed triggers change most against the
thief's clean images — in the last convolution and in the layer before the output — reset those
units (their incoming weights and biases set to zero), and retrain on the clean data. Strength
is the number of epochs of retraining."""
from __future__ import annotations


import torch
from torch import nn

from nnmark.attacks.base import Attack, AttackContext, clone, fine_tune, frozen_copy, register_attack, task_network
from nnmark.attacks.neural_cleanse import reverse_trigger
from nnmark.models.store import Classifier


def _units(model: nn.Module) -> list[nn.Module]:
    """The last convolution and the linear layer feeding the output: the layers laundering resets
    (never the output layer itself, whose units are the classes)."""
    network = task_network(model)
    convs = [m for m in network.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in network.modules() if isinstance(m, nn.Linear)]
    return ([convs[-1]] if convs else []) + ([linears[-2]] if len(linears) >= 2 else [])


def _activations(model: nn.Module, layer: nn.Module, images: torch.Tensor) -> torch.Tensor:
    taken = []
    handle = layer.register_forward_hook(lambda _m, _i, out: taken.append(out.detach()))
    try:
        with torch.no_grad():
            model(images)
    finally:
        handle.remove()
    out = taken[0]
    return out.mean(dim=(2, 3)) if out.dim() == 4 else out  # one value per unit and image


@register_attack("laundering")
class Laundering(Attack):
    summary = "reverse-engineer triggers, reset the units they drive, retrain (Aiken et al. 2021)"
    strength_meaning = "epochs of retraining after the reset"
    strengths = (1, 3, 5)
    quick_strengths = (1, 3)
    chain_strength = 3
    settings = {"steps": 40, "mask_weight": 0.01, "reset_fraction": 0.1, "lr": None}
    search = {"reset_fraction": (0.05, 0.2), "lr": (0.01, 0.05)}

    def epochs(self, strength: float, context: AttackContext) -> int:
        return int(strength)

    def apply(self, model: Classifier, strength: float, context: AttackContext) -> Classifier:
        data = context.data
        frozen = frozen_copy(model)
        sample = data.train_x[torch.randperm(len(data.train_y), generator=torch.Generator().manual_seed(context.seed))[:256]]
        stamped = []
        for target in range(context.spec.num_classes):
            mask, pattern = reverse_trigger(frozen, data.train_x, target, int(self.setting(context, "steps")),
                                            float(self.setting(context, "mask_weight")), context.seed + target)
            stamped.append((1 - mask) * sample + mask * pattern)
        attacked = clone(model).eval()
        fraction = float(self.setting(context, "reset_fraction"))
        frozen_layers, attacked_layers = _units(frozen), _units(attacked)
        reset = {}
        for name, (before, after) in zip(("conv", "dense"), zip(frozen_layers, attacked_layers)):
            clean = _activations(frozen, before, sample).mean(0)
            shifted = torch.stack([_activations(frozen, before, x).mean(0) for x in stamped]).sub(clean).abs().amax(0)
            count = max(1, int(round(fraction * len(shifted))))
            chosen = shifted.topk(count).indices
            with torch.no_grad():
                after.weight[chosen] = 0
                if after.bias is not None:
                    after.bias[chosen] = 0
            reset[name] = chosen.tolist()
        attacked = fine_tune(attacked, context, int(strength))
        attacked.reset_units = reset  # what it reset, for whoever inspects the attacked model
        return attacked.eval()
