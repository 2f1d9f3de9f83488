"""What the one-target trigger sets share (Zhang et al. 2018's content / noise / unrelated, the
Trojan-style patch of Liu et al. 2018, and the encoder/decoder's marked images): every trigger
input carries the same secret target label.

No model-free null exists for them: a model trained without the key may send stamped or foreign
images to any one class, and how often varies a great deal from model to model. So the null is
estimated on **control models** made without the key (:class:`~nnmark.verification.nulls.ControlNull`,
from ``nnmark calibrate``), with the model as the unit, and the verdict says it is estimated
(:func:`~nnmark.verification.stats.control_verdict`).

The key also holds **probes**: ordinary training images of the other classes, sent shuffled among
the triggers. A suspect that sends most of them to the target is not specific (a model that
answers the target for everything) and is never judged owned, whatever its trigger count.
The stamped images' unmarked originals stay in the key, to check at verification that each
trigger really is its original with the key's stamp, but they are never sent to a suspect: a
stamped image beside its original would hand a remote suspect the secret stamp.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch

from nnmark.data.base import Dataset
from nnmark.errors import NNMarkError
from nnmark.schemes.base import KeygenContext, require_tensor
from nnmark.schemes.key import WatermarkKey
from nnmark.schemes.trigger_set import TriggerSetScheme, check_images, require_image_shape
from nnmark.verification.evidence import TriggerEvidence
from nnmark.verification.suspects import Suspect

# A suspect that sends more than this share of ordinary inputs to the target is not specific.
MAX_PROBE_TARGET_RATE = 0.5


@dataclass
class OneTargetOptions:
    size: int = field(default=100, metadata={"help": "Number of trigger images."})
    target: int = field(default=-1, metadata={"help": "Target class (default: drawn from the seed)."})
    probes: int = field(default=100, metadata={"help": "Ordinary images sent among the triggers."})

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError("size must be at least 1")
        if self.probes < 0:
            raise ValueError("probes must be 0 or more")


def distinct_indices(images: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """``candidates`` without images that repeat an earlier one (datasets hold a few duplicates)."""
    _, inverse = torch.unique(images[candidates].flatten(1), dim=0, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), len(candidates), dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(len(candidates)), reduce="amin")
    return candidates[first.sort().values]


class OneTargetScheme(TriggerSetScheme):
    """Subclasses make the trigger images in ``make_triggers`` (and may say how to remake them
    from the originals in ``restamp``); this base picks the target, draws source and probe images
    of the other classes from the owner's training data, and verifies."""

    needs = frozenset({"dataset"})
    KeygenOptions = OneTargetOptions
    null_kind = "estimated"
    has_clean_counterparts = True

    def make_triggers(self, sources: torch.Tensor, context: KeygenContext, options: Any,
                      generator: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Trigger images made from ``sources`` (N, C, H, W), and any secret tensors to keep."""
        raise NotImplementedError

    def resolve_options(self, options: Any, target: int, context: KeygenContext,
                        generator: torch.Generator) -> Any:
        """``options`` with any choice left to the seed made, once the target is known (default: none)."""
        return options

    def may_carry_trigger(self, labels: torch.Tensor, options: Any) -> torch.Tensor:
        """Which candidate images (their labels; the target class is already left out) a trigger
        may be made from (default: every one)."""
        return torch.ones(len(labels), dtype=torch.bool)

    def restamp(self, key: WatermarkKey, clean: torch.Tensor) -> torch.Tensor | None:
        """The triggers the key's stamp makes of ``clean`` (None where that cannot be recomputed)."""
        return None

    def keygen(self, context: KeygenContext, options: Any) -> WatermarkKey:
        require_image_shape(context.input_shape, self.name)
        dataset: Dataset = context.dataset  # type: ignore[assignment]
        if dataset.input_shape != tuple(context.input_shape) or dataset.num_classes != context.num_classes:
            raise NNMarkError(f"dataset '{dataset.name}' does not match the key's sizes",
                              field="input_shape/num_classes",
                              expected=f"{list(context.input_shape)} with {context.num_classes} classes",
                              got=f"{list(dataset.input_shape)} with {dataset.num_classes} classes")
        generator = torch.Generator().manual_seed(context.seed % 2**64)
        target = options.target
        if target < 0:
            target = int(torch.randint(0, context.num_classes, (1,), generator=generator))
        if target >= context.num_classes:
            raise NNMarkError("target class out of range", field="target",
                              expected=f"0..{context.num_classes - 1}", got=target)
        options = self.resolve_options(options, target, context, generator)
        candidates = distinct_indices(dataset.train_x, torch.nonzero(dataset.train_y != target).flatten())
        needed = options.size + options.probes
        if len(candidates) < needed:
            raise NNMarkError(f"dataset '{dataset.name}' has only {len(candidates)} distinct images outside "
                              "the target class", field="size + probes", expected=f"at most {len(candidates)}",
                              got=needed)
        shuffled = candidates[torch.randperm(len(candidates), generator=generator)]
        may_carry = self.may_carry_trigger(dataset.train_y[shuffled], options)
        if int(may_carry.sum()) < options.size:
            raise NNMarkError(f"dataset '{dataset.name}' has only {int(may_carry.sum())} distinct images a trigger "
                              "may be made from", field="size", expected=f"at most {int(may_carry.sum())}",
                              got=options.size)
        # Triggers take the first images that may carry one, probes the first of the rest (where every
        # image may, that is the first size + probes of one shuffle, as keys have always been drawn).
        source_rows = torch.nonzero(may_carry).flatten()[:options.size]
        rest = torch.ones(len(shuffled), dtype=torch.bool)
        rest[source_rows] = False
        chosen = torch.cat([shuffled[source_rows], shuffled[rest][:options.probes]])
        sources = dataset.train_x[chosen[:options.size]]
        triggers, extra = self.make_triggers(sources, context, options, generator)
        tensors = {"inputs": triggers.clamp(0, 1).float().contiguous(),
                   "labels": torch.full((options.size,), target, dtype=torch.int64), **extra}
        if options.probes:
            tensors["probe_inputs"] = dataset.train_x[chosen[options.size:]].float().clone()
        if self.has_clean_counterparts:
            tensors["clean_inputs"] = sources.float().clone()
        params = {**vars(options), "target": target, "seed": context.seed, "source_dataset": dataset.name}
        return WatermarkKey(self.name, context.num_classes, context.input_shape, tensors, params)

    def target(self, key: WatermarkKey) -> int:
        target = key.params.get("target")
        if not isinstance(target, int) or isinstance(target, bool) or not 0 <= target < key.num_classes:
            raise NNMarkError("a one-target key names its target class", field="params.target",
                              expected=f"an integer in 0..{key.num_classes - 1}", got=target)
        return target

    def probes(self, key: WatermarkKey) -> torch.Tensor | None:
        if "probe_inputs" not in key.tensors:
            return None
        return require_tensor(key, "probe_inputs", torch.float32, 4)

    def validate_key(self, key: WatermarkKey) -> None:
        super().validate_key(key)
        inputs, labels = self.triggers(key)
        target = self.target(key)
        if not bool((labels == target).all()):
            raise NNMarkError("trigger labels disagree with the key's declared target", field="labels",
                              expected=f"every label {target}",
                              got=f"{int((labels != target).sum())} of {len(labels)} other")
        probes = self.probes(key)
        if probes is not None:
            if tuple(probes.shape[1:]) != tuple(key.input_shape):
                raise NNMarkError("probe images do not have the key's input shape", field="probe_inputs")
            check_images(probes, "probe_inputs")
        if "clean_inputs" in key.tensors:
            clean = require_tensor(key, "clean_inputs", torch.float32, 4)
            if clean.shape != inputs.shape:
                raise NNMarkError("originals and triggers differ in shape", field="clean_inputs")
            expected = self.restamp(key, clean)
            if expected is not None and not torch.allclose(expected.clamp(0, 1), inputs, atol=1e-4):
                raise NNMarkError("trigger images are not their originals with the key's stamp", field="inputs")

    def statistic(self, key: WatermarkKey) -> str:
        return f"trigger images sent to target class {key.params['target']}"

    def evidence_target(self, key: WatermarkKey) -> int | None:
        return self.target(key)

    def judge(self, evidence: TriggerEvidence, key: WatermarkKey) -> tuple[str | None, str | None]:
        rate = evidence.probe_target_rate
        if rate is None:
            return None, "this key has no probe images: a suspect that answers the target for everything is not caught"
        if rate > MAX_PROBE_TARGET_RATE:
            return (f"not specific: the suspect sent {100 * rate:.0f}% of ordinary images of other classes "
                    f"to the target class {evidence.target}, so sending triggers there proves nothing"), None
        return None, None

    def screen(self, key: WatermarkKey, controls: list[Suspect]) -> dict[str, Any]:
        """Target screening: where independent models send this key's triggers. A target they
        already send many triggers to makes a wide null that no watermark can beat; the class
        they send the fewest to (at most, over the controls) is the one to re-key with."""
        per_class = torch.zeros(len(controls), key.num_classes, dtype=torch.long)
        for row, control in enumerate(controls):
            predictions = self.extract(control, key).predictions
            per_class[row] = torch.bincount(predictions.clamp(0, key.num_classes - 1), minlength=key.num_classes)
        worst = per_class.max(0).values
        best = int(torch.argmin(worst))
        target = self.target(key)
        return {"most_sent_to_each_class": worst.tolist(), "target": target,
                "target_most": int(worst[target]), "suggested_target": best,
                "suggested_target_most": int(worst[best])}

    def keygen_screened(self, context: KeygenContext, options: Any, models: list[Suspect]) -> WatermarkKey:
        """Target screening: one candidate key per class (each has its own sources and stamp), and
        the one whose triggers ``models`` send least to its target (fewest at most, then in all)."""
        if options.target >= 0:
            return self.keygen(context, options)
        best, scores = None, []
        for target in range(context.num_classes):
            candidate = self.keygen(context, replace(options, target=target))
            counts = [int((self.extract(m, candidate).predictions == target).sum()) for m in models]
            score = (max(counts), sum(counts))
            scores.append(list(score))
            if best is None or score < best[0]:
                best = (score, candidate)
        key = best[1]
        key.params["target_screening"] = {"models": len(models), "most_and_total_per_target": scores}
        return key
