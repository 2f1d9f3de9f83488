"""A multilayer perceptron on the flattened image: the simplest other architecture, used (beside
the CNNs) among the control models that measure a null, since models of one architecture agree
with one another more than models in general do."""
from __future__ import annotations

import math

from torch import nn

from nnmark.models.registry import register_model


@register_model("mlp")
def mlp(num_classes: int, input_shape: tuple[int, int, int], hidden: int = 256, depth: int = 2) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(input_shape)
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.ReLU(inplace=True)]
        width = hidden
    layers.append(nn.Linear(width, num_classes))
    net = nn.Sequential(*layers)
    relus = [str(i) for i, layer in enumerate(layers) if isinstance(layer, nn.ReLU)]
    linears = [str(i) for i, layer in enumerate(layers) if isinstance(layer, nn.Linear)]
    # the hidden-to-hidden weight where there is one (its width is the signature's room), else the first
    net.nnmark_layers = {"signature": f"{linears[1 if depth > 1 else 0]}.weight", "features": tuple(relus),
                         "inject": relus[-1], "entangle": tuple(relus[-3:])}
    return net
