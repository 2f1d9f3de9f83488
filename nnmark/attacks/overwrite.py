"""Overwriting: the attacker embeds a watermark of its own, of the victim's scheme, by
fine-tuning the stolen model with a fresh key on its data — hoping the owner's mark is pushed out
(and that it can claim the model itself). Strength is the number of epochs."""
from __future__ import annotations

from dataclasses import replace

from nnmark.attacks.base import Attack, AttackContext, clone, register_attack
from nnmark.errors import NNMarkError
from nnmark.models.store import Classifier
from nnmark.schemes.base import KeygenContext, get_scheme
from nnmark.training.trainer import fit


@register_attack("overwrite")
class Overwrite(Attack):
    threat_model = "a white-box copy, a share of the training data, and the victim's scheme (not its key)"
    summary = "fine-tune with the attacker's own watermark of the same scheme"
    strength_meaning = "epochs of embedding the attacker's key"
    strengths = (1, 5, 10)
    quick_strengths = (5,)
    chain_strength = 5

    def epochs(self, strength: float, context: AttackContext) -> int:
        return int(strength)

    def apply(self, model: Classifier, strength: float, context: AttackContext) -> Classifier:
        if context.victim_key is None:
            raise NNMarkError("overwrite needs to know the victim's scheme")
        scheme = get_scheme(context.victim_key.scheme)
        spec = context.spec
        # The thief holds the stolen model: a scheme that keys off a trained classifier uses it.
        keygen_context = KeygenContext(spec.num_classes, tuple(spec.input_shape), context.seed + 424242,
                                       context.data, spec, model)
        options = scheme.make_options("keygen", {})
        keygen_context.require(scheme.name, scheme.requirements(options))
        own_key = scheme.keygen(keygen_context, options)
        embed = scheme.recommended_embed_options(len(context.data.train_y))
        hooks = scheme.hooks(own_key, scheme.make_options("embed", embed), seed=context.seed)
        attacked = clone(model)
        config = replace(context.train, epochs=int(strength), seed=context.seed)
        fit(attacked, context.data.train_x, context.data.train_y, config, augmentation=context.data.augmentation,
            hooks=hooks, progress=context.progress, description="attack overwrite")
        return attacked.to("cpu").eval()
