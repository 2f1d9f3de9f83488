"""Putting a mark in while a model trains, in any training loop: the object both nnmark's trainer
and a user's own loop hold.

A watermark takes part in training through :class:`~nnmark.training.hooks.TrainingHook` objects:
samples mixed into each batch, a term added to the loss, layers whose outputs that term reads.
:class:`Embedding` runs them for one model::

    embedding = Embedding(hooks, model)            # nnmark.Watermarker(key, model) builds one from a key
    for images, labels in loader:
        images, labels = embedding.mix(images, labels)
        logits = model(images)
        loss = F.cross_entropy(logits, labels) + embedding.loss()
        ...

``mix`` appends the mark's samples to the batch (put into the model's input space: the
normalisation the user's batches carry, given once), ``loss`` reads the model's output for that
batch (caught by a forward hook; a tensor, a dict or an object with ``.logits``) and the layers
the hooks asked for, and returns the mark's own term. One ``mix`` is one step; with gradient
accumulation over ``accumulation`` micro-batches, or data-parallel over several processes, each
call supplies its share of the step's samples, so the mark's share of every optimiser step is
the same however the step is split.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nnmark.errors import NNMarkError
from nnmark.models.inference import logits_of
from nnmark.training.hooks import StepOutputs, TrainingHook


def as_normalisation(normalization: Any, channels: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(mean, std)`` per channel as (1, C, 1, 1) tensors, from numbers or sequences; None for none."""
    if normalization is None:
        return None
    try:
        mean, std = normalization
        mean = torch.as_tensor(mean, dtype=torch.float32).flatten()
        std = torch.as_tensor(std, dtype=torch.float32).flatten()
    except (TypeError, ValueError):
        raise NNMarkError("must be a pair (mean, std)", field="normalization", got=normalization) from None
    mean, std = (t.expand(channels) if t.numel() == 1 else t for t in (mean, std))
    if mean.numel() != channels or std.numel() != channels or bool((std <= 0).any()):
        raise NNMarkError("does not fit the inputs", field="normalization",
                          expected=f"one mean and one positive std per channel ({channels})",
                          got=[mean.tolist(), std.tolist()])
    return mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)


class Embedding:
    """Runs ``hooks`` for ``model`` in any training loop (see the module docstring).

    ``input_shape``: the shape of one input the hooks' samples have (checked against each batch).
    ``normalization``: ``(mean, std)`` the user's batches are normalised with, where the model does
    not normalise itself (the hooks' samples are raw images in [0, 1]). ``accumulation``:
    micro-batches per optimiser step. ``distributed``: ``(rank, world_size)``; "auto" reads
    ``torch.distributed`` when it is initialised. ``num_classes``: the classes the hooks' labels
    belong to (a batch with labels outside them is refused).
    """

    def __init__(self, hooks: Sequence[TrainingHook], model: nn.Module, *, input_shape: tuple[int, ...] | None = None,
                 normalization: Any = None, accumulation: int = 1,
                 distributed: tuple[int, int] | str | None = "auto", num_classes: int | None = None) -> None:
        if isinstance(accumulation, bool) or not isinstance(accumulation, int) or accumulation < 1:
            raise NNMarkError("must be a positive integer", field="accumulation", got=accumulation)
        self.hooks = list(hooks)
        self.model = model
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.accumulation = accumulation
        self.num_classes = num_classes
        channels = self.input_shape[0] if self.input_shape else 1
        self.normalization = as_normalisation(normalization, channels)
        self.rank, self.world_size = self._place(distributed)
        self.calls = 0
        self._pending: dict[str, Any] | None = None
        self._checked_range = False
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        for hook in self.hooks:
            hook.setup(model, device)
        modules = dict(model.named_modules())
        wanted = sorted({name for hook in self.hooks for name in hook.feature_layers()})
        missing = [name for name in wanted if name not in modules]
        if missing:
            raise NNMarkError(f"the model has no layer {', '.join(missing)} for the watermark to read",
                              field="feature_layers", expected=", ".join(list(modules)[1:12]))
        self.features: dict[str, torch.Tensor] = {}
        self._last_output: Any = None
        self._handles = [modules[name].register_forward_hook(self._keeper(name)) for name in wanted]
        self._handles.append(model.register_forward_hook(self._keep_output))

    @staticmethod
    def _place(distributed) -> tuple[int, int]:
        if distributed == "auto":
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                return dist.get_rank(), dist.get_world_size()
            return 0, 1
        if distributed is None:
            return 0, 1
        rank, world_size = distributed
        if not 0 <= rank < world_size:
            raise NNMarkError("rank must be in 0..world_size-1", field="distributed", got=distributed)
        return int(rank), int(world_size)

    def _keeper(self, name: str):
        def keep(_module, _inputs, output):
            self.features[name] = output[0] if isinstance(output, (tuple, list)) else output
        return keep

    def _keep_output(self, _module, _inputs, output) -> None:
        self._last_output = output

    @property
    def step(self) -> int:
        """The optimiser step the next ``mix`` belongs to."""
        return self.calls // self.accumulation

    @property
    def adds_loss(self) -> bool:
        return any(hook.adds_loss for hook in self.hooks)

    def mix(self, inputs: torch.Tensor, targets: torch.Tensor | None = None
            ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The batch with this step's share of the mark's samples appended (after ``inputs``), and
        ``targets`` with their labels (one-hot rows where ``targets`` are class probabilities)."""
        if self._pending is not None and self._pending["needs_loss"]:
            raise NNMarkError("loss() was not called for the last batch: the watermark's own loss term (a weight "
                              "signature, EWE's entangling) would be missing from it, and the mark would not be "
                              "the one the key describes. Add watermarker.loss() to the loss of every batch",
                              field="loss")
        self._check_batch(inputs)
        part = self.rank * self.accumulation + self.calls % self.accumulation
        parts = self.world_size * self.accumulation
        extras, mixed_in, offset = [], {}, len(inputs)
        for hook in self.hooks:
            hook.shard(part, parts)
            sample = hook.extra_samples(self.step)
            if sample is None:
                continue
            x, y = sample
            x = x.to(inputs.device, non_blocking=True)
            if self.normalization is not None:
                mean, std = self.normalization
                x = (x - mean.to(x.device)) / std.to(x.device)
            extras.append((x.to(inputs.dtype), y.to(inputs.device, non_blocking=True)))
            mixed_in[id(hook)] = slice(offset, offset + len(y))
            offset += len(y)
        if self.num_classes is not None and targets is not None and not targets.is_floating_point() and len(targets):
            low, high = int(targets.min()), int(targets.max())
            if low < 0 or high >= self.num_classes:
                raise NNMarkError(f"the batch holds label {high if high >= self.num_classes else low}, outside the "
                                  f"key's {self.num_classes} classes: the key was made for another model",
                                  field="labels", expected=f"labels in 0..{self.num_classes - 1}")
        mixed = torch.cat([inputs] + [x for x, _ in extras]) if extras else inputs
        if targets is not None and extras:
            targets = torch.cat([targets] + [self._labels_like(targets, y) for _, y in extras])
        self._pending = {"inputs": mixed, "targets": targets, "data_count": len(inputs), "mixed_in": mixed_in,
                         "step": self.step, "needs_loss": self.adds_loss}
        self.features.clear()
        self._last_output = None
        self.calls += 1
        return mixed, targets

    def loss(self, outputs: Any = None) -> torch.Tensor:
        """The mark's loss term for the batch ``mix`` returned last (zero for a plain trigger set).
        ``outputs``: the model's output for that batch; by default the one a forward hook caught."""
        pending = self._pending
        if pending is None:
            raise NNMarkError("loss() comes after mix() and the forward pass on the batch it returned", field="loss")
        outputs = self._last_output if outputs is None else outputs
        if outputs is None:
            raise NNMarkError("the model has not run on the mixed batch yet: call loss() after the forward pass",
                              field="loss")
        logits = logits_of(outputs)
        if len(logits) != len(pending["inputs"]):
            raise NNMarkError(f"the model's output has {len(logits)} rows and the batch mix() returned "
                              f"{len(pending['inputs'])}: run the model on the mixed batch", field="loss")
        step = StepOutputs(pending["inputs"], pending["targets"], logits.float(), pending["data_count"],
                           pending["step"], dict(self.features), pending["mixed_in"])
        total = torch.zeros((), device=logits.device)
        for hook in self.hooks:
            term = hook.extra_loss(self.model, step)
            if term is not None:
                total = total + term
        pending["needs_loss"] = False
        return total

    def state_dict(self) -> dict[str, Any]:
        """What the mark has learnt and where it is, for a checkpoint of the user's training."""
        return {"calls": self.calls, "hooks": [hook.state_dict() for hook in self.hooks]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        hooks = state.get("hooks", [])
        if len(hooks) != len(self.hooks):
            raise NNMarkError("this state is of another watermark", field="hooks",
                              expected=f"{len(self.hooks)} hook states", got=len(hooks))
        self.calls = int(state["calls"])
        for hook, hook_state in zip(self.hooks, hooks):
            hook.load_state_dict(hook_state)

    def close(self) -> None:
        """Remove the forward hooks from the model."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> "Embedding":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def _check_batch(self, inputs: torch.Tensor) -> None:
        if not isinstance(inputs, torch.Tensor):
            raise NNMarkError(f"the batch's inputs are a {type(inputs).__name__}", field="inputs",
                              expected="a tensor of images")
        if self.input_shape is not None and tuple(inputs.shape[1:]) != self.input_shape:
            raise NNMarkError("the batch's images do not have the key's shape", field="inputs",
                              expected=f"N x {list(self.input_shape)}", got=list(inputs.shape))
        if self.normalization is None and not self._checked_range and inputs.is_floating_point() and len(inputs):
            # Once: a batch normalised by the user's loader, mixed with raw [0, 1] samples, would
            # teach the mark in an input space nobody ever queries.
            low, high = float(inputs.min()), float(inputs.max())
            if low < -0.01 or high > 1.01:
                raise NNMarkError(f"the batch holds values in [{low:.3g}, {high:.3g}], not [0, 1]: it looks normalised, "
                                  "and the watermark's samples are images in [0, 1]. Give the normalisation your "
                                  "loader applies (normalization=(mean, std)) so they are put in the same space",
                                  field="normalization")
            self._checked_range = True

    @staticmethod
    def _labels_like(targets: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if targets.is_floating_point() and targets.ndim == 2:
            return F.one_hot(labels.long(), targets.shape[1]).to(targets.dtype)
        if targets.ndim != 1:
            raise NNMarkError("targets must be class indices (N,) or class probabilities (N, K)", field="targets",
                              got=list(targets.shape))
        return labels.to(targets.dtype)
