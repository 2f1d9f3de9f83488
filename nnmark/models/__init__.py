"""Model architectures (registered by name) and pickle-free storage."""
from nnmark.models import decode_inject, mlp, resnet, small_cnn, wide_resnet  # noqa: F401 - modules register their architectures
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
