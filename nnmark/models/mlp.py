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
    return nn.Sequential(*layers)
