"""What a verifier can ask of a suspect model.

Black-box schemes only call ``predict`` (labels for a batch of images in [0, 1]) and count the
queries; white-box schemes also read ``module``. A suspect behind an interface we do not control
(an exported file, a web endpoint) implements the same protocol with ``module = None``.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn

from nnmark.errors import NNMarkError, NonFiniteOutput
from nnmark.models.inference import predict_logits, resolve_device


@runtime_checkable
class Suspect(Protocol):
    description: str
    queries: int

    @property
    def module(self) -> nn.Module | None: ...

    def predict(self, inputs: torch.Tensor) -> torch.Tensor: ...


class ModuleSuspect:
    """An in-process ``torch.nn.Module`` taking images in [0, 1] and returning logits (a tensor, or
    an output with ``.logits``). It is queried in eval mode on ``device`` (None: where it is) and
    left as it was found, on its device and in its mode.

    ``normalization``: ``(mean, std)`` the module expects its inputs normalised with, where it does
    not normalise them itself (a Hugging Face model behind its image processor): queries, raw
    images in [0, 1], are normalised before they reach it."""

    def __init__(self, module: nn.Module, description: str = "in-process module",
                 device: str | torch.device | None = None, batch_size: int = 500,
                 normalization=None) -> None:
        self._module = module  # what a white-box scheme reads, under its own parameter names
        self._queried = module if normalization is None else Normalised(module, normalization)
        self.description = description
        self.device = None if device is None else resolve_device(device)
        self.batch_size = batch_size
        self.queries = 0

    @property
    def module(self) -> nn.Module:
        return self._module

    def scores(self, inputs: torch.Tensor) -> torch.Tensor:
        """The module's logits (for schemes that read more than the label)."""
        self.queries += len(inputs)
        logits = predict_logits(self._queried, inputs, self.batch_size, self.device)
        if not bool(torch.isfinite(logits).all()):
            # argmax would read NaN as some class and the verdict would look like evidence
            raise NonFiniteOutput(f"suspect '{self.description}' outputs NaN or infinite logits (are its weights "
                                  "finite?): its answers cannot be read as labels")
        return logits

    def predict(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.scores(inputs).argmax(1)


class Normalised(nn.Module):
    """``module`` behind the normalisation its inputs need, so it takes images in [0, 1]."""

    def __init__(self, module: nn.Module, normalization) -> None:
        super().__init__()
        mean, std = normalization
        mean, std = torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32)
        if bool((std <= 0).any()):
            raise NNMarkError("std must be positive", field="normalization", got=std.tolist())
        self.module = module
        self.register_buffer("mean", mean.view(1, -1, 1, 1))
        self.register_buffer("std", std.view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor):
        return self.module((x - self.mean.to(x.device)) / self.std.to(x.device))


class PredictorSuspect:
    """Any object with ``predict(images) -> labels`` (a model behind an interface we do not
    control), given the description and query count a verdict records."""

    def __init__(self, predictor, description: str) -> None:
        self._predictor, self.description, self.queries = predictor, description, 0
        self.query_budget = getattr(predictor, "query_budget", None)

    @property
    def module(self) -> None:
        return None

    def predict(self, inputs: torch.Tensor) -> torch.Tensor:
        self.queries += len(inputs)
        return self._predictor.predict(inputs)


class SuspectProxy:
    """A suspect passed straight through (queries, module, description, count, budget), for
    wrappers that add one thing to it."""

    def __init__(self, suspect: Suspect) -> None:
        self._suspect = suspect

    def __getattr__(self, name: str):
        return getattr(self._suspect, name)

    @property
    def module(self) -> nn.Module | None:
        return self._suspect.module

    @property
    def description(self) -> str:
        return self._suspect.description

    @property
    def queries(self) -> int:
        return self._suspect.queries

    def predict(self, inputs: torch.Tensor) -> torch.Tensor:
        return self._suspect.predict(inputs)


class NamedLayer(SuspectProxy):
    """A suspect whose layer carrying a white-box mark the verifier names (``named_layer``), for a
    copy whose parameters were renamed."""

    def __init__(self, suspect: Suspect, layer: str) -> None:
        super().__init__(suspect)
        self.named_layer = layer


def as_suspect(model: nn.Module | Suspect, description: str = "in-process module", normalization=None) -> Suspect:
    """``model`` as a suspect: a module (given the normalisation it expects its inputs in, where it
    does not normalise them itself), a :class:`Suspect`, or any object with ``predict``."""
    if isinstance(model, nn.Module):
        return ModuleSuspect(model, description, normalization=normalization)
    if normalization is not None:
        raise NNMarkError("normalization applies to a torch module, which nnmark queries itself", field="normalization")
    if isinstance(model, Suspect):
        return model
    if callable(getattr(model, "predict", None)):
        return PredictorSuspect(model, getattr(model, "description", None) or type(model).__name__)
    raise NNMarkError(f"cannot query a suspect of type {type(model).__name__}",
                      expected="a torch.nn.Module or an object with predict(images) -> labels")
