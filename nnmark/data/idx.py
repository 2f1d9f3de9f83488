"""MNIST and Fashion-MNIST from their official IDX files (gzipped or not)."""
from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from nnmark.data.base import Augmentation, Dataset, register_dataset, require_data_dir
from nnmark.errors import NNMarkError

IDX_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
# IDX magic: two zero bytes, the element type (0x08 = unsigned byte), the number of dimensions.
IMAGE_MAGIC, LABEL_MAGIC = 0x00000803, 0x00000801


def _find(root: Path, stem: str) -> Path | None:
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.is_file():
            return candidate
    return None


def read_idx(path: Path, magic: int) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError, zlib.error) as exc:  # a corrupt compressed body raises zlib's own error
        raise NNMarkError(f"cannot read IDX file ({exc})", path=path) from None
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header or struct.unpack(">I", raw[:4])[0] != magic:
        raise NNMarkError("is not an IDX file of the expected kind", path=path,
                          expected=f"magic number 0x{magic:08x}")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    count = int(np.prod(dims))
    if len(raw) - header != count:
        raise NNMarkError("is truncated or has trailing bytes", path=path,
                          expected=f"{count} data bytes for shape {dims}", got=len(raw) - header)
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def load_idx_dataset(name: str, root: Path, mean: tuple[float], std: tuple[float]) -> Dataset:
    paths = {key: _find(root, stem) for key, stem in IDX_FILES.items()}
    missing = [IDX_FILES[key] + "[.gz]" for key, path in paths.items() if path is None]
    if missing:
        raise NNMarkError(f"dataset '{name}' is missing files: {', '.join(missing)}", path=root)
    arrays = {}
    for key, path in paths.items():
        arrays[key] = read_idx(path, IMAGE_MAGIC if key.endswith("_x") else LABEL_MAGIC)
    for split in ("train", "test"):
        if len(arrays[f"{split}_x"]) != len(arrays[f"{split}_y"]):
            raise NNMarkError(f"{split} images and labels differ in count", path=root)
    labels = np.concatenate([arrays["train_y"], arrays["test_y"]])
    if labels.max() >= 10:
        raise NNMarkError("labels must be 0..9", path=paths["train_y"], got=int(labels.max()))

    def images(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array.copy()).unsqueeze(1).float().div_(255.0)

    def targets(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array.astype(np.int64))

    return Dataset(name, images(arrays["train_x"]), targets(arrays["train_y"]),
                   images(arrays["test_x"]), targets(arrays["test_y"]), 10, mean, std,
                   Augmentation(crop_padding=2))


@register_dataset("mnist")
def load_mnist(data_dir: Path | None) -> Dataset:
    return load_idx_dataset("mnist", require_data_dir(data_dir, "mnist", "mnist"),
                            (0.1307,), (0.3081,))


@register_dataset("fashion-mnist")
def load_fashion_mnist(data_dir: Path | None) -> Dataset:
    return load_idx_dataset("fashion-mnist",
                            require_data_dir(data_dir, "fashion-mnist", "fashion-mnist"),
                            (0.2860,), (0.3530,))
