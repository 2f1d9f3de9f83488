"""Images in class folders, for users who bring their own data.

Layout: ``ROOT/train/<class>/*.png|jpg`` and ``ROOT/test/<class>/*``; or, without those two
folders, ``ROOT/<class>/*`` split 80/20 with a fixed seed. Images are resized to a square size
(``--image-size``, 32 by default) and kept RGB or grayscale as the first image is. ``folder:PATH``
streams: images are decoded as batches are read, and the normalisation is estimated from a
sample of them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from nnmark.data.base import Augmentation, Dataset, channel_stats, register_dataset_prefix
from nnmark.data.streaming import ImageFiles, StreamingDataset, estimate_stats
from nnmark.errors import NNMarkError
from nnmark.extras import require

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


def _scan(root: Path) -> dict[str, list[Path]]:
    classes = {d.name: sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
               for d in sorted(root.iterdir()) if d.is_dir()}
    classes = {name: files for name, files in classes.items() if files}
    if not classes:
        raise NNMarkError("holds no class folders with images", path=root,
                          expected=f"ROOT/<class>/<image> with suffix in {sorted(IMAGE_SUFFIXES)}")
    return classes


def _read(files: list[tuple[Path, int]], size: int, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    images = ImageFiles(files, size, mode)
    return torch.stack([images[i][0] for i in range(len(images))]), torch.tensor([label for _, label in files],
                                                                                 dtype=torch.int64)


@register_dataset_prefix("folder:")
def load_folder_dataset(path: str, *, image_size: int | None = None, streaming: bool | None = None,
                        skip_bad: bool = False) -> Dataset | StreamingDataset:
    return load_image_folder(path, size=image_size or 32, streaming=True if streaming is None else streaming,
                             skip_bad=skip_bad)


def load_image_folder(root: str | Path, size: int = 32, name: str | None = None, *, streaming: bool = False,
                      skip_bad: bool = False) -> Dataset | StreamingDataset:
    """The images under ``root`` at ``size`` x ``size``: streamed (decoded as read, in DataLoader
    workers; memory flat in the number of images) or read whole into tensors (``streaming=False``)."""
    root = Path(root)
    if not root.is_dir():
        raise NNMarkError("image folder does not exist", path=root)
    if isinstance(size, bool) or not isinstance(size, int) or not 4 <= size <= 4096:
        raise NNMarkError("must be a whole number of pixels in 4..4096", field="--image-size", got=size)
    split_dirs = (root / "train").is_dir() and (root / "test").is_dir()
    if split_dirs:
        train_classes, test_classes = _scan(root / "train"), _scan(root / "test")
        class_names = sorted(set(train_classes) | set(test_classes))
        index = {c: i for i, c in enumerate(class_names)}
        train = [(p, index[c]) for c, files in train_classes.items() for p in files]
        test = [(p, index[c]) for c, files in test_classes.items() for p in files]
    else:
        classes = _scan(root)
        class_names = sorted(classes)
        rng = np.random.default_rng(0)
        train, test = [], []
        for label, cls in enumerate(class_names):
            files = [classes[cls][i] for i in rng.permutation(len(classes[cls]))]
            cut = max(1, int(round(0.8 * len(files)))) if len(files) > 1 else 1
            train += [(p, label) for p in files[:cut]]
            test += [(p, label) for p in files[cut:]]
        if not test:
            raise NNMarkError("too few images to hold out a test split", path=root)
    mode = _mode_of(train, skip_bad)
    augmentation = Augmentation(crop_padding=max(1, size // 8), horizontal_flip=False)
    label = name or f"folder:{root}"
    if streaming:
        train_set, test_set = ImageFiles(train, size, mode, skip_bad), ImageFiles(test, size, mode, skip_bad)
        mean, std = estimate_stats(train_set)
        return StreamingDataset(label, train_set, test_set, len(class_names), (1 if mode == "L" else 3, size, size),
                                mean, std, augmentation, tuple(class_names))
    train_x, train_y = _read(train, size, mode)
    test_x, test_y = _read(test, size, mode)
    mean, std = channel_stats(train_x)
    return Dataset(label, train_x, train_y, test_x, test_y, len(class_names), mean, std, augmentation,
                   tuple(class_names))


def _mode_of(files: list[tuple[Path, int]], skip_bad: bool) -> str:
    """Grey ("L") or colour ("RGB"), as the first readable image is."""
    Image = require("PIL.Image", "data", "reading image files")
    for path, _ in files:
        try:
            with Image.open(path) as first:
                return "L" if first.mode in ("L", "1", "I;16", "I") else "RGB"
        except (OSError, ValueError) as exc:
            if not skip_bad:
                raise NNMarkError(f"cannot read image ({str(exc).splitlines()[0][:120]}); "
                                  "--skip-bad-images counts such files and goes on", path=path) from None
    raise NNMarkError("holds no readable image", path=files[0][0].parent.parent if files else None)
