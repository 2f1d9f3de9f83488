"""Bad input in the user's own training and data, each ending in one clear line (exit status 2 from
the command line), nothing written: an image that cannot be read mid-epoch, a corrupt official
dataset file, labels outside the key's classes, a dataset of the wrong shape, a model output
without logits. (A Hugging Face directory that names code or lacks weights: test_frameworks.py.)"""
from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset
from typer.testing import CliRunner

import nnmark
from nnmark.cli import app
from nnmark.errors import NNMarkError
from nnmark.training import TrainConfig, fit

from .users import sequential


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def image_folder(root, per_class=12):
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for index in range(per_class):
            Image.fromarray(rng.integers(0, 256, (20, 20), dtype=np.uint8)).save(root / label / f"{index}.png")
    return root


def test_an_unreadable_image_mid_epoch_is_named_or_counted(tmp_path):
    folder = image_folder(tmp_path / "images")
    good = (folder / "b" / "3.png").read_bytes()
    (folder / "b" / "3.png").write_bytes(good[: len(good) // 3])  # truncated after the header
    out = tmp_path / "model"
    failed = invoke("train", "--data", f"folder:{folder}", "--image-size", 16, "--epochs", 1, "--batch-size", 8,
                    "--out", out, "--quiet")
    assert failed.exit_code == 2 and "3.png" in failed.output and "cannot read image" in failed.output, failed.output
    assert "Traceback" not in failed.output and len(failed.output.strip().splitlines()) <= 3 and not out.exists()
    skipped = invoke("train", "--data", f"folder:{folder}", "--image-size", 16, "--epochs", 1, "--batch-size", 8,
                     "--skip-bad-images", "--out", out, "--quiet")
    assert skipped.exit_code == 0, skipped.output
    assert "skipped 1 unreadable images" in skipped.output and out.is_dir()


def test_a_corrupt_compressed_dataset_file_is_named(tmp_path):
    root = tmp_path / "mnist"
    root.mkdir()
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        body = gzip.compress(b"\x00" * 64)
        (root / f"{stem}.gz").write_bytes(body[:12] + b"not deflate at all" + body[30:])
    done = invoke("train", "--data", "mnist", "--data-dir", tmp_path, "--epochs", 1, "--out", tmp_path / "m")
    assert done.exit_code == 2 and "idx" in done.output and "cannot read IDX file" in done.output, done.output
    assert "Traceback" not in done.output


def test_labels_outside_the_keys_classes_are_refused(digits):
    key = nnmark.generate_key("adi", num_classes=10, input_shape=digits.input_shape, seed=1, options={"size": 8})
    watermarker = nnmark.Watermarker(key, sequential())
    with pytest.raises(NNMarkError, match="label 12, outside the key's 10 classes"):
        watermarker.mix(digits.train_x[:8], torch.tensor([0, 1, 2, 3, 4, 5, 6, 12]))


class WrongShape(Dataset):
    def __len__(self):
        return 32

    def __getitem__(self, index):
        return torch.rand(16, 16), index % 10  # no channel axis


def test_a_dataset_of_the_wrong_shape_is_refused_before_a_step():
    model = sequential()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(NNMarkError, match="not images"):
        fit(model, WrongShape(), None, TrainConfig(epochs=1, batch_size=8, loader_workers=0))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_a_model_whose_output_holds_no_logits_is_refused(digits):
    class Words(torch.nn.Module):
        def forward(self, x):
            return {"text": "cat"}

    key = nnmark.generate_key("adi", num_classes=10, input_shape=digits.input_shape, seed=1, options={"size": 8})
    with pytest.raises(NNMarkError, match="holds no logits"):
        nnmark.verify_model(Words(), key)
    with pytest.raises(NNMarkError, match="holds no logits"):
        nnmark.Watermarker(key, Words())
