import gzip
import struct

import numpy as np
import pytest

from nnmark.data import load_dataset
from nnmark.errors import NNMarkError


def write_idx(path, array: np.ndarray, compress: bool = True) -> None:
    magic = 0x0800 | array.ndim
    raw = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(f"{path}.gz", "wb") as handle:
            handle.write(raw)
    else:
        path.write_bytes(raw)


def make_idx_dataset(root, train=20, test=10, compress=True):
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    write_idx(root / "train-images-idx3-ubyte", rng.integers(0, 256, (train, 28, 28)), compress)
    write_idx(root / "train-labels-idx1-ubyte", rng.integers(0, 10, train), compress)
    write_idx(root / "t10k-images-idx3-ubyte", rng.integers(0, 256, (test, 28, 28)), compress)
    write_idx(root / "t10k-labels-idx1-ubyte", rng.integers(0, 10, test), compress)


@pytest.mark.parametrize("compress", [True, False])
def test_fashion_mnist_reads_generated_idx_files(tmp_path, compress):
    make_idx_dataset(tmp_path / "fashion-mnist", compress=compress)
    data = load_dataset("fashion-mnist", tmp_path)
    assert data.train_x.shape == (20, 1, 28, 28) and data.test_x.shape == (10, 1, 28, 28)
    assert data.train_x.max() <= 1.0 and data.train_y.dtype.is_floating_point is False


def test_missing_files_are_named(tmp_path):
    make_idx_dataset(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(NNMarkError, match="missing files: t10k-labels-idx1-ubyte"):
        load_dataset("mnist", tmp_path)


def test_truncated_file_is_reported(tmp_path):
    make_idx_dataset(tmp_path / "mnist", compress=False)
    path = tmp_path / "mnist" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(NNMarkError, match="train-images-idx3-ubyte.*truncated"):
        load_dataset("mnist", tmp_path)


def test_missing_data_dir_names_the_variable(monkeypatch):
    monkeypatch.delenv("NNMARK_DATA", raising=False)
    with pytest.raises(NNMarkError, match="--data-dir DIR or set NNMARK_DATA"):
        load_dataset("mnist")


def test_real_mnist(data_dir):
    if not (data_dir / "mnist").is_dir():
        pytest.skip(f"no MNIST under {data_dir}")
    data = load_dataset("mnist", data_dir)
    assert data.train_x.shape == (60000, 1, 28, 28)
    assert data.test_x.shape == (10000, 1, 28, 28)
    assert data.test_y[:5].tolist() == [7, 2, 1, 0, 4]  # the well-known first test labels
