"""Pasting a pattern into images: what a Trojan-style trigger and the baselines it is compared with
share. Here, below the schemes and the encoder/decoder package, so both can use it."""
from __future__ import annotations

import torch


def stamp_patch(images: torch.Tensor, patch: torch.Tensor, corner: str) -> torch.Tensor:
    """Paste ``patch`` (C, h, w) into ``corner`` of every image."""
    _, _, height, width = images.shape
    h, w = patch.shape[-2:]
    top = height - h if corner.startswith("bottom") else 0
    left = width - w if corner.endswith("right") else 0
    stamped = images.clone()
    stamped[:, :, top:top + h, left:left + w] = patch
    return stamped
