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
from nnmark.data.streaming import training_source
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
    # Overrides of the running attack's declared settings (Attack.settings), e.g. {"lr": 0.1}.
    settings: dict[str, Any] = field(default_factory=dict)
    # Images of another domain the thief holds, already shaped as the victim's inputs
    # (``nnmark.data.transfer.transfer_images``): what extraction without the victim's data queries.
    transfer: torch.Tensor | None = None
    # Called after every epoch of the attack's own training with (epoch record, model): how a tuner
    # watches a trial and stops a hopeless one early (it may raise to stop the attack).
    on_epoch_end: Any = None


class Attack(ABC):
    name: ClassVar[str]
    summary: ClassVar[str]
    strength_meaning: ClassVar[str]
    strengths: ClassVar[tuple[float, ...]]  # the default sweep, weakest first
    quick_strengths: ClassVar[tuple[float, ...]]
    chain_strength: ClassVar[float]  # used inside a chain when none is given
    # Part of the bench's standard set (variants of a standard attack are run when asked for).
    standard: ClassVar[bool] = True
    # What the thief needs (data, queries, access), as the SoK tables state it.
    threat_model: ClassVar[str] = "a white-box copy of the model and a share of its training data"
    # The attack's hyperparameters beside the swept strength, with the literature's defaults;
    # every result records the values it ran with. ``search``: the grid the adaptive attacker
    # tries per cell (a mark survives only if no setting in it removes the mark).
    settings: ClassVar[dict[str, Any]] = {}
    search: ClassVar[dict[str, tuple]] = {}
    # The space the tuner searches (nnmark.attacks.space: ranges, log-scaled for rates, and choices);
    # None: read off ``search``, each numeric setting a range over its grid's values.
    space: ClassVar[dict[str, Any] | None] = None
    # Whether it trains on (or fits to) the thief's share of the training data: the adaptive
    # attacker then also tries smaller shares.
    uses_training_data: ClassVar[bool] = True
    # Whether the mark's evidence after an epoch says where a run is going, so that a tuner may stop a
    # run whose mark is not moving. An attack whose first phase is meant to wreck the model and a
    # second to repair it is judged only at its end.
    prunable: ClassVar[bool] = True
    # Whether the thief needs nothing but the model's answers to queries (extraction): the only
    # attacks that apply to a mark carried by the API rather than the model (DAWN).
    extraction: ClassVar[bool] = False
    # Whether it queries the thief's transfer images (AttackContext.transfer) when there are some.
    uses_transfer: ClassVar[bool] = False
    # Whether it trains on streamed data as it comes (a StreamingDataset); the others need whole
    # tensors and are given a random sample of THIEF_SAMPLE images of the thief's share.
    streams: ClassVar[bool] = False

    def setting(self, context: AttackContext, name: str) -> Any:
        return context.settings.get(name, self.settings[name])

    def search_grid(self, holds_transfer: bool) -> dict[str, tuple]:
        """The grid the adaptive attacker tries, given whether the thief holds transfer images."""
        return self.search

    def search_space(self, holds_transfer: bool) -> dict[str, Any]:
        """The space the tuner searches, given whether the thief holds transfer images."""
        from nnmark.attacks.space import Choice, from_grid

        grid = self.search_grid(holds_transfer)
        if self.space is None:
            return from_grid(grid)
        # a setting the grid restricts (which queries a thief without transfer images can make) stays restricted
        return {name: (Choice(tuple(grid[name])) if isinstance(dimension, Choice) and name in grid else dimension)
                for name, dimension in self.space.items()}

    def resolved_settings(self, context: AttackContext) -> dict[str, Any]:
        """The values this attack runs with; a training setting left None is the context's recipe's."""
        unknown = sorted(set(context.settings) - set(self.settings))
        if unknown:
            raise NNMarkError(f"attack '{self.name}' has no setting {', '.join(unknown)}", field="settings",
                              expected=", ".join(sorted(self.settings)) or "none")
        values = {name: context.settings.get(name, value) for name, value in self.settings.items()}
        return {name: getattr(context.train, name) if value is None and name in TRAIN_SETTINGS else value
                for name, value in values.items()}

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
    """Apply ``steps`` in order. ``strength`` overrides the strength of a single-step chain;
    ``context.settings`` apply to a single-step chain's attack (each step of a longer chain runs
    with its own declared defaults)."""
    for index, (attack, value) in enumerate(resolve_strengths(steps, strength)):
        if index and getattr(model, "nnmark_new_task", None) is not None:
            raise NNMarkError(f"'{steps[index - 1].attack}' moves the model to a task of its own; it can only be the "
                              "last step of a chain", field="attack", got="+".join(map(str, steps)))
        settings = context.settings if len(steps) == 1 else {}
        step_context = replace(context, seed=context.seed + 7919 * index,
                               settings={**attack.settings, **settings})
        if getattr(context.data, "streamed", False) and not attack.streams:
            step_context = replace(step_context, data=context.data.tensors(THIEF_SAMPLE, seed=step_context.seed))
        attack.resolved_settings(step_context)
        model = attack.apply(model, value, step_context)
    return model


def chain_settings(steps: list[AttackStep], context: AttackContext) -> list[dict[str, Any]]:
    """The settings each step of a chain runs with (what a result records)."""
    return [attack.resolved_settings(context if len(steps) == 1 else replace(context, settings={}))
            for attack, _ in resolve_strengths(steps)]


# Helpers shared by attacks.

def clone(model: Classifier) -> Classifier:
    return copy.deepcopy(model).to("cpu")


def frozen_copy(model: Classifier) -> Classifier:
    """A copy in eval mode whose parameters take no gradient: for optimising inputs against it
    (reversing triggers, adversarial examples) without touching the model."""
    frozen = clone(model).eval()
    for parameter in frozen.parameters():
        parameter.requires_grad_(False)
    return frozen


def task_network(model: nn.Module) -> nn.Module:
    """The part of ``model`` that does the task. A model with something implanted beside it (the
    decoder of decode&inject) says which part with a ``task_network()`` method; attacks that pick
    a layer by position ("the last layer", "the last convolution") pick it there, never in the
    implant."""
    for module in model.modules():
        inner = getattr(module, "task_network", None)
        if callable(inner):
            return inner()
    return model


def last_linear(model: nn.Module) -> nn.Linear:
    """The task network's output layer."""
    linears = [m for m in task_network(model).modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise NNMarkError("the model has no linear output layer to fine-tune or re-initialise")
    return linears[-1]


def prunable_weights(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


TRAIN_SETTINGS = ("lr", "label_smoothing", "weight_decay", "schedule", "batch_size", "momentum")
# The most images an attack that needs whole tensors takes from a streamed dataset.
THIEF_SAMPLE = 5000


def fine_tune(model: Classifier, context: AttackContext, epochs: int, *, parameters=None,
              freeze_batchnorm: bool = False, hooks=(), labels: torch.Tensor | None = None) -> Classifier:
    """Train ``model`` on the attacker's data (its labels, or ``labels`` in their place) with the
    context's recipe, changed by any of the running attack's settings that are training settings
    (its ``lr``, ``label_smoothing``, ...)."""
    if epochs <= 0:
        return model
    changes = {name: value for name, value in context.settings.items() if name in TRAIN_SETTINGS and value is not None}
    config = replace(context.train, epochs=epochs, seed=context.seed, **changes)
    inputs, targets = training_source(context.data)
    fit(model, inputs, targets if labels is None else labels, config,
        augmentation=context.data.augmentation, hooks=hooks,
        parameters=parameters, freeze_batchnorm=freeze_batchnorm, progress=context.progress,
        description="attack fine-tune", on_epoch_end=context.on_epoch_end)
    return model.to("cpu").eval()


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)
