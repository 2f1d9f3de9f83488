"""Trigger set of abstract images with random labels: Adi et al., "Turning Your Weakness Into a
Strength: Watermarking Deep Neural Networks by Backdooring", USENIX Security 2018 (seeds 000, 001).

Where we differ: the paper used a fixed set of abstract-art pictures; we draw abstract images
procedurally from the key's seed (``abstract_images``), so keys need no download.
Labels are uniform over the K classes and independent of the images, which is what makes 1/K the
exact chance rate of agreement for any model trained without the key. Images and labels are
both drawn from the key's seed, and a verifier redraws them: a key whose labels were picked to
match what models tend to answer (which would frame anyone) is refused.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from nnmark.errors import NNMarkError
from nnmark.schemes.abstract_images import abstract_images
from nnmark.schemes.base import KeygenContext, key_indices, register_scheme
from nnmark.schemes.key import WatermarkKey
from nnmark.schemes.imported import AUTHORS_PAIRING, FITS, FLAT_PAIRING, image_files, read_images, read_labels
from nnmark.schemes.trigger_set import TriggerSetScheme, require_image_shape


@dataclass
class AdiKeygenOptions:
    size: int = field(default=100, metadata={"help": "Number of trigger images (the paper: 100); with --images, theirs."})
    images: str = field(default="", metadata={
        "help": "A folder of trigger images of your own (any format PIL reads), or the authors' published set "
                "(class folders; names sorted as strings, as their loader reads them)."})
    labels: str = field(default="", metadata={
        "help": "Their labels: one class per line, paired with the images by position as the authors' loader "
                "pairs them, or 'name label' lines (default: drawn uniformly from secret randomness)."})
    labels_drawn: str = field(default="", metadata={
        "help": "'uniform' states that the labels you give were drawn uniformly at random, independently of the "
                "images: the null is then exact under your statement, and keygen screens them (--data, "
                "--screen-models). Default: the null of labels you give is measured on control models."})
    fit: str = field(default="", metadata={
        "help": "resize or center-crop the images to the input shape (default: center-crop for class folders, "
                "as the authors' CenterCrop(32); resize otherwise)."})

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError("size must be at least 1")
        if self.labels_drawn not in ("", "uniform"):
            raise ValueError("labels_drawn must be 'uniform' (or left out)")
        if self.fit not in ("", *FITS):
            raise ValueError(f"fit must be one of {', '.join(FITS)}")
        if (self.labels or self.labels_drawn or self.fit) and not self.images:
            raise ValueError("labels, labels_drawn and fit apply to images you give (images=...)")
        if self.labels_drawn and not self.labels:
            raise ValueError("labels_drawn states how labels you give were drawn: give the labels too")


SCREENING_P = 0.01  # labels keyless models agree with beyond chance at this level are refused


@register_scheme("adi")
class AdiTriggerSet(TriggerSetScheme):
    summary = "abstract images with random labels mixed into training (Adi et al. 2018)"
    KeygenOptions = AdiKeygenOptions

    def keygen(self, context: KeygenContext, options: AdiKeygenOptions) -> WatermarkKey:
        require_image_shape(context.input_shape, self.name)
        if options.labels_drawn:
            raise NNMarkError("labels stated to be drawn uniformly are screened first: keyless models must not agree "
                              "with them beyond chance. Give --data and --screen-models (e.g. 6)",
                              field="labels_drawn")
        if options.images:
            return self._imported(context, options)
        inputs, labels = draw(options.size, context.num_classes, context.input_shape, context.seed)
        return WatermarkKey(self.name, context.num_classes, context.input_shape,
                            {"inputs": inputs, "labels": labels},
                            {"size": options.size, "seed": context.seed})

    def keygen_screened(self, context: KeygenContext, options: AdiKeygenOptions, models: list) -> WatermarkKey:
        """Labels the key maker brings and states were drawn uniformly: refused where keyless models
        agree with them beyond chance (a dishonest maker could pick the answers models already give)."""
        if not options.labels_drawn:
            return self.keygen(context, options)
        require_image_shape(context.input_shape, self.name)
        key = self._imported(context, options)
        inputs, labels = self.triggers(key)
        agreements = [int((model.predict(inputs).cpu() == labels).sum()) for model in models]
        from scipy import stats

        chance = 1.0 / key.num_classes
        p_value = float(stats.binomtest(sum(agreements), len(models) * len(labels), chance,
                                        alternative="greater").pvalue)
        if p_value < SCREENING_P:
            raise NNMarkError(f"{len(models)} keyless models agree with these labels more often than chance "
                              f"({agreements} of {len(labels)} each; chance is {chance:.3g}, p = {p_value:.2g}): labels "
                              "that models already give would accuse innocent models. Draw them at random",
                              path=options.labels, field="labels")
        key.params["label_screening"] = {"models": len(models), "agreements": agreements, "p_value": p_value}
        return key

    def _imported(self, context: KeygenContext, options: AdiKeygenOptions) -> WatermarkKey:
        files, layout = image_files(Path(options.images))
        fit = options.fit or ("center-crop" if layout == "class folders" else "resize")
        inputs = read_images(files, tuple(context.input_shape), fit)
        if options.labels:
            labels, pairing = read_labels(Path(options.labels), files, context.num_classes)
            pairing = pairing or (AUTHORS_PAIRING if layout == "class folders" else FLAT_PAIRING)
        else:
            labels = draw_labels(len(files), context.num_classes, context.seed)
            pairing = "none: labels drawn uniformly from the key's secret seed"
        root = Path(options.images)
        return WatermarkKey(self.name, context.num_classes, context.input_shape, {"inputs": inputs, "labels": labels},
                            {"size": len(files), "seed": context.seed, "images_from": "user",
                             "images": {"layout": layout, "fit": fit,
                                        "files": [str(f.relative_to(root)) for f in files]},
                             "labels_from": "user" if options.labels else "seed", "pairing": pairing,
                             "labels_drawn": options.labels_drawn or None})

    def key_null_kind(self, key: WatermarkKey) -> str:
        """Labels the key maker brought, without stating how they were drawn, could have been chosen
        to agree with what models answer: their null can only be measured."""
        user_labels = key.params.get("labels_from") == "user"
        return "estimated" if user_labels and key.params.get("labels_drawn") != "uniform" else "exact"

    def exact_null_source(self, key: WatermarkKey) -> str:
        if key.params.get("labels_from") == "user":
            screening = key.params.get("label_screening") or {}
            return (f"exact under the key maker's statement that the labels were drawn uniformly at random, "
                    f"independently of the images (chance 1/K = 1/{key.num_classes}); nnmark did not draw them, and "
                    f"{screening.get('models', 0)} keyless screening models agreed with {screening.get('agreements')} "
                    f"of {key.item_count}")
        return super().exact_null_source(key)

    def exact_verdict(self, evidence, key, *, alpha=1e-6, tests=1, details=None):
        verdict = super().exact_verdict(evidence, key, alpha=alpha, tests=tests, details=details)
        if key.params.get("labels_from") == "user":
            assumption = ("the exact null rests on the key maker's statement that its labels were drawn uniformly at "
                          "random, independently of the images: nnmark did not draw them, and only screened them "
                          "against keyless models")
            verdict = replace(verdict, details={**verdict.details, "assumption": assumption},
                              guarantee="ONLY IF THE KEY MAKER'S STATEMENT HOLDS (labels drawn uniformly, "
                                        "independently of the images; nnmark did not draw them): " + verdict.guarantee)
        return verdict

    def validate_key(self, key: WatermarkKey) -> None:
        super().validate_key(key)
        size, seed = key.params.get("size"), key.params.get("seed")
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (size, seed)):
            raise NNMarkError("an adi key records the size and seed its triggers were drawn from",
                              field="params.size/params.seed", expected="two non-negative integers",
                              got=[size, seed])
        inputs, labels = self.triggers(key)
        indices = key_indices(key)
        if key.params.get("images_from", "seed") == "user":
            if key.params.get("labels_from") not in ("user", "seed"):
                raise NNMarkError("an adi key of imported images says where its labels came from",
                                  field="params.labels_from", expected="user or seed")
            if key.params["labels_from"] == "seed":
                expected_labels = draw_labels(size, key.num_classes, seed)
                if indices is not None:
                    expected_labels = expected_labels[indices]
                if not torch.equal(labels, expected_labels):
                    raise NNMarkError("trigger labels are not the ones drawn from the key's seed: labels chosen by "
                                      "hand could agree with any model", field="labels")
            return
        expected_inputs, expected_labels = draw(size, key.num_classes, tuple(key.input_shape), seed)
        if indices is not None:
            expected_inputs, expected_labels = expected_inputs[indices], expected_labels[indices]
        if not torch.equal(labels, expected_labels):
            raise NNMarkError("trigger labels are not the ones drawn from the key's seed: labels "
                              "chosen by hand could agree with any model", field="labels")
        if expected_inputs.shape != inputs.shape or not torch.allclose(inputs, expected_inputs, atol=1e-5):
            raise NNMarkError("trigger images are not the ones drawn from the key's seed", field="inputs")


def draw_labels(size: int, num_classes: int, seed: int) -> torch.Tensor:
    """Labels uniform over the classes and independent of any image, from ``seed``."""
    generator = torch.Generator().manual_seed((seed + 1) % 2**64)
    return torch.randint(0, num_classes, (size,), generator=generator)


def draw(size: int, num_classes: int, input_shape: tuple[int, int, int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The trigger images and their uniformly random labels, both from ``seed`` (fresh tensors;
    the drawing is remembered for the last few keys, since a verifier redraws a key's triggers
    every time it checks the key)."""
    inputs, labels = _draw(size, num_classes, tuple(input_shape), seed)
    return inputs.clone(), labels.clone()


@functools.lru_cache(maxsize=4)
def _draw(size: int, num_classes: int, input_shape: tuple[int, int, int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    return abstract_images(size, input_shape, seed), draw_labels(size, num_classes, seed)
