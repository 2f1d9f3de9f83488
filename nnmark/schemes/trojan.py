"""Trojan-style trigger: a visible patch of fixed random pixels in one corner, all labelled with
one target class — the baseline of Liu et al. 2018 ("Trojaning Attack on Neural Networks") that
the encoder/decoder paper (seed 003) compares with."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from nnmark.data.stamps import stamp_patch
from nnmark.errors import NNMarkError
from nnmark.schemes.base import KeygenContext, register_scheme, require_tensor
from nnmark.schemes.one_target import OneTargetOptions, OneTargetScheme

CORNERS = ("bottom-right", "bottom-left", "top-right", "top-left")


@dataclass
class TrojanOptions(OneTargetOptions):
    patch: float = field(default=0.25, metadata={"help": "Patch side, fraction of the image side."})
    corner: str = field(default="bottom-right", metadata={"help": "One of " + ", ".join(CORNERS) + "."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.patch <= 0.5:
            raise ValueError("patch must be in (0, 0.5]")
        if self.corner not in CORNERS:
            raise ValueError(f"corner must be one of {', '.join(CORNERS)}")


@register_scheme("trojan")
class TrojanTriggerSet(OneTargetScheme):
    summary = "a visible corner patch of fixed random pixels, one target class (Liu et al. 2018)"
    KeygenOptions = TrojanOptions

    def make_triggers(self, sources, context: KeygenContext, options: TrojanOptions, generator):
        channels, height, width = context.input_shape
        side = max(2, round(options.patch * min(height, width)))
        patch = (torch.rand(channels, side, side, generator=generator) > 0.5).float()
        return stamp_patch(sources, patch, options.corner), {"patch": patch}

    def restamp(self, key, clean):
        corner = key.params.get("corner")
        if corner not in CORNERS:
            raise NNMarkError("names no corner", field="params.corner", expected=" or ".join(CORNERS), got=corner)
        patch = require_tensor(key, "patch", torch.float32, 3)
        if patch.shape[0] != clean.shape[1] or patch.shape[1] > clean.shape[2] or patch.shape[2] > clean.shape[3]:
            raise NNMarkError("patch does not fit the images", field="patch")
        return stamp_patch(clean, patch, corner)
