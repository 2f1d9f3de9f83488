"""Models on disk as ``model.safetensors`` + ``model.json``: weights without pickle, and the recipe
(architecture name, its arguments, class count, input shape, normalisation) to rebuild the module."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from nnmark.version import __version__
from nnmark.errors import NNMarkError
from nnmark.io import atomic_directory, read_json, write_json
from nnmark.models.registry import MODELS
from nnmark.schema import ModelFile, validate

WEIGHTS_FILE = "model.safetensors"
META_FILE = "model.json"
FORMAT = "nnmark-model/1"


class Classifier(nn.Module):
    """A network with its input normalisation inside: it takes images in [0, 1], so every suspect
    interface (in-process, ONNX, HTTP) is queried with the same raw images."""

    def __init__(self, net: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


@dataclass
class ModelSpec:
    architecture: str
    num_classes: int
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_shape"] = list(self.input_shape)
        data["mean"], data["std"] = list(self.mean), list(self.std)
        return data


def create_model(spec: ModelSpec, seed: int | None = None) -> Classifier:
    """Build the architecture ``spec`` names; with ``seed``, initialisation is reproducible and the
    caller's global RNG state is left as it was."""
    factory = MODELS.get(spec.architecture)
    if len(spec.mean) != spec.input_shape[0] or len(spec.std) != spec.input_shape[0]:
        raise NNMarkError("normalisation has the wrong number of channels", field="mean/std",
                          expected=f"{spec.input_shape[0]} values")
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        try:
            net = factory(num_classes=spec.num_classes, input_shape=tuple(spec.input_shape),
                          **spec.kwargs)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise NNMarkError(f"bad arguments for model '{spec.architecture}' ({spec.kwargs}: {exc})",
                              field="kwargs") from None
        return Classifier(net, spec.mean, spec.std)


def save_model(model: Classifier, spec: ModelSpec, path: str | Path, *, force: bool = False,
               metadata: dict[str, Any] | None = None) -> Path:
    path = Path(path)
    state = {name: tensor.detach().to("cpu").contiguous() for name, tensor in model.state_dict().items()}
    with atomic_directory(path, force) as staging:
        save_file(state, str(staging / WEIGHTS_FILE))
        write_json(staging / META_FILE, {
            "format": FORMAT,
            "nnmark_version": __version__,
            "model": spec.to_json(),
            "metadata": metadata or {},
        })
    return path


@dataclass
class LoadedModel:
    model: Classifier
    spec: ModelSpec
    metadata: dict[str, Any]
    path: Path


def read_spec(path: Path) -> tuple[ModelSpec, dict[str, Any]]:
    meta_path = path / META_FILE
    parsed = validate(ModelFile, read_json(meta_path, "model"), meta_path, formats=(FORMAT,), what="model")
    model = parsed.model
    spec = ModelSpec(model.architecture, model.num_classes, tuple(model.input_shape), tuple(model.mean),
                     tuple(model.std), dict(model.kwargs))
    return spec, dict(parsed.metadata)


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> LoadedModel:
    """Load a model directory written by :func:`save_model`, without unpickling anything."""
    path = Path(path)
    if not path.is_dir():
        raise NNMarkError("model directory does not exist", path=path,
                          expected=f"a directory holding {WEIGHTS_FILE} and {META_FILE}")
    spec, metadata = read_spec(path)
    weights_path = path / WEIGHTS_FILE
    if not weights_path.is_file():
        raise NNMarkError("model weights file is missing", path=weights_path)
    try:
        state = load_file(str(weights_path), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as exc:
        raise NNMarkError(f"is not a readable safetensors file ({exc})", path=weights_path) from None
    try:
        model = create_model(spec)
    except NNMarkError as exc:
        raise NNMarkError(str(exc), path=path / META_FILE) from None
    missing, unexpected = [], []
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong_shape:
        detail = "; ".join(f"{label}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
                           for label, keys in (("missing", missing), ("unexpected", unexpected),
                                               ("wrong shape", wrong_shape)) if keys)
        raise NNMarkError(f"weights do not fit architecture '{spec.architecture}' ({detail})",
                          path=weights_path)
    broken = sorted(k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all()))
    if broken:
        # A network with NaN or infinite weights answers nonsense; verifying, exporting or training
        # from it would turn that nonsense into a verdict or a new model.
        raise NNMarkError(f"weights hold NaN or infinite values ({', '.join(broken[:5])})", path=weights_path)
    model.load_state_dict(state)
    model.eval()
    return LoadedModel(model, spec, metadata, path)
