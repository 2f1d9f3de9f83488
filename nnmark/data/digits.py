"""scikit-learn's bundled 8x8 digits: the embedded default dataset, so nnmark runs with no downloads.

The 8x8 images (values 0..16) are scaled to [0, 1] and bilinearly upsampled to 16x16: large enough
for visible trigger patterns and a few conv/pool stages, still tiny enough to train in seconds on
a CPU. The 1797 samples are split 80/20, stratified, with a fixed seed so every run sees the same
split.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from nnmark.extras import require
from nnmark.data.base import Augmentation, Dataset, channel_stats, register_dataset

DIGITS_SIZE = 16


@register_dataset("digits")
def load_digits(data_dir: Path | None = None) -> Dataset:
    sklearn_digits = require("sklearn.datasets", "data", "the embedded digits dataset").load_digits
    train_test_split = require("sklearn.model_selection", "data", "the embedded digits dataset").train_test_split

    bunch = sklearn_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = F.interpolate(images, size=(DIGITS_SIZE, DIGITS_SIZE), mode="bilinear",
                           align_corners=False).clamp(0, 1)
    labels = torch.tensor(bunch.target, dtype=torch.int64)
    train_idx, test_idx = train_test_split(
        torch.arange(len(labels)).numpy(), test_size=0.2, stratify=labels.numpy(), random_state=0
    )
    train_x, test_x = images[train_idx], images[test_idx]
    mean, std = channel_stats(train_x)
    return Dataset("digits", train_x, labels[train_idx], test_x, labels[test_idx], 10, mean, std,
                   Augmentation(crop_padding=1), tuple(str(i) for i in range(10)))
