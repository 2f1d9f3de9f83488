"""Decisions with their statistic, p-value and decision rule, under one of two kinds of null.

* **exact**: the count of matching key items follows a known binomial under the null (random
  labels, signs of random projections), or, for schemes that score each item on a scale, the
  sum of the items' points is bounded by a sum of independent uniform draws from that scale
  (:func:`points_verdict`). The decision rule's false-positive rate is computed exactly and
  printed.
* **estimated**: no model-free null exists (one-target trigger sets), so the null is measured on
  control models made without the key, with the *model* as the unit. Up to 1/(N+1) for N
  controls the p-value is a rank (conformal) p-value, exact when the suspect is exchangeable with
  the controls; below that it is an extrapolation from a fitted distribution of the controls'
  agreement, and the verdict says so instead of printing an exact-looking error rate.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Callable

import numpy as np

# scipy is imported where it is used: it costs most of a second, and `nnmark --help` needs none of it

EXACT, ESTIMATED = "exact", "estimated"

# The spread of independent models' log-odds of agreement is floored at this many log-odds
# units: a handful of controls that happen to agree alike must not make the null look narrow.
# Chosen with the simulations in tests/verification/test_control_null.py (over-dispersed and
# heavy-tailed mixtures of models) and checked against models trained outside nnmark.
MIN_LOGIT_SPREAD = 1.0


@dataclass(frozen=True)
class Verdict:
    """The outcome of testing one suspect against one key.

    ``owned`` is ``p_value <= alpha / tests``: ``tests`` > 1 is a Bonferroni correction for a
    family of tests (several keys or suspects), so the family-wise error stays at most ``alpha``.
    ``threshold`` is the smallest match count that would have been judged owned.

    For an exact null ``false_positive_rate`` is the rule's exact rate (at most alpha/tests);
    for an estimated null it is ``None`` and ``guarantee`` says what the rate rests on.
    """

    scheme: str
    statistic: str
    matches: int
    total: int
    null_kind: str
    null_source: str
    p_value: float
    alpha: float
    threshold: int
    false_positive_rate: float | None
    owned: bool
    decision_rule: str
    guarantee: str
    tests: int = 1
    null_rate: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    # What the scheme read from the suspect (an nnmark.verification.evidence.Evidence), where known.
    evidence: Any = field(default=None, compare=False, repr=False)
    # The null distribution in a few words ("Binomial(10, 0.1)"); "" for an estimated null.
    null_law: str = ""

    @property
    def alpha_per_test(self) -> float:
        return self.alpha / self.tests

    @property
    def agreement(self) -> float:
        return self.matches / self.total if self.total else 0.0

    @property
    def p_value_text(self) -> str:
        return format_p_value(self.p_value)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "evidence"}
        data["p_value_text"] = self.p_value_text
        data["details"] = dict(self.details)
        data["evidence"] = None if self.evidence is None else self.evidence.to_json()
        data["agreement"] = self.agreement
        data["alpha_per_test"] = self.alpha_per_test
        return data


def format_p_value(p_value: float) -> str:
    """A p-value as people read it; one below the smallest double is not printed as 0."""
    if p_value == 0.0:
        return "< 1e-300"
    return f"{p_value:.3g}"


def check_test_settings(alpha: float, tests: int) -> None:
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    if tests < 1:
        raise ValueError("tests must be at least 1")


def clopper_pearson(hits: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact two-sided confidence interval of a binomial proportion."""
    from scipy import stats

    interval = stats.binomtest(hits, total).proportion_ci(confidence_level=confidence, method="exact")
    return float(interval.low), float(interval.high)


def binomial_tail(matches: int, total: int, rate: float) -> float:
    """P(X ≥ matches) for X ~ Binomial(total, rate), accurate far into the tail."""
    # scipy.special's binomial survival function is what scipy.stats.binom.sf calls (the same
    # values to 1e-14), without importing scipy.stats, which costs most of a second at start-up
    from scipy import special

    return float(special.bdtrc(matches - 1, total, rate))


def decision_threshold(total: int, rate: float, alpha: float) -> tuple[int, float]:
    """The smallest match count whose tail probability is ≤ alpha, and that exact tail (the
    rule's false-positive rate). Returns (total + 1, 0.0) when no count can reach alpha."""
    from scipy import special

    counts = np.arange(total + 1)
    tails = special.bdtrc(counts - 1, total, rate)
    reachable = np.nonzero(tails <= alpha)[0]
    if len(reachable) == 0:
        return total + 1, 0.0
    threshold = int(reachable[0])
    return threshold, float(tails[threshold])


def binomial_verdict(*, scheme: str, statistic: str, matches: int, total: int, null_rate: float,
                     null_source: str, alpha: float, tests: int = 1,
                     details: dict[str, Any] | None = None, evidence: Any = None) -> Verdict:
    """A verdict under an exact null: ``matches`` ~ Binomial(``total``, ``null_rate``)."""
    check_test_settings(alpha, tests)
    if not 0 < null_rate < 1:
        raise ValueError("null_rate must be in (0, 1)")
    if not 0 <= matches <= total or total < 1:
        raise ValueError("need 0 <= matches <= total and total >= 1")
    level = alpha / tests
    p_value = binomial_tail(matches, total, null_rate)
    threshold, fpr = decision_threshold(total, null_rate, level)
    rule = (f"owned iff matches >= {threshold} of {total} "
            f"(P[Binomial({total}, {null_rate:.4g}) >= matches] <= {level:.3g})")
    guarantee = (f"exact: a model made without the key is judged owned with probability {fpr:.3g}"
                 + (f" per test; at most {alpha:g} over the {tests} tests together" if tests > 1 else ""))
    return Verdict(scheme, statistic, matches, total, EXACT, null_source, p_value, alpha, threshold,
                   fpr, p_value <= level, rule, guarantee, tests, null_rate, dict(details or {}), evidence,
                   f"Binomial({total}, {null_rate:.4g})")


# Beyond this many (items × scale values × possible sums), about a second of convolution, the points'
# tail is bounded by Chernoff's inequality instead (valid, and a little conservative).
EXACT_CONVOLUTION_LIMIT = 1e9


def points_tail(items: int, scale: np.ndarray) -> tuple[Callable[[int], float], str]:
    """s ↦ P(S >= s), S the sum of ``items`` independent draws each uniform over the integer
    ``scale`` (its entries equally likely; repeats allowed), and how it is computed.

    Exact by convolution while that is cheap; past ``EXACT_CONVOLUTION_LIMIT``, Chernoff's bound
    min_t E[exp(t(X − s/items))]^items, which is never below the exact tail."""
    scale = np.asarray(scale, dtype=np.int64)
    if scale.ndim != 1 or len(scale) < 2 or int(scale.min()) < 0:
        raise ValueError("scale must hold at least two non-negative integers")
    top = int(scale.max())
    size = items * top + 1
    if items * len(scale) * size <= EXACT_CONVOLUTION_LIMIT:
        item = np.bincount(scale, minlength=top + 1) / len(scale)
        pmf = np.zeros(size)
        pmf[0] = 1.0
        for done in range(items):
            reach = done * top + 1
            grown = np.zeros(size)
            for value in np.nonzero(item)[0]:
                grown[value:value + reach] += item[value] * pmf[:reach]
            pmf = grown
        # Summed from the top down, so that tiny tails keep their relative precision.
        tails = np.minimum(np.cumsum(pmf[::-1])[::-1], 1.0)
        tails[0] = 1.0
        return (lambda s: float(tails[s]) if s < size else 0.0), "exact"
    from scipy import optimize, special

    values = scale.astype(float)
    mean, spread = float(values.mean()), max(1.0, float(values.std()))

    def log_bound(t: float, level: float) -> float:
        return items * float(special.logsumexp(t * (values - level)) - np.log(len(values)))

    def chernoff(s: int) -> float:
        if s / items <= mean:
            return 1.0
        if s >= size:
            return 0.0
        fit = optimize.minimize_scalar(log_bound, bounds=(0.0, 50.0 / spread), args=(s / items,), method="bounded")
        return min(1.0, float(np.exp(min(0.0, fit.fun))))

    return chernoff, "Chernoff bound"


def points_verdict(*, scheme: str, statistic: str, score: int, items: int, scale: np.ndarray, scale_words: str,
                   null_source: str, alpha: float, tests: int = 1, details: dict[str, Any] | None = None,
                   evidence: Any = None) -> Verdict:
    """A verdict under an exact null where each of ``items`` key items scores points and, under the
    null, each item's points are at most a uniform draw from ``scale``, independently. ``score``
    is the suspect's total (the verdict's ``matches``); ``total`` is the most any suspect can
    score. ``scale_words`` names the scale for the decision rule."""
    check_test_settings(alpha, tests)
    scale = np.asarray(scale, dtype=np.int64)
    total = items * int(scale.max()) if items >= 1 and len(scale) else 0
    if items < 1 or not 0 <= score <= total:
        raise ValueError("need 0 <= score <= items * max(scale) and items >= 1")
    level = alpha / tests
    tail, method = points_tail(items, scale)
    p_value = tail(score)
    low, high = 0, total + 1  # the tail never rises with the score: bisect for the threshold
    while low < high:
        middle = (low + high) // 2
        if tail(middle) <= level:
            high = middle
        else:
            low = middle + 1
    threshold = low
    fpr = tail(threshold) if threshold <= total else 0.0
    law = f"the sum of {items} independent draws of {scale_words}"
    rule = f"owned iff points >= {threshold} of {total} (P[{law} >= points] <= {level:.3g}; {method})"
    guarantee = ("exact: a model made without the key is judged owned with probability "
                 + ("" if method == "exact" else "at most ") + f"{fpr:.3g}"
                 + (f" per test; at most {alpha:g} over the {tests} tests together" if tests > 1 else ""))
    return Verdict(scheme, statistic, score, total, EXACT, null_source, p_value, alpha, threshold, fpr,
                   p_value <= level, rule, guarantee, tests, None, dict(details or {}), evidence, law)


def _log_odds(counts: np.ndarray | int, total: int) -> np.ndarray:
    counts = np.asarray(counts, dtype=float)
    return np.log((counts + 0.5) / (total - counts + 0.5))


def control_p_value(control_counts: list[int] | np.ndarray, matches: int, total: int) -> dict[str, float]:
    """The p-value of ``matches`` of ``total`` against N control models' counts on the same items.

    ``rank``: (1 + #controls with at least as many matches) / (N + 1) — exact (never below
    1/(N+1)) when the suspect and the controls are exchangeable. ``model``: the upper tail of a
    Student-t prediction for one more model's log-odds of agreement, from the controls' mean and
    spread — what extrapolates below 1/(N+1). The spread is at least ``MIN_LOGIT_SPREAD``, and at
    least what makes the fitted tail at the most agreeing control equal its rank, 1/(N+1).
    ``p_value`` is the rank p-value while the suspect is inside the controls' range, else the
    smaller of 1/(N+1) and the model p-value.
    """
    from scipy import special

    counts = np.asarray(control_counts, dtype=float)
    size = len(counts)
    if size < 2:
        raise ValueError("need at least two control models")
    rank = (1 + int(np.sum(counts >= matches))) / (size + 1)
    logits = _log_odds(counts, total)
    widen = np.sqrt(1 + 1 / size)  # the prediction of one more model, not of the mean
    spread = max(float(logits.std(ddof=1)), MIN_LOGIT_SPREAD,
                 # the fitted tail may not call the most agreeing control rarer than its rank, 1/(N+1),
                 # says: one control far above the rest (a skewed population) widens the fit
                 float(logits.max() - logits.mean()) / (float(-special.stdtrit(size - 1, 1 / (size + 1))) * widen))
    score = (float(_log_odds(matches, total)) - float(logits.mean())) / (spread * widen)
    # Student-t tail through scipy.special's ufunc: the same value as stats.t.sf, at a fraction of
    # the cost (a verifier and the audits evaluate this thousands of times).
    model = float(special.stdtr(size - 1, -score))
    p_value = rank if rank > 1 / (size + 1) else min(model, 1 / (size + 1))
    return {"p_value": p_value, "rank_p_value": rank, "model_p_value": model,
            "mean_log_odds": float(logits.mean()), "spread_log_odds": spread}


def control_verdict(*, scheme: str, statistic: str, matches: int, total: int,
                    control_counts: list[int] | np.ndarray, null_source: str, alpha: float,
                    tests: int = 1, details: dict[str, Any] | None = None,
                    refusal: str | None = None, evidence: Any = None) -> Verdict:
    """A verdict under a null estimated on control models. ``refusal`` (a sentence) forces
    "not owned" whatever the p-value, e.g. for a suspect whose answers are not specific."""
    check_test_settings(alpha, tests)
    counts = np.asarray(control_counts, dtype=int)
    if not 0 <= matches <= total or total < 1:
        raise ValueError("need 0 <= matches <= total and total >= 1")
    level = alpha / tests
    result = control_p_value(counts, matches, total)
    # The p-value never rises with the count, so the smallest count that reaches the level is
    # found by bisection (a verifier judges many suspects; ~log2(total) evaluations each).
    low, high = 0, total + 1
    while low < high:
        middle = (low + high) // 2
        if control_p_value(counts, middle, total)["p_value"] <= level:
            high = middle
        else:
            low = middle + 1
    threshold = low
    size = len(counts)
    floor = 1 / (size + 1)
    rule = (f"owned iff matches >= {threshold} of {total} (p <= {level:.3g} against {size} control models"
            f" that agreed on {int(counts.min())}-{int(counts.max())} of {total})")
    if level >= floor:
        guarantee = (f"estimated, distribution-free: exact at {level:.3g} when the suspect is like the "
                     f"{size} controls (exchangeable)")
    else:
        guarantee = (f"ESTIMATED, NOT EXACT: {size} control models can support error rates only down to "
                     f"1/(N+1) = {floor:.3g} without assumptions; p-values below that extrapolate a "
                     "t-distribution fitted to the controls' log-odds of agreement, and hold only as far "
                     "as independent models resemble those controls: measure them on models of the suspect's "
                     "own architecture (docs/own-training.md)")
    owned = result["p_value"] <= level and refusal is None
    extra = {**(details or {}), **{k: v for k, v in result.items() if k != "p_value"},
             "control_counts": counts.tolist()}
    if refusal is not None:
        extra["refused"] = refusal
    mean_rate = float(counts.mean() / total)
    return Verdict(scheme, statistic, matches, total, ESTIMATED, null_source, result["p_value"], alpha,
                   threshold, None, owned, rule, guarantee, tests, mean_rate, extra, evidence)
