"""The interface every watermark scheme implements, and the scheme registry.

A scheme is one module: a subclass of :class:`WatermarkScheme` decorated with
``@register_scheme("name")``. It declares its key-generation and embedding options as small
dataclasses (the CLI turns their fields into ``--options``), and implements

* ``keygen``   → a :class:`WatermarkKey` (secret tensors + public metadata),
* ``hooks``    → the :class:`TrainingHook` objects that embed it during training (they see each
  step's batch, logits and any layer outputs they ask for),
* ``extract``  → an :class:`~nnmark.verification.evidence.Evidence`: per key item whether a
  suspect agrees with the key (its answer on a trigger, a recovered signature bit), the facts
  worth recording, and how that evidence shows itself in the HTML report,

and declares what others must not guess: ``requirements`` (the dataset, model spec or trained
classifier keygen needs, checked in one place), ``null_kind`` (exact, or estimated on control
models), ``query_count`` (what one verification spends), ``recommended_embed_options`` (for a
training set of a given size), ``validate_key`` (the checks that keep a crafted key from framing
an innocent model). ``verify`` is shared: it tests the evidence's count against the exact null or
the measured one, and asks ``judge`` whether the suspect must be refused whatever the count.
See docs/extending.md.
"""
from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch

from nnmark.data.base import Dataset
from nnmark.errors import NNMarkError
from nnmark.models.store import ModelSpec
from nnmark.registry import Registry
from nnmark.schemes.key import ITEM_TENSORS, WatermarkKey
from nnmark.training.hooks import TrainingHook
from nnmark.verification.evidence import Evidence
from nnmark.verification.nulls import ControlNull
from nnmark.verification.stats import Verdict, binomial_verdict, control_verdict
from nnmark.verification.suspects import Suspect

MAX_ITEMS = 100_000


@dataclass
class NoOptions:
    pass


@dataclass
class KeygenContext:
    """What keygen may need beyond sizes: the owner's data (content triggers) or model (weight
    signatures). Schemes list the ones they need in ``needs``."""

    num_classes: int
    input_shape: tuple[int, int, int]
    seed: int
    dataset: Dataset | None = None
    model_spec: ModelSpec | None = None
    classifier: Any = None  # the trained model to be marked, or whose features a scheme uses
    progress: Any = None
    # What a scheme made once for every candidate key it tries (the encoder/decoder's networks),
    # passed along with the context rather than kept on the scheme object.
    prepared: Any = None

    def require(self, scheme: str, needs: frozenset[str]) -> None:
        """Refuse, naming what is missing, before any work. The need "model" (a scheme that keys a
        layer) is met by the model itself or by the spec it is built from."""
        missing = sorted(need for need in needs if (self.model_spec is None and self.classifier is None
                                                    if need == "model" else getattr(self, need) is None))
        if missing:
            words = {"dataset": "the training dataset (--data)", "model": "the model (its architecture, or the module)",
                     "classifier": "a trained classifier (the model to mark, --model)"}
            raise NNMarkError(f"scheme '{scheme}' needs {' and '.join(words.get(m, m) for m in missing)} to make a key",
                              field=", ".join(missing))


class WatermarkScheme(ABC):
    name: ClassVar[str]
    access: ClassVar[str]  # "black-box" (queries only) or "white-box" (reads weights)
    summary: ClassVar[str]
    needs: ClassVar[frozenset[str]] = frozenset()  # subset of {"dataset", "model", "classifier"}
    KeygenOptions: ClassVar[type] = NoOptions
    EmbedOptions: ClassVar[type] = NoOptions
    # True where the key is made from the very model it then marks (its "classifier" is the model
    # to mark, not just a source of features): nothing may train a stand-in for it.
    keys_the_marked_model: ClassVar[bool] = False
    # True where nothing at all goes into the model (a fingerprint): ``hooks`` refuse, and
    # ``embed_trained`` hands the model back as it was.
    embeds_nothing: ClassVar[bool] = False
    # True where the mark is carried by the serving API's answers, not by the model (DAWN): only
    # extraction through the API can take it, and verification keys are derived from the API's log.
    marks_the_api: ClassVar[bool] = False
    # "exact": the statistic's null distribution is known (binomial); "estimated": it can only be
    # measured on models made without the key (a ControlNull), with the model as the unit.
    null_kind: ClassVar[str] = "exact"
    # Tensors with one row per key item (trigger image, signature bit): what a subset keeps and
    # what the commitment's Merkle tree has one leaf per row of.
    item_tensors: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def keygen(self, context: KeygenContext, options: Any) -> WatermarkKey: ...

    @abstractmethod
    def hooks(self, key: WatermarkKey, options: Any, seed: int = 0) -> list[TrainingHook]: ...

    @abstractmethod
    def extract(self, suspect: Suspect, key: WatermarkKey) -> Evidence:
        """Read the suspect: one 0/1 per key item (1 where it agrees with the key), typed."""

    def serving_api(self, model: Any, key: WatermarkKey) -> Any:
        """Where ``marks_the_api``: ``model`` as the keyed API answers (an ``nn.Module``)."""
        raise NNMarkError(f"scheme '{self.name}' marks the model, not an API", field="scheme")

    def verification_key(self, serving_key: WatermarkKey, owner_model: Any, queries: Any) -> WatermarkKey:
        """Where ``marks_the_api``: the key that verifies a model extracted through the API, from the
        serving key, the owner's model and (where the scheme needs it) the API's log of the
        thief's queries."""
        raise NNMarkError(f"scheme '{self.name}' marks the model, not an API", field="scheme")

    # Where ``marks_the_api``: whether :meth:`verification_key` needs the log of the thief's queries,
    # and the thief `nnmark demo` lets extract a model through the API (the one the scheme catches).
    needs_query_log: ClassVar[bool] = False
    demo_thief: ClassVar[dict[str, Any] | None] = None
    # Where ``marks_the_api``: True where the API changes which class it answers (DAWN), False where
    # it only reshapes the probabilities around the model's own top class (dark-knowledge). Stacked
    # APIs (:func:`stacked_api`) put the label marks outermost, so the others key off the model's answer.
    api_changes_labels: ClassVar[bool] = False

    def key_null_kind(self, key: WatermarkKey) -> str:
        """The null of this key's verdicts: the scheme's (``null_kind``), unless the key says
        otherwise (an adi key whose labels its maker brought has an estimated one)."""
        return self.null_kind

    def requirements(self, options: Any) -> frozenset[str]:
        """What keygen needs with these options (default: ``needs``)."""
        return self.needs

    def recommended_embed_options(self, train_size: int) -> dict[str, Any]:
        """Embedding options suited to a training set of ``train_size`` samples (default: none)."""
        return {}

    def embed_trained(self, model: Any, spec: ModelSpec, key: WatermarkKey, dataset: Dataset, *,
                      seed: int = 0, progress=None) -> tuple[Any, ModelSpec, dict[str, Any]] | None:
        """Mark an already trained ``model`` directly, for schemes with their own way of doing so
        (decode&inject); None where the mark goes in by training with :meth:`hooks`."""
        return None

    def key_summary(self, key: WatermarkKey) -> dict[str, Any]:
        """Facts about the key worth showing its owner (what keygen measured); none by default."""
        return {}

    def statistic(self, key: WatermarkKey) -> str:
        return "key items the suspect agrees with"

    def exact_null_source(self, key: WatermarkKey) -> str:
        """Where ``null_kind`` is "exact": why :meth:`exact_null_rate` is the null, in words."""
        return f"exact: each item agrees by chance with probability {self.exact_null_rate(key):.4g}"

    def judge(self, evidence: Evidence, key: WatermarkKey) -> tuple[str | None, str | None]:
        """A refusal (the suspect is never judged owned, e.g. it answers the target for everything)
        and a warning to record, each None where there is none."""
        return None, None

    def verify(self, suspect: Suspect, key: WatermarkKey, *, alpha: float = 1e-6,
               null: ControlNull | None = None, tests: int = 1) -> Verdict:
        """Test the suspect's evidence against the null. ``null`` is required where ``null_kind``
        is "estimated" and refused elsewhere; ``tests`` is the size of the family of tests this
        one belongs to (Bonferroni)."""
        self.check_key(key)
        null_kind = self.key_null_kind(key)
        if null_kind == "exact":
            if null is not None:
                raise NNMarkError(f"scheme '{self.name}' has an exact null; control models do not apply",
                                  field="--null")
        else:
            if null is None:
                raise NNMarkError(
                    f"scheme '{self.name}' has no exact null: it must be measured on models made without the "
                    "key (nnmark calibrate --key KEY --out null.json, then verify --null null.json; "
                    "API: nnmark.api.measure_null)", field="--null")
            indices = key_indices(key)
            null.check_for(key_commitment(key), key.params["subset"]["of"] if indices is not None else key.item_count)
        evidence = self.extract(suspect, key)
        refusal, warning = self.judge(evidence, key)
        details: dict[str, Any] = {"queries": suspect.queries, "suspect": suspect.description, **evidence.facts()}
        if warning:
            details["warning"] = warning
        if null_kind == "exact":
            if refusal is not None:
                raise NNMarkError(f"scheme '{self.name}': an exact null does not refuse suspects ({refusal})")
            return self.exact_verdict(evidence, key, alpha=alpha, tests=tests, details=details)
        common = dict(scheme=self.name, statistic=self.statistic(key), matches=evidence.matches,
                      total=evidence.total, alpha=alpha, tests=tests, evidence=evidence)
        details["null_controls"] = null.size
        return control_verdict(**common, control_counts=null.counts(key_indices(key)),
                               null_source=f"estimated on {null.describe()}", details=details, refusal=refusal)

    def exact_verdict(self, evidence: Evidence, key: WatermarkKey, *, alpha: float = 1e-6, tests: int = 1,
                      details: dict[str, Any] | None = None) -> Verdict:
        """Where ``null_kind`` is "exact": the verdict on ``evidence`` (default: its count of
        agreeing items against Binomial(items, :meth:`exact_null_rate`))."""
        return binomial_verdict(scheme=self.name, statistic=self.statistic(key), matches=evidence.matches,
                                total=evidence.total, alpha=alpha, tests=tests, evidence=evidence,
                                null_rate=self.exact_null_rate(key), null_source=self.exact_null_source(key),
                                details=details)

    def check_key(self, key: WatermarkKey) -> None:
        """:meth:`validate_key`, on every use: a key is a value, and nothing about it is cached on it."""
        self.validate_key(key)

    def validate_key(self, key: WatermarkKey) -> None:
        """Refuse a key that is malformed or internally inconsistent, naming the field, before any
        query: a verifier must not let a crafted key frame an innocent model."""
        for name, tensor in key.tensors.items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise NNMarkError("holds NaN or infinite values", field=name, expected="finite numbers")
        if key.item_tensors and not 1 <= key.item_count <= MAX_ITEMS:
            raise NNMarkError("has too many or too few items", field=key.item_tensors[0],
                              expected=f"1..{MAX_ITEMS}", got=key.item_count)

    def screen(self, key: WatermarkKey, controls: list[Suspect]) -> dict[str, Any] | None:
        """Advice from control models on the key's design (None where a scheme has none)."""
        return None

    def keygen_screened(self, context: KeygenContext, options: Any, models: list[Suspect]) -> WatermarkKey:
        """A key whose free design choices are made so that ``models`` (made without any key) agree
        with it as little as possible; schemes with nothing to choose make an ordinary key."""
        return self.keygen(context, options)

    def exact_null_rate(self, key: WatermarkKey) -> float:
        """Where ``null_kind`` is "exact": each item's chance of agreeing under the null."""
        raise NNMarkError(f"scheme '{self.name}' has no exact null; it is measured on control models")

    def query_count(self, key: WatermarkKey) -> int:
        """How many inputs one verification sends to the suspect (0 for white-box schemes)."""
        return 0

    def subset(self, key: WatermarkKey, count: int, suspect_identity: str) -> WatermarkKey:
        """A key holding ``count`` of ``key``'s items, for selective disclosure, with the proofs that
        tie each revealed item to the published commitment.

        The items are not the owner's choice: they are the first ``count`` of an order drawn from
        SHA-256(commitment, suspect identity), so no seed can be tried until a subset happens to
        accuse. The owner still chooses ``count``: fix it before querying, or count each size tried
        as a test (``tests``)."""
        from nnmark.schemes.commitment import disclosure_record

        if key.legacy:
            raise NNMarkError("selective disclosure needs a key with a salted Merkle commitment "
                              "(nnmark-key/2); this key predates it", field="--subset")
        total = key.item_count
        if not 1 <= count <= total:
            raise NNMarkError("subset size out of range", field="--subset", expected=f"1..{total}", got=count)
        tree = key.tree()
        seed = int.from_bytes(hashlib.sha256(f"nnmark-subset/1|{tree.commitment}|{suspect_identity}".encode())
                              .digest()[:8], "big")
        order = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
        chosen = order[:count].sort().values
        tensors = {name: (tensor[chosen] if name in key.item_tensors else tensor)
                   for name, tensor in key.tensors.items()}
        record = disclosure_record(key.salt, tree, chosen.tolist())
        params = {**key.params, "subset": {"count": count, "of": total, "suspect_identity": suspect_identity,
                                           "indices": chosen.tolist(), "parent_commitment": tree.commitment,
                                           "disclosure": record}}
        # The revealed part carries no salt: it must not let anyone recompute the other leaves.
        return WatermarkKey(key.scheme, key.num_classes, key.input_shape, tensors, params, key.created_at,
                            b"", key.item_tensors)

    # Helpers shared by every scheme.

    @classmethod
    def make_options(cls, which: str, values: dict[str, Any] | None) -> Any:
        """Build ``KeygenOptions`` or ``EmbedOptions`` from a name → value mapping, with a clear
        error for unknown names."""
        option_type = cls.KeygenOptions if which == "keygen" else cls.EmbedOptions
        values = dict(values or {})
        known = {f.name for f in fields(option_type)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise NNMarkError(f"scheme '{cls.name}' has no {which} option(s) {', '.join(unknown)}",
                              expected=f"one of: {', '.join(sorted(known)) or 'none'}")
        try:
            return option_type(**values)
        except (TypeError, ValueError) as exc:
            raise NNMarkError(f"bad {which} options for scheme '{cls.name}': {exc}") from None

    def check_fits(self, key: WatermarkKey, num_classes: int, input_shape: tuple[int, ...],
                   where: str) -> None:
        if key.scheme != self.name:
            raise NNMarkError(f"key is for scheme '{key.scheme}', not '{self.name}'", field="scheme")
        if key.num_classes != num_classes:
            raise NNMarkError(f"key does not fit {where}", field="num_classes",
                              expected=f"{num_classes} classes as the model has", got=key.num_classes)
        if tuple(key.input_shape) != tuple(input_shape):
            raise NNMarkError(f"key does not fit {where}", field="input_shape",
                              expected=f"{list(input_shape)} as the model takes",
                              got=list(key.input_shape))


SCHEMES: Registry[type[WatermarkScheme]] = Registry("watermark scheme")


def register_scheme(name: str):
    def add(cls: type[WatermarkScheme]) -> type[WatermarkScheme]:
        cls.name = name
        registered = SCHEMES.register(name)(cls)
        ITEM_TENSORS[name] = tuple(cls.item_tensors)
        return registered

    return add


def get_scheme(name: str) -> WatermarkScheme:
    return SCHEMES.get(name)()


def stacked_api(model: Any, keys: list[WatermarkKey]) -> Any:
    """``model`` as an API carrying every key's mark at once (say dark-knowledge, which catches
    distillers of the probabilities, and DAWN, which catches fitters of the labels).

    Marks that only reshape probabilities go inside and label marks outside, so each mark is
    decided by the model's own top class as it would be alone: a DAWN verification key derived
    with the bare model matches the stacked API's answers, and dark-knowledge cells are those
    of the model. Two keys of one scheme are refused (their marks would fight over the same answers)."""
    if not keys:
        raise NNMarkError("no API key given", field="--api-mark")
    schemes = [key.scheme for key in keys]
    repeated = sorted({name for name in schemes if schemes.count(name) > 1})
    if repeated:
        raise NNMarkError(f"two '{repeated[0]}' keys: an API carries one mark of each scheme", field="--api-mark")
    implementations = [get_scheme(name) for name in schemes]
    for key, implementation in zip(keys, implementations):
        if not implementation.marks_the_api:
            raise NNMarkError(f"is a '{key.scheme}' key, whose mark is in the model: serve the marked model itself",
                              field="--api-mark", expected="dawn or dark-knowledge keys")
    api = model
    for key, implementation in sorted(zip(keys, implementations), key=lambda pair: pair[1].api_changes_labels):
        api = implementation.serving_api(api, key)
    return api


def key_indices(key: WatermarkKey) -> list[int] | None:
    """The items of the full key that a subset key holds (None for a whole key)."""
    subset = key.params.get("subset")
    return list(subset["indices"]) if isinstance(subset, dict) else None


def key_commitment(key: WatermarkKey) -> str:
    """The commitment of the whole key, also for a disclosed subset of it."""
    subset = key.params.get("subset")
    return subset["parent_commitment"] if isinstance(subset, dict) else key.commitment


def require_tensor(key: WatermarkKey, name: str, dtype: torch.dtype, ndim: int) -> torch.Tensor:
    tensor = key.tensors.get(name)
    if tensor is None or tensor.dtype != dtype or tensor.ndim != ndim:
        raise NNMarkError(f"key for scheme '{key.scheme}' lacks a valid '{name}' tensor",
                          field=name, expected=f"{dtype} with {ndim} dimensions",
                          got=None if tensor is None else f"{tensor.dtype}, shape {list(tensor.shape)}")
    return tensor
