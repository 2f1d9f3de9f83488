"""Fingerprinting by conferrable adversarial examples: Lukas, Zhang and Kerschbaum, "Deep Neural
Network Fingerprinting by Conferrable Adversarial Examples", ICLR 2021.

Nothing goes into the model. Keygen takes the owner's trained model M and its training data,
trains two kinds of stand-ins, and crafts inputs that tell them apart:

* **surrogates**: fresh models distilled from M's probabilities on the training images, as a
  thief extracting M would make;
* **references**: fresh models trained on the true labels, as anyone with the same data would
  make without M.

From training images M classifies correctly, projected gradient ascent (an L∞ ball of radius
ε) seeks inputs that M and the surrogates send to a new class t (M's runner-up on the original)
while no reference does: it maximises log M(x')_t + log mean_s S_s(x')_t + log(1 − max_r R_r(x')_t).
The key keeps the ``size`` inputs that M answers t with the highest conferrability,
mean_s S_s(x')_t · (1 − max_r R_r(x')_t), each labelled with M's answer.

Verification counts the fingerprints a suspect answers as M does. No null rate follows from the
design: how often an innocent model agrees depends on how adversarial examples transfer between
models of the same data, which is the quantity the scheme bets on. So the null is **estimated** on
control models made without the key (``nnmark calibrate``), which are trained on the owner's data
with other seeds and architectures, the hardest innocent models there are.

**Where we differ from the paper**: its surrogates and references are trained on a disjoint
split with several architectures, and its examples are made by an ensemble attack on the
combined output; here both are trained on the owner's training images with the architectures
in ``architectures`` (cycled), the attack is plain PGD on the objective above, and t is fixed
per image (M's runner-up). The paper verifies with a threshold on the agreement rate that it
calibrates on references; nnmark's verdict instead tests the count against the control models.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch

from nnmark.data.base import Dataset
from nnmark.errors import NNMarkError
from nnmark.models.inference import logits_of
from nnmark.models.store import ModelSpec, create_model
from nnmark.schemes.base import KeygenContext, register_scheme, require_tensor
from nnmark.schemes.key import WatermarkKey
from nnmark.schemes.trigger_set import TriggerSetScheme
from nnmark.training.trainer import TrainConfig, fit


@dataclass
class FingerprintOptions:
    size: int = field(default=100, metadata={"help": "Fingerprints kept (the paper: 100)."})
    epsilon: float = field(default=0.15, metadata={"help": "L-infinity radius of each perturbation, in [0, 1] pixels."})
    steps: int = field(default=50, metadata={"help": "Gradient steps per candidate."})
    candidates: int = field(default=400, metadata={"help": "Training images perturbed to choose fingerprints from."})
    surrogates: int = field(default=3, metadata={"help": "Models distilled from the owner's model at keygen."})
    references: int = field(default=3, metadata={"help": "Models trained on the true labels at keygen."})
    epochs: int = field(default=10, metadata={"help": "Training epochs of each surrogate and reference."})
    stand_in_data: float = field(default=1.0, metadata={
        "help": "Share of the training images each surrogate and reference trains on (each its own draw)."})
    architectures: str = field(default="small-cnn,mlp", metadata={
        "help": "Comma-separated architectures the surrogates and references cycle through."})

    def __post_init__(self) -> None:
        if self.size < 1 or self.candidates < self.size:
            raise ValueError("size must be at least 1 and candidates at least size")
        if not 0 < self.epsilon < 1 or self.steps < 1 or self.epochs < 1:
            raise ValueError("epsilon must be in (0, 1); steps and epochs at least 1")
        if self.surrogates < 1 or self.references < 1:
            raise ValueError("surrogates and references must be at least 1")
        if not [a for a in self.architectures.split(",") if a.strip()]:
            raise ValueError("architectures must name at least one architecture")


def stand_ins(dataset: Dataset, teacher: torch.nn.Module, options: FingerprintOptions, seed: int
              ) -> tuple[list[torch.nn.Module], list[torch.nn.Module]]:
    """Surrogates distilled from ``teacher`` and references trained on the labels."""
    architectures = [a.strip() for a in options.architectures.split(",") if a.strip()]
    with torch.no_grad():
        soft = torch.softmax(teacher(dataset.train_x), dim=1)
    made: dict[str, list[torch.nn.Module]] = {"surrogate": [], "reference": []}
    for kind, count, targets in (("surrogate", options.surrogates, soft), ("reference", options.references,
                                                                            dataset.train_y)):
        for index in range(count):
            spec = ModelSpec(architectures[index % len(architectures)], dataset.num_classes, dataset.input_shape,
                             dataset.mean, dataset.std)
            offset = index + (0 if kind == "surrogate" else 1000)
            model = create_model(spec, seed=seed + offset)
            take = torch.randperm(len(targets), generator=torch.Generator().manual_seed(seed + offset))[
                :max(1, round(options.stand_in_data * len(targets)))]
            fit(model, dataset.train_x[take], targets[take], TrainConfig(epochs=options.epochs, batch_size=64, lr=0.05,
                                                             seed=seed + offset, device="cpu"))
            made[kind].append(model.eval())
    return made["surrogate"], made["reference"]


def conferrable_examples(owner, surrogates, references, images: torch.Tensor, targets: torch.Tensor,
                         epsilon: float, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """PGD in the ε-ball of ``images`` towards ``targets`` for the owner and the surrogates and away
    for every reference; returns the examples and their conferrability scores."""
    models = [owner, *surrogates, *references]
    for model in models:
        for parameter in model.parameters():
            parameter.requires_grad_(False)
    step = 2.5 * epsilon / steps
    x = images.clone()
    rows = torch.arange(len(images))

    def parts(batch):
        owner_p = torch.softmax(logits_of(owner(batch)), 1)[rows, targets]
        surrogate_p = torch.stack([torch.softmax(m(batch), 1)[rows, targets] for m in surrogates]).mean(0)
        reference_p = torch.stack([torch.softmax(m(batch), 1)[rows, targets] for m in references]).amax(0)
        return owner_p, surrogate_p, reference_p

    for _ in range(steps):
        x.requires_grad_(True)
        owner_p, surrogate_p, reference_p = parts(x)
        objective = (owner_p.clamp_min(1e-12).log() + surrogate_p.clamp_min(1e-12).log()
                     + (1 - reference_p).clamp_min(1e-12).log()).sum()
        (gradient,) = torch.autograd.grad(objective, x)
        with torch.no_grad():
            x = (x + step * gradient.sign()).clamp(images - epsilon, images + epsilon).clamp(0, 1)
    with torch.no_grad():
        _, surrogate_p, reference_p = parts(x)
    return x.detach(), surrogate_p * (1 - reference_p)


@register_scheme("fingerprint")
class ConferrableFingerprint(TriggerSetScheme):
    summary = ("nothing in the model: inputs the owner's model and its distilled copies answer alike but "
               "independently trained models do not (conferrable adversarial examples, Lukas et al. 2021)")
    needs = frozenset({"dataset", "classifier"})
    keys_the_marked_model = True
    embeds_nothing = True
    KeygenOptions = FingerprintOptions
    null_kind = "estimated"
    item_tensors = ("inputs", "labels", "originals")

    def keygen(self, context: KeygenContext, options: FingerprintOptions) -> WatermarkKey:
        dataset: Dataset = context.dataset  # type: ignore[assignment]
        if dataset.input_shape != tuple(context.input_shape) or dataset.num_classes != context.num_classes:
            raise NNMarkError(f"dataset '{dataset.name}' does not match the key's sizes", field="input_shape/num_classes")
        owner = copy.deepcopy(context.classifier).cpu().eval()  # the caller's model is left as it is
        seed = context.seed % 2**62
        surrogates, references = stand_ins(dataset, owner, options, seed)
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(dataset.train_y), generator=generator)
        with torch.no_grad():
            logits = logits_of(owner(dataset.train_x[order]))
        correct = order[logits.argmax(1) == dataset.train_y[order]][:options.candidates]
        if len(correct) < options.size:
            raise NNMarkError(f"the model classifies only {len(correct)} training images correctly", field="size",
                              expected=f"at most {len(correct)}", got=options.size)
        originals = dataset.train_x[correct]
        with torch.no_grad():
            targets = logits_of(owner(originals)).topk(2, dim=1).indices[:, 1]
        examples, scores = conferrable_examples(owner, surrogates, references, originals, targets,
                                                options.epsilon, options.steps)
        with torch.no_grad():
            answers = logits_of(owner(examples)).argmax(1)
        scores = torch.where(answers == targets, scores, torch.full_like(scores, -1.0))
        chosen = scores.argsort(descending=True)[:options.size]
        if int((scores[chosen] < 0).sum()):
            raise NNMarkError(f"only {int((scores >= 0).sum())} of {len(scores)} candidates moved the model to a new "
                              f"class at ε = {options.epsilon:g}", field="epsilon",
                              expected="a larger epsilon, more steps or more candidates")
        quality = {"mean_conferrability": round(float(scores[chosen].mean()), 4),
                   "surrogates_agree": round(self._agreement(surrogates, examples[chosen], targets[chosen]), 4),
                   "references_agree": round(self._agreement(references, examples[chosen], targets[chosen]), 4)}
        return WatermarkKey(self.name, context.num_classes, context.input_shape,
                            {"inputs": examples[chosen].float().contiguous(), "labels": targets[chosen].clone(),
                             "originals": originals[chosen].float().contiguous()},
                            {**vars(options), "seed": context.seed, "source_dataset": dataset.name,
                             "quality": quality})

    @staticmethod
    def _agreement(models, inputs, labels) -> float:
        with torch.no_grad():
            return float(torch.stack([(m(inputs).argmax(1) == labels).float().mean() for m in models]).mean())

    def validate_key(self, key: WatermarkKey) -> None:
        super().validate_key(key)
        inputs, labels = self.triggers(key)
        originals = require_tensor(key, "originals", torch.float32, 4)
        if originals.shape != inputs.shape:
            raise NNMarkError("originals and fingerprints differ in shape", field="originals")
        epsilon = key.params.get("epsilon")
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not 0 < epsilon < 1:
            raise NNMarkError("a fingerprint key records its radius", field="params.epsilon", expected="a number in (0, 1)",
                              got=epsilon)
        # A fingerprint is a small perturbation of a real image: a crafted key of arbitrary images
        # (which any model might answer alike) is refused.
        if float((inputs - originals).abs().amax()) > epsilon + 1e-5:
            raise NNMarkError("fingerprints lie outside the key's radius around their originals", field="inputs",
                              expected=f"within {epsilon:g} of each original")

    def hooks(self, key: WatermarkKey, options, seed: int = 0):
        raise NNMarkError("a fingerprint puts nothing into the model: keygen reads the trained model, and "
                          "verification compares suspects with it", field="scheme")

    def embed_trained(self, model, spec, key, dataset, *, seed: int = 0, progress=None):
        return model, spec, {"mode": "fingerprinted (the model is unchanged)"}

    def statistic(self, key: WatermarkKey) -> str:
        return "fingerprints answered as the owner's model answers them"

    def key_summary(self, key: WatermarkKey) -> dict[str, Any]:
        return dict(key.params.get("quality", {}))
