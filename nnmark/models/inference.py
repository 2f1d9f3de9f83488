"""Running a model: where it runs, its logits for a batch of images, its accuracy. Training,
verification and attacks all need these and none of them owns them.

A model handed to these functions is left as it was found: on its device and in its mode. It
runs in eval mode (batch norm with its running statistics, no dropout) on ``device``, and is
moved back and its mode restored afterwards, also when the forward pass fails."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from nnmark.errors import NNMarkError


def logits_of(outputs: Any) -> torch.Tensor:
    """The class scores in a model's output: the tensor itself, ``outputs["logits"]``,
    ``outputs.logits`` (Hugging Face), or the first element of a tuple."""
    if isinstance(outputs, torch.Tensor):
        return outputs
    if isinstance(outputs, dict) and isinstance(outputs.get("logits"), torch.Tensor):
        return outputs["logits"]
    if isinstance(getattr(outputs, "logits", None), torch.Tensor):
        return outputs.logits
    if isinstance(outputs, (tuple, list)) and outputs and isinstance(outputs[0], torch.Tensor):
        return outputs[0]
    raise NNMarkError(f"the model's output ({type(outputs).__name__}) holds no logits",
                      field="outputs", expected="a tensor, a dict with 'logits', or an object with .logits")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def device_of(model: nn.Module) -> torch.device:
    """Where ``model``'s parameters (or buffers) live; the CPU for a module with neither."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def modes_of(model: nn.Module) -> list[tuple[nn.Module, bool]]:
    """Each submodule's mode: ``train(flag)`` sets every submodule alike, so restoring only the top
    one's would flip a part the caller had set apart (a frozen batch norm, a wrapped model in eval)."""
    return [(module, module.training) for module in model.modules()]


def restore_modes(modes: list[tuple[nn.Module, bool]]) -> None:
    for module, training in modes:
        module.training = training


@contextlib.contextmanager
def evaluating(model: nn.Module, device: str | torch.device | None = None) -> Iterator[torch.device]:
    """``model`` in eval mode on ``device`` (None: where it is) for the duration; yields the device.
    Afterwards it is back on its device, every submodule in the mode it was in."""
    home, modes = device_of(model), modes_of(model)
    target = home if device is None else resolve_device(device)
    model.eval()
    if target != home:
        model.to(target)
    try:
        yield target
    finally:
        if target != home:
            model.to(home)
        restore_modes(modes)


@torch.no_grad()
def predict_logits(model: nn.Module, inputs: torch.Tensor, batch_size: int = 1000,
                   device: str | torch.device | None = None) -> torch.Tensor:
    """Logits for ``inputs`` (on the CPU), computed on ``device`` (None: the model's own)."""
    with evaluating(model, device) as where:
        outputs = [logits_of(model(inputs[i:i + batch_size].to(where))).float()
                   for i in range(0, len(inputs), batch_size)]
    return torch.cat(outputs).cpu() if outputs else torch.empty(0)


def evaluate(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000,
             device: str | torch.device | None = None) -> float:
    """Top-1 accuracy in [0, 1]."""
    predictions = predict_logits(model, inputs, batch_size, device).argmax(1)
    return (predictions == labels.cpu()).float().mean().item()
