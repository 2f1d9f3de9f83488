"""The estimated null, by simulation: models whose agreement rates vary from model to model
(over-dispersed), as real independent models' do. The old pooled null (one binomial at the 99.9%
upper bound of the pooled rate, at least 1/K) accuses far more often than it states; the model-as-
unit null does not."""
import numpy as np
import pytest
from scipy import special, stats

from nnmark.verification.stats import binomial_tail, control_p_value, control_verdict

N_ITEMS, N_CONTROLS = 100, 20


def pooled_null_p(control_counts, matches):
    hits, trials = int(np.sum(control_counts)), N_ITEMS * len(control_counts)
    # the exact (Clopper-Pearson) 99.9% upper bound of the pooled rate, in closed form
    bound = 1.0 if hits == trials else float(special.betaincinv(hits + 1, trials - hits, 1 - 0.0005))
    return binomial_tail(matches, N_ITEMS, max(bound, 0.1))


def simulate(a, b, trials, seed=0):
    rng = np.random.default_rng(seed)
    counts = rng.binomial(N_ITEMS, rng.beta(a, b, size=(trials, N_CONTROLS + 1)))
    return counts[:, :N_CONTROLS], counts[:, N_CONTROLS]


@pytest.mark.parametrize("a, b", [(0.5, 4.5), (2.0, 18.0), (0.3, 0.3), (5.0, 5.0)])
def test_the_pooled_null_fails_and_the_control_null_holds_under_overdispersion(a, b):
    controls, suspects = simulate(a, b, 1000)
    pooled = np.array([pooled_null_p(c, k) for c, k in zip(controls, suspects)])
    ours = np.array([control_p_value(c, int(k), N_ITEMS)["p_value"] for c, k in zip(controls, suspects)])
    assert np.mean(pooled <= 1e-6) > 0.01  # stated 1e-6, measured at least 10,000 times that
    assert np.sum(ours <= 1e-6) == 0
    for alpha in (0.01, 0.05):  # rates a simulation of 1000 can check
        allowed = stats.binom.ppf(0.999, len(ours), alpha) / len(ours)
        assert np.mean(ours <= alpha) <= allowed, (alpha, np.mean(ours <= alpha))


def test_rank_p_value_is_exact_inside_the_controls_range():
    result = control_p_value([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 5, 100)
    assert result["rank_p_value"] == pytest.approx(6 / 11) and result["p_value"] == pytest.approx(6 / 11)
    above = control_p_value([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 95, 100)
    assert above["rank_p_value"] == pytest.approx(1 / 11) and above["p_value"] < 1e-3  # extrapolated below 1/11


def test_the_spread_floor_keeps_identical_controls_from_narrowing_the_null():
    zeros = [0] * 20
    assert control_p_value(zeros, 20, 100)["p_value"] > 1e-4  # 20/100 is not proof against 20 zeros
    assert control_p_value(zeros, 95, 100)["p_value"] < 1e-6


def test_an_estimated_verdict_never_states_an_exact_rate():
    verdict = control_verdict(scheme="noise", statistic="s", matches=100, total=100, control_counts=[0] * 20,
                              null_source="20 controls", alpha=1e-6)
    assert verdict.owned and verdict.false_positive_rate is None and verdict.null_kind == "estimated"
    assert "NOT EXACT" in verdict.guarantee and "1/(N+1) = 0.0476" in verdict.guarantee
    loose = control_verdict(scheme="noise", statistic="s", matches=100, total=100, control_counts=[0] * 20,
                            null_source="20 controls", alpha=0.05)
    assert "distribution-free" in loose.guarantee
    refused = control_verdict(scheme="noise", statistic="s", matches=100, total=100, control_counts=[0] * 20,
                              null_source="20 controls", alpha=1e-6, refusal="not specific")
    assert not refused.owned and refused.details["refused"] == "not specific"
