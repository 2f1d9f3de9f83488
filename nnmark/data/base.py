"""The dataset object every loader returns: tensors, ready to move to the training device."""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from nnmark.errors import NNMarkError
from nnmark.registry import Registry

DATA_ENV = "NNMARK_DATA"


@dataclass(frozen=True)
class Augmentation:
    """What random augmentation suits a dataset; applied on the device by ``nnmark.data.augment``."""

    crop_padding: int = 0
    horizontal_flip: bool = False

    @property
    def enabled(self) -> bool:
        return self.crop_padding > 0 or self.horizontal_flip


@dataclass
class Dataset:
    """Images as float32 NCHW in [0, 1] and int64 labels; normalisation lives in the model."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augmentation: Augmentation = field(default_factory=Augmentation)
    class_names: tuple[str, ...] | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])  # type: ignore[return-value]

    def subset(self, train_fraction: float, seed: int = 0) -> "Dataset":
        """A random fraction of the training split (the test split is kept whole)."""
        count = max(1, round(len(self.train_y) * train_fraction))
        order = torch.randperm(len(self.train_y), generator=torch.Generator().manual_seed(seed))
        keep = order[:count]
        return Dataset(self.name, self.train_x[keep], self.train_y[keep], self.test_x, self.test_y,
                       self.num_classes, self.mean, self.std, self.augmentation, self.class_names)


Loader = Callable[[Path | None], Dataset]
DATASETS: Registry[Loader] = Registry("dataset")
# Datasets named by a prefix and a path the user gives ("folder:PATH"): prefix -> loader of the rest.
PathLoader = Callable[..., "Dataset"]  # (rest of the name, image_size=, streaming=, skip_bad=)
DATASET_PREFIXES: Registry[PathLoader] = Registry("dataset prefix")


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    return DATASETS.register(name)


def register_dataset_prefix(prefix: str) -> Callable[[PathLoader], PathLoader]:
    """``prefix`` ends with ':'; ``load_dataset(prefix + rest)`` calls the loader with ``rest``."""
    return DATASET_PREFIXES.register(prefix)


def resolve_data_dir(data_dir: str | Path | None) -> Path | None:
    """The directory the user pointed us at: the argument, else $NNMARK_DATA, else None."""
    if data_dir is not None:
        return Path(data_dir)
    from_env = os.environ.get(DATA_ENV)
    return Path(from_env) if from_env else None


def require_data_dir(data_dir: Path | None, dataset: str, subdir: str) -> Path:
    if data_dir is None:
        raise NNMarkError(
            f"dataset '{dataset}' is read from files: pass --data-dir DIR or set {DATA_ENV}, "
            f"with the files under DIR/{subdir}/"
        )
    if not data_dir.is_dir():
        raise NNMarkError("data directory does not exist", path=data_dir)
    root = data_dir / subdir
    if not root.is_dir():
        raise NNMarkError(f"dataset '{dataset}' expects its files in this directory; it is missing",
                          path=root)
    return root


def load_dataset(name: str, data_dir: str | Path | None = None, *, image_size: int | None = None,
                 streaming: bool | None = None, skip_bad: bool = False):
    """Load a registered dataset by name (``DATASETS.names()``), or one named by a registered
    prefix and a path: ``folder:PATH`` (images in class folders, ``nnmark.data.folder``) and
    ``hf:PATH`` (a saved Hugging Face dataset, ``nnmark.data.huggingface``). Those stream by
    default (a :class:`~nnmark.data.streaming.StreamingDataset`, decoded as read) at
    ``image_size``; ``streaming=False`` reads a folder whole into tensors. ``skip_bad``: count
    unreadable images and go on. The built-in datasets are tensors on the fast path."""
    prefix, colon, rest = name.partition(":")
    if colon and prefix + ":" in DATASET_PREFIXES:
        return DATASET_PREFIXES.get(prefix + ":")(rest, image_size=image_size, streaming=streaming,
                                                  skip_bad=skip_bad)
    if image_size is not None or streaming or skip_bad:
        raise NNMarkError(f"dataset '{name}' is read from its own files at its own size, as tensors: "
                          "--image-size, streaming and --skip-bad-images apply to folder: and hf: data",
                          field="--image-size")
    return DATASETS.get(name)(resolve_data_dir(data_dir))


def dataset_names() -> list[str]:
    """What ``load_dataset`` accepts, for listings: the names, then each prefix with PATH."""
    return DATASETS.names() + [f"{prefix}PATH" for prefix in DATASET_PREFIXES.names()]


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    mean = images.mean(dim=(0, 2, 3))
    std = images.std(dim=(0, 2, 3)).clamp_min(1e-6)
    return tuple(round(v, 4) for v in mean.tolist()), tuple(round(v, 4) for v in std.tolist())
