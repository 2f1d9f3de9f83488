"""What a verifier can ask of a suspect model.

Black-box schemes only call ``predict`` (labels for a batch of images in [0, 1]) and count the
queries; white-box schemes also read ``module``. A suspect behind an interface we do not control
(an exported file, a web endpoint) implements the same protocol with ``module = None``.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn

from nnmark.training.trainer import predict_logits, resolve_device


@runtime_checkable
class Suspect(Protocol):
    description: str
    queries: int

    @property
    def module(self) -> nn.Module | None: ...

    def predict(self, inputs: torch.Tensor) -> torch.Tensor: ...


class ModuleSuspect:
    """An in-process ``torch.nn.Module`` taking images in [0, 1] and returning logits."""

    def __init__(self, module: nn.Module, description: str = "in-process module",
                 device: str | torch.device = "auto", batch_size: int = 500) -> None:
        self._module = module
        self.description = description
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.queries = 0

    @property
    def module(self) -> nn.Module:
        return self._module

    def predict(self, inputs: torch.Tensor) -> torch.Tensor:
        self.queries += len(inputs)
        return predict_logits(self._module, inputs, self.batch_size, self.device).argmax(1)


def as_suspect(model: nn.Module | Suspect, description: str = "in-process module") -> Suspect:
    if isinstance(model, nn.Module):
        return ModuleSuspect(model, description)
    return model
