import pickle

import numpy as np
import pytest

from nnmark.data import load_dataset
from nnmark.errors import NNMarkError


def write_batch(path, count, label_key="labels", classes=10):
    rng = np.random.default_rng(count)
    batch = {b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
             label_key.encode(): rng.integers(0, classes, count).tolist(),
             b"batch_label": b"generated"}
    path.write_bytes(pickle.dumps(batch, protocol=2))


def write_cifar10(data_dir, count):
    """A CIFAR-10 folder of generated batches, ``count`` images each, under ``data_dir``."""
    root = data_dir / "cifar10" / "cifar-10-batches-py"
    root.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        write_batch(root / name, count)
    return data_dir


def test_cifar100_reads_generated_batches(tmp_path):
    root = tmp_path / "cifar100" / "cifar-100-python"
    root.mkdir(parents=True)
    write_batch(root / "train", 30, "fine_labels", 100)
    write_batch(root / "test", 12, "fine_labels", 100)
    data = load_dataset("cifar100", tmp_path)
    assert data.train_x.shape == (30, 3, 32, 32) and data.num_classes == 100
    assert data.augmentation.horizontal_flip and data.augmentation.crop_padding == 4


def test_cifar10_names_missing_batches(tmp_path):
    root = tmp_path / "cifar10" / "cifar-10-batches-py"
    root.mkdir(parents=True)
    write_batch(root / "data_batch_1", 5)
    with pytest.raises(NNMarkError, match="missing files: data_batch_2"):
        load_dataset("cifar10", tmp_path)


class Exploit:
    def __reduce__(self):
        import os
        return (os.system, ("echo pwned",))


def test_a_crafted_pickle_is_refused_not_executed(tmp_path):
    root = tmp_path / "cifar100" / "cifar-100-python"
    root.mkdir(parents=True)
    (root / "train").write_bytes(pickle.dumps({b"data": Exploit()}, protocol=2))
    write_batch(root / "test", 4, "fine_labels", 100)
    with pytest.raises(NNMarkError, match="refusing to load global posix.system|refusing to load global os.system"):
        load_dataset("cifar100", tmp_path)


def test_labels_out_of_range_are_rejected(tmp_path):
    root = tmp_path / "cifar100" / "cifar-100-python"
    root.mkdir(parents=True)
    write_batch(root / "train", 5, "fine_labels", 100)
    write_batch(root / "test", 5, "fine_labels", 300)
    with pytest.raises(NNMarkError, match="fine_labels"):
        load_dataset("cifar100", tmp_path)


def test_real_cifar10(data_dir):
    if not (data_dir / "cifar10").is_dir():
        pytest.skip(f"no CIFAR-10 under {data_dir}")
    data = load_dataset("cifar10", data_dir)
    assert data.train_x.shape == (50000, 3, 32, 32) and data.test_x.shape == (10000, 3, 32, 32)
    assert data.train_y.bincount().tolist() == [5000] * 10
