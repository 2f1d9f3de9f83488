"""points_verdict: the exact null of a sum of per-item points (dark-knowledge's ranks), checked
against enumeration, the binomial it generalises, simulation, and its Chernoff fallback."""
import itertools

import numpy as np
import pytest

from nnmark.verification import binomial_tail, points_verdict
from nnmark.verification import stats as verification_stats
from nnmark.verification.stats import points_tail

FISHER_9 = np.floor(64 * np.log(9 / np.arange(1, 10)) + 1e-9).astype(int)


def test_the_exact_tail_is_the_enumerated_one():
    scale = np.array([5, 3, 3, 0])  # repeats allowed: each entry equally likely
    tail, method = points_tail(3, scale)
    totals = np.array([sum(draw) for draw in itertools.product(scale, repeat=3)])
    assert method == "exact"
    for s in range(0, 17):
        assert tail(s) == pytest.approx(float(np.mean(totals >= s)), abs=1e-15)


def test_a_zero_one_scale_is_the_binomial():
    tail, _ = points_tail(40, np.array([1] + [0] * 8))
    for count in (0, 5, 17, 40):
        assert tail(count) == pytest.approx(binomial_tail(count, 40, 1 / 9), rel=1e-9)


def test_tiny_tails_keep_their_precision():
    tail, _ = points_tail(60, FISHER_9)
    assert tail(60 * 140) == pytest.approx(9.0 ** -60, rel=1e-9)  # every cell first: (1/9)^60


def test_the_chernoff_fallback_never_falls_below_the_exact_tail(monkeypatch):
    exact, _ = points_tail(12, FISHER_9)
    monkeypatch.setattr(verification_stats, "EXACT_CONVOLUTION_LIMIT", 0)
    bound, method = points_tail(12, FISHER_9)
    assert method == "Chernoff bound"
    for s in range(0, 12 * 140 + 1, 37):
        assert bound(s) >= exact(s) * (1 - 1e-9)
    assert bound(12 * 140) < 1e-9  # and it is not vacuous far out


def test_the_rule_holds_its_stated_rate_for_models_without_the_key():
    """200,000 simulated null suspects of 10 cells: the share accused at alpha = 1e-3 stays within
    its exact rate, and the verdict's fields agree with each other."""
    alpha = 1e-3
    verdict = points_verdict(scheme="x", statistic="s", score=0, items=10, scale=FISHER_9, scale_words="w",
                             null_source="n", alpha=alpha)
    tail, _ = points_tail(10, FISHER_9)
    assert tail(verdict.threshold) <= alpha < tail(verdict.threshold - 1)
    assert verdict.false_positive_rate == pytest.approx(tail(verdict.threshold))
    ranks = np.random.default_rng(0).integers(1, 10, size=(200_000, 10))
    accused = float(np.mean(FISHER_9[ranks - 1].sum(1) >= verdict.threshold))
    rate = verdict.false_positive_rate
    assert accused <= rate + 4 * (rate / 200_000) ** 0.5
    strong = points_verdict(scheme="x", statistic="s", score=1300, items=10, scale=FISHER_9, scale_words="w",
                            null_source="n", alpha=1e-6)
    assert strong.owned == (strong.matches >= strong.threshold) == (strong.p_value <= 1e-6)
    assert strong.total == 1400 and strong.null_rate is None and "10 independent draws" in strong.null_law
    assert strong.decision_rule.startswith(f"owned iff points >= {strong.threshold} of 1400")


@pytest.mark.parametrize("kwargs", [{"score": 1401}, {"score": -1}, {"items": 0}, {"alpha": 0},
                                    {"scale": np.array([3])}, {"scale": np.array([-1, 2])}])
def test_bad_arguments(kwargs):
    base = dict(scheme="x", statistic="s", score=5, items=10, scale=FISHER_9, scale_words="w", null_source="n",
                alpha=0.01)
    with pytest.raises(ValueError):
        points_verdict(**{**base, **kwargs})
