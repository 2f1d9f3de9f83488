import pytest
import torch
from scipy import stats

from nnmark.verification import binomial_tail, binomial_verdict, decision_threshold


def test_tail_matches_scipy_binomtest():
    for k, n, p in [(0, 10, 0.1), (3, 10, 0.1), (28, 100, 0.1), (100, 100, 0.1), (60, 256, 0.5)]:
        expected = stats.binomtest(k, n, p, alternative="greater").pvalue
        assert binomial_tail(k, n, p) == pytest.approx(expected, rel=1e-9)


def test_tail_stays_accurate_far_out():
    # 100 of 100 at chance 1/10 is exactly 1e-100, far below float64 rounding of 1 - cdf
    assert binomial_tail(100, 100, 0.1) == pytest.approx(1e-100, rel=1e-9)


def test_threshold_is_the_smallest_count_reaching_alpha():
    threshold, fpr = decision_threshold(100, 0.1, 1e-6)
    assert binomial_tail(threshold, 100, 0.1) <= 1e-6 < binomial_tail(threshold - 1, 100, 0.1)
    assert fpr == pytest.approx(binomial_tail(threshold, 100, 0.1))
    assert decision_threshold(5, 0.5, 1e-6) == (6, 0.0)  # five queries can never reach 1e-6


def test_verdict_fields_agree():
    verdict = binomial_verdict(scheme="adi", statistic="s", matches=30, total=100, null_rate=0.1,
                               null_source="chance", alpha=1e-6)
    assert verdict.owned == (verdict.matches >= verdict.threshold) == (verdict.p_value <= verdict.alpha)
    record = verdict.to_dict()
    assert record["decision_rule"].startswith(f"owned iff matches >= {verdict.threshold} of 100")
    assert record["false_positive_rate"] <= 1e-6


def test_false_positive_rate_holds_for_independent_guessers():
    """Simulate 20,000 models made without the key (answers independent of the secret labels):
    the fraction accused must not exceed alpha beyond sampling error."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (100,), generator=generator)
    answers = torch.randint(0, 10, (20000, 100), generator=generator)
    matches = (answers == labels).sum(1)
    alpha = 0.01
    threshold, fpr = decision_threshold(100, 0.1, alpha)
    observed = (matches >= threshold).float().mean().item()
    assert fpr <= alpha
    assert observed <= alpha + 3 * (alpha / 20000) ** 0.5


@pytest.mark.parametrize("kwargs", [{"alpha": 0}, {"null_rate": 1.0}, {"matches": 101}])
def test_bad_arguments(kwargs):
    base = dict(scheme="x", statistic="s", matches=5, total=100, null_rate=0.1, null_source="c", alpha=0.01)
    with pytest.raises(ValueError):
        binomial_verdict(**{**base, **kwargs})


def test_control_threshold_is_the_smallest_count_that_reaches_the_level():
    import numpy as np

    from nnmark.verification.stats import control_p_value, control_verdict

    rng = np.random.default_rng(4)
    for _ in range(20):
        counts = rng.binomial(100, rng.uniform(0.01, 0.6), size=int(rng.integers(5, 30)))
        level = float(10 ** rng.uniform(-8, -1))
        verdict = control_verdict(scheme="t", statistic="", matches=50, total=100, control_counts=counts,
                                  null_source="", alpha=level)
        brute = next((k for k in range(101) if control_p_value(counts, k, 100)["p_value"] <= level), 101)
        assert verdict.threshold == brute
