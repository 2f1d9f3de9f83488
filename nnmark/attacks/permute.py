"""Function-preserving rewrites of the weights: the thief reorders the hidden units of every layer
(and scales them, where a ReLU lets a positive factor pass through) and rewrites the next layer to
match, so the network computes the same function — same answers on every input — while every
weight sits somewhere else or has another size. A white-box mark read at a fixed position (a
weight signature) no longer finds its layer as it was; a black-box mark is untouched by
construction. Strength is the spread of the scaling: 0 permutes only; s draws each unit's factor
log-uniformly in [e^-s, e^s].

Handles the chains nnmark's architectures and most plain CNNs are made of: ``nn.Sequential``
blocks of Conv2d / Linear layers, each optionally followed by BatchNorm and elementwise
activations or pooling, with a Flatten between the last convolution and the first linear layer.
A model it cannot rewrite safely is refused by name rather than changed.
"""
from __future__ import annotations

import torch
from torch import nn

from nnmark.attacks.base import Attack, AttackContext, clone, register_attack, seeded
from nnmark.errors import NNMarkError
from nnmark.models.store import Classifier

# Layers that act on each channel alone (they commute with reordering channels).
CHANNELWISE = (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.MaxPool2d, nn.AvgPool2d,
               nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Dropout, nn.Identity)
# Positive factors pass through these unchanged (relu(c·x) = c·relu(x) for c > 0).
POSITIVE_HOMOGENEOUS = (nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
                        nn.Dropout, nn.Identity)


def _flatten_layers(module: nn.Module) -> list[nn.Module]:
    layers = []
    for child in module.children():
        if isinstance(child, nn.Sequential):
            layers += _flatten_layers(child)
        else:
            layers.append(child)
    return layers


@torch.no_grad()
def rewrite_units(net: nn.Module, generator: torch.Generator, spread: float = 0.0) -> int:
    """Permute (and, with ``spread``, scale) the hidden units of ``net`` in place, keeping its
    function; returns how many layers' units were rewritten."""
    layers = _flatten_layers(net)
    weighted = [i for i, layer in enumerate(layers) if isinstance(layer, (nn.Conv2d, nn.Linear))]
    allowed = CHANNELWISE + (nn.BatchNorm2d, nn.BatchNorm1d, nn.Flatten)
    if not weighted or any(not isinstance(layer, allowed + (nn.Conv2d, nn.Linear)) for layer in layers):
        odd = sorted({type(layer).__name__ for layer in layers if not isinstance(layer, allowed + (nn.Conv2d, nn.Linear))})
        raise NNMarkError(f"cannot rewrite this architecture's units safely (it holds {', '.join(odd) or 'no layers'})",
                          expected="Sequential chains of Conv2d/Linear, BatchNorm, activations and pooling")
    rewritten = 0
    for position, index in enumerate(weighted[:-1]):  # the output layer's units are the classes
        layer, following = layers[index], layers[weighted[position + 1]]
        between = layers[index + 1:weighted[position + 1]]
        if isinstance(layer, nn.Conv2d) and getattr(layer, "groups", 1) != 1:
            continue
        units = layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features
        order = torch.randperm(units, generator=generator)
        batchnorms = [b for b in between if isinstance(b, (nn.BatchNorm2d, nn.BatchNorm1d))]
        # The factor goes in at the last affine step before the activation (the batch norm's
        # γ and β where there is one, else the layer's own weights) and must pass every layer up
        # to the next weights unchanged: relu(c·x) = c·relu(x) for c > 0, and so for pooling.
        after = between[between.index(batchnorms[-1]) + 1:] if batchnorms else between
        scalable = (spread > 0 and all(isinstance(b, POSITIVE_HOMOGENEOUS + (nn.Flatten,)) for b in after)
                    and all(norm.affine for norm in batchnorms))
        scale = (torch.empty(units).uniform_(-spread, spread, generator=generator).exp() if scalable
                 else torch.ones(units))
        own = torch.ones(units) if batchnorms else scale
        layer.weight.copy_(layer.weight[order] * own.view(-1, *([1] * (layer.weight.dim() - 1))))
        if layer.bias is not None:
            layer.bias.copy_(layer.bias[order] * own)
        for number, norm in enumerate(batchnorms):
            norm.running_mean.copy_(norm.running_mean[order])
            norm.running_var.copy_(norm.running_var[order])
            if norm.affine:
                last = number == len(batchnorms) - 1
                norm.weight.copy_(norm.weight[order] * (scale if last else 1))
                norm.bias.copy_(norm.bias[order] * (scale if last else 1))
        # the next weights read the units in the new order (and undo any factor left)
        weight = following.weight
        if isinstance(following, nn.Linear) and isinstance(layer, nn.Conv2d):
            per_channel = weight.shape[1] // units  # Flatten puts each channel's positions together
            blocks = weight.view(weight.shape[0], units, per_channel)
            following.weight.copy_((blocks[:, order] / scale.view(1, -1, 1)).reshape_as(weight))
        else:
            following.weight.copy_(weight[:, order] / scale.view(1, -1, *([1] * (weight.dim() - 2))))
        rewritten += 1
    return rewritten


@register_attack("permute")
class Permute(Attack):
    summary = "reorder (and rescale) hidden units, rewriting the next layer: the same function"
    uses_training_data = False
    strength_meaning = "spread s of the per-unit scale factors, drawn in [e^-s, e^s] (0: permute only)"
    strengths = (0.0, 1.0, 2.0)
    quick_strengths = (0.0, 2.0)
    chain_strength = 1.0
    threat_model = "white-box copy of the weights; no data, no training"

    def apply(self, model: Classifier, strength: float, context: AttackContext) -> Classifier:
        attacked = clone(model)
        network = attacked.net if hasattr(attacked, "net") else attacked
        rewrite_units(network, seeded(context.seed), float(strength))
        return attacked.eval()
