"""Running a model: where it runs, its logits for a batch of images, its accuracy. Training,
verification and attacks all need these and none of them owns them."""
from __future__ import annotations

import torch
from torch import nn


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@torch.no_grad()
def predict_logits(model: nn.Module, inputs: torch.Tensor, batch_size: int = 1000,
                   device: str | torch.device = "auto") -> torch.Tensor:
    device = resolve_device(device)
    model.eval().to(device)
    outputs = [model(inputs[i:i + batch_size].to(device)).float() for i in range(0, len(inputs), batch_size)]
    return torch.cat(outputs).cpu() if outputs else torch.empty(0)


def evaluate(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000,
             device: str | torch.device = "auto") -> float:
    """Top-1 accuracy in [0, 1]."""
    predictions = predict_logits(model, inputs, batch_size, device).argmax(1)
    return (predictions == labels.cpu()).float().mean().item()
