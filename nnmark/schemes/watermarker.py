"""``Watermarker``: a key's mark, put into a model while it trains, in any training loop.

A plain PyTorch loop needs three more lines::

    watermarker = Watermarker(key, model, normalization=(mean, std))   # what the loader applies, if any
    for images, labels in loader:
        images, labels = watermarker.mix(images, labels)
        loss = F.cross_entropy(model(images), labels) + watermarker.loss()
        ...

nnmark's own trainer holds the same object (``nnmark.training.fit(..., watermark=...)``), and so do
the Lightning and Hugging Face integrations (``nnmark.integrations``). Every scheme whose mark lives
in the model works this way: the trigger sets (adi, content, noise, unrelated, trojan, frontier,
encoder-decoder), EWE and Uchida's signature. A key that cannot work with the model (another
number of classes or input shape, a layer it lacks) is refused here, before any step.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from nnmark.errors import NNMarkError
from nnmark.models.inference import evaluating
from nnmark.schemes.base import get_scheme
from nnmark.schemes.key import WatermarkKey
from nnmark.training.embedding import Embedding, logits_of


class Watermarker(Embedding):
    """Puts ``key``'s mark into ``model`` during training (see the module docstring).

    ``options``: the scheme's embedding options, by name (e.g. ``{"per_batch": 16}``) or as its
    options dataclass; the scheme's defaults where none are given. ``normalization``: ``(mean,
    std)`` the user's batches are normalised with, where the model does not normalise its inputs
    itself (the key's samples are images in [0, 1], and are put into the same space). ``seed``:
    the order the key's samples are mixed in. ``accumulation``: micro-batches per optimiser step.
    ``distributed``: ``(rank, world_size)``, or "auto" to read ``torch.distributed``.
    """

    def __init__(self, key: WatermarkKey, model: nn.Module, *, options: Any = None, normalization: Any = None,
                 seed: int = 0, accumulation: int = 1, distributed: tuple[int, int] | str | None = "auto") -> None:
        scheme = get_scheme(key.scheme)
        if dataclasses.is_dataclass(options) and not isinstance(options, type):
            if not isinstance(options, scheme.EmbedOptions):
                raise NNMarkError(f"options are {type(options).__name__}, not the '{key.scheme}' scheme's",
                                  field="options", expected=scheme.EmbedOptions.__name__)
            parsed = options
        else:
            parsed = scheme.make_options("embed", options)
        hooks = scheme.hooks(key, parsed, seed=seed)  # schemes that put nothing in the model refuse here
        _check_model_fits(key, model, normalization)
        self.key = key
        self.options = parsed
        super().__init__(hooks, model, input_shape=tuple(key.input_shape), normalization=normalization,
                         accumulation=accumulation, distributed=distributed, num_classes=key.num_classes)

    def __repr__(self) -> str:
        return f"Watermarker({self.key.scheme} key {self.key.commitment[:12]}…, step {self.step})"


def _check_model_fits(key: WatermarkKey, model: nn.Module, normalization: Any) -> None:
    """One forward pass on two inputs of the key's shape (in eval mode, no gradient, the model left
    as it was): the model must take them and answer the key's number of classes."""
    if key.item_tensors and "inputs" not in key.tensors:
        return  # a white-box key holds no inputs; its layer is checked when the hook finds it
    shape = tuple(key.input_shape)
    probe = torch.full((2, *shape), 0.5)
    if normalization is not None:
        mean, std = (torch.as_tensor(v, dtype=torch.float32).view(1, -1, *([1] * (len(shape) - 1)))
                     for v in normalization)
        probe = (probe - mean) / std
    with evaluating(model) as device, torch.no_grad():
        try:
            outputs = model(probe.to(device))
        except Exception as exc:  # whatever the user's module raises on inputs it cannot take
            raise NNMarkError(f"the model cannot take the key's inputs of shape {list(shape)} "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})", field="input_shape") from None
    logits = logits_of(outputs)
    if logits.ndim != 2 or logits.shape[1] != key.num_classes:
        raise NNMarkError(f"the model answers {list(logits.shape[1:])} scores per input; the key is for "
                          f"{key.num_classes} classes", field="num_classes", expected=str(key.num_classes))
