"""Images in class folders, for users who bring their own data.

Layout: ``ROOT/train/<class>/*.png|jpg`` and ``ROOT/test/<class>/*``; or, without those two
folders, ``ROOT/<class>/*`` split 80/20 with a fixed seed. Images are resized to a square size
and kept RGB or grayscale as the first image is.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from nnmark.data.base import Augmentation, Dataset, channel_stats, register_dataset_prefix
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
    Image = require("PIL.Image", "data", "reading image files")
    UnidentifiedImageError = Image.UnidentifiedImageError

    arrays = []
    for path, _ in files:
        try:
            with Image.open(path) as image:
                arrays.append(np.asarray(image.convert(mode).resize((size, size)), dtype=np.uint8))
        except (OSError, UnidentifiedImageError) as exc:
            raise NNMarkError(f"cannot read image ({exc})", path=path) from None
    stacked = np.stack(arrays)
    if stacked.ndim == 3:
        stacked = stacked[:, :, :, None]
    images = torch.from_numpy(stacked).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
    return images, torch.tensor([label for _, label in files], dtype=torch.int64)


@register_dataset_prefix("folder:")
def load_folder_dataset(path: str) -> Dataset:
    return load_image_folder(path)


def load_image_folder(root: str | Path, size: int = 32, name: str | None = None) -> Dataset:
    root = Path(root)
    if not root.is_dir():
        raise NNMarkError("image folder does not exist", path=root)
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
    Image = require("PIL.Image", "data", "reading image files")

    with Image.open(train[0][0]) as first:
        mode = "L" if first.mode in ("L", "1", "I;16", "I") else "RGB"
    train_x, train_y = _read(train, size, mode)
    test_x, test_y = _read(test, size, mode)
    mean, std = channel_stats(train_x)
    return Dataset(name or f"folder:{root}", train_x, train_y, test_x, test_y, len(class_names),
                   mean, std, Augmentation(crop_padding=max(1, size // 8), horizontal_flip=False),
                   tuple(class_names))
