"""Data read batch by batch, for datasets larger than memory.

A :class:`StreamingDataset` has what a tensor :class:`~nnmark.data.base.Dataset` has (classes,
input shape, normalisation statistics, augmentation), but its splits are ``torch.utils.data``
datasets of ``(image in [0, 1], label)`` decoded when they are read, in DataLoader workers. Memory
does not grow with the number of images. Anything that needs whole tensors takes a bounded sample
(:meth:`StreamingDataset.tensors`) and says how big.

:class:`ImageFiles` decodes image files at a chosen size; ``skip_bad`` turns an unreadable file
into a skipped sample (counted) instead of an error naming it.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset, default_collate
from torch.utils.data import Dataset as TorchDataset

from nnmark.data.base import Augmentation, Dataset
from nnmark.errors import NNMarkError
from nnmark.extras import require

# Images read to estimate a streamed dataset's per-channel mean and std.
STATS_SAMPLE = 512


def to_tensor(image, size: int, mode: str) -> torch.Tensor:
    """A PIL image as (C, size, size) floats in [0, 1]."""
    Image = require("PIL.Image", "data", "reading image files")
    array = np.asarray(image.convert(mode).resize((size, size), Image.BILINEAR), dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


class ImageFiles(TorchDataset):
    """Image files with their labels, decoded at ``size`` x ``size`` in ``mode`` ("L" or "RGB") as
    they are read. Items are ``(image, label, ok)``: ``ok`` is False for an unreadable file when
    ``skip_bad`` (the image is then zeros, and :func:`collate` drops it)."""

    def __init__(self, files: Sequence[tuple[Path, int]], size: int, mode: str, skip_bad: bool = False) -> None:
        self.files, self.size, self.mode, self.skip_bad = list(files), size, mode, skip_bad

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        Image = require("PIL.Image", "data", "reading image files")
        path, label = self.files[index]
        try:
            with Image.open(path) as image:
                image.load()  # a truncated file fails here, not later
                return to_tensor(image, self.size, self.mode), label, True
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            if not self.skip_bad:
                raise NNMarkError(f"cannot read image ({str(exc).splitlines()[0][:120]}); "
                                  "--skip-bad-images counts such files and goes on", path=path) from None
            channels = 1 if self.mode == "L" else 3
            return torch.zeros(channels, self.size, self.size), label, False


def collate(items: list[tuple[torch.Tensor, int, bool]]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """A batch of the readable items, and how many were skipped."""
    kept = [(image, label) for image, label, ok in items if ok]
    if not kept:
        return torch.empty(0), torch.empty(0, dtype=torch.int64), len(items)
    # default_collate, not torch.stack: in a DataLoader worker it builds the batch straight in shared
    # memory. A batch stacked in the worker's own heap and then copied out left the worker's memory
    # growing with every batch (measured: 207 -> 555 MB over an epoch of 5,000 -> 50,000 files).
    return (default_collate([image for image, _ in kept]), torch.tensor([label for _, label in kept], dtype=torch.int64),
            len(items) - len(kept))


class Readable(TorchDataset):
    """A split of ``(image, label, ok)`` items with the ``collate_fn`` that drops unreadable ones:
    ``fit`` makes its DataLoader with it and counts what was skipped."""

    collate_fn = staticmethod(collate)

    def __init__(self, source: TorchDataset) -> None:
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int):
        return self.source[index]


@dataclass
class StreamingDataset:
    name: str
    train: TorchDataset
    test: TorchDataset
    num_classes: int
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augmentation: Augmentation = field(default_factory=Augmentation)
    class_names: tuple[str, ...] | None = None
    streamed = True

    @property
    def train_size(self) -> int:
        return len(self.train)

    def subset(self, train_fraction: float, seed: int = 0) -> "StreamingDataset":
        """A random fraction of the training split (the test split is kept whole)."""
        count = max(1, round(len(self.train) * train_fraction))
        order = torch.randperm(len(self.train), generator=torch.Generator().manual_seed(seed))
        return replace(self, train=Subset(self.train, order[:count].tolist()))

    def loader(self, split: str, batch_size: int, *, shuffle: bool = False, workers: int = 2,
               seed: int = 0) -> DataLoader:
        """Batches ``(images, labels, skipped)`` of ``split`` ("train" or "test")."""
        source = self.train if split == "train" else self.test
        return DataLoader(source, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                          persistent_workers=False, collate_fn=collate,
                          generator=torch.Generator().manual_seed(seed))

    def tensors(self, limit: int, seed: int = 0) -> Dataset:
        """A tensor dataset of at most ``limit`` training images drawn at random, and at most
        ``limit`` test images: for work that needs whole tensors (an attack that stamps the thief's
        images), bounded whatever the dataset's size."""
        def take(source: TorchDataset, count: int) -> tuple[torch.Tensor, torch.Tensor]:
            order = torch.randperm(len(source), generator=torch.Generator().manual_seed(seed))[:count]
            images, labels = [], []
            for batch in DataLoader(Subset(source, order.tolist()), batch_size=256, num_workers=0, collate_fn=collate):
                images.append(batch[0])
                labels.append(batch[1])
            return torch.cat(images), torch.cat(labels)

        train_x, train_y = take(self.train, min(limit, len(self.train)))
        test_x, test_y = take(self.test, min(limit, len(self.test)))
        return Dataset(f"{self.name} (a sample of {len(train_y)})", train_x, train_y, test_x, test_y, self.num_classes,
                       self.mean, self.std, self.augmentation, self.class_names)

    def split(self, split: str = "train") -> Readable:
        """The split as ``fit`` and a DataLoader take it (with its ``collate_fn``)."""
        return Readable(self.train if split == "train" else self.test)


def estimate_stats(source: TorchDataset, seed: int = 0) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std from up to :data:`STATS_SAMPLE` images drawn at random."""
    order = torch.randperm(len(source), generator=torch.Generator().manual_seed(seed))[:STATS_SAMPLE]
    images = [item[0] for item in (source[int(i)] for i in order) if item[2]]
    if not images:
        raise NNMarkError("no readable image to estimate the normalisation from", field="images")
    stacked = torch.stack(images)
    mean = stacked.mean(dim=(0, 2, 3))
    std = stacked.std(dim=(0, 2, 3)).clamp_min(1e-6)
    return tuple(round(v, 4) for v in mean.tolist()), tuple(round(v, 4) for v in std.tolist())


def training_source(data: Any) -> tuple[Any, torch.Tensor | None]:
    """What :func:`nnmark.training.fit` trains on: tensors and their labels, or a streamed split."""
    if getattr(data, "streamed", False):
        return data.split("train"), None
    return data.train_x, data.train_y


def train_size(data: Any) -> int:
    """How many training images ``data`` holds, tensors or streamed."""
    return len(data.train) if getattr(data, "streamed", False) else len(data.train_y)


def as_tensors(data: Any, limit: int, seed: int = 0) -> Dataset:
    """``data`` itself where it is tensors; else a random sample of at most ``limit`` of its images
    per split (for work that needs whole tensors)."""
    return data.tensors(limit, seed=seed) if getattr(data, "streamed", False) else data
