"""Making a key from what the user has: sizes from a dataset or a model, the model spec for
schemes that key a layer, a trained classifier for schemes that key off one (trained here from
the "small-data" preset when none is given), and screening models for a free target."""
from __future__ import annotations

import secrets
from typing import Any

from nnmark.api import generate_key, train_model
from nnmark.data.base import Dataset
from nnmark.errors import NNMarkError
from nnmark.models.store import LoadedModel, ModelSpec
from nnmark.schemes.base import get_scheme
from nnmark.schemes.key import WatermarkKey
from nnmark.training.presets import preset
from nnmark.workflows.controls import train_controls

SCREENING_EPOCHS = 5


def make_key(scheme: str, *, dataset: Dataset | None = None, model: LoadedModel | None = None,
             num_classes: int | None = None, input_shape: tuple[int, int, int] | None = None,
             architecture: str = "small-cnn", seed: int | None = None, options: dict[str, Any] | None = None,
             screen_models: int = 0, classifier=None, progress=None) -> WatermarkKey:
    """A key for ``scheme``, with every input it needs resolved in one place.

    Sizes come from the arguments, else ``model``'s spec, else ``dataset``. A scheme that keys a
    layer gets ``model``'s spec, or one for ``architecture``. A scheme that needs a trained
    classifier gets ``classifier``, else ``model`` (the one to mark), else one trained on
    ``dataset`` here. ``screen_models`` keyless models (trained on ``dataset``) pick a one-target
    key's target; they are seeded from ``seed`` when one is chosen, so the key reproduces.
    """
    implementation = get_scheme(scheme)
    spec = model.spec if model is not None else None
    if num_classes is None:
        num_classes = spec.num_classes if spec else dataset.num_classes if dataset else None
    if input_shape is None:
        input_shape = tuple(spec.input_shape) if spec else dataset.input_shape if dataset else None
    if num_classes is None or input_shape is None:
        raise NNMarkError("give --num-classes and --input-shape (or --data / --model to take them from)")
    parsed = implementation.make_options("keygen", options)
    needs = implementation.requirements(parsed)
    if spec is None and "model_spec" in needs:
        # Only layer shapes matter for keygen; normalisation is irrelevant to them.
        spec = ModelSpec(architecture, num_classes, tuple(input_shape), (0.5,) * input_shape[0],
                         (0.5,) * input_shape[0])
    if "dataset" in needs and dataset is None:
        raise NNMarkError(f"scheme '{scheme}' makes its key from your training data: give --data", field="--data")
    if "classifier" in needs and classifier is None:
        if model is not None:
            classifier = model.model
        elif implementation.keys_the_marked_model:
            raise NNMarkError(f"scheme '{scheme}' makes its key from the trained model it marks: give --model",
                              field="--model")
        elif dataset is not None:
            classifier = train_model(dataset, preset("small-data", epochs=10, seed=0 if seed is None else seed),
                                     architecture=architecture, progress=progress,
                                     description="classifier for keygen").model
        else:
            raise NNMarkError(f"scheme '{scheme}' keys off a trained classifier: give --model (or --data to "
                              "train one)", field="--model")
    screen_with = None
    if screen_models:
        if implementation.null_kind != "estimated" or dataset is None:
            raise NNMarkError("--screen-models picks a one-target key's target from models trained on --data",
                              field="--screen-models")
        screen_seed = secrets.randbits(31) if seed is None else seed + 1
        screen_with = [c.model for c in train_controls(dataset, screen_models, epochs=SCREENING_EPOCHS,
                                                       seed=screen_seed, progress=progress)]
    return generate_key(scheme, num_classes=num_classes, input_shape=tuple(input_shape), seed=seed,
                        options=options, dataset=dataset, model_spec=spec, classifier=classifier,
                        screen_with=screen_with, progress=progress)
