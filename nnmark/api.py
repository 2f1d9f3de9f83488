"""The Python API: keygen, train (with or without a watermark), verify. The CLI is a thin layer
over these; each takes explicit arguments and returns values, and none writes files unless it
is a ``save_*`` function."""
from __future__ import annotations

import copy
import math
import secrets
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from nnmark.data.base import Dataset
from nnmark.errors import NNMarkError
from nnmark.models.store import Classifier, LoadedModel, ModelSpec, create_model
from nnmark.schemes.base import KeygenContext, get_scheme
from nnmark.schemes.key import WatermarkKey
from nnmark.schemes.watermarker import Watermarker
from nnmark.training.distributed import Distributed
from nnmark.training.trainer import TrainConfig, TrainResult, fit
from nnmark.data.streaming import training_source
from nnmark.models.inference import predict_logits
from nnmark.training.evaluation import accuracy_on, teacher_targets
from nnmark.verification.nulls import ControlModel, ControlNull, ControlRecord
from nnmark.verification.stats import Verdict, binomial_tail, clopper_pearson, control_verdict, format_p_value
from nnmark.verification.suspects import NamedLayer, Normalised, Suspect, as_suspect

MODES = ("scratch", "pretrained", "distill")


SEED_WARNING = ("the key was made from a seed the caller chose: it is only as secret as that seed "
                "(anyone who guesses it can rebuild the key and remove or evade the mark); leave the "
                "seed out to draw a random 63-bit one")


def generate_key(scheme: str, *, num_classes: int, input_shape: tuple[int, ...], seed: int | None = None,
                 options: dict[str, Any] | None = None, dataset: Dataset | None = None,
                 model_spec: ModelSpec | None = None, classifier: nn.Module | None = None,
                 model: nn.Module | None = None, normalization: Any = None,
                 screen_with: list[nn.Module | Suspect] | None = None, progress=None) -> WatermarkKey:
    """Create a secret key for ``scheme``; ``options`` are the scheme's keygen options by name.

    ``model``: the user's own module the key is for, where the scheme keys off it (a weight
    signature reads its layers; frontier stitching and fingerprints its answers), any
    ``torch.nn.Module``; ``classifier`` is the same argument's older name, and ``model_spec`` names
    one of nnmark's architectures instead. ``input_shape``: one input's shape (C, H, W for the
    schemes whose keys hold images). ``normalization``: ``(mean, std)`` the model expects its
    inputs normalised with, where it does not normalise them itself (a key's images are in [0, 1]).

    ``screen_with``: models made without any key. A scheme with a free choice to make uses them
    (one-target trigger sets, when no target is given: one candidate key per class, keeping the
    one whose triggers those models send least to its target, so its null is narrow); what they
    did is kept in ``params["target_screening"]``. Screen with other models than the controls that will measure
    the null: a target picked on the controls themselves makes their null look narrower than it is.

    Without ``seed`` the key is drawn from 63 secret random bits. With one it is reproducible, and
    only as secret as the seed: the key records ``params["seed_chosen"] = True`` and
    :data:`SEED_WARNING` says why that matters.
    """
    if model is not None and classifier is not None and model is not classifier:
        raise NNMarkError("give the model once (model=...; classifier= is its older name)", field="model")
    classifier = classifier if classifier is not None else model
    implementation = get_scheme(scheme)
    if normalization is not None and classifier is not None and implementation.access != "white-box":
        classifier = Normalised(classifier, normalization)  # keygen queries it with images in [0, 1]
    chosen = seed is not None
    if seed is None:
        seed = secrets.randbits(63)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise NNMarkError("must be a non-negative integer", field="seed", got=seed)
    if num_classes < 2:
        raise NNMarkError("must be at least 2", field="num_classes", got=num_classes)
    if not input_shape or min(input_shape) < 1:
        raise NNMarkError("must be positive sizes", field="input_shape", expected="C,H,W", got=input_shape)
    context = KeygenContext(num_classes, tuple(input_shape), seed, dataset, model_spec, classifier, progress)
    parsed = implementation.make_options("keygen", options)
    context.require(scheme, implementation.requirements(parsed))
    if screen_with:
        suspects = [as_suspect(m, f"screening model {i}") for i, m in enumerate(screen_with)]
        key = implementation.keygen_screened(context, parsed, suspects)
    else:
        key = implementation.keygen(context, parsed)
    key.params["seed_chosen"] = chosen
    return key


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
    * ``mode="pretrained"``: fine-tune a copy of ``base`` (a loaded model; never ``base`` itself)
      with the watermark mixed in (Adi et al.'s second setting, Uchida et al.'s fine-tuning);
    * ``mode="distill"``: a fresh ``architecture`` trained only on ``base``'s softened outputs
      (softmax at ``temperature``) on the training images, never their labels (Uchida et al.'s
      distillation). Augmentation is off there: the soft targets belong to the unaltered images.

    ``config``: a :class:`TrainConfig`, e.g. ``preset(preset_for_mode(mode))`` for what the CLI uses
    (:mod:`nnmark.training.presets`). ``distributed`` trains data-parallel with the other ranks of a torchrun group (see
    :mod:`nnmark.training.distributed`); every rank calls this alike and gets the same model.
    """
    if mode not in MODES:
        raise NNMarkError(f"unknown mode '{mode}'", field="mode", expected=" or ".join(MODES))
    if mode in ("pretrained", "distill") and base is None:
        raise NNMarkError(f"mode '{mode}' needs an existing model (--from)")
    if mode == "scratch" and base is not None:
        raise NNMarkError("a base model (--from) is used only with mode 'pretrained' or 'distill'")
    inputs, targets = training_source(dataset)
    augmentation = dataset.augmentation
    if mode == "pretrained":
        spec = base.spec
        _check_dataset_fits(spec, dataset, str(base.path))
        model = copy.deepcopy(base.model)
    else:
        spec = ModelSpec(architecture, dataset.num_classes, dataset.input_shape, dataset.mean,
                         dataset.std, dict(model_kwargs or {}))
        model = create_model(spec, seed=config.seed)
    device = distributed.device if distributed else config.device
    targets_from = None
    if mode == "distill":
        _check_dataset_fits(base.spec, dataset, str(base.path))
        if temperature <= 0:
            raise NNMarkError("must be positive", field="temperature", got=temperature)
        if targets is not None:  # tensors: the teacher answers once, before training
            targets = torch.softmax(predict_logits(base.model, inputs, device=device) / temperature, dim=1)
        else:  # streamed: the teacher answers each batch as it is read
            targets_from = teacher_targets(base.model, temperature)
        augmentation = None
    watermarker, watermark = None, {}
    if key is not None:
        get_scheme(key.scheme).check_fits(key, spec.num_classes, spec.input_shape, "the model")
        # the very object a user's own loop holds: one path for the mark into every model
        watermarker = Watermarker(key, model, options=embed_options, seed=config.seed,
                                  distributed=(distributed.rank, distributed.world_size) if distributed else None)
        watermark = {"scheme": key.scheme, "mode": mode}
    try:
        result = fit(model, inputs, targets, config, augmentation=augmentation, watermark=watermarker,
                     targets_from=targets_from, progress=progress, description=description, distributed=distributed)
    finally:
        if watermarker is not None:
            watermarker.close()
    accuracy = accuracy_on(model, dataset, device=device)
    # a finished model, ready to answer: fit leaves a model in the mode it found it, and this one is new
    return TrainedModel(model.eval(), spec, accuracy, result, config, watermark)


def _check_dataset_fits(spec: ModelSpec, dataset: Dataset, where: str) -> None:
    if spec.num_classes != dataset.num_classes or tuple(spec.input_shape) != dataset.input_shape:
        raise NNMarkError(
            f"model does not fit dataset '{dataset.name}'", path=where, field="model.input_shape/num_classes",
            expected=f"{list(dataset.input_shape)} with {dataset.num_classes} classes",
            got=f"{list(spec.input_shape)} with {spec.num_classes} classes")


def measure_null(key: WatermarkKey, controls: list[nn.Module | Suspect | ControlModel],
                 names: list[str] | None = None) -> ControlNull:
    """Record how models made without ``key`` answer each of its items; pass the result to
    :func:`verify_model` as ``null`` (required for schemes whose ``null_kind`` is "estimated")."""
    return _measure(key, controls, names)[0]


def _measure(key, controls, names):
    if not controls:
        raise NNMarkError("measuring a null needs control models", field="controls")
    scheme = get_scheme(key.scheme)
    scheme.check_key(key)
    records, evidences = [], []
    for index, control in enumerate(controls):
        architecture = control.architecture if isinstance(control, ControlModel) else None
        name = names[index] if names else control.name if isinstance(control, ControlModel) else f"control {index}"
        module = control.model if isinstance(control, ControlModel) else control
        evidence = scheme.extract(as_suspect(module, name), key)
        accuracy = control.test_accuracy if isinstance(control, ControlModel) else None
        if accuracy is not None and accuracy != accuracy:  # NaN: not known
            accuracy = None
        records.append(ControlRecord(name, [int(h) for h in evidence.hits.tolist()],
                                     evidence.facts().get("probe_target_rate"), architecture, accuracy))
        evidences.append(evidence)
    return ControlNull(key.commitment, records), evidences


def verify_model(suspect: nn.Module | Suspect, key: WatermarkKey, *, alpha: float = 1e-6,
                 null: ControlNull | None = None, tests: int = 1, num_classes: int | None = None,
                 input_shape: tuple[int, int, int] | None = None, layer: str | None = None,
                 normalization: Any = None) -> Verdict:
    """Test ``suspect`` (a module taking [0, 1] images, or any :class:`Suspect`) against ``key``.
    A module whose output is an object with ``.logits`` (Hugging Face) is read through it.
    ``normalization``: ``(mean, std)`` a module expects its inputs normalised with, where it does
    not normalise them itself (the key's images are in [0, 1] and are normalised on the way in).

    ``null`` is the null measured on control models (:func:`measure_null`), which schemes without
    an exact null require. ``tests`` is the number of tests in the family this one belongs to
    (several keys, suspects or subset sizes): each is then held to ``alpha / tests``. The key is
    checked for internal consistency, and a suspect with a ``query_budget`` for the queries the
    scheme needs, before any query is sent. ``layer``: for white-box schemes, the suspect's layer
    to read the mark from, where it is not under the key's name (a renamed copy); without it a
    suspect lacking the key's layer is refused, never read at another layer of the same shape.
    """
    if not 0 < alpha < 1:
        raise NNMarkError("must be between 0 and 1", field="alpha", got=alpha)
    if isinstance(tests, bool) or not isinstance(tests, int) or tests < 1:
        raise NNMarkError("must be a positive integer", field="tests", got=tests)
    scheme = get_scheme(key.scheme)
    if num_classes is not None and input_shape is not None:
        scheme.check_fits(key, num_classes, input_shape, "the suspect model")
    scheme.check_key(key)
    suspect = as_suspect(suspect, normalization=normalization)
    if layer is not None:
        if scheme.access != "white-box":
            raise NNMarkError(f"scheme '{key.scheme}' reads no layer: --layer does not apply", field="--layer")
        suspect = NamedLayer(suspect, layer)
    budget = getattr(suspect, "query_budget", None)
    needed = scheme.query_count(key)
    if budget is not None and needed > budget - suspect.queries:
        raise NNMarkError(f"scheme '{key.scheme}' needs {needed} queries for this key and the budget "
                          f"leaves {budget - suspect.queries}; nothing was sent", field="--query-budget",
                          expected=f"at least {needed + suspect.queries}", got=budget)
    return scheme.verify(suspect, key, alpha=alpha, null=null, tests=tests)


def calibration_study(key: WatermarkKey, controls: list[nn.Module | Suspect | ControlModel], *,
                      alpha: float = 1e-6, names: list[str] | None = None,
                      check_alpha: float = 0.1) -> dict[str, Any]:
    """Test ``key`` against models made without it: a check of the verifier's null that can fail.

    Each control is judged as ``verify`` would judge it: under the exact null, or — for an
    estimated null — against the null measured on the *other* controls (leave one out), so no
    control is judged by a null it helped make. Reported: the controls accused at ``alpha`` with
    the exact 95% interval of that rate, the smallest p-value, and the count accused at the
    looser ``check_alpha``, which N controls can test: ``consistent`` is False when that count is
    improbably high for the stated rate (one-sided binomial p below 0.01). The null is called
    ``conservative`` at ``alpha`` only when the interval's upper end is at most ``alpha``.
    """
    if not controls:
        raise NNMarkError("calibration needs at least one control model")
    scheme = get_scheme(key.scheme)
    null, evidences = _measure(key, controls, names)
    rows: list[dict[str, Any]] = []
    counts = null.counts()
    total = len(null.controls[0].hits)
    null_kind = scheme.key_null_kind(key)
    if null_kind == "estimated" and len(controls) < 3:
        raise NNMarkError("an estimated null needs at least 3 controls to study (20 recommended)",
                          field="controls")
    for index, record in enumerate(null.controls):
        matches = int(counts[index])
        if null_kind == "estimated":
            others = [int(c) for j, c in enumerate(counts) if j != index]
            refusal = scheme.judge(evidences[index], key)[0]
            verdict = control_verdict(scheme=key.scheme, statistic="", matches=matches, total=total,
                                      control_counts=others, null_source="", alpha=alpha, refusal=refusal)
            loose = control_verdict(scheme=key.scheme, statistic="", matches=matches, total=total,
                                    control_counts=others, null_source="", alpha=check_alpha, refusal=refusal)
        else:
            verdict = scheme.exact_verdict(evidences[index], key, alpha=alpha)
            loose = scheme.exact_verdict(evidences[index], key, alpha=check_alpha)
        # The verdict's own figures: a points statistic scores more than the count of agreeing items.
        rows.append({"model": record.name, "architecture": record.architecture, "test_accuracy": record.test_accuracy,
                     "matches": verdict.matches,
                     "total": verdict.total, "p_value": verdict.p_value, "owned": verdict.owned,
                     "owned_at_check_alpha": loose.owned, "probe_target_rate": record.probe_target_rate})
    size = len(rows)
    accused = sum(r["owned"] for r in rows)
    accused_check = sum(r["owned_at_check_alpha"] for r in rows)
    low, high = clopper_pearson(accused, size)
    consistency_p = binomial_tail(accused_check, size, check_alpha) if accused_check else 1.0
    needed = math.ceil(math.log(0.05) / math.log(1 - alpha)) if alpha < 1 else 1
    study = {
        "scheme": key.scheme, "key_commitment": key.commitment,
        "null_kind": null_kind,
        "alpha": alpha, "controls": rows,
        "accused": accused, "empirical_false_positive_rate": accused / size,
        "false_positive_rate_ci95": [low, high],
        "min_p_value": min(r["p_value"] for r in rows),
        "check_alpha": check_alpha, "accused_at_check_alpha": accused_check,
        "check_p_value": consistency_p, "consistent": consistency_p >= 0.01,
        "conservative": high <= alpha,
        "controls_needed_to_confirm_alpha": needed,
        "judged_by": ("leave-one-out: each control against the null measured on the others"
                      if null_kind == "estimated" else "the exact null verify uses"),
    }
    modules = [c.model if isinstance(c, ControlModel) else c for c in controls]
    study["target_screening"] = scheme.screen(key, [as_suspect(m, r["model"]) for m, r in zip(modules, rows)])
    study["null"] = null.to_json()
    return study
