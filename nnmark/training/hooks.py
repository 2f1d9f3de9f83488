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
    layers named by ``feature_layers``). A hook whose ``extra_loss`` carries the mark says so
    (``adds_loss``): leaving that term out would leave a different mark, so it must not happen
    silently. ``state_dict`` holds whatever the hook learns while training.
    """

    adds_loss: bool = False

    def feature_layers(self) -> tuple[str, ...]:
        """Names (as in ``model.named_modules()``) of layers whose outputs ``extra_loss`` reads."""
        return ()

    def setup(self, model: nn.Module, device: torch.device) -> None:  # noqa: B027
        """Called once before the first step, with the model already on ``device``."""

    def shard(self, part: int, parts: int) -> None:  # noqa: B027
        """The next ``extra_samples`` is ``part`` of ``parts`` that together make one step: one
        process's share when training runs data-parallel, one micro-batch's share under gradient
        accumulation. Each part supplies its share of what one step adds."""

    def extra_samples(self, step: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        return None

    def extra_loss(self, model: nn.Module, outputs: StepOutputs) -> torch.Tensor | None:
        return None

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:  # noqa: B027
        pass


class MixInSamples(TrainingHook):
    """Append ``per_batch`` samples of a fixed set to every step, cycling through the set in a fresh
    random order each pass (Adi et al.: batch 100 of data plus 2 trigger images).

    The order is a function of the step alone: pass ``k`` is a permutation drawn from
    ``(seed, k)``, cut into as many whole draws as it holds (a set smaller than one draw repeats
    within a step), so a run resumed at a step mixes in what it would have, and no sample comes
    twice in one step otherwise. The parts of one step (data-parallel processes, accumulated
    micro-batches: :meth:`shard`) take disjoint slices of the same draw, ``ceil(per_batch / parts)``
    each, keeping the set's share of the whole step.
    """

    def __init__(self, inputs: torch.Tensor, labels: torch.Tensor, per_batch: int = 2,
                 seed: int = 0) -> None:
        if per_batch < 1:
            raise ValueError("per_batch must be at least 1")
        if len(labels) < 1 or len(inputs) != len(labels):
            raise ValueError("a set to mix in needs at least one sample and one label per sample")
        self.inputs, self.labels = inputs, labels
        self.per_batch = min(per_batch, len(labels))
        self.seed = seed
        self._part, self._local, self._draw = 0, self.per_batch, self.per_batch
        self._passes: dict[int, torch.Tensor] = {}

    def setup(self, model: nn.Module, device: torch.device) -> None:
        self.inputs = self.inputs.to(device)
        self.labels = self.labels.to(device)

    def shard(self, part: int, parts: int) -> None:
        local = -(-self.per_batch // parts)
        if (local, local * parts) != (self._local, self._draw):
            self._passes = {}  # passes are cut into draws of the new size
        self._part, self._local, self._draw = part, local, local * parts

    def _pass(self, index: int) -> torch.Tensor:
        """The ``index``-th pass (permutations of the set, enough for one draw; on the CPU). The
        last two are kept."""
        if index not in self._passes:
            copies = -(-self._draw // len(self.labels))
            orders = [torch.randperm(len(self.labels), generator=torch.Generator().manual_seed(
                (self.seed * 1_000_003 + index * 97 + copy) % 2**63)) for copy in range(copies)]
            self._passes = {k: v for k, v in self._passes.items() if k >= index - 1}
            self._passes[index] = torch.cat(orders)
        return self._passes[index]

    def positions(self, step: int) -> torch.Tensor:
        """Which samples this part of ``step`` takes (indices on the CPU)."""
        copies = -(-self._draw // len(self.labels))
        draws_per_pass = copies * len(self.labels) // self._draw
        order = self._pass(step // draws_per_pass)
        first = (step % draws_per_pass) * self._draw + self._part * self._local
        return order[first:first + self._local]

    def extra_samples(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        take = self.positions(step).to(self.labels.device, non_blocking=True)
        return self.inputs[take], self.labels[take]
