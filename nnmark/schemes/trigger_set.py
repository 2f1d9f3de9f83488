"""What every trigger-set (backdoor) watermark shares: the key is a set of inputs with secret
labels, embedding mixes them into training batches, verification counts how many of them the
suspect labels as the key says and tests that count against chance."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from nnmark.errors import NNMarkError
from nnmark.schemes.base import WatermarkScheme, require_tensor, resolve_null
from nnmark.schemes.key import WatermarkKey
from nnmark.training.hooks import MixInSamples, TrainingHook
from nnmark.verification.stats import Calibration, Verdict, binomial_verdict, upper_rate
from nnmark.verification.suspects import Suspect


@dataclass
class TriggerEmbedOptions:
    per_batch: int = 2  # trigger samples appended to every training batch (Adi et al.: 2)

    def __post_init__(self) -> None:
        if self.per_batch < 1:
            raise ValueError("per_batch must be at least 1")


@dataclass
class TriggerEvidence:
    predictions: torch.Tensor
    labels: torch.Tensor

    @property
    def matches(self) -> int:
        return int((self.predictions == self.labels).sum())


class TriggerSetScheme(WatermarkScheme):
    access = "black-box"
    EmbedOptions = TriggerEmbedOptions
    item_tensors = ("inputs", "labels", "clean_inputs")
    # Digits has 1,437 training images: with the paper's 2 trigger images per batch of 100, each
    # trigger is seen only ~6 times in 30 epochs and the watermark does not take. 16 per batch of
    # 64 embeds it fully in 20 epochs while test accuracy stays within a point of the control.
    demo_embed_options = {"per_batch": 16}

    def triggers(self, key: WatermarkKey) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = require_tensor(key, "inputs", torch.float32, 4)
        labels = require_tensor(key, "labels", torch.int64, 1)
        if len(inputs) != len(labels) or tuple(inputs.shape[1:]) != tuple(key.input_shape):
            raise NNMarkError("trigger inputs and labels do not agree with the key metadata",
                              field="inputs", expected=f"N x {list(key.input_shape)} with N labels")
        if labels.min() < 0 or labels.max() >= key.num_classes:
            raise NNMarkError("trigger labels out of range", field="labels",
                              expected=f"0..{key.num_classes - 1}")
        return inputs, labels

    def hooks(self, key: WatermarkKey, options: Any, seed: int = 0) -> list[TrainingHook]:
        inputs, labels = self.triggers(key)
        return [MixInSamples(inputs, labels, per_batch=options.per_batch, seed=seed)]

    def extract(self, suspect: Suspect, key: WatermarkKey) -> TriggerEvidence:
        inputs, labels = self.triggers(key)
        predictions = suspect.predict(inputs).to("cpu").long()
        if predictions.shape != labels.shape:
            raise NNMarkError(f"suspect '{suspect.description}' returned {tuple(predictions.shape)} "
                              f"labels for {len(labels)} queries", expected=f"shape ({len(labels)},)")
        return TriggerEvidence(predictions, labels)

    def null_for(self, suspect: Suspect, key: WatermarkKey) -> tuple[float, str, dict[str, Any]]:
        """The scheme's own null rate when the verifier gives none: for labels drawn uniformly,
        the agreement of any model made without the key is 1/K."""
        return 1.0 / key.num_classes, f"chance 1/K = 1/{key.num_classes} (labels drawn uniformly)", {}

    def statistic(self, key: WatermarkKey) -> str:
        return "trigger-set agreement"

    def calibrate(self, key: WatermarkKey, controls: list[Suspect]) -> Calibration:
        """Pool the controls' agreement with the key; the null is its 99.9% upper bound, at least 1/K."""
        if not controls:
            raise NNMarkError("calibration needs at least one control model")
        hits = total = 0
        for control in controls:
            evidence = self.extract(control, key)
            hits, total = hits + evidence.matches, total + len(evidence.labels)
        rate = upper_rate(hits, total, floor=1.0 / key.num_classes)
        source = (f"control models: {len(controls)} made without the key agreed on {hits}/{total}; "
                  f"null = 99.9% upper bound, at least 1/K")
        return Calibration(rate, source, {"controls": len(controls), "hits": hits, "total": total})

    def verify(self, suspect: Suspect, key: WatermarkKey, *, alpha: float = 1e-6,
               null_rate: float | Calibration | None = None) -> Verdict:
        evidence = self.extract(suspect, key)
        extra: dict[str, Any] = {}
        given = resolve_null(null_rate)
        if given is None:
            rate, source, extra = self.null_for(suspect, key)
        else:
            rate, source = given
        return binomial_verdict(
            scheme=self.name, statistic=self.statistic(key), matches=evidence.matches,
            total=len(evidence.labels), null_rate=rate, null_source=source, alpha=alpha,
            details={"queries": suspect.queries, "suspect": suspect.description,
                     "predictions": evidence.predictions.tolist(), **extra},
        )
