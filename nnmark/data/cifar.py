"""CIFAR-10 and CIFAR-100 from the official python batches.

Those batches are pickles. We never run a general unpickler on files a user hands us: a restricted
unpickler accepts only the few numpy constructors the official files use (ndarray rebuilding),
so a crafted file can at worst fail to load, never execute code.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from nnmark.data.base import Augmentation, Dataset, register_dataset, require_data_dir
from nnmark.errors import NNMarkError

_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    # Protocol-2 pickles written by Python 3 encode bytes as codecs.encode(text, "latin1").
    ("_codecs", "encode"),
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle's signature
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        if module.startswith("numpy") and name == "_reconstruct":
            try:
                from numpy._core.multiarray import _reconstruct  # numpy >= 2
            except ImportError:  # pragma: no cover - numpy 1.x
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        if module == "_codecs":
            import codecs

            return codecs.encode
        return getattr(np, name)


def read_batch(path: Path) -> dict:
    if not path.is_file():
        raise NNMarkError("CIFAR batch file is missing", path=path)
    try:
        with open(path, "rb") as handle:
            batch = _ArrayOnlyUnpickler(handle, encoding="bytes").load()
    except Exception as exc:  # any failure to parse is the same problem for the user
        raise NNMarkError(f"is not a valid CIFAR python batch ({exc})", path=path) from None
    if not isinstance(batch, dict):
        raise NNMarkError("is not a valid CIFAR python batch (not a dict)", path=path)
    return {key.decode() if isinstance(key, bytes) else key: value for key, value in batch.items()}


def _images_labels(batches: list[tuple[Path, dict]], label_key: str,
                   num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for path, batch in batches:
        data, labels = batch.get("data"), batch.get(label_key)
        if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise NNMarkError("has no usable image array", path=path, field="data",
                              expected="uint8 array of shape (N, 3072)")
        if labels is None or len(labels) != len(data):
            raise NNMarkError("labels missing or of the wrong length", path=path, field=label_key,
                              expected=f"{len(data)} labels")
        labels = np.asarray(labels, dtype=np.int64)
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise NNMarkError("labels out of range", path=path, field=label_key,
                              expected=f"0..{num_classes - 1}")
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(labels)
    images = torch.from_numpy(np.concatenate(xs)).float().div_(255.0)
    return images, torch.from_numpy(np.concatenate(ys))


CIFAR_AUGMENT = Augmentation(crop_padding=4, horizontal_flip=True)


@register_dataset("cifar10")
def load_cifar10(data_dir: Path | None) -> Dataset:
    root = require_data_dir(data_dir, "cifar10", "cifar10") / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise NNMarkError(f"CIFAR-10 is missing files: {', '.join(missing)}", path=root)
    train = [(root / n, read_batch(root / n)) for n in names[:5]]
    train_x, train_y = _images_labels(train, "labels", 10)
    test_x, test_y = _images_labels([(root / "test_batch", read_batch(root / "test_batch"))], "labels", 10)
    return Dataset("cifar10", train_x, train_y, test_x, test_y, 10,
                   (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), CIFAR_AUGMENT,
                   ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                    "ship", "truck"))


@register_dataset("cifar100")
def load_cifar100(data_dir: Path | None) -> Dataset:
    root = require_data_dir(data_dir, "cifar100", "cifar100") / "cifar-100-python"
    missing = [n for n in ("train", "test") if not (root / n).is_file()]
    if missing:
        raise NNMarkError(f"CIFAR-100 is missing files: {', '.join(missing)}", path=root)
    train_x, train_y = _images_labels([(root / "train", read_batch(root / "train"))], "fine_labels", 100)
    test_x, test_y = _images_labels([(root / "test", read_batch(root / "test"))], "fine_labels", 100)
    return Dataset("cifar100", train_x, train_y, test_x, test_y, 100,
                   (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), CIFAR_AUGMENT)
