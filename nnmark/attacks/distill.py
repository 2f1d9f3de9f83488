"""Knowledge distillation / model extraction: a fresh model of the victim's architecture trained
only on the victim's outputs (softmax probabilities) for the attacker's images — no labels, no
access to weights. Strength is the number of epochs."""
from __future__ import annotations

from dataclasses import replace

import torch

from nnmark.attacks.base import Attack, AttackContext, register_attack
from nnmark.attacks.space import Choice, LogUniform
from nnmark.data.streaming import training_source
from nnmark.errors import NNMarkError
from nnmark.models.store import Classifier, ModelSpec, create_model
from nnmark.training.evaluation import teacher_targets
from nnmark.training.trainer import fit
from nnmark.models.inference import predict_logits


@register_attack("distill")
class Distill(Attack):
    summary = "train a fresh model on the victim's soft outputs (extraction)"
    strength_meaning = "epochs of training the fresh model"
    strengths = (5, 10, 20)
    quick_strengths = (10,)
    chain_strength = 10
    extraction = True
    streams = True

    def epochs(self, strength: float, context: AttackContext) -> int:
        return int(strength)

    # A fresh model needs a from-scratch rate, not the gentle fine-tuning one; temperature softens the
    # victim's outputs (Hinton et al. 2015); architecture None keeps the victim's (else cross-architecture).
    # answers "labels": the API returns only its top class, and the student learns those (hard-label extraction).
    settings = {"lr": 0.05, "temperature": 1.0, "architecture": None, "answers": "probabilities", "schedule": "step"}
    search = {"lr": (0.01, 0.05, 0.1), "temperature": (1.0, 4.0), "architecture": (None, "mlp")}
    space = {"lr": LogUniform(0.005, 0.2), "temperature": LogUniform(0.5, 8.0), "architecture": Choice((None, "mlp")),
             "schedule": Choice(("step", "constant"))}
    threat_model = "queries to the model's output probabilities on the thief's own images; no labels, no weights"

    def apply(self, model: Classifier, strength: float, context: AttackContext) -> Classifier:
        temperature = float(self.setting(context, "temperature"))
        answers = self.setting(context, "answers")
        if answers not in ("probabilities", "labels"):
            raise NNMarkError("must be 'probabilities' or 'labels'", field="answers", got=answers)
        inputs, targets, targets_from = *training_source(context.data), None
        if targets is not None:  # tensors: the victim answers every query once
            logits = predict_logits(model, inputs, device=context.train.device)
            targets = torch.softmax(logits / temperature, dim=1) if answers == "probabilities" else logits.argmax(1)
        else:  # streamed: the victim answers each batch as the thief reads it
            teacher = teacher_targets(model, temperature)
            targets_from = teacher if answers == "probabilities" else (lambda images: teacher(images).argmax(1))
        architecture = self.setting(context, "architecture")
        spec = context.spec if architecture in (None, context.spec.architecture) else ModelSpec(
            architecture, context.spec.num_classes, tuple(context.spec.input_shape), context.spec.mean, context.spec.std)
        student = create_model(spec, seed=context.seed + 1)
        config = replace(context.train, epochs=int(strength), lr=float(self.setting(context, "lr")),
                         schedule=self.setting(context, "schedule"), seed=context.seed)
        fit(student, inputs, targets, config, targets_from=targets_from, progress=context.progress,
            description="attack distill", on_epoch_end=context.on_epoch_end)
        return student.to("cpu").eval()
