"""Entangled watermarks (EWE): Jia, Choquette-Choo, Chandrasekaran and Papernot, "Entangled
Watermarks as a Defense against Model Extraction", USENIX Security 2021.

The key is in-distribution, as in the paper's "in" setting: training images of one *source* class
with a small white square stamped on them, all labelled with the *target* class. Training adds,
to the cross-entropy on those triggers, the paper's entangling term: −κ · Σ_l SNNL_l, the soft
nearest-neighbour loss (Frosst et al. 2019) of the hidden representations at a few layers, between
the triggers (one group) and clean images of the target class (the other), with cosine distance.
Maximising it makes the two groups indistinguishable to the model's features, so the trigger
behaviour rides on the features that also recognise the target class: the paper's argument is
that a model extracted from the outputs must learn those features and inherits the mark with
them. The SNNL temperature of each layer is learnt against the model, as in the paper: it moves
to where the two groups look most separable.

Verification is that of every one-target trigger set (``one_target.py``): the triggers sent to
the target, with probes shuffled in, against a null estimated on control models.

**Where we differ from the paper** (each a choice for a toolkit that trains the owner's model
once, with hooks): the triggers and clean target images are mixed into every batch of one
training run, not into separate watermark batches after a first clean phase; the stamp is placed
where the source and target classes' mean image is darkest (a data-only rule), where the paper
places it by the SNNL gradient of a model trained first and then perturbs the triggers on that
model; the entangled layers are the outputs of the model's last three activation modules (for
any ``nn.Module``; the paper names the last layers of its own networks). Whether the mark
survives extraction here is measured, not assumed (``docs/schemes/ewe.md``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nnmark.errors import NNMarkError
from nnmark.models.layers import layer_for
from nnmark.schemes.base import KeygenContext, register_scheme, require_tensor
from nnmark.schemes.key import WatermarkKey
from nnmark.schemes.one_target import OneTargetOptions, OneTargetScheme, distinct_indices
from nnmark.schemes.trigger_set import TriggerEmbedOptions, check_images
from nnmark.training.hooks import MixInSamples, StepOutputs, TrainingHook

ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.ELU, nn.Tanh, nn.Mish, nn.Hardswish)
ENTANGLED_LAYERS = 3  # the paper entangles three layers


@dataclass
class EWEOptions(OneTargetOptions):
    source: int = field(default=-1, metadata={"help": "Source class the triggers are made from (default: drawn)."})
    patch: int = field(default=0, metadata={
        "help": "Side of the white square, in pixels (default: a ninth of the image side, at least 2)."})
    entangle: int = field(default=128, metadata={
        "help": "Clean training images of the target class kept to entangle the triggers with."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.patch < 0 or self.entangle < 2:
            raise ValueError("patch must be 0 or more and entangle at least 2")


@dataclass
class EWEEmbedOptions(TriggerEmbedOptions):
    factor: float = field(default=1.0, metadata={"help": "Weight κ of the entangling term (SNNL)."})
    temperature: float = field(default=4.0, metadata={"help": "Starting SNNL temperature (cosine distance)."})
    temperature_lr: float = field(default=0.1, metadata={"help": "Step of the learnt log-temperature."})
    ramp: int = field(default=100, metadata={
        "help": "Steps over which the entangling weight rises from 0 to factor (the paper trains clean first)."})
    layers: str = field(default="", metadata={
        "help": "Comma-separated layer names to entangle (default: the last three activation modules)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.factor < 0 or self.temperature <= 0 or self.temperature_lr < 0 or self.ramp < 0:
            raise ValueError("factor, temperature_lr and ramp must be 0 or more, temperature positive")


def soft_nearest_neighbour_loss(features: torch.Tensor, groups: torch.Tensor,
                                temperature: torch.Tensor) -> torch.Tensor:
    """Frosst et al.'s SNNL on rectified, flattened features with cosine distance: high when each
    point's soft neighbours belong to the other group as often as to its own (entangled)."""
    x = F.normalize(features.float().flatten(1).relu(), dim=1)
    distance = 1 - x @ x.T
    kernel = torch.exp(-distance / temperature) * (1 - torch.eye(len(x), device=x.device))
    same = (groups[:, None] == groups[None, :]).float()
    share = (kernel * same).sum(1) / (kernel.sum(1) + 1e-5)
    return -torch.log(share + 1e-5).mean()


def is_activation(module: nn.Module) -> bool:
    """torch's activation modules, and libraries' own (transformers' ``GELUActivation``, ...)."""
    return isinstance(module, ACTIVATIONS) or type(module).__name__.endswith("Activation")


def last_activations(model: nn.Module, count: int = ENTANGLED_LAYERS) -> tuple[str, ...]:
    names = [name for name, module in model.named_modules() if is_activation(module)]
    if not names:
        raise NNMarkError("the model has no activation module (nn.ReLU, nn.GELU, ...) whose output EWE can "
                          "entangle: declare the layers (nnmark.declare_layers(model, entangle=[...])) or name "
                          "them (--embed layers=...)", field="--embed layers",
                          expected="comma-separated names from model.named_modules()")
    return tuple(names[-count:])


def entangled_layers(model: nn.Module) -> tuple[str, ...]:
    """The model's declared entangling layers, else its last three activation modules."""
    return tuple(layer_for(model, "entangle") or last_activations(model))


class EntangleHook(TrainingHook):
    """Mixes ``per_batch`` triggers and as many clean target images into every batch (both
    labelled with the target) and adds −κ·Σ SNNL between the two groups at the chosen layers.
    The learnt SNNL temperatures are its state (``state_dict``)."""

    adds_loss = True

    def __init__(self, triggers: torch.Tensor, entangle: torch.Tensor, target: int, options: EWEEmbedOptions,
                 seed: int = 0) -> None:
        self.triggers = MixInSamples(triggers, torch.full((len(triggers),), target), options.per_batch, seed)
        self.entangle = MixInSamples(entangle, torch.full((len(entangle),), target), options.per_batch, seed + 1)
        self.options = options
        self.layers = tuple(name.strip() for name in options.layers.split(",") if name.strip())
        self.log_temperature: torch.Tensor | None = None

    def feature_layers(self) -> tuple[str, ...]:
        return self.layers

    def setup(self, model: nn.Module, device: torch.device) -> None:
        self.triggers.setup(model, device)
        self.entangle.setup(model, device)
        if not self.layers:
            self.layers = entangled_layers(model)
        if self.log_temperature is None or len(self.log_temperature) != len(self.layers):
            self.log_temperature = torch.full((len(self.layers),), math.log(self.options.temperature))
        self.log_temperature = self.log_temperature.to(device)

    def shard(self, part: int, parts: int) -> None:
        self.triggers.shard(part, parts)
        self.entangle.shard(part, parts)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {} if self.log_temperature is None else {"log_temperature": self.log_temperature.detach().clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if "log_temperature" in state:
            device = self.log_temperature.device if self.log_temperature is not None else torch.device("cpu")
            self.log_temperature = torch.as_tensor(state["log_temperature"], dtype=torch.float32).to(device)

    def extra_samples(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        trigger_x, trigger_y = self.triggers.extra_samples(step)
        entangle_x, entangle_y = self.entangle.extra_samples(step)
        self._count = len(trigger_y)
        return torch.cat([trigger_x, entangle_x]), torch.cat([trigger_y, entangle_y])

    def extra_loss(self, model: nn.Module, outputs: StepOutputs) -> torch.Tensor | None:
        rows = outputs.rows_of(self)
        if rows is None or self.options.factor == 0:
            return None
        groups = torch.zeros(rows.stop - rows.start, device=outputs.logits.device)
        groups[:self._count] = 1
        temperature = self.log_temperature.exp()
        parts = [outputs.features[name][rows] for name in self.layers]
        entangling = sum(soft_nearest_neighbour_loss(part, groups, temperature[i]) for i, part in enumerate(parts))
        if self.options.temperature_lr > 0:
            # The temperature plays against the model: it steps to where the groups separate most.
            log_t = self.log_temperature.clone().requires_grad_(True)
            with torch.enable_grad():
                separation = sum(soft_nearest_neighbour_loss(part.detach(), groups, log_t[i].exp())
                                 for i, part in enumerate(parts))
                (gradient,) = torch.autograd.grad(separation, log_t)
            self.log_temperature = (self.log_temperature - self.options.temperature_lr * gradient).clamp(-7, 7)
        weight = self.options.factor * min(1.0, (outputs.step + 1) / (self.options.ramp + 1))
        return -weight * entangling


@register_scheme("ewe")
class EntangledWatermark(OneTargetScheme):
    summary = ("source-class images with a white square, entangled with the target class's features by a "
               "soft-nearest-neighbour loss (Jia et al. 2021)")
    KeygenOptions = EWEOptions
    EmbedOptions = EWEEmbedOptions

    def resolve_options(self, options: EWEOptions, target: int, context: KeygenContext,
                        generator: torch.Generator) -> EWEOptions:
        source = options.source
        if source < 0:
            others = [c for c in range(context.num_classes) if c != target]
            source = others[int(torch.randint(0, len(others), (1,), generator=generator))]
        if not 0 <= source < context.num_classes or source == target:
            raise NNMarkError("source class out of range or equal to the target", field="source",
                              expected=f"a class in 0..{context.num_classes - 1} other than {target}", got=source)
        side = options.patch or max(2, round(min(context.input_shape[1:]) / 9))
        if side > min(context.input_shape[1:]):
            raise NNMarkError("patch larger than the image", field="patch",
                              expected=f"at most {min(context.input_shape[1:])}", got=side)
        return replace(options, target=target, source=source, patch=side)

    def may_carry_trigger(self, labels: torch.Tensor, options: EWEOptions) -> torch.Tensor:
        return labels == options.source

    def make_triggers(self, sources, context: KeygenContext, options: EWEOptions, generator):
        dataset = context.dataset
        target = options.target  # resolved with the source
        of_target = distinct_indices(dataset.train_x, torch.nonzero(dataset.train_y == target).flatten())
        if len(of_target) < 2:
            raise NNMarkError(f"dataset '{dataset.name}' has fewer than 2 images of the target class {target}",
                              field="target")
        kept = of_target[torch.randperm(len(of_target), generator=generator)[:options.entangle]]
        of_source = dataset.train_x[dataset.train_y == options.source]
        top, left = darkest_window(torch.cat([of_source.mean(0), dataset.train_x[of_target].mean(0)]),
                                   options.patch)
        position = torch.tensor([top, left, options.patch], dtype=torch.int64)
        return (stamp_square(sources, top, left, options.patch),
                {"stamp_position": position, "entangle_inputs": dataset.train_x[kept].float().clone()})

    def restamp(self, key: WatermarkKey, clean: torch.Tensor) -> torch.Tensor:
        top, left, side = self.stamp_position(key)
        return stamp_square(clean, top, left, side)

    def stamp_position(self, key: WatermarkKey) -> tuple[int, int, int]:
        top, left, side = require_tensor(key, "stamp_position", torch.int64, 1).tolist()
        _, height, width = key.input_shape
        if not (side >= 1 and 0 <= top <= height - side and 0 <= left <= width - side):
            raise NNMarkError("the stamp does not fit the image", field="stamp_position",
                              expected=f"top, left and side inside {height}x{width}", got=[top, left, side])
        return top, left, side

    def validate_key(self, key: WatermarkKey) -> None:
        if len(key.tensors.get("stamp_position", ())) != 3:
            raise NNMarkError("an ewe key records where its stamp is", field="stamp_position",
                              expected="three integers: top, left, side")
        super().validate_key(key)
        entangle = require_tensor(key, "entangle_inputs", torch.float32, 4)
        if tuple(entangle.shape[1:]) != tuple(key.input_shape) or len(entangle) < 2:
            raise NNMarkError("entangling images do not have the key's input shape", field="entangle_inputs",
                              expected=f"at least 2 of {list(key.input_shape)}")
        check_images(entangle, "entangle_inputs")
        source = key.params.get("source")
        if not isinstance(source, int) or not 0 <= source < key.num_classes or source == self.target(key):
            raise NNMarkError("an ewe key names its source class", field="params.source",
                              expected=f"a class other than the target in 0..{key.num_classes - 1}", got=source)

    def hooks(self, key: WatermarkKey, options: EWEEmbedOptions, seed: int = 0) -> list[TrainingHook]:
        self.check_key(key)
        inputs, _ = self.triggers(key)
        return [EntangleHook(inputs, key.tensors["entangle_inputs"], self.target(key), options, seed)]

    def recommended_embed_options(self, train_size: int) -> dict[str, Any]:
        """The paper feeds half-batches of triggers and target images. Here 8 of each join every
        batch: on digits (batch 64), 16 of each cost a point and a half of test accuracy by
        over-weighting the target class alone (measured with the entangling term off); 8 cost
        none (docs/schemes/ewe.md)."""
        return {"per_batch": 8}

    def key_summary(self, key: WatermarkKey) -> dict[str, Any]:
        top, left, side = self.stamp_position(key)
        return {"source": key.params["source"], "target": self.target(key),
                "stamp": f"{side}x{side} white square at row {top}, column {left}"}


def darkest_window(mean_images: torch.Tensor, side: int) -> tuple[int, int]:
    """Top-left corner of the side×side window where the mean images (stacked channels) are darkest."""
    totals = F.avg_pool2d(mean_images.sum(0, keepdim=True)[None], side, stride=1)[0, 0]
    index = int(torch.argmin(totals))
    return index // totals.shape[1], index % totals.shape[1]


def stamp_square(images: torch.Tensor, top: int, left: int, side: int) -> torch.Tensor:
    stamped = images.clone()
    stamped[:, :, top:top + side, left:left + side] = 1.0
    return stamped
