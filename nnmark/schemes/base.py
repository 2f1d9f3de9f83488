"""The interface every watermark scheme implements, and the scheme registry.

A scheme is one module: a subclass of :class:`WatermarkScheme` decorated with
``@register_scheme("name")``. It declares its key-generation and embedding options as small
dataclasses (the CLI turns their fields into ``--options``), and implements

* ``keygen``   → a :class:`WatermarkKey` (secret tensors + public metadata),
* ``hooks``    → the :class:`TrainingHook` objects that embed it during training,
* ``extract``  → the raw evidence read from a suspect (e.g. its answers on the trigger set),
* ``verify``   → a :class:`Verdict` with statistic, p-value and decision rule.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch

from nnmark.data.base import Dataset
from nnmark.errors import NNMarkError
from nnmark.models.store import ModelSpec
from nnmark.registry import Registry
from nnmark.schemes.key import WatermarkKey
from nnmark.training.hooks import TrainingHook
from nnmark.verification.stats import Calibration, Verdict
from nnmark.verification.suspects import Suspect


@dataclass
class NoOptions:
    pass


@dataclass
class KeygenContext:
    """What keygen may need beyond sizes: the owner's data (content triggers) or model (weight
    signatures). Schemes list the ones they need in ``needs``."""

    num_classes: int
    input_shape: tuple[int, int, int]
    seed: int
    dataset: Dataset | None = None
    model_spec: ModelSpec | None = None
    classifier: Any = None  # a trained model some schemes may use (encoder-decoder: its features)
    progress: Any = None


class WatermarkScheme(ABC):
    name: ClassVar[str]
    access: ClassVar[str]  # "black-box" (queries only) or "white-box" (reads weights)
    summary: ClassVar[str]
    needs: ClassVar[frozenset[str]] = frozenset()  # subset of {"dataset", "model_spec"}
    KeygenOptions: ClassVar[type] = NoOptions
    EmbedOptions: ClassVar[type] = NoOptions
    # Embedding options for the small embedded dataset of `nnmark demo` (and tests).
    demo_embed_options: ClassVar[dict[str, Any]] = {}
    # True where the null can only be measured on models made without the key.
    null_needs_controls: ClassVar[bool] = False
    # Tensors with one row per key item (trigger image, signature bit): what a subset keeps.
    item_tensors: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def keygen(self, context: KeygenContext, options: Any) -> WatermarkKey: ...

    @abstractmethod
    def hooks(self, key: WatermarkKey, options: Any, seed: int = 0) -> list[TrainingHook]: ...

    @abstractmethod
    def verify(self, suspect: Suspect, key: WatermarkKey, *, alpha: float = 1e-6,
               null_rate: float | Calibration | None = None) -> Verdict:
        """``null_rate`` overrides the scheme's own null: a number the verifier vouches for, or a
        :class:`Calibration` measured on models trained without the key."""

    def calibrate(self, key: WatermarkKey, controls: list[Suspect]) -> Calibration:
        """Measure the null on models made without the key (schemes with an exact null need not)."""
        raise NNMarkError(f"scheme '{self.name}' has an exact null distribution; it needs no calibration")

    def subset(self, key: WatermarkKey, count: int, seed: int = 0) -> WatermarkKey:
        """A key holding ``count`` items drawn at random (by ``seed``) from ``key``, for selective
        disclosure: an owner can reveal part of the key in one dispute and keep the rest."""
        total = len(key.tensors[self.item_tensors[0]])
        if not 1 <= count <= total:
            raise NNMarkError("subset size out of range", field="--subset", expected=f"1..{total}", got=count)
        chosen = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:count].sort().values
        tensors = {name: (tensor[chosen] if name in self.item_tensors else tensor)
                   for name, tensor in key.tensors.items()}
        params = {**key.params, "subset": {"count": count, "of": total, "seed": seed,
                                           "indices": chosen.tolist(), "parent_commitment": key.commitment}}
        return WatermarkKey(key.scheme, key.num_classes, key.input_shape, tensors, params, key.created_at)

    # Helpers shared by every scheme.

    @classmethod
    def make_options(cls, which: str, values: dict[str, Any] | None) -> Any:
        """Build ``KeygenOptions`` or ``EmbedOptions`` from a name → value mapping, with a clear
        error for unknown names."""
        option_type = cls.KeygenOptions if which == "keygen" else cls.EmbedOptions
        values = dict(values or {})
        known = {f.name for f in fields(option_type)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise NNMarkError(f"scheme '{cls.name}' has no {which} option(s) {', '.join(unknown)}",
                              expected=f"one of: {', '.join(sorted(known)) or 'none'}")
        try:
            return option_type(**values)
        except (TypeError, ValueError) as exc:
            raise NNMarkError(f"bad {which} options for scheme '{cls.name}': {exc}") from None

    def check_fits(self, key: WatermarkKey, num_classes: int, input_shape: tuple[int, ...],
                   where: str) -> None:
        if key.scheme != self.name:
            raise NNMarkError(f"key is for scheme '{key.scheme}', not '{self.name}'", field="scheme")
        if key.num_classes != num_classes:
            raise NNMarkError(f"key does not fit {where}", field="num_classes",
                              expected=f"{num_classes} classes as the model has", got=key.num_classes)
        if tuple(key.input_shape) != tuple(input_shape):
            raise NNMarkError(f"key does not fit {where}", field="input_shape",
                              expected=f"{list(input_shape)} as the model takes",
                              got=list(key.input_shape))


SCHEMES: Registry[type[WatermarkScheme]] = Registry("watermark scheme")


def register_scheme(name: str):
    def add(cls: type[WatermarkScheme]) -> type[WatermarkScheme]:
        cls.name = name
        return SCHEMES.register(name)(cls)

    return add


def get_scheme(name: str) -> WatermarkScheme:
    return SCHEMES.get(name)()


def resolve_null(null_rate: float | Calibration | None) -> tuple[float, str] | None:
    if null_rate is None:
        return None
    if isinstance(null_rate, Calibration):
        return null_rate.rate, null_rate.source
    return float(null_rate), "rate given by the verifier"


def require_tensor(key: WatermarkKey, name: str, dtype: torch.dtype, ndim: int) -> torch.Tensor:
    tensor = key.tensors.get(name)
    if tensor is None or tensor.dtype != dtype or tensor.ndim != ndim:
        raise NNMarkError(f"key for scheme '{key.scheme}' lacks a valid '{name}' tensor",
                          field=name, expected=f"{dtype} with {ndim} dimensions",
                          got=None if tensor is None else f"{tensor.dtype}, shape {list(tensor.shape)}")
    return tensor
