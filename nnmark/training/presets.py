"""Named training recipes: the one place each setting nnmark trains with is written down.

``preset(name, **changes)`` returns a fresh :class:`TrainConfig`; the CLI, ``nnmark demo``, the
bench and the benchmark scripts all take their settings from here, so the API trains exactly as
the command line does.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from nnmark.errors import NNMarkError
from nnmark.training.trainer import TrainConfig

PRESETS: dict[str, TrainConfig] = {
    # Adi et al. 2018's recipe (SGD 0.9, lr 0.1 ÷10 each third, batch 100): `nnmark train`'s default.
    "paper": TrainConfig(),
    # Continuing from a trained model (`train --from`): a tenth of the rate, held constant, so the
    # model is adjusted rather than retrained.
    "fine-tune": TrainConfig(lr=0.01, schedule="constant"),
    # Small data such as the embedded digits (1,437 training images): a smaller batch and rate
    # reach ~99% in 20 epochs on two CPU cores. Demo and bench victims, and the host classifiers
    # keygen trains where a scheme needs one.
    "small-data": TrainConfig(epochs=20, batch_size=64, lr=0.05),
    # Keyless models for screening and nulls (the rate comes from the control recipe).
    "control": TrainConfig(epochs=10, batch_size=64, lr=0.05),
    # What a thief's fine-tuning runs with in the attacks (Adi et al.'s fine-tuning attacks use the
    # end-of-training rate, held constant).
    "attack": TrainConfig(epochs=5, batch_size=64, lr=0.01, schedule="constant"),
}


def preset(name: str, **changes: Any) -> TrainConfig:
    """The recipe ``name`` with ``changes`` applied (e.g. ``preset("small-data", seed=3)``)."""
    if name not in PRESETS:
        raise NNMarkError(f"unknown training preset '{name}'", field="preset", expected=", ".join(PRESETS))
    return replace(PRESETS[name], **changes)


def preset_for_mode(mode: str) -> str:
    """The preset a training mode starts from when the caller sets no rate or schedule: fine-tuning
    an existing model (``pretrained``) uses "fine-tune", training a fresh one "paper"."""
    return "fine-tune" if mode == "pretrained" else "paper"
