"""nnmark: watermark neural networks, verify ownership with a stated error rate, and measure how
each watermark survives removal attacks.

The names most users need are here, imported on first use (``import nnmark`` stays light)::

    key = nnmark.generate_key("adi", num_classes=10, input_shape=(3, 32, 32))
    watermarker = nnmark.Watermarker(key, model)      # in your own training loop
    verdict = nnmark.verify_model(model, key)
"""
from __future__ import annotations

import importlib
from typing import Any

from nnmark.version import __version__

_EXPORTS = {
    "Watermarker": "nnmark.schemes.watermarker",
    "declare_layers": "nnmark.models.layers",
    "generate_key": "nnmark.api",
    "verify_model": "nnmark.api",
    "measure_null": "nnmark.api",
    "train_model": "nnmark.api",
    "load_key": "nnmark.schemes.key",
    "save_key": "nnmark.schemes.key",
    "NNMarkError": "nnmark.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'nnmark' has no attribute {name!r}")
