"""Removal attacks: each maps a model to a model; chains compose them (``a+b+c``)."""
from nnmark.attacks import (  # noqa: F401 - modules register their attacks
    distill,
    fine_prune,
    finetune,
    input_transform,
    overwrite,
    prune,
    quantize,
    weight_noise,
)
from nnmark.attacks.base import (
    ATTACKS,
    Attack,
    AttackContext,
    AttackStep,
    get_attack,
    parse_chain,
    register_attack,
    run_chain,
)

__all__ = ["ATTACKS", "Attack", "AttackContext", "AttackStep", "get_attack", "parse_chain",
           "register_attack", "run_chain"]
