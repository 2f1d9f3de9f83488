"""Removal attacks: each maps a model to a model; chains compose them (``a+b+c``)."""
from nnmark.registry import import_plugins
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

import_plugins(__name__, __path__)  # each attack module registers itself
