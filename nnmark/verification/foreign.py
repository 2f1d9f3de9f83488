"""Suspects in formats we did not write: PyTorch checkpoints and TorchScript files of a known
architecture, and ONNX files.

Nothing here unpickles arbitrary objects: checkpoints go through ``torch.load(weights_only=True)``,
TorchScript through ``torch.jit.load`` (serialized TorchScript, not pickled Python), ONNX through
onnx/onnxruntime.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nnmark.extras import require
from nnmark.errors import NNMarkError, NonFiniteOutput
from nnmark.models.store import Classifier, ModelSpec, create_model


class OnnxWeights(nn.Module):
    """The initializers of an ONNX graph, exposed as named parameters so white-box schemes can
    read them (names as the exporter wrote them)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        onnx = require("onnx", "onnx", "reading an ONNX suspect's weights")
        numpy_helper = require("onnx.numpy_helper", "onnx")

        graph = onnx.load(str(path), load_external_data=False).graph
        self._named = [(init.name, nn.Parameter(torch.from_numpy(numpy_helper.to_array(init).copy()),
                                                requires_grad=False)) for init in graph.initializer]

    def named_parameters(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        yield from ((prefix + name, p) for name, p in self._named)


class OnnxSuspect:
    """An ONNX file run through onnxruntime (black-box), with its initializers readable
    (white-box)."""

    def __init__(self, path: str | Path, batch_size: int = 256) -> None:
        onnxruntime = require("onnxruntime", "onnx", "running an ONNX suspect")

        self.path = Path(path)
        self.description = str(path)
        self.queries = 0
        self.batch_size = batch_size
        try:
            options = onnxruntime.SessionOptions()
            options.log_severity_level = 3
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise NNMarkError(f"is not a usable ONNX model ({str(exc).splitlines()[0]})", path=path) from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise NNMarkError("ONNX model must take exactly one input (images)", path=path,
                              got=[i.name for i in inputs])
        self.input_name = inputs[0].name
        self.input_shape = inputs[0].shape
        if inputs[0].type not in ("tensor(float)", "tensor(double)", "tensor(float16)"):
            raise NNMarkError(f"ONNX model's input '{self.input_name}' is {inputs[0].type}; images are floats",
                              path=path, expected="tensor(float)")
        self._input_dtype = {"tensor(double)": np.float64, "tensor(float16)": np.float16}.get(inputs[0].type,
                                                                                             np.float32)
        first = self.input_shape[0] if self.input_shape else None
        self.fixed_batch = first if isinstance(first, int) and first > 0 else None
        # the logits: the first float output of shape [batch, classes]; some exporters put the labels first
        outputs = self.session.get_outputs()
        logits = [o for o in outputs if o.type in ("tensor(float)", "tensor(double)", "tensor(float16)")
                  and len(o.shape) == 2]
        if not logits:
            raise NNMarkError("ONNX model has no float output of shape [batch, classes]", path=path,
                              got=[f"{o.name}: {o.type} {o.shape}" for o in outputs])
        self.output_name = logits[0].name
        classes = logits[0].shape[1]
        self.num_classes = classes if isinstance(classes, int) and classes > 0 else None
        self._weights: OnnxWeights | None = None

    @property
    def fixed_input_shape(self) -> tuple[int, ...] | None:
        rest = self.input_shape[1:]
        return tuple(rest) if rest and all(isinstance(d, int) and d > 0 for d in rest) else None

    @property
    def module(self) -> nn.Module:
        if self._weights is None:
            self._weights = OnnxWeights(self.path)
        return self._weights

    def _run(self, batch: np.ndarray) -> np.ndarray:
        try:
            return np.asarray(self.session.run([self.output_name], {self.input_name: batch})[0])
        except Exception as exc:
            raise NNMarkError(f"ONNX model failed on a batch of shape {list(batch.shape)} "
                              f"({str(exc).splitlines()[0]})", path=self.path,
                              expected=f"input shape {self.input_shape}") from None

    def scores(self, inputs: torch.Tensor) -> torch.Tensor:
        """The graph's logits output (for schemes that read more than the label)."""
        outputs = []
        step = self.fixed_batch or self.batch_size
        for start in range(0, len(inputs), step):
            batch = inputs[start:start + step].detach().cpu().float().numpy().astype(self._input_dtype)
            count = len(batch)
            if self.fixed_batch and count != self.fixed_batch:  # a graph fixed to batches of B: pad the last one
                batch = np.concatenate([batch, np.repeat(batch[:1], self.fixed_batch - count, axis=0)])
            logits = self._run(batch)
            if logits.ndim != 2 or logits.shape[0] != len(batch):
                raise NNMarkError("ONNX model returned outputs of the wrong shape", path=self.path,
                                  expected=f"({len(batch)}, num_classes)", got=list(logits.shape))
            logits = logits[:count].astype(np.float32)
            if not np.isfinite(logits).all():
                raise NonFiniteOutput(f"ONNX model {self.path} outputs NaN or infinite logits: its answers "
                                      "cannot be read as labels")
            outputs.append(torch.from_numpy(logits))
            self.queries += count
        return torch.cat(outputs)

    def predict(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.scores(inputs).argmax(1)


def is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.split("/", 1)[-1].startswith("code/") for name in archive.namelist())
    except zipfile.BadZipFile:
        return False


def checkpoint_kind(path: str | Path) -> str:
    """'torchscript', 'classifier' (a state dict of our Classifier, normalisation included) or
    'bare' (a bare network's state dict, which carries no normalisation)."""
    path = Path(path)
    if is_torchscript(path):
        return "torchscript"
    state = _read_state(path)
    return "classifier" if any(k.startswith("net.") for k in state) else "bare"


def _read_state(path: Path) -> dict:
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise NNMarkError(f"cannot be read as a weights-only PyTorch checkpoint ({str(exc).splitlines()[0]})",
                          path=path) from None
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise NNMarkError("checkpoint holds no state dict of tensors", path=path)
    broken = sorted(k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all()))
    if broken:
        raise NNMarkError(f"weights hold NaN or infinite values ({', '.join(broken[:5])})", path=path)
    return state


def load_checkpoint(path: str | Path, spec: ModelSpec) -> nn.Module:
    """A PyTorch checkpoint (a state dict, possibly under a 'state_dict' or 'model' key) of a
    known architecture, or a TorchScript file. A state dict may be of our Classifier (with its
    normalisation) or of the bare network (then ``spec``'s mean/std normalise the input)."""
    path = Path(path)
    if not path.is_file():
        raise NNMarkError("checkpoint file does not exist", path=path)
    if is_torchscript(path):
        try:
            return torch.jit.load(str(path), map_location="cpu").eval()
        except Exception as exc:
            raise NNMarkError(f"is not a loadable TorchScript file ({str(exc).splitlines()[0]})", path=path) from None
    state = _read_state(path)
    model: Classifier = create_model(spec)
    target: nn.Module = model if any(k.startswith("net.") for k in state) else model.net
    try:
        target.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise NNMarkError(f"weights do not fit architecture '{spec.architecture}' ({first})", path=path,
                          expected="--architecture, --num-classes and --input-shape of the checkpoint's model") from None
    return model.eval()
