"""How a watermark (or anything else) takes part in training without owning the loop."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class StepOutputs:
    """What one training step computed, for hooks whose loss depends on it.

    ``inputs`` is the whole batch as the model saw it: the ``data_count`` data samples first,
    then every hook's mixed-in samples in hook order; ``logits`` has one row per input.
    ``features`` maps each layer name a hook asked for (:meth:`TrainingHook.feature_layers`) to
    that layer's output for the whole batch (with its gradient). ``mixed_in`` says which rows each
    hook's own samples took (:meth:`rows_of`).
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    logits: torch.Tensor
    data_count: int
    step: int
    features: dict[str, torch.Tensor] = field(default_factory=dict)
    mixed_in: dict[int, slice] = field(default_factory=dict)

    def rows_of(self, hook: "TrainingHook") -> slice | None:
        """The rows of the batch that ``hook``'s :meth:`TrainingHook.extra_samples` filled this step."""
        return self.mixed_in.get(id(hook))


class TrainingHook:
    """Override what you need; the defaults do nothing.

    ``extra_samples`` returns inputs and integer labels appended to every batch (a trigger set is
    mixed in this way); ``extra_loss`` returns a term added to the task loss (a weight
    regulariser is embedded this way; a feature-level loss reads ``outputs.features`` for the
    layers named by ``feature_layers``).
    """

    def feature_layers(self) -> tuple[str, ...]:
        """Names (as in ``model.named_modules()``) of layers whose outputs ``extra_loss`` reads."""
        return ()

    def setup(self, model: nn.Module, device: torch.device) -> None:  # noqa: B027
        """Called once before the first step, with the model already on ``device``."""

    def shard(self, rank: int, world_size: int) -> None:  # noqa: B027
        """Called after ``setup`` when training runs data-parallel over ``world_size`` processes;
        each process's hook then supplies its share of what one step adds."""

    def extra_samples(self, step: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        return None

    def extra_loss(self, model: nn.Module, outputs: StepOutputs) -> torch.Tensor | None:
        return None


class MixInSamples(TrainingHook):
    """Append ``per_batch`` samples of a fixed set to every batch, cycling through it in a fresh
    random order each pass (Adi et al.: batch 100 of data plus 2 trigger images).

    Data-parallel, ``per_batch`` stays the count per global batch: every rank mixes in
    ``ceil(per_batch / world_size)`` samples, and the ranks take disjoint slices of one shared
    order (every rank seeds it alike), so the trigger share of the global batch is kept.
    """

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
        self._rank, self._local = 0, self.per_batch
        self._draw = self.per_batch

    def shard(self, rank: int, world_size: int) -> None:
        self._rank = rank
        self._local = -(-self.per_batch // world_size)
        self._draw = self._local * world_size

    def extra_samples(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._cursor + self._draw > len(self._order):
            # A set smaller than one step's draw (more ranks than samples) repeats within a step.
            passes = -(-self._draw // len(self.labels))
            self._order = torch.cat([torch.randperm(len(self.labels), device=self.labels.device,
                                                    generator=self._generator) for _ in range(passes)])
            self._cursor = 0
        start = self._cursor + self._rank * self._local
        take = self._order[start:start + self._local]
        self._cursor += self._draw
        return self.inputs[take], self.labels[take]
