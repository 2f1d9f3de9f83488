"""A Hugging Face ``datasets`` dataset saved on disk (``Dataset.save_to_disk``), as ``--data hf:PATH``
(``pip install nnmark[datasets]``). It streams: images are decoded as they are read.

The dataset (or its ``train`` split, with ``test`` or ``validation`` held out; a single split is cut
80/20 with a fixed seed) must have one image column (``datasets.Image``) and one label column
(``datasets.ClassLabel``, whose names give the classes)."""
from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset as TorchDataset

from nnmark.data.base import Augmentation, register_dataset_prefix
from nnmark.data.streaming import StreamingDataset, estimate_stats, to_tensor
from nnmark.errors import NNMarkError
from nnmark.extras import require


class HuggingFaceImages(TorchDataset):
    """A split's ``(image, label, ok)`` items, the image decoded at ``size`` in ``mode``."""

    def __init__(self, split, image_column: str, label_column: str, size: int, mode: str) -> None:
        self.split, self.image_column, self.label_column = split, image_column, label_column
        self.size, self.mode = size, mode

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int):
        row = self.split[int(index)]
        return to_tensor(row[self.image_column], self.size, self.mode), int(row[self.label_column]), True


@register_dataset_prefix("hf:")
def load_hf_dataset(path: str, *, image_size: int | None = None, streaming: bool | None = None,
                    skip_bad: bool = False) -> StreamingDataset:
    datasets = require("datasets", "datasets", "--data hf:PATH")
    root = Path(path)
    if not root.is_dir():
        raise NNMarkError("is not a saved Hugging Face dataset (no such directory)", path=root)
    if streaming is False:
        raise NNMarkError("an hf: dataset always streams", field="streaming")
    try:
        loaded = datasets.load_from_disk(str(root))
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise NNMarkError(f"cannot be read as a saved Hugging Face dataset ({str(exc).splitlines()[0][:160]})",
                          path=root) from None
    if isinstance(loaded, datasets.DatasetDict):
        if "train" not in loaded:
            raise NNMarkError("has no 'train' split", path=root, field="splits", got=sorted(loaded))
        train = loaded["train"]
        held_out = next((loaded[name] for name in ("test", "validation") if name in loaded), None)
        if held_out is None:
            cut = train.train_test_split(test_size=0.2, seed=0)
            train, held_out = cut["train"], cut["test"]
    else:
        cut = loaded.train_test_split(test_size=0.2, seed=0)
        train, held_out = cut["train"], cut["test"]
    image_column = next((name for name, kind in train.features.items() if isinstance(kind, datasets.Image)), None)
    label_column = next((name for name, kind in train.features.items() if isinstance(kind, datasets.ClassLabel)), None)
    if image_column is None or label_column is None:
        raise NNMarkError("needs an image column (datasets.Image) and a label column (datasets.ClassLabel)",
                          path=root, field="features", got={k: type(v).__name__ for k, v in train.features.items()})
    if len(train) < 1 or len(held_out) < 1:
        raise NNMarkError("has too few rows to train and test on", path=root)
    first = train[0][image_column]
    size = image_size or (first.size[0] if first.size[0] == first.size[1] else 32)
    mode = "L" if first.mode in ("L", "1", "I;16", "I") else "RGB"
    names = tuple(train.features[label_column].names)
    train_set = HuggingFaceImages(train, image_column, label_column, size, mode)
    test_set = HuggingFaceImages(held_out, image_column, label_column, size, mode)
    mean, std = estimate_stats(train_set)
    return StreamingDataset(f"hf:{root}", train_set, test_set, len(names), (1 if mode == "L" else 3, size, size),
                            mean, std, Augmentation(crop_padding=max(1, size // 8)), names)
