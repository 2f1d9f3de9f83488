"""The one loop for training that is not a classifier's task loss: the encoder/decoder pair, a
baseline's detector, decode&inject's injection tensor. It owns what such loops share — device
placement, seeding (inside a forked RNG, so the caller's random state is left alone), the
shuffled or fixed order of mini-batches, progress, and per-epoch means of what each step reports;
the caller's ``step`` does the optimiser work for one mini-batch."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from nnmark.models.inference import resolve_device

Step = Callable[[tuple[torch.Tensor, ...]], dict[str, torch.Tensor]]


def fit_auxiliary(tensors: Sequence[torch.Tensor], step: Step, *, epochs: int, batch_size: int, seed: int = 0,
                  device: str | torch.device = "auto", shuffle: bool = True, drop_last: bool = False,
                  shuffle_on_device: bool = False, progress=None, description: str = "training") -> list[dict[str, float]]:
    """Call ``step`` on each mini-batch (a tuple: the same rows of every tensor, on ``device``) for
    ``epochs`` passes; return, per epoch, the mean of each value ``step`` returned.

    ``shuffle``: a fresh order each pass from a generator seeded with ``seed`` (on the device when
    ``shuffle_on_device``); else the rows in order. ``drop_last``: skip a final partial batch.
    """
    device = resolve_device(device)
    tensors = [t.to(device) for t in tensors]
    count = len(tensors[0])
    starts = list(range(0, count - batch_size + 1 if drop_last else count, batch_size)) or [0]
    task = progress.add_task(description, total=len(starts) * epochs) if progress is not None else None
    history: list[dict[str, float]] = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        generator = torch.Generator(device=device if shuffle_on_device else "cpu").manual_seed(seed)
        for _ in range(epochs):
            order = (torch.randperm(count, device=generator.device, generator=generator).to(device) if shuffle
                     else torch.arange(count, device=device))
            sums: dict[str, torch.Tensor] = {}
            for start in starts:
                take = order[start:start + batch_size]
                for name, value in step(tuple(t[take] for t in tensors)).items():
                    sums[name] = sums.get(name, 0) + value.detach()
                if task is not None:
                    progress.advance(task)
            history.append({name: float(total) / len(starts) for name, total in sums.items()})
    return history
