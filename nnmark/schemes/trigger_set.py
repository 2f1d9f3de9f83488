"""What every trigger-set (backdoor) watermark shares: the key is a set of inputs with secret
labels, embedding mixes them into training batches, verification counts how many of them the
suspect labels as the key says and tests that count against the scheme's null."""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import torch

from nnmark.errors import NNMarkError, NonFiniteOutput
from nnmark.schemes.base import WatermarkScheme, require_tensor
from nnmark.schemes.key import WatermarkKey
from nnmark.training.hooks import MixInSamples, TrainingHook
from nnmark.verification.evidence import TriggerEvidence
from nnmark.verification.suspects import Suspect


@dataclass
class TriggerEmbedOptions:
    per_batch: int = 2  # trigger samples appended to every training batch (Adi et al.: 2)

    def __post_init__(self) -> None:
        if self.per_batch < 1:
            raise ValueError("per_batch must be at least 1")


def check_images(images: torch.Tensor, name: str) -> None:
    """Images a verifier will send: finite, inside [0, 1], none a duplicate or a flat field."""
    if not bool(torch.isfinite(images).all()):
        raise NNMarkError("holds NaN or infinite values", field=name, expected="finite pixel values")
    if images.min() < 0 or images.max() > 1:
        raise NNMarkError("has pixels outside the input range", field=name, expected="values in [0, 1]",
                          got=f"[{float(images.min()):.3g}, {float(images.max()):.3g}]")
    flat = images.flatten(1)
    if len(flat) and bool((flat.amax(1) == flat.amin(1)).any()):
        raise NNMarkError("holds a constant image, which carries no mark", field=name)
    if len(torch.unique(flat, dim=0)) != len(flat):
        raise NNMarkError("holds duplicated images: items must be distinct for the count to be a "
                          "sum of separate trials", field=name)


def require_image_shape(shape: tuple[int, ...], scheme: str) -> tuple[int, int, int]:
    """A trigger set's items are images: its key's input shape is C, H, W."""
    if len(shape) != 3:
        raise NNMarkError(f"scheme '{scheme}' makes trigger images: the input shape must be C,H,W",
                          field="input_shape", got=list(shape))
    return tuple(shape)  # type: ignore[return-value]


class TriggerSetScheme(WatermarkScheme):
    access = "black-box"
    EmbedOptions = TriggerEmbedOptions
    item_tensors = ("inputs", "labels", "clean_inputs")

    def recommended_embed_options(self, train_size: int) -> dict[str, Any]:
        """Adi et al.'s 2 trigger images per batch on large training sets. On a small one (digits'
        1,437 images) each trigger is then seen only ~6 times in 30 epochs and the watermark does
        not take; 16 per batch of 64 embeds it fully in 20 epochs while test accuracy stays within
        a point of the control."""
        return {"per_batch": 2 if train_size >= 20_000 else 16}

    def triggers(self, key: WatermarkKey) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = require_tensor(key, "inputs", torch.float32, 4)
        labels = require_tensor(key, "labels", torch.int64, 1)
        if len(inputs) != len(labels) or tuple(inputs.shape[1:]) != tuple(key.input_shape):
            raise NNMarkError("trigger inputs and labels do not agree with the key metadata",
                              field="inputs", expected=f"N x {list(key.input_shape)} with N labels")
        if len(labels) and (labels.min() < 0 or labels.max() >= key.num_classes):
            raise NNMarkError("trigger labels out of range", field="labels",
                              expected=f"0..{key.num_classes - 1}")
        return inputs, labels

    def probes(self, key: WatermarkKey) -> torch.Tensor | None:
        """Ordinary inputs sent among the triggers (none for this scheme)."""
        return None

    def evidence_target(self, key: WatermarkKey) -> int | None:
        """The one class every trigger carries, where there is one (for the probes' rate)."""
        return None

    def validate_key(self, key: WatermarkKey) -> None:
        super().validate_key(key)
        inputs, _ = self.triggers(key)
        check_images(inputs, "inputs")

    def query_count(self, key: WatermarkKey) -> int:
        probes = self.probes(key)
        return len(self.triggers(key)[1]) + (0 if probes is None else len(probes))

    def hooks(self, key: WatermarkKey, options: Any, seed: int = 0) -> list[TrainingHook]:
        self.check_key(key)
        inputs, labels = self.triggers(key)
        return [MixInSamples(inputs, labels, per_batch=options.per_batch, seed=seed)]

    def extract(self, suspect: Suspect, key: WatermarkKey) -> TriggerEvidence:
        """Query triggers and probes in one batch, in an order the suspect cannot predict, so it
        cannot tell which answers will be counted."""
        inputs, labels = self.triggers(key)
        probes = self.probes(key)
        queries = inputs if probes is None else torch.cat([inputs, probes])
        order = torch.randperm(len(queries), generator=torch.Generator().manual_seed(secrets.randbits(63)))
        answers = suspect.predict(queries[order])
        answers = torch.as_tensor(answers).to("cpu")
        if answers.shape != (len(queries),):
            raise NNMarkError(f"suspect '{suspect.description}' returned {tuple(answers.shape)} "
                              f"labels for {len(queries)} queries", expected=f"shape ({len(queries)},)")
        if answers.is_floating_point() and not bool(torch.isfinite(answers).all()):
            raise NonFiniteOutput(f"suspect '{suspect.description}' answered NaN: its output cannot be read as labels")
        answers = answers.long()
        if len(answers) and (answers.min() < 0 or answers.max() >= key.num_classes):
            raise NNMarkError(f"suspect '{suspect.description}' answered class {int(answers.max())}, but the key is "
                              f"for a model of {key.num_classes} classes: it does not fit this suspect",
                              field="num_classes", expected=f"labels in 0..{key.num_classes - 1}")
        unshuffled = torch.empty_like(answers)
        unshuffled[order] = answers
        return TriggerEvidence(unshuffled[:len(inputs)], labels,
                               None if probes is None else unshuffled[len(inputs):], self.evidence_target(key))

    def statistic(self, key: WatermarkKey) -> str:
        return "trigger-set agreement"

    def exact_null_rate(self, key: WatermarkKey) -> float:
        """Labels drawn uniformly and independently of the images: any model made without the key
        agrees with each with probability exactly 1/K, independently of the others."""
        return 1.0 / key.num_classes

    def exact_null_source(self, key: WatermarkKey) -> str:
        return f"exact: chance 1/K = 1/{key.num_classes} (labels drawn uniformly, independent of the images)"
