"""Test accuracy on a dataset's test split, whether it is held in tensors or streamed."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nnmark.models.inference import evaluate, evaluating, logits_of


def accuracy_on(model: nn.Module, data: Any, device: str | torch.device | None = None, *, batch_size: int = 500,
                workers: int = 2) -> float:
    """Top-1 accuracy on ``data``'s test split (a tensor Dataset, or a StreamingDataset read batch by
    batch); the model is left where and as it was."""
    if not getattr(data, "streamed", False):
        return evaluate(model, data.test_x, data.test_y, device=device)
    right = seen = 0
    with evaluating(model, device) as where, torch.no_grad():
        for images, labels, _skipped in data.loader("test", batch_size, workers=workers):
            if not len(labels):
                continue
            predictions = logits_of(model(images.to(where))).argmax(1).cpu()
            right += int((predictions == labels).sum())
            seen += len(labels)
    return right / seen if seen else float("nan")


def teacher_targets(teacher: nn.Module, temperature: float = 1.0):
    """What a student distils from ``teacher``: its probabilities for a batch, softened by
    ``temperature``. The teacher answers in eval mode; where the batch lives elsewhere than the
    teacher, a copy of the teacher moved there once answers (the teacher itself stays put)."""
    import copy

    placed: dict[torch.device, nn.Module] = {}

    def targets(images: torch.Tensor) -> torch.Tensor:
        if images.device not in placed:
            placed[images.device] = copy.deepcopy(teacher).eval().to(images.device)
        with torch.no_grad():
            return torch.softmax(logits_of(placed[images.device](images)).float() / temperature, dim=1)

    return targets
