"""What ``nnmark list`` shows: every registered dataset, architecture, attack and scheme."""
from __future__ import annotations

from typing import Any


def components() -> dict[str, Any]:
    from nnmark.attacks import ATTACKS
    from nnmark.data.base import dataset_names
    from nnmark.models.registry import MODELS
    from nnmark.schemes.base import SCHEMES

    return {"datasets": dataset_names(), "models": MODELS.names(), "attacks": ATTACKS.names(),
            "schemes": [(name, SCHEMES.get(name).access, SCHEMES.get(name).summary) for name in SCHEMES.names()]}
