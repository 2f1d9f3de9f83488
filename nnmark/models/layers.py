"""Which layers of a model a scheme may use, declared by the model rather than guessed by the
scheme, the way timm's model configs say what a model is.

Roles:

* ``signature``: the weight (a parameter name) a weight signature is written into (Uchida et al.);
* ``features``: the layers (module names) whose outputs are the model's feature maps, coarse to
  fine (the encoder/decoder scheme's content distance reads them);
* ``inject``: the layer (a module name) whose output decode&inject adds its tensor to;
* ``entangle``: the layers (module names) whose outputs EWE entangles.

An architecture of ours declares them in a class attribute ``nnmark_layers``, with names relative
to itself. A user's own module declares them with one call, :func:`declare_layers`. Whoever needs a
role asks :func:`layer_for`, which finds the declaration on the model or on a module inside it
(our ``Classifier`` wraps the network as ``net``) and gives the full name within the model.
A role that is not declared is None: the scheme then chooses by a rule of its own, or asks for it.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from nnmark.errors import NNMarkError

ROLES = {
    "signature": "a weight (parameter name) to carry a weight signature",
    "features": "the layers (module names) whose outputs are the model's feature maps",
    "inject": "the layer (module name) decode&inject adds its tensor to",
    "entangle": "the layers (module names) whose outputs EWE entangles",
}
MANY = ("features", "entangle")  # roles that name several layers


def declare_layers(model: nn.Module, **roles: Any) -> nn.Module:
    """Say which of ``model``'s layers play which role (names as in ``model.named_modules()``, a
    parameter name for ``signature``); returns ``model``. Names are checked now."""
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise NNMarkError(f"unknown layer role(s) {', '.join(unknown)}", field="roles", expected=", ".join(ROLES))
    modules = dict(model.named_modules())
    parameters = dict(model.named_parameters())
    table = dict(getattr(model, "nnmark_layers", None) or {})
    for role, value in roles.items():
        if value is None:
            continue
        names = tuple(value) if role in MANY and not isinstance(value, str) else (value,)
        known = parameters if role == "signature" else modules
        missing = [name for name in names if name not in known]
        if missing or not names:
            kind = "parameter" if role == "signature" else "layer"
            raise NNMarkError(f"the model has no {kind} {', '.join(missing) or '(none given)'} for role '{role}'",
                              field=role, expected=", ".join(list(known)[:10]))
        if role == "signature" and parameters[names[0]].ndim not in (2, 4):
            raise NNMarkError("a signature is written into a linear or convolution weight", field="signature",
                              got=list(parameters[names[0]].shape))
        table[role] = names if role in MANY else names[0]
    model.nnmark_layers = table
    return model


def declared_layers(model: nn.Module) -> dict[str, Any]:
    """Every declared role of ``model``, with names as full names within ``model``."""
    for prefix, module in model.named_modules():
        table = getattr(module, "nnmark_layers", None)
        if table:
            join = (lambda name: f"{prefix}.{name}") if prefix else (lambda name: name)
            return {role: tuple(join(n) for n in value) if role in MANY else join(value)
                    for role, value in table.items()}
    return {}


def layer_for(model: nn.Module, role: str) -> Any:
    """The declared layer (or layers) of ``role`` in ``model``, as full names; None if undeclared."""
    if role not in ROLES:
        raise NNMarkError(f"unknown layer role '{role}'", field="role", expected=", ".join(ROLES))
    return declared_layers(model).get(role)
