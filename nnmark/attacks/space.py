"""What a thief may try: an attack's hyperparameters as a search space (ranges and choices), which
the adaptive bench's tuner samples, beside the grid (``Attack.search``) it used to walk.

A learning rate or a weight is searched on a log scale, as people search them; a share or a count
on a linear one; a setting with a few named values is a choice. An attack declares its space in
``Attack.space``; one that declares none is searched over its grid's values as choices.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from nnmark.errors import NNMarkError


@dataclass(frozen=True)
class LogUniform:
    low: float
    high: float

    def __post_init__(self) -> None:
        if not 0 < self.low < self.high:
            raise NNMarkError("a log-uniform range needs 0 < low < high", field="space", got=[self.low, self.high])

    def suggest(self, trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=True)

    def describe(self) -> str:
        return f"log-uniform [{self.low:g}, {self.high:g}]"


@dataclass(frozen=True)
class Uniform:
    low: float
    high: float

    def __post_init__(self) -> None:
        if not self.low < self.high:
            raise NNMarkError("a range needs low < high", field="space", got=[self.low, self.high])

    def suggest(self, trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high)

    def describe(self) -> str:
        return f"uniform [{self.low:g}, {self.high:g}]"


@dataclass(frozen=True)
class Choice:
    values: tuple[Any, ...]

    def suggest(self, trial, name: str) -> Any:
        # Optuna stores choices as they are; None and booleans are kept by their position
        index = trial.suggest_categorical(name, list(range(len(self.values))))
        return self.values[index]

    def describe(self) -> str:
        return "one of " + ", ".join(map(str, self.values))


Dimension = LogUniform | Uniform | Choice
# names searched on a log scale where an attack's space is read off its grid
LOG_SCALE = ("lr", "weight_decay", "mask_weight", "penalty", "epsilon")


def from_grid(search: dict[str, tuple]) -> dict[str, Dimension]:
    """A space read off a grid: its numeric settings as ranges spanning the grid's values (log-scaled
    for rates and weights), the rest as choices."""
    space: dict[str, Dimension] = {}
    for name, values in search.items():
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if len(numbers) == len(values) and len(set(numbers)) > 1:
            low, high = float(min(numbers)), float(max(numbers))
            log = name in LOG_SCALE and low > 0 and math.isfinite(high / low)
            space[name] = LogUniform(low, high) if log else Uniform(low, high)
        else:
            space[name] = Choice(tuple(values))
    return space
