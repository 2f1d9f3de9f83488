"""Model extraction with out-of-distribution queries (Orekondy et al. 2019, Knockoff Nets): a fresh
model trained only on the victim's outputs for images the thief draws from another domain,
without any of the victim's training data. On digits the transfer set is procedural (letters,
abstract images or noise; no download). Strength is the number of epochs."""
from __future__ import annotations

from dataclasses import replace

import torch

from nnmark.attacks.base import Attack, AttackContext, register_attack
from nnmark.errors import NNMarkError
from nnmark.models.inference import predict_logits
from nnmark.models.store import Classifier, create_model
from nnmark.training.trainer import fit


def transfer_set(kind: str, count: int, input_shape: tuple[int, int, int], seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    if kind == "letters":
        from nnmark.schemes.patterns import letter_images

        return letter_images(count, input_shape, generator)
    if kind == "abstract":
        from nnmark.schemes.abstract_images import abstract_images

        return abstract_images(count, input_shape, seed)
    if kind == "noise":
        return torch.rand((count, *input_shape), generator=generator)
    raise NNMarkError(f"unknown transfer set '{kind}'", field="queries", expected="letters, abstract or noise")


@register_attack("knockoff")
class Knockoff(Attack):
    summary = "train a fresh model on the victim's outputs for out-of-domain queries (Knockoff Nets)"
    uses_training_data = False
    extraction = True
    strength_meaning = "epochs of training the fresh model"
    strengths = (5, 10, 20)
    quick_strengths = (5,)
    chain_strength = 10
    settings = {"queries": "letters", "count": 2000, "lr": 0.05}
    search = {"queries": ("letters", "abstract", "noise"), "lr": (0.01, 0.05)}
    threat_model = "queries to the model's output probabilities on images of another domain; no data, no weights"

    def epochs(self, strength: float, context: AttackContext) -> int:
        return int(strength)

    def apply(self, model: Classifier, strength: float, context: AttackContext) -> Classifier:
        images = transfer_set(str(self.setting(context, "queries")), int(self.setting(context, "count")),
                              tuple(context.spec.input_shape), context.seed)
        soft = torch.softmax(predict_logits(model, images, device=context.train.device), dim=1)
        student = create_model(context.spec, seed=context.seed + 1)
        config = replace(context.train, epochs=int(strength), lr=float(self.setting(context, "lr")), schedule="step",
                         seed=context.seed)
        fit(student, images, soft, config, progress=context.progress, description="attack knockoff")
        return student.to("cpu").eval()
