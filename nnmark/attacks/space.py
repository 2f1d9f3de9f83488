"""What a thief may try: an attack's hyperparameters as a search space (ranges and choices), which
the adaptive bench's tuner samples, beside the grid (``Attack.search``) it used to walk; and what
the thief wants, as one score both searches rank attacked models by.

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

    def encode(self, value: Any) -> float | None:
        """The parameter a trial fixed to ``value`` records (None: outside this range)."""
        return _in_range(value, self.low, self.high)


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

    def encode(self, value: Any) -> float | None:
        return _in_range(value, self.low, self.high)


@dataclass(frozen=True)
class Choice:
    values: tuple[Any, ...]

    def suggest(self, trial, name: str) -> Any:
        # Optuna stores choices as they are; None and booleans are kept by their position
        index = trial.suggest_categorical(name, list(range(len(self.values))))
        return self.values[index]

    def describe(self) -> str:
        return "one of " + ", ".join(map(str, self.values))

    def encode(self, value: Any) -> int | None:
        return next((i for i, v in enumerate(self.values) if v == value and type(v) is type(value)), None)


def _in_range(value: Any, low: float, high: float) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        return None
    return float(value)


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


def thief_score(removed: bool, keeps_accuracy: bool, evidence: float, accuracy: float) -> float:
    """The thief's score of an attacked model (lower is stronger): see ``nnmark.workflows.tuner``. The one
    ordering the tuner optimises, the grid's strongest setting is picked by and two searches are
    compared with."""
    if removed:
        return evidence - 3.0
    if keeps_accuracy:
        return evidence - 2.0
    return -accuracy  # the model was destroyed, not the mark: the less accuracy lost, the less bad


def thief_objective(judgement: dict[str, Any], victim_accuracy: float, tolerance: float) -> float:
    """:func:`thief_score` of a judged attacked model, against the victim's accuracy and the tolerance."""
    accuracy, evidence = judgement["test_accuracy"], judgement["evidence"]
    keeps = accuracy >= victim_accuracy - tolerance
    return thief_score(keeps and not judgement["owned"], keeps, evidence, accuracy)


def record_score(record: dict[str, Any]) -> float:
    """:func:`thief_score` of a bench record (which carries whether it removed the mark and kept accuracy)."""
    return thief_score(bool(record.get("removed")), bool(record.get("keeps_accuracy")), record["evidence"],
                       record["test_accuracy"])
