"""Models made without any key: control recipes, and training them for screening and nulls."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnmark.api import calibration_study, train_model
from nnmark.data.base import Dataset, load_dataset
from nnmark.errors import NNMarkError
from nnmark.io import ensure_can_write_file, write_json
from nnmark.models.store import load_model
from nnmark.schemes.key import load_key
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


@dataclass
class CalibrationReport:
    study: dict[str, Any]
    advice: list[str] = field(default_factory=list)  # what the owner should change about the key
    path: Path | None = None


def calibrate_key(key_path: str | Path, *, models: int = 20, controls: list[str | Path] | None = None,
                  data: str = "digits", data_dir: str | Path | None = None, epochs: int = 10, seed: int = 100,
                  alpha: float = 1e-6, out: str | Path | None = None, force: bool = False,
                  progress=None) -> CalibrationReport:
    """``nnmark calibrate``: train ``models`` keyless controls (cycling through the recipes) beside
    the model directories ``controls``, study the key's null against them, and write the null with
    the study to ``out`` (for ``verify --null``)."""
    if out is not None:
        ensure_can_write_file(out, force)
    if models < 0:
        raise NNMarkError("must be 0 or more", field="--models", got=models)
    if not 0 < alpha < 1:
        raise NNMarkError("must be between 0 and 1", field="--alpha", got=alpha)
    key = load_key(key_path)
    found = []
    for path in controls or []:
        loaded = load_model(path)
        accuracy = loaded.metadata.get("test_accuracy")
        found.append(ControlModel(str(path), loaded.spec.architecture, loaded.model,
                                  float(accuracy) if isinstance(accuracy, (int, float)) else float("nan")))
    if models:
        found += train_controls(load_dataset(data, data_dir), models, epochs=epochs, seed=seed, progress=progress)
    if not found:
        raise NNMarkError("no control models: give --models N or --control DIR", field="--models")
    study = calibration_study(key, found, alpha=alpha)
    report = CalibrationReport(study, _target_advice(study))
    if out is not None:
        write_json(out, {**study["null"], "study": {k: v for k, v in study.items() if k != "null"}})
        report.path = Path(out)
    return report


def _target_advice(study: dict[str, Any]) -> list[str]:
    """A one-target key whose target independent models already favour is hard to prove: say so."""
    screening = study.get("target_screening")
    if not screening or screening["suggested_target"] == screening["target"] \
            or screening["target_most"] <= 2 * screening["suggested_target_most"] + 2:
        return []
    return [f"target {screening['target']} already attracts this key's triggers in independent models (up to "
            f"{screening['target_most']}/{study['controls'][0]['total']}); a new key made with `nnmark keygen ... "
            "--screen-models 6` (other models than these controls) would be far easier to prove"]
