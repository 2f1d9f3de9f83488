"""Batch augmentation on tensors, on whatever device the batch lives: one gather per batch, no
per-sample Python."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from nnmark.data.base import Augmentation


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero-pad by ``padding`` and cut a random window of the original size from each image."""
    if padding <= 0:
        return images
    n, _, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (n, 1, 1), device=images.device, generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n, 1, 1), device=images.device, generator=generator)
    rows = (dy + torch.arange(h, device=images.device).view(1, h, 1)).expand(n, h, w)
    cols = (dx + torch.arange(w, device=images.device).view(1, 1, w)).expand(n, h, w)
    flat = rows * padded.shape[-1] + cols  # index into the flattened padded image
    gathered = padded.flatten(2).gather(2, flat.flatten(1).unsqueeze(1).expand(-1, padded.shape[1], -1))
    return gathered.view_as(images)


def random_flip(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    flip = torch.rand(images.shape[0], device=images.device, generator=generator) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(3), images)


def augment(images: torch.Tensor, spec: Augmentation, generator: torch.Generator | None = None) -> torch.Tensor:
    if spec.crop_padding:
        images = random_crop(images, spec.crop_padding, generator)
    if spec.horizontal_flip:
        images = random_flip(images, generator)
    return images
