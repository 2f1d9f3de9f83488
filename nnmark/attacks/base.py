"""The interface every removal attack implements, and the attack registry.

An attack maps a model to a model: it takes the victim, the data the attacker holds (by default
a fraction of the training set; attacks that need no labels ignore them) and a strength, and
returns a new model, leaving the victim untouched. Each attack declares its budget (data
fraction, epochs) and is seeded. Attacks compose: ``prune:0.5+ftal:5`` applies one after another.
"""
from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import torch
from torch import nn

from nnmark.data.base import Dataset
from nnmark.errors import NNMarkError
from nnmark.models.store import Classifier, ModelSpec
from nnmark.registry import Registry
from nnmark.schemes.key import WatermarkKey
from nnmark.training.presets import preset
from nnmark.training.trainer import TrainConfig, fit


@dataclass
class AttackContext:
    """What the attacker has: data (a subset of the training set), a training recipe for any
    fine-tuning it does, and a seed. ``scheme_key`` is only for ``overwrite``, which needs to
    know the victim's scheme (not its key) to forge a key of its own."""

    data: Dataset
    spec: ModelSpec
    seed: int = 0
    train: TrainConfig = field(default_factory=lambda: preset("attack"))
    victim_key: WatermarkKey | None = None
    progress: Any = None


class Attack(ABC):
    name: ClassVar[str]
    summary: ClassVar[str]
    strength_meaning: ClassVar[str]
    strengths: ClassVar[tuple[float, ...]]  # the default sweep, weakest first
    quick_strengths: ClassVar[tuple[float, ...]]
    chain_strength: ClassVar[float]  # used inside a chain when none is given
    # Part of the bench's standard set (variants of a standard attack are run when asked for).
    standard: ClassVar[bool] = True

    @abstractmethod
    def apply(self, model: Classifier, strength: float, context: AttackContext) -> Classifier:
        """Return an attacked copy of ``model``; never modify ``model`` itself."""

    def epochs(self, strength: float, context: AttackContext) -> int:
        """Training epochs this attack spends at ``strength`` (its budget)."""
        return 0


ATTACKS: Registry[type[Attack]] = Registry("attack")


def register_attack(name: str):
    def add(cls: type[Attack]) -> type[Attack]:
        cls.name = name
        return ATTACKS.register(name)(cls)

    return add


def get_attack(name: str) -> Attack:
    return ATTACKS.get(name)()


def standard_attacks() -> list[str]:
    """The attacks the bench runs when none are named: every registered one marked standard."""
    return [name for name in ATTACKS.names() if ATTACKS.get(name).standard]


@dataclass(frozen=True)
class AttackStep:
    attack: str
    strength: float | None = None

    def __str__(self) -> str:
        return self.attack if self.strength is None else f"{self.attack}:{self.strength:g}"


def parse_chain(text: str) -> list[AttackStep]:
    """``prune:0.5+ftal:5+distill`` → steps; a step without ``:strength`` takes its default."""
    steps = []
    for part in text.split("+"):
        name, _, raw = part.strip().partition(":")
        get_attack(name)  # unknown names fail here, with the list of known ones
        strength = None
        if raw:
            try:
                strength = float(raw)
            except ValueError:
                raise NNMarkError(f"strength of attack '{name}' must be a number", field="attack",
                                  got=part) from None
        steps.append(AttackStep(name, strength))
    if not steps or not all(step.attack for step in steps):
        raise NNMarkError("empty attack name", field="attack", expected="e.g. prune:0.5+ftal", got=text)
    return steps


def resolve_strengths(steps: list[AttackStep], strength: float | None = None) -> list[tuple[Attack, float]]:
    """Each step's attack and the strength it runs at: ``strength`` for a single-step chain when
    given, else the step's own, else the attack's default inside a chain."""
    resolved = []
    for step in steps:
        attack = get_attack(step.attack)
        if strength is not None and len(steps) == 1:
            resolved.append((attack, strength))
        else:
            resolved.append((attack, step.strength if step.strength is not None else attack.chain_strength))
    return resolved


def run_chain(model: Classifier, steps: list[AttackStep], context: AttackContext,
              strength: float | None = None) -> Classifier:
    """Apply ``steps`` in order. ``strength`` overrides the strength of a single-step chain."""
    for index, (attack, value) in enumerate(resolve_strengths(steps, strength)):
        model = attack.apply(model, value, replace(context, seed=context.seed + 7919 * index))
    return model


# Helpers shared by attacks.

def clone(model: Classifier) -> Classifier:
    return copy.deepcopy(model).to("cpu")


def last_linear(model: nn.Module) -> nn.Linear:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise NNMarkError("the model has no linear output layer to fine-tune or re-initialise")
    return linears[-1]


def prunable_weights(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def fine_tune(model: Classifier, context: AttackContext, epochs: int, *, parameters=None,
              freeze_batchnorm: bool = False) -> Classifier:
    if epochs <= 0:
        return model
    config = replace(context.train, epochs=epochs, seed=context.seed)
    fit(model, context.data.train_x, context.data.train_y, config, augmentation=context.data.augmentation,
        parameters=parameters, freeze_batchnorm=freeze_batchnorm, progress=context.progress,
        description="attack fine-tune")
    return model.to("cpu").eval()


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)
