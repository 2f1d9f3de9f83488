"""Adversarial frontier stitching: Le Merrer, Pérez and Trédan, "Adversarial frontier stitching
for remote neural network watermarking", Neural Computing and Applications 2020 (arXiv 2017).

Keygen takes the trained classifier to be marked and makes adversarial examples close to its
decision boundary with the fast gradient sign method, x' = clip(x + ε·sign(∇x loss), 0, 1), from
training images it classifies correctly. Half the key are *true adversaries* (x' crosses the
boundary: the classifier now answers another class) and half *false adversaries* (x' stays on
its side); every one keeps the label of its original image. Embedding fine-tunes the classifier
with the key mixed into its batches, which moves the boundary back around the true adversaries
(it "stitches" the frontier) while the false ones hold it in place, so the mark costs little
accuracy. Verification counts the key items a suspect labels as the key does.

Where we differ: the paper takes an unmarked model's answers on the key to be fair coins and
tests the count against Binomial(ℓ, 1/2). That is not a null: key labels are true labels, so any
accurate model agrees with most false adversaries, and with many true ones where adversarial
examples do not transfer. The null is measured on control models made without the key
(``null_kind = "estimated"``), as for the one-target trigger sets.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from nnmark.errors import NNMarkError
from nnmark.models.inference import logits_of
from nnmark.schemes.base import KeygenContext, register_scheme, require_tensor
from nnmark.schemes.key import WatermarkKey
from nnmark.schemes.trigger_set import TriggerSetScheme


@dataclass
class FrontierOptions:
    size: int = field(default=100, metadata={"help": "Key inputs, half true and half false adversaries (the paper: 100)."})
    epsilon: float = field(default=0.1, metadata={"help": "FGSM step ε in pixel units of [0, 1]."})

    def __post_init__(self) -> None:
        if self.size < 2:
            raise ValueError("size must be at least 2")
        if not 0 < self.epsilon < 1:
            raise ValueError("epsilon must be in (0, 1)")


@register_scheme("frontier")
class FrontierStitching(TriggerSetScheme):
    summary = "adversarial examples either side of the decision boundary, stitched back (Le Merrer et al. 2017)"
    needs = frozenset({"dataset", "classifier"})
    keys_the_marked_model = True
    KeygenOptions = FrontierOptions
    null_kind = "estimated"
    item_tensors = ("inputs", "labels", "crossed")

    def keygen(self, context: KeygenContext, options: FrontierOptions) -> WatermarkKey:
        dataset, want = context.dataset, {True: options.size // 2, False: options.size - options.size // 2}
        if dataset.input_shape != tuple(context.input_shape) or dataset.num_classes != context.num_classes:
            raise NNMarkError(f"dataset '{dataset.name}' does not match the key's sizes", field="input_shape/num_classes")
        model = copy.deepcopy(context.classifier).cpu().eval()  # the caller's model is left as it is
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        order = torch.randperm(len(dataset.train_y), generator=torch.Generator().manual_seed(context.seed % 2**64))
        found: dict[bool, list[torch.Tensor]] = {True: [], False: []}
        labels: dict[bool, list[torch.Tensor]] = {True: [], False: []}
        for start in range(0, len(order), 256):
            take = order[start:start + 256]
            x, y = dataset.train_x[take].clone().requires_grad_(True), dataset.train_y[take]
            logits = logits_of(model(x))
            grad, = torch.autograd.grad(F.cross_entropy(logits, y), x)
            with torch.no_grad():
                adversarial = (x + options.epsilon * grad.sign()).clamp(0, 1)
                correct = logits.argmax(1) == y
                crossed = logits_of(model(adversarial)).argmax(1) != y
            for kind in (True, False):
                chosen = correct & (crossed == kind)
                found[kind].append(adversarial[chosen])
                labels[kind].append(y[chosen])
            if all(sum(len(t) for t in found[k]) >= want[k] for k in want):
                break
        inputs, targets, kinds = [], [], []
        for kind in (True, False):
            images = torch.cat(found[kind])[:want[kind]]
            if len(images) < want[kind]:
                raise NNMarkError(f"only {len(images)} {'true' if kind else 'false'} adversaries at ε = "
                                  f"{options.epsilon:g} (need {want[kind]})", field="epsilon",
                                  expected="a larger ε" if kind else "a smaller ε")
            inputs.append(images)
            targets.append(torch.cat(labels[kind])[:want[kind]])
            kinds.append(torch.full((want[kind],), int(kind), dtype=torch.int64))
        return WatermarkKey(self.name, context.num_classes, context.input_shape,
                            {"inputs": torch.cat(inputs).float().contiguous(), "labels": torch.cat(targets),
                             "crossed": torch.cat(kinds)},
                            {**vars(options), "seed": context.seed, "source_dataset": dataset.name})

    def validate_key(self, key: WatermarkKey) -> None:
        super().validate_key(key)
        crossed = require_tensor(key, "crossed", torch.int64, 1)
        if len(crossed) != key.item_count or not bool(((crossed == 0) | (crossed == 1)).all()):
            raise NNMarkError("marks each key input as a true (1) or false (0) adversary", field="crossed")

    def statistic(self, key: WatermarkKey) -> str:
        return "adversarial inputs labelled as their originals"
