"""Independent models for auditing nnmark's error rates: plain PyTorch, no nnmark code."""
from __future__ import annotations

import torch
from torch import nn


class Standardise(nn.Module):
    def forward(self, x):
        return (x - 0.5) / 0.5


def _cnn(width: int, batch_norm: bool, classes: int, channels: int) -> nn.Module:
    norm = (lambda c: nn.BatchNorm2d(c)) if batch_norm else (lambda c: nn.Identity())
    return nn.Sequential(Standardise(), nn.Conv2d(channels, width, 3, padding=1), norm(width), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Conv2d(width, 2 * width, 3, padding=1), norm(2 * width), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(8 * width, classes))


def _lenet(classes: int, channels: int) -> nn.Module:
    return nn.Sequential(Standardise(), nn.Conv2d(channels, 6, 5, padding=2), nn.Tanh(), nn.AvgPool2d(2),
                         nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(64, 84), nn.Tanh(), nn.Linear(84, classes))


def _mlp(hidden: int, depth: int, classes: int, size: int) -> nn.Module:
    layers: list[nn.Module] = [Standardise(), nn.Flatten()]
    width = size
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.GELU()]
        width = hidden
    return nn.Sequential(*layers, nn.Linear(width, classes))


def architectures(classes: int, shape: tuple[int, int, int]):
    channels, size = shape[0], shape[0] * shape[1] * shape[2]
    return [
        ("linear", lambda: nn.Sequential(Standardise(), nn.Flatten(), nn.Linear(size, classes)), "adam", 0.01),
        ("mlp-32", lambda: _mlp(32, 1, classes, size), "adam", 0.005),
        ("mlp-64x2", lambda: _mlp(64, 2, classes, size), "sgd", 0.05),
        ("mlp-128", lambda: _mlp(128, 1, classes, size), "adam", 0.002),
        ("cnn-4", lambda: _cnn(4, False, classes, channels), "adam", 0.01),
        ("cnn-8-bn", lambda: _cnn(8, True, classes, channels), "sgd", 0.05),
        ("cnn-16", lambda: _cnn(16, False, classes, channels), "adam", 0.003),
        ("lenet", lambda: _lenet(classes, channels), "adam", 0.005),
    ]


def plain_loop(model: nn.Module, optimiser, x: torch.Tensor, targets: torch.Tensor, epochs: int,
               generator: torch.Generator) -> None:
    """Shuffled batches of 64 under cross-entropy against ``targets`` (labels or probabilities)."""
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), 64):
            batch = order[start:start + 64]
            optimiser.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), targets[batch]).backward()
            optimiser.step()
    model.eval()


def train_independent_models(dataset, count: int, epochs: int = 6) -> list[tuple[str, nn.Module]]:
    """``count`` models cycling through :func:`architectures` with a new seed each."""
    recipes = architectures(dataset.num_classes, dataset.input_shape)
    models = []
    for index in range(count):
        name, build, optimiser_name, lr = recipes[index % len(recipes)]
        generator = torch.Generator().manual_seed(9000 + index)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(9000 + index)
            model = build()
        optimiser = (torch.optim.Adam(model.parameters(), lr=lr) if optimiser_name == "adam"
                     else torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9))
        plain_loop(model, optimiser, dataset.train_x, dataset.train_y, epochs, generator)
        models.append((f"{name} seed {9000 + index}", model))
    return models


def train_same_architecture(dataset, count: int = 6) -> list[nn.Module]:
    """nnmark's small CNN (white-box schemes need the keyed layer to exist), trained from other
    seeds by a plain Adam loop for one epoch: independent networks of the keyed architecture."""
    from nnmark.models import ModelSpec, create_model

    spec = ModelSpec("small-cnn", dataset.num_classes, dataset.input_shape, dataset.mean, dataset.std)
    models = []
    for seed in range(count):
        model = create_model(spec, seed=300 + seed)
        optimiser = torch.optim.Adam(model.parameters(), lr=0.003)
        for start in range(0, len(dataset.train_x), 64):
            optimiser.zero_grad()
            nn.functional.cross_entropy(model(dataset.train_x[start:start + 64]),
                                        dataset.train_y[start:start + 64]).backward()
            optimiser.step()
        models.append(model.eval())
    return models


def distil_from_independent_teacher(teacher: nn.Module, dataset, count: int = 2, epochs: int = 10
                                    ) -> list[tuple[str, nn.Module]]:
    """Students of ``teacher`` (a model made without any key), trained by a plain loop on its
    softmax over the training images: extracted models that are still innocent of the owner."""
    recipes = architectures(dataset.num_classes, dataset.input_shape)
    with torch.no_grad():
        soft = torch.softmax(teacher(dataset.train_x), dim=1)
    students = []
    for index in range(count):
        name, build, _, _ = recipes[(5 + index) % len(recipes)]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(9500 + index)
            student = build()
        optimiser = torch.optim.Adam(student.parameters(), lr=0.003)
        generator = torch.Generator().manual_seed(9500 + index)
        plain_loop(student, optimiser, dataset.train_x, soft, epochs, generator)
        students.append((f"{name} distilled from an independent teacher", student))
    return students
