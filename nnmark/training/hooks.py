"""How a watermark (or anything else) takes part in training without owning the loop."""
from __future__ import annotations

import torch
from torch import nn


class TrainingHook:
    """Override what you need; the defaults do nothing.

    ``extra_samples`` returns inputs and integer labels appended to every batch (a trigger set is
    mixed in this way); ``extra_loss`` returns a term added to the task loss (a weight
    regulariser is embedded this way).
    """

    def setup(self, model: nn.Module, device: torch.device) -> None:  # noqa: B027
        """Called once before the first step, with the model already on ``device``."""

    def extra_samples(self, step: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        return None

    def extra_loss(self, model: nn.Module) -> torch.Tensor | None:
        return None


class MixInSamples(TrainingHook):
    """Append ``per_batch`` samples of a fixed set to every batch, cycling through it in a fresh
    random order each pass (Adi et al.: batch 100 of data plus 2 trigger images)."""

    def __init__(self, inputs: torch.Tensor, labels: torch.Tensor, per_batch: int = 2,
                 seed: int = 0) -> None:
        if per_batch < 1:
            raise ValueError("per_batch must be at least 1")
        self.inputs, self.labels = inputs, labels
        self.per_batch = min(per_batch, len(labels))
        self.seed = seed

    def setup(self, model: nn.Module, device: torch.device) -> None:
        self.inputs = self.inputs.to(device)
        self.labels = self.labels.to(device)
        self._generator = torch.Generator(device=device).manual_seed(self.seed)
        self._order = torch.empty(0, dtype=torch.long, device=device)
        self._cursor = 0

    def extra_samples(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._cursor + self.per_batch > len(self._order):
            self._order = torch.randperm(len(self.labels), device=self.labels.device,
                                         generator=self._generator)
            self._cursor = 0
        take = self._order[self._cursor:self._cursor + self.per_batch]
        self._cursor += self.per_batch
        return self.inputs[take], self.labels[take]
