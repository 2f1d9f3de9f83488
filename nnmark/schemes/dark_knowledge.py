"""Keyed dark knowledge: the serving API's probabilities put a keyed class second.

nnmark's own design, after two lines of work: DAWN (Szyller et al., ACM MM 2021), where the serving
API rather than the model carries the mark, and CosWM (Charette et al., AAAI 2022) and DRW (Zhao et
al., EMNLP 2022), where the mark lives in the output probabilities, which is what distillation
copies.

The owner's API answers every query with its model's probabilities, except that a share ``mass``
(0.2) moves to a keyed class. Which class depends on a cell of the answer: its top class y, and in
``runner-up`` cells also the class r the owner's model ranks second. The keyed class is drawn
uniformly from the classes outside {y, r}. The answer's top class never changes, so the API's
accuracy is the model's; the cost is calibration. A student trained on these probabilities learns
that, for a cell, the keyed class comes next; a model made any other way has no reason to.

**Verification** queries the suspect's scores on the key's probe images (held-out images the
owner's model assigned to cells at keygen), averages each cell's log-probabilities over its
probes, and finds where the suspect ranks the cell's keyed class among the candidates outside
{y, r}. Each rank scores Fisher's points, ln(candidates/rank) (the −ln of the cell's p-value
rank/candidates), in integer steps of 1/64; the verdict is on their sum. A thief that learned the
mark partly, ranking keyed classes second or third where it misses the first, is scored for it.

**The null is exact.** The keyed class of each cell is uniform over its K−2 candidates (K−1 in
``class`` cells) and drawn from secret randomness the suspect never saw, independently across
cells; ties count against the key. For a model not trained on the API's answers, the keyed
class's rank is therefore at least a uniform draw from 1..K−2 (K−1), independently across cells,
and its points at most Fisher's points of that draw: the sum of independent uniform draws, whose
tail is computed exactly by convolution, bounds the suspect's sum.

**What it does not survive**, said in every verdict: a thief who trains on the API's labels only,
or who flattens every probability but the top one, learns nothing of the mark; and a thief who
has the weights never sees the API. Pair it with DAWN (labels) and a mark in the model (weights).
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from nnmark.errors import NNMarkError, NonFiniteOutput
from nnmark.models.inference import logits_of, predict_logits
from nnmark.schemes.base import KeygenContext, WatermarkScheme, register_scheme, require_tensor
from nnmark.schemes.key import WatermarkKey
from nnmark.schemes.trigger_set import check_images
from nnmark.verification.evidence import Evidence
from nnmark.verification.stats import Verdict, points_verdict
from nnmark.verification.suspects import Suspect

CELL_KINDS = ("runner-up", "class")
# With "auto", the training split's size decides: a thief of a small dataset learns one keyed class
# per top class, and too little to tell runner-up cells apart (docs/schemes/dark-knowledge.md).
RUNNER_UP_FROM = 10_000
NO_RUNNER_UP = -1  # a "class" cell: keyed by the top class alone
# Fisher's points are counted in steps of 1/64: fine enough to keep every rank apart for up to a
# few dozen candidates, coarse enough for an exact null by convolution in milliseconds.
RANK_POINTS_SCALE = 64


@dataclass
class DarkKnowledgeOptions:
    mass: float = field(default=0.2, metadata={
        "help": "Share of each answer's probability moved to the keyed class (the top class never changes)."})
    cells: str = field(default="auto", metadata={
        "help": "runner-up: one keyed class per (top, runner-up) pair of the owner's answers with enough "
                "probes, for larger data (MNIST: about 60 cells); class: one per top class, which thieves of small data "
                f"learn better; auto: runner-up from {RUNNER_UP_FROM} training images on, else class."})
    probes: int = field(default=5000, metadata={
        "help": "Images kept in the key to verify with (the test split first, then training images)."})
    min_probes: int = field(default=3, metadata={"help": "Probes a cell needs to be counted."})

    def __post_init__(self) -> None:
        if not 0 < self.mass <= 0.5:
            raise ValueError("mass must be in (0, 0.5]")
        if self.cells not in (*CELL_KINDS, "auto"):
            raise ValueError(f"cells must be one of {', '.join(CELL_KINDS)} or auto")
        if self.probes < 1 or self.min_probes < 1:
            raise ValueError("probes and min_probes must be at least 1")


def answer_cells(probabilities: torch.Tensor, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The cell of each answer: its top class and (for runner-up cells) its second class."""
    top2 = probabilities.topk(2, dim=1).indices
    runner_up = top2[:, 1] if kind == "runner-up" else torch.full_like(top2[:, 0], NO_RUNNER_UP)
    return top2[:, 0], runner_up


def cell_table(key: WatermarkKey) -> torch.Tensor:
    """keyed class by [top, runner-up] (the last column for class cells); -1 where no cell."""
    tops, runners, keyed = cells_of(key)
    k = key.num_classes
    table = torch.full((k, k + 1), -1, dtype=torch.long)
    table[tops, torch.where(runners == NO_RUNNER_UP, k, runners)] = keyed
    return table


def cells_of(key: WatermarkKey) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    tops = require_tensor(key, "cell_top", torch.int64, 1)
    runners = require_tensor(key, "cell_runner_up", torch.int64, 1)
    keyed = require_tensor(key, "keyed_class", torch.int64, 1)
    return tops, runners, keyed


class DarkKnowledgeAPI(nn.Module):
    """The owner's model as its API answers: ``(1 − λ)·p + λ·e_keyed`` with λ = ``mass``, cut
    where needed so that the top class stays on top (λ < (p_top − p_keyed)/(1 + p_top − p_keyed)).
    Returns log-probabilities, which any softmax reads back as the answer."""

    def __init__(self, model: nn.Module, key: WatermarkKey) -> None:
        super().__init__()
        get_scheme_checked(key)
        self.model = model
        self.serving_key_commitment = key.commitment
        self.kind = key.params["cells"]
        self.mass = float(key.params["mass"])
        self.num_classes = key.num_classes
        self.register_buffer("table", cell_table(key), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.softmax(logits_of(self.model(x)).float(), dim=1)
        top, runner_up = answer_cells(p, self.kind)
        column = torch.where(runner_up == NO_RUNNER_UP, self.num_classes, runner_up)
        keyed = self.table.to(p.device)[top, column]
        rows = torch.arange(len(p), device=p.device)
        has_cell = keyed >= 0
        keyed = keyed.clamp_min(0)
        p_top, p_keyed = p[rows, top], p[rows, keyed]
        gap = p_top - p_keyed
        mass = torch.minimum(torch.full_like(p_top, self.mass), 0.9 * gap / (1 + gap)) * has_cell
        answer = (1 - mass)[:, None] * p
        answer[rows, keyed] += mass
        return torch.log(answer.clamp_min(1e-30))


def get_scheme_checked(key: WatermarkKey) -> None:
    if key.scheme != "dark-knowledge":
        raise NNMarkError(f"is a '{key.scheme}' key, not a dark-knowledge key", field="scheme")
    DarkKnowledge().check_key(key)


def distinct_images(images: torch.Tensor) -> torch.Tensor:
    """``images`` in their order without repeats or flat fields (each probe a separate query)."""
    flat = images.flatten(1)
    _, inverse = torch.unique(flat, dim=0, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), len(images), dtype=torch.long)
    first = first.scatter_reduce(0, inverse, torch.arange(len(images)), reduce="amin").sort().values
    return images[first[flat[first].amax(1) != flat[first].amin(1)]]


@dataclass
class CellEvidence(Evidence):
    """Per counted cell, where the suspect ranks the keyed class among the cell's candidates
    (1 = first; a tie counts against the key). A hit is a cell ranked first."""

    keyed_ranks: torch.Tensor
    probes_used: int

    @property
    def hits(self) -> torch.Tensor:
        return (self.keyed_ranks == 1).long()

    def facts(self) -> dict[str, Any]:
        return {"cells": len(self.keyed_ranks), "cells_ranked_first": self.matches,
                "median_keyed_rank": float(self.keyed_ranks.float().median()), "probes_used": self.probes_used}

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "keyed_ranks": self.keyed_ranks.tolist()}

    def render_html(self, key) -> str:
        tops, runners, keyed = cells_of(key)
        if len(tops) != len(self.keyed_ranks):
            return ""
        rows = "".join(
            f"<tr><td>{t}</td><td>{'—' if r == NO_RUNNER_UP else r}</td><td>{k}</td><td>{rank}</td></tr>"
            for t, r, k, rank in zip(tops.tolist(), runners.tolist(), keyed.tolist(), self.keyed_ranks.tolist()))
        return (f"<h2>Cells</h2><p>Where the suspect ranks each cell's keyed class among its {candidate_count(key)} "
                "candidates (1 = first; by chance every rank is equally likely).</p><table><tr><th>top class</th>"
                f"<th>runner-up</th><th>keyed class</th><th>rank</th></tr>{rows}</table>")


def suspect_scores(suspect: Suspect, images: torch.Tensor) -> torch.Tensor:
    scores = getattr(suspect, "scores", None)
    if scores is None:
        raise NNMarkError(f"suspect '{suspect.description}' answers labels only; a dark-knowledge key reads the "
                          "suspect's scores (logits or probabilities)", field="suspect")
    answers = torch.as_tensor(scores(images)).float().cpu()
    if answers.ndim != 2 or len(answers) != len(images):
        raise NNMarkError(f"suspect '{suspect.description}' returned scores of shape {list(answers.shape)} "
                          f"for {len(images)} queries", expected=f"({len(images)}, num_classes)")
    if not bool(torch.isfinite(answers).all()):
        raise NonFiniteOutput(f"suspect '{suspect.description}' answered NaN or infinite scores")
    return answers


@register_scheme("dark-knowledge")
class DarkKnowledge(WatermarkScheme):
    access = "black-box"
    summary = ("the API's probabilities put a keyed class second; models distilled from them inherit it "
               "(nnmark's design, after DAWN and CosWM)")
    needs = frozenset({"dataset", "classifier"})
    KeygenOptions = DarkKnowledgeOptions
    keys_the_marked_model = True  # the cells are the owner's model's answers
    marks_the_api = True
    item_tensors = ("cell_top", "cell_runner_up", "keyed_class")
    # A thief distilling the API's probabilities until it is within a few points of the owner.
    demo_thief = {"attack": "distill", "strength": 30, "settings": {"schedule": "constant"},
                  "escapes": "a thief trained on the API's labels only escapes, at no cost in accuracy on digits; "
                             "a copy of the weights never saw the API (docs/schemes/dark-knowledge.md)"}

    def keygen(self, context: KeygenContext, options: DarkKnowledgeOptions) -> WatermarkKey:
        k = context.num_classes
        if k < 4:
            raise NNMarkError("a dark-knowledge key needs at least 4 classes (2 candidates per cell at least)",
                              field="num_classes", got=k)
        # Held-out images first, then training images where the test split is small (digits: 360).
        # Any images the owner holds serve: what the null rests on is the keyed classes alone.
        pool = torch.cat([context.dataset.test_x, context.dataset.train_x]).float().clamp(0, 1)
        images = distinct_images(pool[:4 * options.probes])[:options.probes]
        kind = options.cells if options.cells != "auto" else (
            "runner-up" if len(context.dataset.train_y) >= RUNNER_UP_FROM else "class")
        probabilities = torch.softmax(predict_logits(context.classifier, images), dim=1)
        tops, runners = answer_cells(probabilities, kind)
        # The keyed classes come from fresh secret randomness, never the caller's seed: they are
        # what the null rests on.
        generator = torch.Generator().manual_seed(secrets.randbits(63))
        cell_top, cell_runner, keyed = [], [], []
        for top in range(k):
            for runner in (range(k) if kind == "runner-up" else [NO_RUNNER_UP]):
                # Only cells the probes can measure are keyed (and marked by the API): a cell too rare
                # among the owner's answers to count would spend the mass for nothing.
                if runner == top or int(((tops == top) & (runners == runner)).sum()) < options.min_probes:
                    continue
                candidates = [c for c in range(k) if c not in (top, runner)]
                cell_top.append(top)
                cell_runner.append(runner)
                keyed.append(candidates[int(torch.randint(len(candidates), (1,), generator=generator))])
        if not keyed:
            raise NNMarkError(f"no cell of the owner's answers has {options.min_probes} of the {len(images)} probes",
                              field="probes", expected="more probe images, or fewer min_probes")
        return WatermarkKey(self.name, k, context.input_shape, {
            "cell_top": torch.tensor(cell_top), "cell_runner_up": torch.tensor(cell_runner),
            "keyed_class": torch.tensor(keyed), "probes": images.contiguous(),
            "probe_top": tops.contiguous(), "probe_runner_up": runners.contiguous()},
            {"mass": options.mass, "cells": kind, "min_probes": options.min_probes})

    def hooks(self, key: WatermarkKey, options, seed: int = 0):
        raise NNMarkError("a dark-knowledge key puts nothing into the model: train it as it is and answer through "
                          "nnmark.schemes.dark_knowledge.DarkKnowledgeAPI", field="scheme")

    def embed_trained(self, model, spec, key, dataset, *, seed: int = 0, progress=None):
        """Nothing goes into the model: the owner's trained model is served as it is."""
        return model, spec, {"mode": "served through the keyed API (the model is unchanged)"}

    def serving_api(self, model: nn.Module, key: WatermarkKey) -> nn.Module:
        return DarkKnowledgeAPI(model, key)

    def verification_key(self, serving_key: WatermarkKey, owner_model: nn.Module, queries: torch.Tensor
                         ) -> WatermarkKey:
        """The key verifies as it is: its probes and cells were fixed at keygen, before any thief."""
        return serving_key

    def validate_key(self, key: WatermarkKey) -> None:
        super().validate_key(key)
        k = key.num_classes
        tops, runners, keyed = cells_of(key)
        kind = key.params.get("cells")
        if kind not in CELL_KINDS:
            raise NNMarkError("unknown kind of cells", field="params.cells", expected=" or ".join(CELL_KINDS), got=kind)
        mass = key.params.get("mass")
        if isinstance(mass, bool) or not isinstance(mass, (int, float)) or not 0 < mass <= 0.5:
            raise NNMarkError("must be a share in (0, 0.5]", field="params.mass", got=mass)
        min_probes = key.params.get("min_probes")
        if isinstance(min_probes, bool) or not isinstance(min_probes, int) or min_probes < 1:
            raise NNMarkError("must be a positive count", field="params.min_probes", got=min_probes)
        if not len(tops) == len(runners) == len(keyed):
            raise NNMarkError("cell tensors differ in length", field="cell_top/cell_runner_up/keyed_class")
        low = NO_RUNNER_UP if kind == "class" else 0
        if bool((tops < 0).any() | (tops >= k).any() | (keyed < 0).any() | (keyed >= k).any()
                | (runners < low).any() | (runners >= k).any()):
            raise NNMarkError("holds a class out of range", field="cell_top/cell_runner_up/keyed_class",
                              expected=f"classes 0..{k - 1}")
        if kind == "class" and bool((runners != NO_RUNNER_UP).any()):
            raise NNMarkError("class cells have no runner-up", field="cell_runner_up", expected=str(NO_RUNNER_UP))
        # A keyed class equal to the cell's own top or runner-up would be no mark (and no longer a
        # draw among the candidates the null counts).
        if bool(((keyed == tops) | (keyed == runners) | (tops == runners)).any()):
            raise NNMarkError("a cell's keyed class must differ from its top and runner-up classes", field="keyed_class")
        pairs = tops * (k + 1) + (runners + 1)
        if len(torch.unique(pairs)) != len(pairs):
            raise NNMarkError("holds a cell twice: cells must be separate trials", field="cell_top/cell_runner_up")
        probes = require_tensor(key, "probes", torch.float32, 4)
        probe_top = require_tensor(key, "probe_top", torch.int64, 1)
        probe_runner = require_tensor(key, "probe_runner_up", torch.int64, 1)
        if tuple(probes.shape[1:]) != tuple(key.input_shape) or not len(probes) == len(probe_top) == len(probe_runner):
            raise NNMarkError("probes do not agree with their cells or the key's input shape", field="probes",
                              expected=f"N x {list(key.input_shape)} images with N cells")
        check_images(probes, "probes")
        if bool((probe_top < 0).any() | (probe_top >= k).any() | (probe_runner < low).any() | (probe_runner >= k).any()):
            raise NNMarkError("holds a class out of range", field="probe_top/probe_runner_up")
        counts = _probes_per_cell(key)
        if min(counts) < min_probes:
            raise NNMarkError(f"holds a cell with {min(counts)} probes, fewer than the {min_probes} a cell needs to be "
                              "counted", field="probes")

    def query_count(self, key: WatermarkKey) -> int:
        return len(key.tensors["probes"])

    def extract(self, suspect: Suspect, key: WatermarkKey) -> CellEvidence:
        self.check_key(key)
        probes = key.tensors["probes"]
        order = torch.randperm(len(probes), generator=torch.Generator().manual_seed(secrets.randbits(63)))
        shuffled = suspect_scores(suspect, probes[order])
        if shuffled.shape[1] != key.num_classes:
            raise NNMarkError(f"suspect '{suspect.description}' answers {shuffled.shape[1]} classes; the key is for "
                              f"{key.num_classes}", field="num_classes")
        scores = torch.empty_like(shuffled)
        scores[order] = shuffled
        log_probabilities = torch.log_softmax(scores, dim=1)
        probe_top, probe_runner = key.tensors["probe_top"], key.tensors["probe_runner_up"]
        tops, runners, keyed = cells_of(key)
        ranks = []
        for top, runner, target in zip(tops.tolist(), runners.tolist(), keyed.tolist()):
            mean = log_probabilities[(probe_top == top) & (probe_runner == runner)].mean(0)
            rivals = [c for c in range(key.num_classes) if c not in (top, runner, target)]
            ranks.append(1 + int((mean[rivals] >= mean[target]).sum()))  # a tie counts against the key
        return CellEvidence(torch.tensor(ranks, dtype=torch.long), sum(_probes_per_cell(key)))

    def exact_null_rate(self, key: WatermarkKey) -> float:
        """The chance that a model made without the API ranks a cell's keyed class first."""
        return 1.0 / candidate_count(key)

    def exact_verdict(self, evidence: CellEvidence, key: WatermarkKey, *, alpha: float = 1e-6, tests: int = 1,
                      details=None) -> Verdict:
        candidates = candidate_count(key)
        scale = rank_points(candidates)
        return points_verdict(scheme=self.name, statistic=self.statistic(key),
                              score=int(scale[evidence.keyed_ranks - 1].sum()), items=len(evidence.keyed_ranks),
                              scale=scale, scale_words=f"{RANK_POINTS_SCALE:g}·ln({candidates}/rank) points, rank "
                              f"uniform on 1..{candidates}", null_source=self.exact_null_source(key), alpha=alpha,
                              tests=tests, details=details, evidence=evidence)

    def exact_null_source(self, key: WatermarkKey) -> str:
        candidates = candidate_count(key)
        return (f"exact: each keyed class was drawn uniformly from its cell's {candidates} candidates by secret "
                "randomness, so where a model made without the API ranks it is uniform on 1.."
                f"{candidates}, independently across cells (ties counted against the key); it proves extraction "
                "through the API only. A thief who trained on the API's labels alone, or flattened all but its top "
                "probability, carries no mark, and a copy of the weights never saw the API")

    def statistic(self, key: WatermarkKey) -> str:
        return "points for where the suspect ranks each cell's keyed class (Fisher's ln(candidates/rank))"

    def key_summary(self, key: WatermarkKey) -> dict[str, Any]:
        counts = _probes_per_cell(key)
        return {"cells": len(counts), "kind": key.params["cells"], "probes": len(key.tensors["probes"]),
                "fewest_probes_in_a_cell": min(counts)}


def candidate_count(key: WatermarkKey) -> int:
    """Classes a cell's keyed class was drawn from: all but the top (and the runner-up)."""
    return key.num_classes - (2 if key.params["cells"] == "runner-up" else 1)


def rank_points(candidates: int) -> np.ndarray:
    """Points for ranking a keyed class 1st, 2nd, ... of ``candidates``: Fisher's −ln(p) for the
    cell's p-value rank/candidates, in integer steps of 1/``RANK_POINTS_SCALE`` (rounded down, so
    the points never rise with the rank and the exact null of their sum holds)."""
    ranks = np.arange(1, candidates + 1)
    return np.floor(RANK_POINTS_SCALE * np.log(candidates / ranks) + 1e-9).astype(np.int64)


def _probes_per_cell(key: WatermarkKey) -> list[int]:
    probe_top, probe_runner = key.tensors["probe_top"], key.tensors["probe_runner_up"]
    tops, runners, _ = cells_of(key)
    return [int(((probe_top == t) & (probe_runner == r)).sum()) for t, r in zip(tops.tolist(), runners.tolist())]
