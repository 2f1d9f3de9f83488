"""Trigger set of abstract images with random labels: Adi et al., "Turning Your Weakness Into a
Strength: Watermarking Deep Neural Networks by Backdooring", USENIX Security 2018 (seeds 000, 001).

Where we differ: the paper used a fixed set of abstract-art pictures; we draw abstract images
procedurally from the key's seed (``abstract_images``), so keys need no download.
Labels are uniform over the K classes and independent of the images, which is what makes 1/K the
exact chance rate of agreement for any model trained without the key. Images and labels are
both drawn from the key's seed, and a verifier redraws them: a key whose labels were picked to
match what models tend to answer (which would frame anyone) is refused.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch

from nnmark.errors import NNMarkError
from nnmark.schemes.abstract_images import abstract_images
from nnmark.schemes.base import KeygenContext, key_indices, register_scheme
from nnmark.schemes.key import WatermarkKey
from nnmark.schemes.trigger_set import TriggerSetScheme, require_image_shape


@dataclass
class AdiKeygenOptions:
    size: int = field(default=100, metadata={"help": "Number of trigger images (the paper: 100)."})

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError("size must be at least 1")


@register_scheme("adi")
class AdiTriggerSet(TriggerSetScheme):
    summary = "abstract images with random labels mixed into training (Adi et al. 2018)"
    KeygenOptions = AdiKeygenOptions

    def keygen(self, context: KeygenContext, options: AdiKeygenOptions) -> WatermarkKey:
        require_image_shape(context.input_shape, self.name)
        inputs, labels = draw(options.size, context.num_classes, context.input_shape, context.seed)
        return WatermarkKey(self.name, context.num_classes, context.input_shape,
                            {"inputs": inputs, "labels": labels},
                            {"size": options.size, "seed": context.seed})

    def validate_key(self, key: WatermarkKey) -> None:
        super().validate_key(key)
        size, seed = key.params.get("size"), key.params.get("seed")
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (size, seed)):
            raise NNMarkError("an adi key records the size and seed its triggers were drawn from",
                              field="params.size/params.seed", expected="two non-negative integers",
                              got=[size, seed])
        inputs, labels = self.triggers(key)
        expected_inputs, expected_labels = draw(size, key.num_classes, tuple(key.input_shape), seed)
        indices = key_indices(key)
        if indices is not None:
            expected_inputs, expected_labels = expected_inputs[indices], expected_labels[indices]
        if not torch.equal(labels, expected_labels):
            raise NNMarkError("trigger labels are not the ones drawn from the key's seed: labels "
                              "chosen by hand could agree with any model", field="labels")
        if expected_inputs.shape != inputs.shape or not torch.allclose(inputs, expected_inputs, atol=1e-5):
            raise NNMarkError("trigger images are not the ones drawn from the key's seed", field="inputs")


def draw(size: int, num_classes: int, input_shape: tuple[int, int, int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The trigger images and their uniformly random labels, both from ``seed`` (fresh tensors;
    the drawing is remembered for the last few keys, since a verifier redraws a key's triggers
    every time it checks the key)."""
    inputs, labels = _draw(size, num_classes, tuple(input_shape), seed)
    return inputs.clone(), labels.clone()


@functools.lru_cache(maxsize=4)
def _draw(size: int, num_classes: int, input_shape: tuple[int, int, int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    inputs = abstract_images(size, input_shape, seed)
    generator = torch.Generator().manual_seed((seed + 1) % 2**64)
    return inputs, torch.randint(0, num_classes, (size,), generator=generator)
