"""Transfer learning to a new task (Uchida et al. 2017, §5.3; the SoK's transfer-learning removal):
the thief keeps the stolen network's body as a feature extractor, puts a fresh head on it for a
task of its own with other classes, and trains on that task. Strength is epochs on the new task.

A black-box mark is a statement about the key's classes; once the model answers other classes
there is nothing to query it for, so such marks are gone by construction (the judge says so in
words rather than scoring the new labels against the key's). A white-box mark in the body can
still be read. The new task here is the thief's share of the training images regrouped into
fewer classes by a seeded map, so a model's accuracy on it is comparable with what the victim's
own predictions, regrouped the same way, score.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from nnmark.attacks.base import Attack, AttackContext, clone, fine_tune, last_linear, register_attack, seeded
from nnmark.errors import NNMarkError
from nnmark.models.store import Classifier


@dataclass(frozen=True)
class NewTask:
    """Which new class each of the victim's classes became."""

    class_map: tuple[int, ...]

    @property
    def classes(self) -> int:
        return max(self.class_map) + 1

    def relabel(self, labels: torch.Tensor) -> torch.Tensor:
        return torch.tensor(self.class_map, dtype=torch.long)[labels.long().cpu()]


def regrouping(num_classes: int, classes: int, seed: int) -> NewTask:
    """A seeded map of ``num_classes`` classes onto ``classes`` new ones, each new one non-empty."""
    if not 2 <= classes < num_classes:
        raise NNMarkError("a new task needs at least 2 classes and fewer than the victim's",
                          field="classes", expected=f"2..{num_classes - 1}", got=classes)
    order = torch.randperm(num_classes, generator=seeded(seed)).tolist()
    class_map = [0] * num_classes
    for position, old in enumerate(order):
        class_map[old] = position % classes
    return NewTask(tuple(class_map))


def new_task_of(model: nn.Module) -> NewTask | None:
    """The task a transferred model was trained for (None for a model still on the victim's)."""
    return getattr(model, "nnmark_new_task", None)


def _replace_last_linear(model: nn.Module, out_features: int, seed: int) -> nn.Linear:
    """Swap the model's last linear layer for a fresh one with ``out_features`` outputs, under the
    same name, so every other layer (and any mark read from one by name) stays where it was."""
    old = last_linear(model)
    parent, name = next((parent, name) for parent in model.modules() for name, child in parent.named_children()
                        if child is old)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = nn.Linear(old.in_features, out_features, bias=old.bias is not None)
    setattr(parent, name, head)
    return head


@register_attack("transfer")
class Transfer(Attack):
    summary = "reuse the body for a new task: a fresh head for other classes, trained on the thief's data"
    strength_meaning = "epochs of training on the new task"
    strengths = (1, 5, 10)
    quick_strengths = (1, 5)
    chain_strength = 5
    # classes None: half the victim's. freeze_body: train the new head only (feature extraction).
    settings = {"lr": None, "classes": None, "freeze_body": False}
    search = {"lr": (0.001, 0.01, 0.1), "freeze_body": (False, True)}
    threat_model = ("a white-box copy of the model and labelled data for a task of the thief's own "
                    "(here: the thief's share of the training images, regrouped into fewer classes)")

    def epochs(self, strength: float, context: AttackContext) -> int:
        return int(strength)

    def task(self, context: AttackContext) -> NewTask:
        num_classes = context.spec.num_classes
        classes = self.setting(context, "classes")
        return regrouping(num_classes, int(classes) if classes is not None else max(2, num_classes // 2),
                          context.seed + 31)

    def apply(self, model: Classifier, strength: float, context: AttackContext) -> Classifier:
        task = self.task(context)
        attacked = clone(model)
        head = _replace_last_linear(attacked, task.classes, context.seed)
        data = context.data
        relabelled = replace(data, train_y=task.relabel(data.train_y), test_y=task.relabel(data.test_y),
                             num_classes=task.classes, class_names=None)
        tuned = fine_tune(attacked, replace(context, data=relabelled), int(strength),
                          parameters=head.parameters() if self.setting(context, "freeze_body") else None,
                          freeze_batchnorm=bool(self.setting(context, "freeze_body")))
        tuned.nnmark_new_task = task
        return tuned
