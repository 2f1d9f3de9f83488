import pytest

from nnmark.api import calibration_study, generate_key, train_model, verify_model
from nnmark.errors import NNMarkError
from nnmark.training import TrainConfig


@pytest.fixture(scope="module")
def controls(digits):
    """Three models made independently without any key (different seeds)."""
    return [train_model(digits, TrainConfig(epochs=5, batch_size=64, lr=0.05, seed=50 + i)).model for i in range(3)]


def test_verifier_null_is_conservative_against_controls_adi(controls, adi_key):
    study = calibration_study(adi_key, controls, alpha=1e-6)
    assert study["empirical_false_positive_rate"] == 0
    assert study["assumed_null_rate"] == pytest.approx(0.1)
    assert study["conservative"] and study["null_exceeded_p_value"] > 1e-3
    assert all(row["p_value"] > 1e-3 for row in study["controls"])
    assert study["calibrated_null"]["rate"] >= 0.1


def test_clean_counterpart_null_is_conservative_against_controls(controls, digits):
    key = generate_key("trojan", num_classes=10, input_shape=digits.input_shape, seed=8, dataset=digits)
    study = calibration_study(key, controls)
    assert study["empirical_false_positive_rate"] == 0 and study["conservative"]
    # the rate the verifier assumes is above what independent models actually do
    assert study["observed_rate"] <= study["assumed_null_rate"]


def test_unrelated_controls_give_the_null_it_lacks(controls, digits):
    key = generate_key("unrelated", num_classes=10, input_shape=digits.input_shape, seed=8, dataset=digits)
    study = calibration_study(key, controls)
    assert study["empirical_false_positive_rate"] is None and study["assumed_null_rate"] is None
    rate = study["calibrated_null"]["rate"]
    assert rate >= study["observed_rate"]
    # judged against that measured null, a fresh independent model is not accused
    assert not any(verify_model(c, key, null_rate=rate).owned for c in controls)


def test_calibration_needs_controls(adi_key):
    with pytest.raises(NNMarkError, match="at least one control"):
        calibration_study(adi_key, [])
