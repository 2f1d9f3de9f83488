"""Model architectures by name. Each factory takes ``num_classes`` and ``input_shape`` plus its own
keyword arguments, which are stored with the weights so a model can be rebuilt without pickle."""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

from nnmark.registry import Registry

ModelFactory = Callable[..., nn.Module]
MODELS: Registry[ModelFactory] = Registry("model")


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    return MODELS.register(name)
