"""Making a key from what the user has: sizes from a dataset or a model, the model spec for
schemes that key a layer, a trained classifier for schemes that key off one (trained here from
the "small-data" preset when none is given), and screening models for a free target."""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnmark.api import SEED_WARNING, generate_key, train_model
from nnmark.data.base import Dataset, load_dataset
from nnmark.data.streaming import as_tensors
from nnmark.errors import NNMarkError
from nnmark.io import ensure_can_write
from nnmark.models.store import LoadedModel, ModelSpec, load_model
from nnmark.schemes.base import SCHEMES, WatermarkScheme, get_scheme
from nnmark.schemes.key import WatermarkKey, save_key
from nnmark.workflows.options import OptionField, option_fields, parse_shape
from nnmark.training.presets import preset
from nnmark.workflows.controls import train_controls

SCREENING_EPOCHS = 5
KEYGEN_SAMPLE = 5000  # images of a streamed dataset a key may draw from


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
    if dataset is not None:
        # a key draws its images from the owner's data: of streamed data, from a sample of it
        dataset = as_tensors(dataset, KEYGEN_SAMPLE)
    spec = model.spec if model is not None else None
    if num_classes is None:
        num_classes = spec.num_classes if spec else dataset.num_classes if dataset else None
    if input_shape is None:
        input_shape = tuple(spec.input_shape) if spec else dataset.input_shape if dataset else None
    if num_classes is None or input_shape is None:
        raise NNMarkError("give --num-classes and --input-shape (or --data / --model to take them from)")
    parsed = implementation.make_options("keygen", options)
    needs = implementation.requirements(parsed)
    if spec is None and "model" in needs and classifier is None:
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
        if type(implementation).keygen_screened is WatermarkScheme.keygen_screened or dataset is None:
            raise NNMarkError("--screen-models picks a one-target key's target, or screens the labels an adi key's "
                              "maker brings, with models trained on --data", field="--screen-models")
        screen_seed = secrets.randbits(31) if seed is None else seed + 1
        screen_with = [c.model for c in train_controls(dataset, screen_models, epochs=SCREENING_EPOCHS,
                                                       seed=screen_seed, progress=progress)]
    return generate_key(scheme, num_classes=num_classes, input_shape=tuple(input_shape), seed=seed,
                        options=options, dataset=dataset, model_spec=spec, classifier=classifier,
                        screen_with=screen_with, progress=progress)


@dataclass(frozen=True)
class SchemeEntry:
    """What a command line shows of a scheme: its name, summary, access, kind of null and keygen options."""

    name: str
    summary: str
    access: str
    null_kind: str
    keygen_options: list[OptionField]


def scheme_catalog() -> list[SchemeEntry]:
    """Every registered scheme, by name."""
    return [SchemeEntry(name, cls.summary, cls.access, cls.null_kind, option_fields(cls.KeygenOptions))
            for name, cls in ((name, SCHEMES.get(name)) for name in SCHEMES.names())]


@dataclass
class KeygenReport:
    key: WatermarkKey
    path: Path
    screening: str | None = None  # how the screening models chose a one-target key's target
    next_step: str | None = None  # what the owner must do before verifying (measure an estimated null)
    warnings: list[str] = field(default_factory=list)


def keygen_to_directory(scheme: str, out: str | Path, *, force: bool = False, num_classes: int | None = None,
                        input_shape: str | tuple[int, int, int] | None = None, data: str | None = None,
                        data_dir: str | Path | None = None, model: str | Path | None = None,
                        architecture: str = "small-cnn", seed: int | None = None,
                        options: dict[str, Any] | None = None, screen_models: int = 0,
                        image_size: int | None = None, progress=None) -> KeygenReport:
    """``nnmark keygen SCHEME``: make the key from what the user named (a dataset, a model directory,
    sizes), write it to ``out`` (refused if it exists, unless ``force``), and say what to do next."""
    ensure_can_write(out, force)
    shape = parse_shape(input_shape) if isinstance(input_shape, str) else input_shape
    key = make_key(scheme, dataset=load_dataset(data, data_dir, image_size=image_size) if data else None,
                   model=load_model(Path(model)) if model else None, num_classes=num_classes, input_shape=shape,
                   architecture=architecture, seed=seed, options=options, screen_models=screen_models,
                   progress=progress)
    report = KeygenReport(key, save_key(key, out, force=force))
    screening = key.params.get("target_screening")
    if screening:
        most = screening["most_and_total_per_target"][key.params["target"]][0]
        report.screening = (f"target {key.params['target']}: each of the {screen_models} screening models sent at "
                            f"most {most} of its triggers there")
    implementation = get_scheme(scheme)
    warning = implementation.key_summary(key).get("warning")
    if warning:
        report.warnings.append(warning)
    if seed is not None:
        report.warnings.append(SEED_WARNING)
    if implementation.key_null_kind(key) == "estimated":
        report.next_step = (f"Scheme '{scheme}' has no exact null: measure it on models made without the key with "
                            f"`nnmark calibrate --key {out} --out null.json` and verify with --null null.json.")
    return report
