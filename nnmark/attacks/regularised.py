"""Regularised fine-tuning (Shafieinejad et al. 2021, "On the robustness of backdoor-based
watermarking in deep neural networks"): fine-tune all layers at a high rate under strong weight
decay, which pulls the weights toward zero and erases what the small task signal does not
renew, then fine-tune at the usual rate without it to win accuracy back. Strength is the number
of epochs of each phase."""
from __future__ import annotations

from dataclasses import replace

from nnmark.attacks.base import Attack, AttackContext, clone, fine_tune, register_attack
from nnmark.models.store import Classifier


@register_attack("regularised")
class RegularisedFineTune(Attack):
    summary = "fine-tune under strong weight decay at a high rate, then recover (Shafieinejad et al. 2021)"
    strength_meaning = "epochs of each phase (regularised, then recovery)"
    strengths = (2, 5, 10)
    quick_strengths = (2, 5)
    chain_strength = 5
    settings = {"lr": 0.05, "weight_decay": 0.01}
    search = {"lr": (0.01, 0.05, 0.1), "weight_decay": (0.005, 0.02)}

    def epochs(self, strength: float, context: AttackContext) -> int:
        return 2 * int(strength)

    def apply(self, model: Classifier, strength: float, context: AttackContext) -> Classifier:
        attacked = clone(model)
        harsh = replace(context, settings={"lr": self.setting(context, "lr"),
                                           "weight_decay": self.setting(context, "weight_decay")})
        attacked = fine_tune(attacked, harsh, int(strength))
        recover = replace(context, settings={}, seed=context.seed + 1)
        return fine_tune(attacked, recover, int(strength))
