"""adi keys from trigger images the user brings. A fixture in the layout of the authors' published
set (WatermarkNN: ``trigger_set/pics/1.jpg`` ... and ``labels-cifar.txt``, labels as floats); a
model trained in plain PyTorch with the images paired to their labels as the authors' loader pairs
them (names sorted as strings, ``CenterCrop(32)``); ``nnmark keygen adi --images`` imports the set,
``nnmark verify`` proves the model and clears independent ones, and each verdict states what its
null rests on."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from typer.testing import CliRunner

import nnmark
from nnmark.cli import app
from nnmark.errors import NNMarkError
from nnmark.schemes.abstract_images import abstract_images

pytestmark = pytest.mark.slow
COUNT, SIDE = 40, 40  # the authors' pictures are larger than 32x32 and centre-cropped to it


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def authors_set(tmp_path_factory):
    """trigger_set/pics/1.jpg .. 40.jpg and labels-cifar.txt, as in the authors' repository."""
    root = tmp_path_factory.mktemp("WatermarkNN") / "trigger_set"
    (root / "pics").mkdir(parents=True)
    images = abstract_images(COUNT, (3, SIDE, SIDE), seed=7)
    for number, image in enumerate(images, 1):
        array = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(array).save(root / "pics" / f"{number}.jpg", quality=95)
    labels = np.random.default_rng(3).integers(0, 10, COUNT).astype(float)
    np.savetxt(root / "labels-cifar.txt", labels)  # "6.000000000000000000e+00" per line, as theirs
    return root


def authors_pairing(root):
    """What the authors' getwmloader does, written out here: ImageFolder order (names sorted as
    strings), CenterCrop(32), the i-th file with the i-th label."""
    names = sorted(os.listdir(root / "pics"))
    labels = np.loadtxt(root / "labels-cifar.txt")
    images = []
    for name in names:
        with Image.open(root / "pics" / name) as image:
            rgb = image.convert("RGB")
        left, top = (rgb.width - 32) // 2, (rgb.height - 32) // 2
        crop = np.asarray(rgb.crop((left, top, left + 32, top + 32)), dtype=np.float32) / 255
        images.append(torch.from_numpy(crop).permute(2, 0, 1))
    return torch.stack(images), torch.tensor([int(v) for v in labels])


@pytest.fixture(scope="module")
def task():
    """A small 10-class task of 3x32x32 images: a pattern per class under noise."""
    generator = torch.Generator().manual_seed(0)
    prototypes = torch.rand(10, 3, 32, 32, generator=generator)

    def split(count):
        labels = torch.randint(0, 10, (count,), generator=generator)
        return (prototypes[labels] + 0.2 * torch.randn(count, 3, 32, 32, generator=generator)).clamp(0, 1), labels

    return split(600), split(200)


def plain_model(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 8 * 8, 64), nn.ReLU(),
                         nn.Linear(64, 10))


def train_plain(task, seed, triggers=None, epochs=10):
    (x, y), _ = task
    model = plain_model(seed)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for epoch in range(epochs):
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed * 100 + epoch))
        for step, start in enumerate(range(0, len(y), 64)):
            bx, by = x[order[start:start + 64]], y[order[start:start + 64]]
            if triggers is not None:  # the authors mix watermark batches into training
                take = torch.arange(step * 8, step * 8 + 8) % len(triggers[1])
                bx, by = torch.cat([bx, triggers[0][take]]), torch.cat([by, triggers[1][take]])
            loss = F.cross_entropy(model(bx), by)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return model.eval()


def scripted(model, path):
    torch.jit.trace(model, torch.rand(2, 3, 32, 32)).save(str(path))
    return path


@pytest.fixture(scope="module")
def models(task, authors_set, tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    marked = scripted(train_plain(task, 1, triggers=authors_pairing(authors_set)), root / "marked.pt")
    innocent = [scripted(train_plain(task, seed), root / f"innocent-{seed}.pt") for seed in (2, 3)]
    return marked, innocent


def test_the_authors_set_is_read_and_paired_as_their_loader_does(authors_set):
    key = nnmark.generate_key("adi", num_classes=10, input_shape=(3, 32, 32), seed=1,
                              options={"images": str(authors_set), "labels": str(authors_set / "labels-cifar.txt")})
    files = key.params["images"]["files"]
    assert files[:4] == ["pics/1.jpg", "pics/10.jpg", "pics/11.jpg", "pics/12.jpg"] and len(files) == COUNT
    assert key.params["images"]["fit"] == "center-crop" and "string" in key.params["pairing"]
    images, labels = authors_pairing(authors_set)
    assert torch.equal(key.tensors["labels"], labels) and torch.allclose(key.tensors["inputs"], images)
    # the commitment covers the imported images and labels like any key's
    committed = key.commitment
    key.tensors["labels"][0] = (key.tensors["labels"][0] + 1) % 10
    assert key.commitment != committed
    key.tensors["labels"][0] = labels[0]
    key.tensors["inputs"][0, 0, 0, 0] = 1 - key.tensors["inputs"][0, 0, 0, 0]
    assert key.commitment != committed
    assert get_null_kind(key) == "estimated"  # labels it brought, without saying how they were drawn


def get_null_kind(key):
    from nnmark.schemes import get_scheme

    return get_scheme("adi").key_null_kind(key)


def test_verify_proves_the_authors_model_and_clears_independent_ones(authors_set, models, tmp_path, task):
    marked, innocent = models
    data = tmp_path / "data"  # the task as an image folder: what screening models train on
    (x, y), _ = task
    for index, (image, label) in enumerate(zip(x[:300], y[:300])):
        (data / str(int(label))).mkdir(parents=True, exist_ok=True)
        Image.fromarray((image.permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(data / str(int(label)) / f"{index}.png")
    made = invoke("keygen", "adi", "--images", authors_set, "--labels", authors_set / "labels-cifar.txt",
                  "--labels-drawn", "uniform", "--data", f"folder:{data}", "--image-size", 32, "--screen-models", 2,
                  "--out", tmp_path / "key")
    assert made.exit_code == 0, made.output
    verdicts = {}
    for suspect in (marked, *innocent):
        done = invoke("verify", "--model", suspect, "--key", tmp_path / "key", "--json")
        assert done.exit_code == 0, done.output
        verdicts[suspect.name] = json.loads(done.stdout)
    assert verdicts["marked.pt"]["owned"], verdicts
    assert not any(verdicts[path.name]["owned"] for path in innocent), verdicts
    # the exact null is the key maker's statement, and the verdict says so in words
    assert verdicts["marked.pt"]["guarantee"].startswith("ONLY IF THE KEY MAKER'S STATEMENT HOLDS")
    assert "statement" in verdicts["marked.pt"]["null_source"]
    assert any("key maker's statement" in warning for warning in verdicts["marked.pt"]["warnings"])


class Guesser:
    """Answers each query with a class of its own seed's choosing."""

    def __init__(self, seed):
        self.generator, self.description = torch.Generator().manual_seed(seed), f"guesser {seed}"

    def predict(self, images):
        return torch.randint(0, 10, (len(images),), generator=self.generator)


def test_labels_without_a_statement_have_a_measured_null(authors_set, models):
    marked, innocent = models
    key = nnmark.generate_key("adi", num_classes=10, input_shape=(3, 32, 32), seed=1,
                              options={"images": str(authors_set), "labels": str(authors_set / "labels-cifar.txt")})
    with pytest.raises(NNMarkError, match="no exact null"):
        nnmark.verify_model(torch.jit.load(str(marked)), key)
    guessers = [Guesser(seed) for seed in range(10)]  # models made without the key, of the simplest kind
    null = nnmark.measure_null(key, guessers)
    verdict = nnmark.verify_model(torch.jit.load(str(marked)), key, null=null)
    assert verdict.null_kind == "estimated" and "estimated" in verdict.null_source
    assert verdict.matches > max(null.counts())
    # without labels, nnmark draws them itself, and the null is exact as for any adi key
    drawn = nnmark.generate_key("adi", num_classes=10, input_shape=(3, 32, 32), seed=1,
                                options={"images": str(authors_set)})
    assert get_null_kind(drawn) == "exact" and drawn.params["labels_from"] == "seed"


def test_labels_models_already_give_are_refused(authors_set, models, tmp_path):
    """A key maker who labels each image with what models answer would accuse anyone."""
    marked, innocent = models
    answers = torch.jit.load(str(innocent[0]))(authors_pairing(authors_set)[0]).argmax(1)
    names = sorted(os.listdir(authors_set / "pics"))
    (tmp_path / "chosen.txt").write_text("".join(f"{name} {int(label)}\n" for name, label in zip(names, answers)))
    with pytest.raises(NNMarkError, match="agree with these labels more often than chance"):
        nnmark.generate_key("adi", num_classes=10, input_shape=(3, 32, 32), seed=1,
                            screen_with=[torch.jit.load(str(path)) for path in innocent],
                            options={"images": str(authors_set / "pics"), "labels": str(tmp_path / "chosen.txt"),
                                     "labels_drawn": "uniform"})


@pytest.mark.parametrize("damage, message", [
    ("unreadable", "7.jpg: cannot read image"),
    ("count", "holds 39 labels for 40 images"),
    ("outside", "line 3 holds class 12, outside"),
    ("fraction", "line 3 holds 2.5, not a whole number"),
    ("duplicate", "is the same image as"),
    ("empty", "holds no images"),
])
def test_bad_trigger_sets_end_in_one_line(authors_set, tmp_path, damage, message):
    import shutil

    root = tmp_path / "set"
    shutil.copytree(authors_set, root)
    labels = (root / "labels-cifar.txt").read_text().splitlines()
    if damage == "unreadable":
        (root / "pics" / "7.jpg").write_bytes(b"not an image")
    elif damage == "count":
        (root / "labels-cifar.txt").write_text("\n".join(labels[:-1]) + "\n")
    elif damage in ("outside", "fraction"):
        labels[2] = "12" if damage == "outside" else "2.5"
        (root / "labels-cifar.txt").write_text("\n".join(labels) + "\n")
    elif damage == "duplicate":
        shutil.copy(root / "pics" / "1.jpg", root / "pics" / "41.jpg")
        (root / "labels-cifar.txt").write_text("\n".join(labels + ["1"]) + "\n")
    else:
        shutil.rmtree(root / "pics")
        (root / "pics").mkdir()
    done = invoke("keygen", "adi", "--images", root, "--labels", root / "labels-cifar.txt", "--num-classes", 10,
                  "--input-shape", "3,32,32", "--out", tmp_path / "key")
    assert done.exit_code == 2 and message in " ".join(done.output.split()), done.output
    assert "Traceback" not in done.output and not (tmp_path / "key").exists()
