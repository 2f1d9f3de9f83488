import numpy as np
import pytest
from PIL import Image

from nnmark.data import load_dataset, load_image_folder
from nnmark.errors import NNMarkError


def make_folder(root, classes=("cat", "dog"), per_class=5, mode="RGB"):
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            shape = (10, 12, 3) if mode == "RGB" else (10, 12)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(root / name / f"{i}.png")


def test_class_folders_split_80_20(tmp_path):
    make_folder(tmp_path / "imgs")
    data = load_image_folder(tmp_path / "imgs", size=8)
    assert data.class_names == ("cat", "dog")
    assert data.train_x.shape == (8, 3, 8, 8) and data.test_x.shape == (2, 3, 8, 8)
    assert sorted(data.test_y.tolist()) == [0, 1]


def test_train_test_folders_and_grayscale(tmp_path):
    make_folder(tmp_path / "d" / "train", mode="L")
    make_folder(tmp_path / "d" / "test", per_class=2, mode="L")
    data = load_dataset(f"folder:{tmp_path / 'd'}", streaming=False)
    assert data.input_shape == (1, 32, 32) and len(data.test_y) == 4


def test_folder_data_streams_at_the_size_asked_for(tmp_path):
    make_folder(tmp_path / "d", per_class=6)
    data = load_dataset(f"folder:{tmp_path / 'd'}", image_size=20)
    assert data.streamed and data.input_shape == (3, 20, 20) and data.class_names == ("cat", "dog")
    assert len(data.train) == 10 and len(data.test) == 2
    images, labels, skipped = next(iter(data.loader("train", 4, workers=0)))
    assert images.shape == (4, 3, 20, 20) and 0 <= float(images.min()) and float(images.max()) <= 1 and skipped == 0
    # the normalisation comes from a sample of the images, read once
    assert len(data.mean) == 3 and all(0.3 < m < 0.7 for m in data.mean) and all(s > 0.1 for s in data.std)
    sample = data.tensors(limit=3)
    assert sample.train_x.shape == (3, 3, 20, 20) and len(sample.test_y) == 2


def test_unreadable_image_is_named(tmp_path):
    make_folder(tmp_path / "imgs")
    (tmp_path / "imgs" / "cat" / "9.png").write_bytes(b"not a png")
    with pytest.raises(NNMarkError, match="9.png.*cannot read image"):
        load_image_folder(tmp_path / "imgs")


def test_empty_folder_is_explained(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(NNMarkError, match="no class folders"):
        load_image_folder(tmp_path / "empty")
