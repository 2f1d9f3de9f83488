"""Open whatever the user points ``verify`` at as a :class:`~nnmark.verification.suspects.Suspect`, and describe it for the
evidence record (what was tested: a file and its hash, or an endpoint)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from nnmark.errors import NNMarkError
from nnmark.io import sha256_file
from nnmark.models.store import META_FILE, WEIGHTS_FILE, ModelSpec, load_model
from nnmark.schemes.base import get_scheme
from nnmark.schemes.key import WatermarkKey
from nnmark.verification.suspects import ModuleSuspect, Suspect

CHECKPOINT_SUFFIXES = {".pt", ".pth", ".ckpt", ".bin", ".ts", ".torchscript"}


def open_suspect(key: WatermarkKey, *, model: str | Path | None = None, endpoint: str | None = None,
                 model_name: str | None = None, architecture: str = "small-cnn",
                 mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
                 device: str = "auto", http_options: dict[str, Any] | None = None) -> tuple[Suspect, dict[str, Any]]:
    """Returns the suspect and a description of it. A checkpoint is rebuilt as ``architecture``
    with the key's class count and input shape; a bare network's state dict is normalised with
    ``mean``/``std`` (default: none)."""
    if (model is None) == (endpoint is None):
        raise NNMarkError("give exactly one of --model (a directory or file) and --endpoint (a URL)")
    if endpoint is not None:
        from nnmark.verification.http import HttpSuspect

        if not model_name:
            raise NNMarkError("an endpoint needs --model-name (the model's name on the server)")
        suspect = HttpSuspect(endpoint, model_name, **(http_options or {}))
        signature = suspect.describe()
        _check_key_fits(key, suspect.num_classes, suspect.input_shape, f"the endpoint's model {suspect.description}")
        return suspect, {"kind": "open-inference-protocol endpoint", "endpoint": endpoint, "model_name": model_name,
                         "model_version": suspect.model_version, "input_name": signature["input_name"],
                         "server": signature["server"]}
    if str(model).startswith("hf:"):
        return _hugging_face_suspect(key, Path(str(model)[3:]), device)
    path = Path(model)
    if path.is_dir():
        if not (path / META_FILE).exists():
            raise NNMarkError("is a directory but not an nnmark model", path=path,
                              expected=f"{WEIGHTS_FILE} and {META_FILE}")
        loaded = load_model(path)
        get_scheme(key.scheme).check_fits(key, loaded.spec.num_classes, tuple(loaded.spec.input_shape),
                                          f"the model {path}")
        return (ModuleSuspect(loaded.model, str(path), device),
                {"kind": "nnmark model", "path": str(path), "sha256": sha256_file(path / WEIGHTS_FILE)})
    if not path.is_file():
        raise NNMarkError("suspect model does not exist", path=path)
    described = {"path": str(path), "sha256": sha256_file(path)}
    if path.suffix.lower() == ".onnx":
        from nnmark.verification.foreign import OnnxSuspect

        suspect = OnnxSuspect(path)
        _check_key_fits(key, suspect.num_classes, suspect.fixed_input_shape, f"the ONNX model {path}")
        return suspect, {"kind": "onnx file", "input_name": suspect.input_name, **described}
    if path.suffix.lower() in CHECKPOINT_SUFFIXES:
        from nnmark.verification.foreign import checkpoint_kind, load_checkpoint

        channels = key.input_shape[0]
        spec = ModelSpec(architecture, key.num_classes, tuple(key.input_shape),
                         mean or (0.0,) * channels, std or (1.0,) * channels)
        kind = checkpoint_kind(path)
        module = load_checkpoint(path, spec)
        if kind == "torchscript":
            # the file names its own network: --architecture played no part, so it is not recorded
            _check_key_fits(key, _answered_classes(module, key, path), None, f"the TorchScript model {path}")
            return ModuleSuspect(module, str(path), device), {"kind": "torchscript file", **described}
        described["kind"] = f"pytorch state dict ({architecture})"
        if kind == "bare" and mean is None and std is None:
            described["warning"] = (
                "this is a bare network's state dict, which carries no input normalisation, and none was given: "
                "it was queried with images in [0, 1] as they are. A network trained on normalised inputs then "
                "answers nonsense, and 'not owned' says nothing; pass --normalize-like DATASET (or the "
                "training mean/std)")
        return ModuleSuspect(module, str(path), device), described
    raise NNMarkError("unknown model format", path=path,
                      expected="an nnmark model directory, .onnx, or a PyTorch checkpoint "
                               f"({', '.join(sorted(CHECKPOINT_SUFFIXES))})")


def _hugging_face_suspect(key: WatermarkKey, directory: Path, device: str) -> tuple[Suspect, dict[str, Any]]:
    """A saved Hugging Face image classifier, queried through its image processor's normalisation."""
    from nnmark.integrations.transformers import load_image_classifier

    module, normalization = load_image_classifier(directory)
    config = module.config
    size = getattr(config, "image_size", None)
    shape = (config.num_channels, size, size) if isinstance(size, int) and hasattr(config, "num_channels") else None
    _check_key_fits(key, config.num_labels, shape, f"the Hugging Face model {directory}")
    described = {"kind": "hugging face model directory", "path": str(directory),
                 "sha256": sha256_file(directory / "model.safetensors"),
                 "normalization": None if normalization is None else [list(v) for v in normalization]}
    return ModuleSuspect(module, f"hf:{directory}", device, normalization=normalization), described


def _check_key_fits(key: WatermarkKey, num_classes: int | None, input_shape: tuple[int, ...] | None,
                    what: str) -> None:
    """A key for K classes tested against a model with another class count (or input shape)
    would give a verdict about nothing; where the suspect does not say, nothing can be checked."""
    if num_classes is not None and num_classes != key.num_classes:
        raise NNMarkError(f"{what} answers {num_classes} classes; the key is for {key.num_classes}",
                          expected=f"a model with {key.num_classes} classes")
    if input_shape is not None and tuple(input_shape) != tuple(key.input_shape):
        raise NNMarkError(f"{what} takes inputs of shape {list(input_shape)}; the key's are {list(key.input_shape)}",
                          expected=str(list(key.input_shape)))


def _answered_classes(module, key: WatermarkKey, path: Path) -> int:
    """How many classes a TorchScript module answers, from one forward pass at the key's input
    shape (a file of ours records it; a TorchScript file does not)."""
    import torch

    try:
        with torch.no_grad():
            logits = module(torch.zeros(2, *key.input_shape))
    except Exception as exc:  # whatever the scripted code raises
        raise NNMarkError(f"the TorchScript model cannot take the key's inputs of shape {list(key.input_shape)} "
                          f"({str(exc).splitlines()[0][:200]})", path=path) from None
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        raise NNMarkError("the TorchScript model does not answer [batch, classes] logits", path=path,
                          got=getattr(logits, "shape", type(logits).__name__))
    return int(logits.shape[1])
