"""Neural Cleanse (Wang et al., S&P 2019), as a removal attack: for every class, reverse-engineer
the smallest mask and pattern that send the thief's images there; classes whose trigger is
abnormally small (median-absolute-deviation anomaly index above 2; the smallest one if none is)
are taken for backdoors, and the model is fine-tuned to unlearn them — the thief's images
stamped with each reversed trigger, keeping their true labels. Strength is the number of epochs
of unlearning."""
from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F

from nnmark.attacks.base import Attack, AttackContext, clone, fine_tune, frozen_copy, register_attack
from nnmark.models.store import Classifier


def reverse_trigger(model: Classifier, images: torch.Tensor, target: int, steps: int, weight: float,
                    seed: int, batch: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """The mask (1, H, W) and pattern (C, H, W) found for ``target`` (both in [0, 1])."""
    generator = torch.Generator().manual_seed(seed)
    channels, height, width = images.shape[1:]
    mask_logit = torch.full((1, height, width), -3.0, requires_grad=True)
    pattern_logit = torch.zeros((channels, height, width), requires_grad=True)
    optimiser = torch.optim.Adam([mask_logit, pattern_logit], lr=0.1)
    labels = torch.full((batch,), target, dtype=torch.long)
    for _ in range(steps):
        x = images[torch.randint(0, len(images), (batch,), generator=generator)]
        mask, pattern = torch.sigmoid(mask_logit), torch.sigmoid(pattern_logit)
        stamped = (1 - mask) * x + mask * pattern
        loss = F.cross_entropy(model(stamped), labels[:len(x)]) + weight * mask.sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return torch.sigmoid(mask_logit).detach(), torch.sigmoid(pattern_logit).detach()


@register_attack("neural-cleanse")
class NeuralCleanse(Attack):
    summary = "reverse-engineer each class's trigger, unlearn the abnormally small ones (Wang et al. 2019)"
    strength_meaning = "epochs of unlearning"
    strengths = (1, 3, 5)
    quick_strengths = (1, 3)
    chain_strength = 3
    settings = {"steps": 40, "mask_weight": 0.01, "stamp_fraction": 0.2, "lr": None}
    search = {"mask_weight": (0.001, 0.01), "lr": (0.01, 0.05)}

    def epochs(self, strength: float, context: AttackContext) -> int:
        return int(strength)

    def apply(self, model: Classifier, strength: float, context: AttackContext) -> Classifier:
        data = context.data
        frozen = frozen_copy(model)
        triggers, norms = [], []
        for target in range(context.spec.num_classes):
            mask, pattern = reverse_trigger(frozen, data.train_x, target, int(self.setting(context, "steps")),
                                            float(self.setting(context, "mask_weight")), context.seed + target)
            triggers.append((mask, pattern))
            norms.append(float(mask.sum()))
        norms_t = torch.tensor(norms)
        median = norms_t.median()
        spread = 1.4826 * (norms_t - median).abs().median().clamp_min(1e-12)
        flagged = [c for c in range(len(norms)) if (median - norms_t[c]) / spread > 2] or [int(norms_t.argmin())]
        count = max(1, int(float(self.setting(context, "stamp_fraction")) * len(data.train_y)))
        generator = torch.Generator().manual_seed(context.seed)
        stamped_x, stamped_y = [], []
        for target in flagged:
            mask, pattern = triggers[target]
            rows = torch.randperm(len(data.train_y), generator=generator)[:count]
            stamped_x.append((1 - mask) * data.train_x[rows] + mask * pattern)
            stamped_y.append(data.train_y[rows])
        mixed = replace(data, train_x=torch.cat([data.train_x, *stamped_x]), train_y=torch.cat([data.train_y, *stamped_y]))
        attacked = fine_tune(clone(model), replace(context, data=mixed, settings={"lr": self.setting(context, "lr")}),
                             int(strength))
        attacked.flagged_classes = flagged  # what it found, for whoever inspects the attacked model
        return attacked.eval()
