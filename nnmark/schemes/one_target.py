"""What the one-target trigger sets share (Zhang et al. 2018's content / noise / unrelated, and the
Trojan-style patch of Liu et al. 2018): every trigger input carries the same secret target label.

The chance rate is not 1/K here: a model trained without the key may already send stamped images
to some class. So the null is calibrated, and the verdict says how:

* on **control models** trained without the key (``nnmark.api.calibrate_null``) — the most
  direct, and the only way for ``unrelated``, whose triggers have no clean counterparts;
* otherwise on **clean counterparts**: the suspect's own target rate on the unstamped originals
  of the trigger images (secret, stored in the key).

Either way the rate used is the 99.9% Clopper–Pearson upper bound of the observed rate, and never
below 1/K, so the test errs toward "not owned".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from nnmark.data.base import Dataset
from nnmark.errors import NNMarkError
from nnmark.schemes.base import KeygenContext, require_tensor
from nnmark.schemes.key import WatermarkKey
from nnmark.schemes.trigger_set import TriggerSetScheme
from nnmark.verification.stats import upper_rate
from nnmark.verification.suspects import Suspect


@dataclass
class OneTargetOptions:
    size: int = field(default=100, metadata={"help": "Number of trigger images."})
    target: int = field(default=-1, metadata={"help": "Target class (default: drawn from the seed)."})

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError("size must be at least 1")


class OneTargetScheme(TriggerSetScheme):
    """Subclasses make the trigger images in ``make_triggers``; this base picks the target, draws
    source images of the other classes from the owner's training data, and verifies."""

    needs = frozenset({"dataset"})
    KeygenOptions = OneTargetOptions
    has_clean_counterparts = True

    def make_triggers(self, sources: torch.Tensor, context: KeygenContext, options: Any,
                      generator: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Trigger images made from ``sources`` (N, C, H, W), and any secret tensors to keep."""
        raise NotImplementedError

    def keygen(self, context: KeygenContext, options: Any) -> WatermarkKey:
        dataset: Dataset = context.dataset  # type: ignore[assignment]
        if dataset.input_shape != tuple(context.input_shape) or dataset.num_classes != context.num_classes:
            raise NNMarkError(f"dataset '{dataset.name}' does not match the key's sizes",
                              field="input_shape/num_classes",
                              expected=f"{list(context.input_shape)} with {context.num_classes} classes",
                              got=f"{list(dataset.input_shape)} with {dataset.num_classes} classes")
        generator = torch.Generator().manual_seed(context.seed)
        target = options.target
        if target < 0:
            target = int(torch.randint(0, context.num_classes, (1,), generator=generator))
        if target >= context.num_classes:
            raise NNMarkError("target class out of range", field="target",
                              expected=f"0..{context.num_classes - 1}", got=target)
        candidates = torch.nonzero(dataset.train_y != target).flatten()
        if len(candidates) < options.size:
            raise NNMarkError(f"dataset '{dataset.name}' has only {len(candidates)} images outside the target class",
                              field="size", expected=f"at most {len(candidates)}", got=options.size)
        chosen = candidates[torch.randperm(len(candidates), generator=generator)[:options.size]]
        sources = dataset.train_x[chosen]
        triggers, extra = self.make_triggers(sources, context, options, generator)
        tensors = {"inputs": triggers.clamp(0, 1).float().contiguous(),
                   "labels": torch.full((options.size,), target, dtype=torch.int64), **extra}
        if self.has_clean_counterparts:
            tensors["clean_inputs"] = sources.clone()
        params = {**vars(options), "target": target, "seed": context.seed, "source_dataset": dataset.name}
        return WatermarkKey(self.name, context.num_classes, context.input_shape, tensors, params)

    def statistic(self, key: WatermarkKey) -> str:
        return f"trigger images sent to target class {key.params['target']}"

    def null_for(self, suspect: Suspect, key: WatermarkKey) -> tuple[float, str, dict[str, Any]]:
        if not self.has_clean_counterparts or "clean_inputs" not in key.tensors:
            raise NNMarkError(
                f"scheme '{self.name}' has no clean counterparts to calibrate against: give a null "
                "rate measured on models trained without the key (nnmark.api.calibrate_null, or "
                "--null-rate / --calibrate-with)")
        clean = require_tensor(key, "clean_inputs", torch.float32, 4)
        target = int(key.params["target"])
        hits = int((suspect.predict(clean).cpu() == target).sum())
        rate = upper_rate(hits, len(clean), floor=1.0 / key.num_classes)
        source = (f"clean counterparts: the suspect sent {hits}/{len(clean)} unstamped originals to "
                  "the target; null = 99.9% upper bound, at least 1/K")
        return rate, source, {"clean_counterpart_hits": hits}
