"""Model architectures (registered by name) and pickle-free storage."""
from nnmark.registry import import_plugins
from nnmark.models.registry import MODELS, register_model
from nnmark.models.store import (
    Classifier,
    LoadedModel,
    ModelSpec,
    create_model,
    load_model,
    save_model,
)

__all__ = ["MODELS", "Classifier", "LoadedModel", "ModelSpec", "create_model", "load_model",
           "register_model", "save_model"]

import_plugins(__name__, __path__, skip=("export",))  # each architecture module registers itself
