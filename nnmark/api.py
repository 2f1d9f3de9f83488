"""The Python API: keygen, train (with or without a watermark), verify. The CLI is a thin layer
over these; each takes explicit arguments and returns values, and none writes files unless it
is a ``save_*`` function."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from nnmark.data.base import Dataset
from nnmark.errors import NNMarkError
from nnmark.models.store import Classifier, LoadedModel, ModelSpec, create_model
from nnmark.schemes.base import KeygenContext, get_scheme
from nnmark.schemes.key import WatermarkKey
from nnmark.training.distributed import Distributed
from nnmark.training.trainer import TrainConfig, TrainResult, evaluate, fit, predict_logits
from nnmark.verification.stats import Calibration, Verdict
from nnmark.verification.suspects import Suspect, as_suspect

MODES = ("scratch", "pretrained", "distill")


def generate_key(scheme: str, *, num_classes: int, input_shape: tuple[int, int, int], seed: int = 0,
                 options: dict[str, Any] | None = None, dataset: Dataset | None = None,
                 model_spec: ModelSpec | None = None, classifier: nn.Module | None = None,
                 progress=None) -> WatermarkKey:
    """Create a secret key for ``scheme``; ``options`` are the scheme's keygen options by name."""
    if num_classes < 2:
        raise NNMarkError("must be at least 2", field="num_classes", got=num_classes)
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise NNMarkError("must be three positive sizes", field="input_shape",
                          expected="C,H,W", got=input_shape)
    implementation = get_scheme(scheme)
    context = KeygenContext(num_classes, tuple(input_shape), seed, dataset, model_spec, classifier, progress)
    for need in implementation.needs:
        if getattr(context, need) is None:
            raise NNMarkError(f"scheme '{scheme}' needs a {need.replace('_', ' ')} to make a key")
    return implementation.keygen(context, implementation.make_options("keygen", options))


@dataclass
class TrainedModel:
    model: Classifier
    spec: ModelSpec
    test_accuracy: float
    result: TrainResult
    config: TrainConfig
    watermark: dict[str, Any] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        """What gets stored beside the weights: how the model was trained and how well it does.
        The key itself is never stored with the model; only its scheme is named."""
        return {
            "test_accuracy": self.test_accuracy,
            "training": {"epochs": self.config.epochs, "batch_size": self.config.batch_size,
                         "lr": self.config.lr, "schedule": self.config.schedule,
                         "seed": self.config.seed, "seconds": round(self.result.seconds, 2),
                         "processes": self.result.processes,
                         "final_loss": self.result.history[-1].loss if self.result.history else None},
            "watermark": self.watermark,
        }


def train_model(dataset: Dataset, config: TrainConfig, *, architecture: str = "small-cnn",
                model_kwargs: dict[str, Any] | None = None, key: WatermarkKey | None = None,
                mode: str = "scratch", base: LoadedModel | None = None,
                embed_options: dict[str, Any] | None = None, temperature: float = 1.0,
                progress=None, description: str = "training",
                distributed: Distributed | None = None) -> TrainedModel:
    """Train a model on ``dataset``, embedding ``key`` if given.

    * ``mode="scratch"``: a fresh ``architecture`` trained on the labels;
    * ``mode="pretrained"``: fine-tune ``base`` (a loaded model) with the watermark mixed in
      (Adi et al.'s second setting, Uchida et al.'s fine-tuning);
    * ``mode="distill"``: a fresh ``architecture`` trained only on ``base``'s softened outputs
      (softmax at ``temperature``) on the training images, never their labels (Uchida et al.'s
      distillation). Augmentation is off there: the soft targets belong to the unaltered images.

    ``distributed`` trains data-parallel with the other ranks of a torchrun group (see
    :mod:`nnmark.training.distributed`); every rank calls this alike and gets the same model.
    """
    if mode not in MODES:
        raise NNMarkError(f"unknown mode '{mode}'", field="mode", expected=" or ".join(MODES))
    if mode in ("pretrained", "distill") and base is None:
        raise NNMarkError(f"mode '{mode}' needs an existing model (--from)")
    if mode == "scratch" and base is not None:
        raise NNMarkError("a base model (--from) is used only with mode 'pretrained' or 'distill'")
    targets = dataset.train_y
    augmentation = dataset.augmentation
    if mode == "pretrained":
        spec = base.spec
        _check_dataset_fits(spec, dataset, str(base.path))
        model = base.model
    else:
        spec = ModelSpec(architecture, dataset.num_classes, dataset.input_shape, dataset.mean,
                         dataset.std, dict(model_kwargs or {}))
        model = create_model(spec, seed=config.seed)
    device = distributed.device if distributed else config.device
    if mode == "distill":
        _check_dataset_fits(base.spec, dataset, str(base.path))
        if temperature <= 0:
            raise NNMarkError("must be positive", field="temperature", got=temperature)
        logits = predict_logits(base.model, dataset.train_x, device=device)
        targets = torch.softmax(logits / temperature, dim=1)
        augmentation = None
    hooks, watermark = [], {}
    if key is not None:
        scheme = get_scheme(key.scheme)
        scheme.check_fits(key, spec.num_classes, spec.input_shape, "the model")
        options = scheme.make_options("embed", embed_options)
        hooks = scheme.hooks(key, options, seed=config.seed)
        watermark = {"scheme": key.scheme, "mode": mode}
    result = fit(model, dataset.train_x, targets, config, augmentation=augmentation,
                 hooks=hooks, progress=progress, description=description, distributed=distributed)
    accuracy = evaluate(model, dataset.test_x, dataset.test_y, device=device)
    return TrainedModel(model, spec, accuracy, result, config, watermark)


def _check_dataset_fits(spec: ModelSpec, dataset: Dataset, where: str) -> None:
    if spec.num_classes != dataset.num_classes or tuple(spec.input_shape) != dataset.input_shape:
        raise NNMarkError(
            f"model does not fit dataset '{dataset.name}'", path=where, field="model.input_shape/num_classes",
            expected=f"{list(dataset.input_shape)} with {dataset.num_classes} classes",
            got=f"{list(spec.input_shape)} with {spec.num_classes} classes")


def calibrate_null(key: WatermarkKey, controls: list[nn.Module | Suspect]) -> Calibration:
    """Measure the null rate of ``key``'s statistic on models made without the key; pass the
    result to :func:`verify_model` as ``null_rate``."""
    return get_scheme(key.scheme).calibrate(key, [as_suspect(c, f"control {i}") for i, c in enumerate(controls)])


def verify_model(suspect: nn.Module | Suspect, key: WatermarkKey, *, alpha: float = 1e-6,
                 null_rate: float | Calibration | None = None, num_classes: int | None = None,
                 input_shape: tuple[int, int, int] | None = None) -> Verdict:
    """Test ``suspect`` (a module taking [0, 1] images, or any :class:`Suspect`) against ``key``.

    ``null_rate`` replaces the scheme's own null (a number, or a :class:`Calibration`). When the
    suspect's class count and input shape are known, the key is checked to fit first.
    """
    scheme = get_scheme(key.scheme)
    if num_classes is not None and input_shape is not None:
        scheme.check_fits(key, num_classes, input_shape, "the suspect model")
    return scheme.verify(as_suspect(suspect), key, alpha=alpha, null_rate=null_rate)


def calibration_study(key: WatermarkKey, controls: list[nn.Module | Suspect], *, alpha: float = 1e-6,
                      names: list[str] | None = None) -> dict[str, Any]:
    """Test ``key`` against models made without it and compare with the verifier's null.

    Reports each control's evidence and p-value under the scheme's own null (the one ``verify``
    uses by default), the empirical false-positive rate of the decision rule (the fraction of
    controls accused), the observed agreement rate against the null rate assumed, and the
    calibrated null (99.9% upper bound) that ``verify --calibrate-with`` would use.
    """
    if not controls:
        raise NNMarkError("calibration needs at least one control model")
    scheme = get_scheme(key.scheme)
    names = names or [f"control {i}" for i in range(len(controls))]
    suspects = [as_suspect(c, n) for c, n in zip(controls, names)]
    rows, assumed = [], []
    for name, suspect in zip(names, suspects):
        try:
            verdict = scheme.verify(suspect, key, alpha=alpha)
        except NNMarkError:  # a scheme with no null of its own (unrelated): judge by agreement only
            verdict = None
        if verdict is None:
            evidence = scheme.extract(suspect, key)
            matches, total = evidence.matches, len(evidence.labels)
            rows.append({"model": name, "matches": matches, "total": total, "p_value": None, "owned": None})
            continue
        assumed.append(verdict.null_rate)
        rows.append({"model": name, "matches": verdict.matches, "total": verdict.total,
                     "p_value": verdict.p_value, "owned": verdict.owned, "null_rate": verdict.null_rate,
                     "threshold": verdict.threshold})
    hits = sum(r["matches"] for r in rows)
    total = sum(r["total"] for r in rows)
    judged = [r for r in rows if r["owned"] is not None]
    observed_rate = hits / total
    study = {
        "scheme": key.scheme, "key_commitment": key.commitment, "alpha": alpha, "controls": rows,
        "observed_rate": observed_rate, "max_agreement": max(r["matches"] / r["total"] for r in rows),
        "empirical_false_positive_rate": (sum(r["owned"] for r in judged) / len(judged)) if judged else None,
        "assumed_null_rate": max(assumed) if assumed else None,
        "min_p_value": min((r["p_value"] for r in judged), default=None),
    }
    if scheme.access == "black-box":  # a white-box null (uchida) is exact and needs none
        calibration = scheme.calibrate(key, suspects)
        study["calibrated_null"] = {"rate": calibration.rate, "source": calibration.source}
    # The verifier's null is conservative here if no control was accused and the pooled rate
    # does not exceed it beyond sampling error (a one-sided binomial test at 0.001).
    if assumed:
        from nnmark.verification.stats import binomial_tail

        study["null_exceeded_p_value"] = binomial_tail(hits, total, max(assumed))
        study["conservative"] = (study["empirical_false_positive_rate"] == 0
                                 and study["null_exceeded_p_value"] > 1e-3)
    return study
