import pytest

from nnmark.api import calibration_study, generate_key, train_model
from nnmark.errors import NNMarkError
from nnmark.training import TrainConfig

pytestmark = pytest.mark.slow  # every test here uses a model trained for it


def test_exact_null_against_independent_controls(nnmark_controls, adi_key):
    study = calibration_study(adi_key, nnmark_controls, alpha=1e-6)
    assert study["accused"] == 0 and study["consistent"] and study["null_kind"] == "exact"
    low, high = study["false_positive_rate_ci95"]
    assert low == 0 and 0.1 < high < 0.2  # 0 of 20 bounds the rate only below ~0.17
    assert not study["conservative"]  # ... which cannot confirm 1e-6
    assert study["controls_needed_to_confirm_alpha"] > 1_000_000
    assert all(row["p_value"] > 1e-3 for row in study["controls"])


def test_the_study_fails_when_its_controls_carry_the_mark(digits, adi_key, marked):
    """Models that did see the key, passed off as controls: the study must say the null does not hold."""
    copies = [marked.model] * 3 + [train_model(digits, TrainConfig(epochs=2, batch_size=64, lr=0.05, seed=s)).model
                                   for s in range(2)]
    study = calibration_study(adi_key, copies, alpha=1e-6)
    assert study["accused"] == 3 and not study["consistent"]


def test_estimated_null_is_judged_leave_one_out(digits, nnmark_controls):
    key = generate_key("trojan", num_classes=10, input_shape=digits.input_shape, dataset=digits, seed=31)
    study = calibration_study(key, nnmark_controls)
    assert study["null_kind"] == "estimated" and "leave-one-out" in study["judged_by"]
    assert study["accused"] == 0 and study["consistent"]
    assert len(study["null"]["controls"]) == 20


def test_calibration_needs_controls(adi_key):
    with pytest.raises(NNMarkError, match="at least one control"):
        calibration_study(adi_key, [])
