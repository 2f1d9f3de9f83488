"""Decisions with their statistic, p-value and the false-positive rate of the rule that made them."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Verdict:
    """The outcome of testing one suspect against one key.

    Under the null hypothesis (the suspect was made without the key) ``matches`` follows
    Binomial(``total``, ``null_rate``). ``p_value`` is P(X ≥ matches); the suspect is ``owned``
    when ``p_value`` ≤ ``alpha``, i.e. when ``matches`` ≥ ``threshold``, and that rule wrongly
    accuses an independent model with probability ``false_positive_rate`` (≤ ``alpha``).
    """

    scheme: str
    statistic: str
    matches: int
    total: int
    null_rate: float
    null_source: str
    p_value: float
    alpha: float
    threshold: int
    false_positive_rate: float
    owned: bool
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def decision_rule(self) -> str:
        return (f"owned iff matches >= {self.threshold} of {self.total} "
                f"(P[Binomial({self.total}, {self.null_rate:.4g}) >= matches] <= {self.alpha:g})")

    @property
    def agreement(self) -> float:
        return self.matches / self.total if self.total else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["decision_rule"] = self.decision_rule
        data["agreement"] = self.agreement
        return data


@dataclass(frozen=True)
class Calibration:
    """A null agreement rate measured rather than assumed, with a sentence saying how."""

    rate: float
    source: str
    observed: dict[str, Any] = field(default_factory=dict)


def upper_rate(hits: int, total: int, floor: float = 0.0, confidence: float = 0.999) -> float:
    """A conservative null rate: the exact (Clopper–Pearson) upper confidence bound of
    hits/total, and at least ``floor``."""
    bound = stats.binomtest(hits, total).proportion_ci(confidence_level=confidence, method="exact").high
    return float(min(max(bound, floor), 1 - 1e-9))


def binomial_tail(matches: int, total: int, rate: float) -> float:
    """P(X ≥ matches) for X ~ Binomial(total, rate), accurate far into the tail."""
    return float(stats.binom.sf(matches - 1, total, rate))


def decision_threshold(total: int, rate: float, alpha: float) -> tuple[int, float]:
    """The smallest match count whose tail probability is ≤ alpha, and that exact tail (the
    rule's false-positive rate). Returns (total + 1, 0.0) when no count can reach alpha."""
    counts = np.arange(total + 1)
    tails = stats.binom.sf(counts - 1, total, rate)
    reachable = np.nonzero(tails <= alpha)[0]
    if len(reachable) == 0:
        return total + 1, 0.0
    threshold = int(reachable[0])
    return threshold, float(tails[threshold])


def binomial_verdict(*, scheme: str, statistic: str, matches: int, total: int, null_rate: float,
                     null_source: str, alpha: float, details: dict[str, Any] | None = None) -> Verdict:
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    if not 0 < null_rate < 1:
        raise ValueError("null_rate must be in (0, 1)")
    if not 0 <= matches <= total or total < 1:
        raise ValueError("need 0 <= matches <= total and total >= 1")
    p_value = binomial_tail(matches, total, null_rate)
    threshold, fpr = decision_threshold(total, null_rate, alpha)
    return Verdict(scheme, statistic, matches, total, null_rate, null_source, p_value, alpha,
                   threshold, fpr, p_value <= alpha, dict(details or {}))
