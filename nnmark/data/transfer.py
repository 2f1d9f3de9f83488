"""A thief's own images of another domain, shaped as the victim's inputs (Knockoff Nets' transfer set).

The thief never labels them: the victim's answers do. Natural images are the transfer set the
extraction literature uses, and on digits and MNIST they teach a student far more than procedural
ones (docs/robustness.md), so the bench measures extraction with them when it is given a dataset.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from nnmark.data.base import Dataset
from nnmark.errors import NNMarkError

# ITU-R BT.601 luma, the usual grey conversion of RGB images.
_LUMA = (0.299, 0.587, 0.114)


def transfer_images(source: Dataset, input_shape: tuple[int, int, int]) -> torch.Tensor:
    """The training images of ``source`` converted to ``input_shape`` (C, H, W): grey from RGB (or
    RGB from grey), then resized (area averaging when shrinking). Labels are dropped."""
    channels, height, width = (int(v) for v in input_shape)
    images = source.train_x.float()
    have = images.shape[1]
    if have != channels:
        if have == 3 and channels == 1:
            images = (images * torch.tensor(_LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
        elif have == 1:
            images = images.expand(-1, channels, -1, -1)
        else:
            raise NNMarkError(f"has {have}-channel images; the victim takes {channels} channels",
                              field="transfer data", expected="grey or RGB images, or images with the victim's channels")
    if tuple(images.shape[2:]) != (height, width):
        # Area averaging when shrinking: on digits (32 -> 16) the thief's student came 6 points
        # closer to the owner than with antialiased bilinear (docs/robustness.md).
        shrinking = height <= images.shape[2] and width <= images.shape[3]
        images = (F.interpolate(images, size=(height, width), mode="area") if shrinking else
                  F.interpolate(images, size=(height, width), mode="bilinear", align_corners=False))
    return images.clamp(0, 1).contiguous()


def edge_images(images: torch.Tensor) -> torch.Tensor:
    """Sobel edge strength of each (grey) image, scaled by its own 99th percentile and squared: thin
    bright strokes on a dark field. A thief of a model for pen strokes (MNIST) gets far more from
    natural images drawn this way than from the images themselves (docs/robustness.md)."""
    grey = images.mean(1, keepdim=True)
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]).view(1, 1, 3, 3)
    across = F.conv2d(grey, sobel, padding=1)
    down = F.conv2d(grey, sobel.transpose(2, 3), padding=1)
    strength = (across ** 2 + down ** 2).sqrt()
    scale = strength.flatten(1).quantile(0.99, dim=1).clamp_min(1e-3).view(-1, 1, 1, 1)
    edges = (strength / scale).clamp(0, 1) ** 2
    return edges.expand(-1, images.shape[1], -1, -1).contiguous()
