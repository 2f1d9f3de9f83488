"""Models made without any key: control recipes, and training them for screening and nulls."""
from __future__ import annotations

from typing import Any

from nnmark.api import train_model
from nnmark.data.base import Dataset
from nnmark.errors import NNMarkError
from nnmark.training.presets import preset
from nnmark.verification.nulls import ControlModel

# Control models for an estimated null: several architectures and widths, learning rates and
# seeds, since models of one recipe agree with one another more than independent models do.
# Each rate trains its model to within a few points of the best on digits in 5 epochs: an
# under-trained control is not a model anyone would steal, and its odd answers widen the null.
CONTROL_RECIPES: tuple[tuple[str, dict[str, Any], float], ...] = (
    ("small-cnn", {}, 0.05),
    ("mlp", {"hidden": 256}, 0.05),
    ("small-cnn", {"width": 8, "hidden": 64}, 0.05),
    ("mlp", {"hidden": 128, "depth": 1}, 0.1),
    ("small-cnn", {"width": 24}, 0.1),
    ("mlp", {"hidden": 512, "depth": 3}, 0.05),
)


def train_control(dataset: Dataset, index: int, *, epochs: int = 10, seed: int = 0, batch_size: int = 64,
                  progress=None, description: str | None = None) -> ControlModel:
    """The ``index``-th control model: recipe ``index`` of :data:`CONTROL_RECIPES` (cycling), seed
    ``seed + index``, trained on ``dataset`` without any key."""
    architecture, kwargs, lr = CONTROL_RECIPES[index % len(CONTROL_RECIPES)]
    config = preset("control", epochs=epochs, batch_size=batch_size, lr=lr, seed=seed + index)
    trained = train_model(dataset, config, architecture=architecture, model_kwargs=kwargs,
                          progress=progress, description=description or f"control {index + 1}")
    label = architecture + "".join(f" {k}={v}" for k, v in kwargs.items())
    return ControlModel(f"{label} (seed {seed + index})", label, trained.model, trained.test_accuracy, trained.spec)


def train_controls(dataset: Dataset, count: int, *, epochs: int = 10, seed: int = 0, batch_size: int = 64,
                   progress=None) -> list[ControlModel]:
    """``count`` models trained on ``dataset`` without any key, cycling through
    :data:`CONTROL_RECIPES` with a fresh seed each (``seed``, ``seed + 1``, ...)."""
    if count < 0:
        raise NNMarkError("must be 0 or more", field="controls", got=count)
    return [train_control(dataset, index, epochs=epochs, seed=seed, batch_size=batch_size, progress=progress,
                          description=f"control {index + 1}/{count}") for index in range(count)]
