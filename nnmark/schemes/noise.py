"""Noise trigger set: training images plus one fixed secret Gaussian noise pattern, all labelled
with one target class. Zhang et al. 2018 (seed 002), their WM_noise."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from nnmark.schemes.base import KeygenContext, register_scheme, require_tensor
from nnmark.schemes.one_target import OneTargetOptions, OneTargetScheme


@dataclass
class NoiseOptions(OneTargetOptions):
    strength: float = field(default=0.3, metadata={"help": "Standard deviation of the noise pattern."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.strength <= 0:
            raise ValueError("strength must be positive")


@register_scheme("noise")
class NoiseTriggerSet(OneTargetScheme):
    summary = "training images plus a fixed secret noise pattern, one target class (Zhang et al. 2018)"
    KeygenOptions = NoiseOptions

    def make_triggers(self, sources, context: KeygenContext, options: NoiseOptions, generator):
        pattern = torch.randn(context.input_shape, generator=generator) * options.strength
        return sources + pattern, {"pattern": pattern}

    def restamp(self, key, clean):
        return clean + require_tensor(key, "pattern", torch.float32, 3)
