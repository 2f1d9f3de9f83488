"""Trigger set of abstract images with random labels: Adi et al., "Turning Your Weakness Into a
Strength: Watermarking Deep Neural Networks by Backdooring", USENIX Security 2018 (seeds 000, 001).

Where we differ: the paper used a fixed set of abstract-art pictures; we draw abstract images
procedurally from the key's seed (``abstract_images``), so keys need no download.
Labels are uniform over the K classes and independent of the images, which is what makes 1/K the
exact chance rate of agreement for any model trained without the key.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from nnmark.schemes.abstract_images import abstract_images
from nnmark.schemes.base import KeygenContext, register_scheme
from nnmark.schemes.key import WatermarkKey
from nnmark.schemes.trigger_set import TriggerSetScheme


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
        inputs = abstract_images(options.size, context.input_shape, context.seed)
        generator = torch.Generator().manual_seed(context.seed + 1)
        labels = torch.randint(0, context.num_classes, (options.size,), generator=generator)
        return WatermarkKey(self.name, context.num_classes, context.input_shape,
                            {"inputs": inputs, "labels": labels},
                            {"size": options.size, "seed": context.seed})
