"""Weight signature: Uchida et al., "Embedding Watermarks into Deep Neural Networks", ICMR 2017
(seed 004).

Key: a T-bit message b and a secret projection matrix X (T x M, standard normal — the paper's
"random" embedding, its best) for one convolution layer. The embedded vector w̄ is that layer's
weight averaged over the output-channel axis (length M = in_channels x kh x kw). Beyond the paper,
a linear layer's weight serves the same way (averaged over its outputs, M = in_features), so
models without convolutions (a transformer) can carry a signature.
Embedding adds λ·Σ BCE(σ(X·w̄), b) — the sum over bits, as in the paper — to the task loss, so it
works wherever training does: from scratch, fine-tuning, distillation.
Verification reads the layer (white-box), extracts b̂ = [X·w̄ > 0] and counts matching bits. For
a model made without the key the projections of its w̄ onto the rows of an independent Gaussian X
are positive or negative with probability 1/2 each, independently — an exact null of
Binomial(T, 1/2). That rests on X being random and independent of the suspect: the verifier
redraws X from the key's seed and refuses a key whose X (or seed-drawn bits) differ, and a
projection of exactly zero (a zeroed layer) counts as a mismatch rather than as bit 0.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from nnmark.errors import MarkNotFound, NNMarkError
from nnmark.models.layers import layer_for
from nnmark.models.store import create_model
from nnmark.schemes.base import (
    KeygenContext,
    WatermarkScheme,
    key_indices,
    register_scheme,
    require_tensor,
)
from nnmark.schemes.key import WatermarkKey
from nnmark.training.hooks import StepOutputs, TrainingHook
from nnmark.verification.evidence import SignatureEvidence
from nnmark.verification.suspects import Suspect


@dataclass
class UchidaKeygenOptions:
    bits: int = field(default=256, metadata={"help": "Length T of the signature (the paper: 256)."})
    layer: str = field(default="", metadata={
        "help": "Weight to carry it, e.g. net.features.10.weight (default: the model's declared signature layer, "
                "else the conv or linear weight nearest the middle of the network with at least T inputs)."})
    message: str = field(default="", metadata={
        "help": "Derive the bits from this text (e.g. the owner's name) instead of the seed."})

    def __post_init__(self) -> None:
        if self.bits < 8:
            raise ValueError("bits must be at least 8")


@dataclass
class UchidaEmbedOptions:
    strength: float = 0.01  # λ (the paper: 0.01)

    def __post_init__(self) -> None:
        if self.strength <= 0:
            raise ValueError("strength must be positive")


def message_bits(message: str, count: int) -> torch.Tensor:
    """``count`` bits from SHAKE-256 of the message: any text becomes a balanced-looking bit string."""
    raw = hashlib.shake_256(message.encode("utf-8")).digest((count + 7) // 8)
    bits = [(byte >> (7 - i)) & 1 for byte in raw for i in range(8)][:count]
    return torch.tensor(bits, dtype=torch.float32)


def signable_weights(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Convolution kernels and linear weights, the output layer excluded (its rows are the classes)."""
    weights = [(name, p) for name, p in model.named_parameters() if p.ndim in (2, 4)]
    linear = [i for i, (_, p) in enumerate(weights) if p.ndim == 2]
    return [pair for i, pair in enumerate(weights) if not linear or i != linear[-1]]


def averaged_weight(weight: torch.Tensor) -> torch.Tensor:
    return weight.float().mean(dim=0).flatten()


def choose_layer(model: nn.Module, bits: int) -> str:
    """The model's declared signature layer, else the weight nearest the middle of the network
    with at least ``bits`` inputs per output."""
    declared = layer_for(model, "signature")
    weights = dict(model.named_parameters())
    if declared is not None and weights[declared][0].numel() >= bits:
        return declared
    candidates = signable_weights(model)
    if not candidates:
        raise NNMarkError("the model has no convolution or linear weight to carry a weight signature")
    wide = [i for i, (_, w) in enumerate(candidates) if w[0].numel() >= bits]
    if not wide:
        largest = max(w[0].numel() for _, w in candidates)
        raise NNMarkError(f"no weight has {bits} inputs per output (largest: {largest})",
                          field="bits", expected=f"at most {largest}", got=bits)
    middle = (len(candidates) - 1) / 2
    return candidates[min(wide, key=lambda i: (abs(i - middle), -i))][0]


def find_weight(model: nn.Module, key: WatermarkKey, chosen: str | None = None) -> tuple[torch.Tensor, str, str]:
    """The keyed weight in ``model``: the layer of the key's name and shape, or the one the verifier
    names (``chosen``). Nothing else is guessed: a suspect whose layer of that name is missing, or
    has another shape, is refused, because reading some other layer of the same shape would give
    a verdict about a weight the signature was never in."""
    shape = tuple(key.params["weight_shape"])
    named = dict(model.named_parameters())
    name = key.params["layer"]
    if chosen is not None:
        if chosen not in named or tuple(named[chosen].shape) != shape:
            found = list(named[chosen].shape) if chosen in named else "no such layer"
            raise MarkNotFound(f"the suspect's layer '{chosen}' named for the signature is not a weight of the "
                               f"key's shape {list(shape)}", field="--layer", got=found)
        return named[chosen], chosen, "named by the verifier"
    if name in named and tuple(named[name].shape) == shape:
        return named[name], name, "name"
    same_shape = [n for n, p in named.items() if tuple(p.shape) == shape]
    has = f"its '{name}' has shape {list(named[name].shape)}" if name in named else f"it has no '{name}'"
    candidates = (f"; weights of the key's shape: {', '.join(same_shape[:8])}{' ...' if len(same_shape) > 8 else ''}"
                  if same_shape else "; no weight of the suspect has the key's shape")
    raise MarkNotFound(f"cannot verify: the signature is in layer '{name}' of shape {list(shape)}, and {has}"
                       f"{candidates}. If you know which of the suspect's layers is the signed one (a renamed "
                       "copy), name it (--layer NAME)", field="layer")


class SignatureRegulariser(TrainingHook):
    adds_loss = True

    def __init__(self, key: WatermarkKey, strength: float) -> None:
        self.key, self.strength = key, strength

    def setup(self, model: nn.Module, device: torch.device) -> None:
        self.weight, _, _ = find_weight(model, self.key)
        self.projection = self.key.tensors["projection"].to(device)
        self.bits = self.key.tensors["bits"].to(device)

    def extra_loss(self, model: nn.Module, outputs: StepOutputs) -> torch.Tensor:
        logits = self.projection @ averaged_weight(self.weight)
        return self.strength * F.binary_cross_entropy_with_logits(logits, self.bits, reduction="sum")


@register_scheme("uchida")
class UchidaSignature(WatermarkScheme):
    access = "white-box"
    summary = "a T-bit signature in one layer's weights via a regulariser (Uchida et al. 2017)"
    needs = frozenset({"model"})
    KeygenOptions = UchidaKeygenOptions
    EmbedOptions = UchidaEmbedOptions
    item_tensors = ("projection", "bits")

    def keygen(self, context: KeygenContext, options: UchidaKeygenOptions) -> WatermarkKey:
        """For the model itself (``context.classifier``, any module) or the architecture it is built
        from (``context.model_spec``); only its layer shapes are read."""
        if context.classifier is not None:
            model, architecture = context.classifier, type(context.classifier).__name__
        else:
            spec = context.model_spec
            model, architecture = create_model(spec, seed=0), spec.architecture
        layer = options.layer or choose_layer(model, options.bits)
        named = dict(model.named_parameters())
        if layer not in named or named[layer].ndim not in (2, 4):
            raise NNMarkError(f"'{layer}' is not a convolution or linear weight of '{architecture}'", field="layer",
                              expected=", ".join(n for n, _ in signable_weights(model)[:12]))
        weight_shape = list(named[layer].shape)
        length = named[layer][0].numel()
        projection, bits = draw(options.bits, length, context.seed)
        if options.message:
            bits = message_bits(options.message, options.bits)
        params = {"bits": options.bits, "layer": layer, "weight_shape": weight_shape,
                  "architecture": architecture, "seed": context.seed,
                  "bits_from": "message" if options.message else "seed"}
        return WatermarkKey(self.name, context.num_classes, context.input_shape,
                            {"projection": projection, "bits": bits}, params)

    def hooks(self, key: WatermarkKey, options: UchidaEmbedOptions, seed: int = 0) -> list[TrainingHook]:
        self._tensors(key)
        return [SignatureRegulariser(key, options.strength)]

    def _tensors(self, key: WatermarkKey) -> tuple[torch.Tensor, torch.Tensor]:
        projection = require_tensor(key, "projection", torch.float32, 2)
        bits = require_tensor(key, "bits", torch.float32, 1)
        if projection.shape[0] != len(bits):
            raise NNMarkError("projection rows and bit count differ", field="projection")
        return projection, bits

    def validate_key(self, key: WatermarkKey) -> None:
        super().validate_key(key)
        projection, bits = self._tensors(key)
        if not bool(((bits == 0) | (bits == 1)).all()):
            raise NNMarkError("signature bits must be 0 or 1", field="bits")
        shape, seed, count = key.params.get("weight_shape"), key.params.get("seed"), key.params.get("bits")
        if (not isinstance(shape, list) or len(shape) not in (2, 4) or not all(isinstance(v, int) and v > 0 for v in shape)
                or not isinstance(seed, int) or isinstance(seed, bool) or seed < 0
                or not isinstance(count, int) or count < 1):
            raise NNMarkError("a uchida key records its layer shape, seed and bit count",
                              field="params.weight_shape/seed/bits", got=[shape, seed, count])
        expected_projection, expected_bits = draw(count, math.prod(shape[1:]), seed)
        indices = key_indices(key)
        if indices is not None:
            expected_projection, expected_bits = expected_projection[indices], expected_bits[indices]
        if projection.shape != expected_projection.shape or not torch.equal(projection, expected_projection):
            raise NNMarkError("the projection matrix is not the one drawn from the key's seed: a matrix "
                              "chosen by hand could read any signature out of any model", field="projection")
        if key.params.get("bits_from") == "seed" and not torch.equal(bits, expected_bits):
            raise NNMarkError("signature bits are not the ones drawn from the key's seed", field="bits")

    def exact_null_rate(self, key: WatermarkKey) -> float:
        return 0.5

    def statistic(self, key: WatermarkKey) -> str:
        return "signature bits recovered"

    def exact_null_source(self, key: WatermarkKey) -> str:
        return "exact: signs of projections onto an independent Gaussian matrix are fair coins"

    def extract(self, suspect: Suspect, key: WatermarkKey) -> SignatureEvidence:
        module = suspect.module
        if module is None:
            raise NNMarkError(f"scheme '{self.name}' reads weights: suspect '{suspect.description}' "
                              "exposes none (give a model file, not an endpoint)")
        projection, bits = self._tensors(key)
        weight, name, matched_by = find_weight(module, key, getattr(suspect, "named_layer", None))
        with torch.no_grad():
            values = weight.detach().cpu()
            if not bool(torch.isfinite(values).all()):
                raise NNMarkError(f"the suspect's layer '{name}' holds NaN or infinite weights", field="layer")
            projected = projection @ averaged_weight(values)
        hits = ((projected > 0) & (bits == 1)) | ((projected < 0) & (bits == 0))
        return SignatureEvidence((projected > 0).float(), bits, hits.int(), int((projected == 0).sum()), name,
                                 matched_by)


def draw(bits: int, length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The projection matrix X (bits x length, standard normal) and random bits, from ``seed``."""
    generator = torch.Generator().manual_seed(seed % 2**64)
    projection = torch.randn(bits, length, generator=generator)
    return projection, torch.randint(0, 2, (bits,), generator=generator).float()
