"""DAWN, watermarking the API rather than the model: Szyller, Atli, Marchal and Asokan, "DAWN:
Dynamic Adversarial Watermarking of Neural Networks", ACM Multimedia 2021.

Nothing is embedded in the model. The owner's serving endpoint answers a small keyed share of
the queries it receives with a wrong label: whether a query is marked, and which wrong label it
gets, come from HMAC-SHA256 of the query's pixels (rounded to 8 bits) under a secret, so the same
query always gets the same answer and nobody without the secret can tell which answers were
wrong. A model extracted through the API is trained on those answers and tends to repeat them;
a model made any other way cannot know them.

Two kinds of key:

* the **serving key** (``keygen``) holds the secret and the marking rate; the API uses it;
* a **verification key** (:func:`derive_key`) is made afterwards from the API's query log: the
  marked queries of a client the owner suspects, each with the wrong label it was answered.

The null is exact. A wrong label is uniform over the K−1 classes other than the owner model's
answer and decided by a secret the suspect never saw, so a model not trained on the API's answers
agrees with each with probability at most 1/(K−1) (exactly 1/(K−1) where it disagrees with the
owner's model, 0 where it agrees), independently across distinct queries: Binomial(n, 1/(K−1))
bounds its count.

What the guarantee rests on, in words a verdict repeats: the log must be every marked query the
client sent, recorded before the suspect is queried. An owner who picks log entries after seeing
a suspect's answers can frame anyone, and nothing in the key can show that it was not done.
Where we differ from the paper: it answers marked queries through a second, deliberately
different model; we swap the owner model's top logit with the keyed wrong class's, which needs
no second model and leaves every unmarked answer untouched.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

import torch
from torch import nn

from nnmark.errors import NNMarkError
from nnmark.models.inference import logits_of
from nnmark.schemes.base import KeygenContext, register_scheme, require_tensor
from nnmark.schemes.key import WatermarkKey
from nnmark.schemes.trigger_set import TriggerSetScheme

SECRET_BYTES = 32
DOMAIN = b"nnmark-dawn/1"


@dataclass
class DawnOptions:
    rate: float = field(default=0.05, metadata={
        "help": "Share of queries answered with a keyed wrong label (the API's accuracy cost)."})

    def __post_init__(self) -> None:
        if not 0 < self.rate <= 0.5:
            raise ValueError("rate must be in (0, 0.5]")


def _digests(secret: bytes, images: torch.Tensor) -> list[bytes]:
    pixels = torch.round(images.detach().float().cpu().clamp(0, 1) * 255).to(torch.uint8)
    shape = ",".join(map(str, pixels.shape[1:])).encode()
    return [hmac.new(secret, DOMAIN + b"|" + shape + b"|" + row.numpy().tobytes(), hashlib.sha256).digest()
            for row in pixels]


def keyed_marks(secret: bytes, images: torch.Tensor, rate: float, num_classes: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: whether it is marked, and the offset (1..K−1) of its wrong label from the
    owner's answer."""
    digests = _digests(secret, images)
    marked = torch.tensor([int.from_bytes(d[:8], "big") < rate * 2**64 for d in digests], dtype=torch.bool)
    offsets = torch.tensor([1 + int.from_bytes(d[8:16], "big") % (num_classes - 1) for d in digests],
                           dtype=torch.long)
    return marked, offsets


def serving_secret(key: WatermarkKey) -> tuple[bytes, float]:
    if key.scheme != "dawn" or "secret" not in key.tensors:
        raise NNMarkError("is not a DAWN serving key (it holds no secret)", field="secret",
                          expected="a key made by `nnmark keygen --scheme dawn`")
    secret = require_tensor(key, "secret", torch.uint8, 1)
    rate = key.params.get("rate")
    if len(secret) != SECRET_BYTES or not isinstance(rate, (int, float)) or not 0 < rate <= 0.5:
        raise NNMarkError("a DAWN serving key holds a 32-byte secret and a rate in (0, 0.5]",
                          field="secret/params.rate", got=f"{len(secret)} bytes, rate {rate!r}")
    return bytes(secret.tolist()), float(rate)


class DawnAPI(nn.Module):
    """The owner's model as its API answers: on a marked query the top class is swapped with the
    keyed wrong one (the other logits as they were). ``log`` keeps every query, as a server's
    request log would, for :func:`derive_key`."""

    def __init__(self, model: nn.Module, key: WatermarkKey, keep_log: bool = True) -> None:
        super().__init__()
        self.model = model
        self.secret, self.rate = serving_secret(key)
        self.serving_key_commitment = key.commitment
        self.num_classes = key.num_classes
        self.keep_log = keep_log
        self.log: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = logits_of(self.model(x))
        if self.keep_log:
            self.log.append(x.detach().cpu().clone())
        marked, offsets = keyed_marks(self.secret, x, self.rate, self.num_classes)
        if not bool(marked.any()):
            return logits
        answered = logits.clone()
        rows = torch.nonzero(marked).flatten().to(logits.device)
        top = logits[rows].argmax(1)
        wrong = (top + offsets.to(logits.device)[rows]) % self.num_classes
        top_values, wrong_values = logits[rows, top], logits[rows, wrong]
        answered[rows, top], answered[rows, wrong] = wrong_values, top_values
        return answered

    def queries(self) -> torch.Tensor:
        if not self.log:
            raise NNMarkError("the API has answered no queries yet: there is no log to derive a key from")
        return torch.cat(self.log)


@torch.no_grad()
def derive_key(serving_key: WatermarkKey, owner_model: nn.Module, queries: torch.Tensor) -> WatermarkKey:
    """The verification key for a client whose queries are ``queries`` (the API's log of them, in
    full): each distinct marked query with the wrong label the API answered it with."""
    secret, rate = serving_secret(serving_key)
    queries = queries.detach().float().cpu()
    if queries.ndim != 4 or tuple(queries.shape[1:]) != tuple(serving_key.input_shape):
        raise NNMarkError("query log does not fit the key", field="queries",
                          expected=f"N x {list(serving_key.input_shape)} images", got=list(queries.shape))
    if not bool(torch.isfinite(queries).all()):
        raise NNMarkError("query log holds NaN or infinite values", field="queries")
    queries = queries.clamp(0, 1)
    # The same query sent twice is one trial (its answer was the same both times); a flat image carries nothing.
    pixels = torch.round(queries * 255).to(torch.uint8).flatten(1)
    _, first = _first_occurrences(pixels)
    flat = pixels[first]
    first = first[flat.amax(1) != flat.amin(1)]
    distinct = queries[first]
    marked, offsets = keyed_marks(secret, distinct, rate, serving_key.num_classes)
    inputs = distinct[marked]
    if not len(inputs):
        raise NNMarkError(f"none of the {len(distinct)} distinct queries in the log was marked (rate {rate:g}): "
                          "there is nothing to verify with", field="queries")
    owner_answers = logits_of(owner_model.eval()(inputs)).argmax(1).cpu()
    labels = (owner_answers + offsets[marked]) % serving_key.num_classes
    # Store the rounded pixels the hash saw, so the key's inputs re-derive to the same marks.
    inputs = torch.round(inputs * 255) / 255
    return WatermarkKey("dawn", serving_key.num_classes, tuple(serving_key.input_shape),
                        {"inputs": inputs.contiguous(), "labels": labels},
                        {"rate": rate, "serving_key": serving_key.commitment, "log_queries": len(queries),
                         "distinct_queries": len(distinct), "marked_queries": len(inputs)})


def _first_occurrences(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    unique, inverse = torch.unique(rows, dim=0, return_inverse=True)
    first = torch.full((len(unique),), len(rows), dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(len(rows)), reduce="amin")
    return unique, first.sort().values


@register_scheme("dawn")
class Dawn(TriggerSetScheme):
    summary = "the API answers a keyed share of queries wrongly; extracted models repeat them (Szyller et al. 2021)"
    KeygenOptions = DawnOptions
    item_tensors = ("inputs", "labels")
    marks_the_api = True  # the model is never changed: the serving endpoint carries the mark
    needs_query_log = True
    api_changes_labels = True
    # Label-only extraction trained until it reproduces the API's answers on its queries.
    demo_thief = {"attack": "distill", "strength": 60, "settings": {"answers": "labels", "schedule": "constant"},
                  "escapes": "a thief that distils the API's probabilities for a few epochs instead of fitting its "
                             "answers escapes (docs/schemes/dawn.md)"}

    def serving_api(self, model: nn.Module, key: WatermarkKey) -> DawnAPI:
        return DawnAPI(model, key, keep_log=False)

    def verification_key(self, serving_key: WatermarkKey, owner_model: nn.Module, queries: torch.Tensor
                         ) -> WatermarkKey:
        return derive_key(serving_key, owner_model, queries)

    def keygen(self, context: KeygenContext, options: DawnOptions) -> WatermarkKey:
        if context.num_classes < 2:
            raise NNMarkError("DAWN needs at least 2 classes", field="num_classes")
        secret = torch.tensor(list(secrets.token_bytes(SECRET_BYTES)), dtype=torch.uint8)
        return WatermarkKey(self.name, context.num_classes, context.input_shape, {"secret": secret},
                            {"rate": options.rate, "kind": "serving"})

    def hooks(self, key: WatermarkKey, options, seed: int = 0):
        raise NNMarkError("DAWN puts nothing into the model: train it as it is and serve it with its key "
                          "(nnmark serve MODEL --dawn KEY)", field="scheme")

    def validate_key(self, key: WatermarkKey) -> None:
        if "secret" in key.tensors:
            raise NNMarkError("this is DAWN's serving key: it verifies nothing by itself. Derive a verification key "
                              "from the API's log of the suspect's queries (nnmark dawn derive), then verify with that",
                              field="secret")
        super().validate_key(key)

    def exact_null_rate(self, key: WatermarkKey) -> float:
        return 1.0 / (key.num_classes - 1)

    def exact_null_source(self, key: WatermarkKey) -> str:
        return (f"exact: at most 1/(K-1) = 1/{key.num_classes - 1} per marked query (wrong labels keyed by a secret "
                "the suspect never saw); valid only if the log holds every marked query the client sent, "
                "recorded before the suspect was queried")

    def statistic(self, key: WatermarkKey) -> str:
        return "marked API answers the suspect repeats"
