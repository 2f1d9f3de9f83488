"""Model extraction with out-of-distribution queries (Orekondy et al. 2019, Knockoff Nets): a fresh
model trained only on the victim's outputs for images the thief draws from another domain,
without any of the victim's training data. The transfer set is the thief's own images of another
domain when the context holds them (``AttackContext.transfer``, e.g. CIFAR-10 in grey for a digits
model: ``nnmark bench --transfer-data cifar10``), else procedural ones (letters, abstract images
or noise; no download). Strength is the number of epochs."""
from __future__ import annotations

from dataclasses import replace

import torch

from nnmark.attacks.base import Attack, AttackContext, register_attack
from nnmark.errors import NNMarkError
from nnmark.models.inference import predict_logits
from nnmark.models.store import Classifier, create_model
from nnmark.training.trainer import fit


PROCEDURAL_COUNT = 2000


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
    raise NNMarkError(f"unknown transfer set '{kind}'", field="queries", expected="letters, abstract, noise, transfer or transfer-edges")


@register_attack("knockoff")
class Knockoff(Attack):
    summary = "train a fresh model on the victim's outputs for out-of-domain queries (Knockoff Nets)"
    uses_training_data = False
    extraction = True
    uses_transfer = True
    strength_meaning = "epochs of training the fresh model"
    # 30 epochs: a thief of 50,000 natural images needs them to come within 5 points on digits.
    strengths = (5, 10, 20, 30)
    quick_strengths = (5,)
    chain_strength = 10
    # queries "auto": the thief's transfer images when it holds some, else letters; "transfer-edges":
    # the transfer images as edge maps (nnmark.data.transfer.edge_images). count: how many
    # procedural images to draw (transfer images are used whole unless count is set).
    settings = {"queries": "auto", "count": None, "lr": 0.05}
    search = {"queries": ("letters", "abstract", "noise"), "lr": (0.01, 0.05)}
    threat_model = "queries to the model's output probabilities on images of another domain; no data, no weights"

    def search_grid(self, holds_transfer: bool) -> dict[str, tuple]:
        if not holds_transfer:
            return self.search
        return {**self.search, "queries": ("transfer", "transfer-edges", *self.search["queries"])}

    def epochs(self, strength: float, context: AttackContext) -> int:
        return int(strength)

    def source(self, context: AttackContext) -> str:
        kind = str(self.setting(context, "queries"))
        if kind == "auto":
            return "letters" if context.transfer is None else "transfer"
        return kind

    def queries(self, context: AttackContext) -> torch.Tensor:
        kind = self.source(context)
        count = self.setting(context, "count")
        if kind not in ("transfer", "transfer-edges"):
            return transfer_set(kind, PROCEDURAL_COUNT if count is None else int(count),
                                tuple(context.spec.input_shape), context.seed)
        if context.transfer is None:
            raise NNMarkError("the thief holds no transfer images", field="queries",
                              expected="transfer images in the attack context (--transfer-data), or letters, "
                                       "abstract or noise")
        images = context.transfer
        if tuple(images.shape[1:]) != tuple(context.spec.input_shape):
            raise NNMarkError(f"transfer images are {list(images.shape[1:])}; the victim takes "
                              f"{list(context.spec.input_shape)}", field="transfer")
        if count is not None and int(count) < len(images):
            keep = torch.randperm(len(images), generator=torch.Generator().manual_seed(context.seed))[:int(count)]
            images = images[keep]
        if kind == "transfer-edges":
            from nnmark.data.transfer import edge_images

            images = edge_images(images)
        return images

    def apply(self, model: Classifier, strength: float, context: AttackContext) -> Classifier:
        images = self.queries(context)
        soft = torch.softmax(predict_logits(model, images, device=context.train.device), dim=1)
        student = create_model(context.spec, seed=context.seed + 1)
        config = replace(context.train, epochs=int(strength), lr=float(self.setting(context, "lr")), schedule="step",
                         seed=context.seed)
        fit(student, images, soft, config, progress=context.progress, description="attack knockoff")
        student = student.to("cpu").eval()
        facts = {"queries": len(images), "query_source": self.source(context)}
        # Read by the bench and the demo (workflows.attack): what the thief queried, beside its settings.
        student.attack_facts = lambda test_images: facts
        return student
