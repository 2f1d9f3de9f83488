"""The auditor's test: every scheme's stated error rate, checked against models nnmark did not make.

24 independent models (linear, MLPs, CNNs with and without batch norm, a LeNet; SGD and Adam;
other seeds) are trained in plain PyTorch inside the tests (``tests/independent.py``) and never
see a key. For every scheme, keys are drawn (for the one-target schemes, one per target class)
and every (key, model) pair is verified. Asserted: no pair is judged owned at alpha = 1e-6, and
at alpha = 0.01 the number judged owned is not above what the stated rate allows (the upper end
of the exact 99.9% binomial interval at that rate). Estimated nulls are measured on the 20
controls nnmark trains itself (other architectures and recipes than the auditor's).
"""
from __future__ import annotations

import pytest
from scipy import stats

from nnmark.api import generate_key, measure_null, verify_model
from nnmark.models import ModelSpec
from nnmark.verification.stats import decision_threshold

pytestmark = pytest.mark.slow

ONE_TARGET = {
    "noise": {}, "content": {}, "trojan": {}, "unrelated": {}, "ewe": {},
    "encoder-decoder": {"epochs": 1, "blocks": 1, "width": 4, "decoder_size": 1, "content": "pixel",
                        "attempts": 1},
}


def audit(verdicts, stated_at_001: float) -> dict:
    strict = [v for v in verdicts if v.owned]
    loose = sum(v.p_value <= 0.01 for v in verdicts)
    allowed = int(stats.binom.ppf(0.999, len(verdicts), stated_at_001))
    return {"pairs": len(verdicts), "owned_at_1e-6": len(strict), "owned_at_0.01": loose,
            "allowed_at_0.01": allowed, "smallest_p": min(v.p_value for v in verdicts)}


@pytest.mark.parametrize("scheme", sorted(ONE_TARGET))
def test_one_target_null_holds_for_independent_models(scheme, digits, nnmark_controls, independent_models):
    verdicts = []
    for target in range(digits.num_classes):
        key = generate_key(scheme, num_classes=10, input_shape=digits.input_shape, dataset=digits, seed=1000 + target,
                           options={"target": target, **ONE_TARGET[scheme]})
        null = measure_null(key, nnmark_controls)
        verdicts += [verify_model(model, key, null=null) for _, model in independent_models]
    result = audit(verdicts, 0.01)
    assert result["pairs"] == 240
    assert result["owned_at_1e-6"] == 0, result
    assert result["owned_at_0.01"] <= result["allowed_at_0.01"], result


def test_adi_exact_null_holds_for_independent_models(digits, independent_models):
    verdicts = []
    for index in range(10):
        key = generate_key("adi", num_classes=10, input_shape=digits.input_shape, seed=2000 + index)
        verdicts += [verify_model(model, key) for _, model in independent_models]
    stated = decision_threshold(100, 0.1, 0.01)[1]
    result = audit(verdicts, stated)
    assert result["owned_at_1e-6"] == 0 and result["owned_at_0.01"] <= result["allowed_at_0.01"], result
    assert all(v.false_positive_rate <= 1e-6 for v in verdicts)


def test_uchida_exact_null_holds_for_independently_trained_networks(digits):
    """White-box: the auditor trains nnmark's architecture (the keyed layer must exist) with its own
    plain loop and Adam, from other seeds."""
    from tests.independent import train_same_architecture

    models = train_same_architecture(digits, 6)
    spec = ModelSpec("small-cnn", 10, digits.input_shape, digits.mean, digits.std)
    verdicts = []
    for index in range(40):
        key = generate_key("uchida", num_classes=10, input_shape=digits.input_shape, model_spec=spec, seed=3000 + index)
        verdicts += [verify_model(model, key) for model in models]
    result = audit(verdicts, decision_threshold(256, 0.5, 0.01)[1])
    assert result["owned_at_1e-6"] == 0 and result["owned_at_0.01"] <= result["allowed_at_0.01"], result


def test_fingerprint_null_holds_for_independent_and_innocently_distilled_models(digits, digits_host, nnmark_controls,
                                                                                independent_models):
    """The fingerprint's hardest innocents: models of the owner's data from other seeds and
    architectures, and models distilled from an independent teacher (extracted, but not from the owner)."""
    from tests.independent import distil_from_independent_teacher

    suspects = [model for _, model in independent_models]
    suspects += [model for _, model in distil_from_independent_teacher(independent_models[6][1], digits)]
    verdicts = []
    for index in range(3):
        key = generate_key("fingerprint", num_classes=10, input_shape=digits.input_shape, dataset=digits,
                           classifier=digits_host.model, seed=4000 + index,
                           options={"candidates": 200, "surrogates": 2, "references": 2, "epochs": 4, "steps": 30})
        null = measure_null(key, nnmark_controls)
        verdicts += [verify_model(model, key, null=null) for model in suspects]
    result = audit(verdicts, 0.01)
    assert result["pairs"] == 78
    assert result["owned_at_1e-6"] == 0, result
    assert result["owned_at_0.01"] <= result["allowed_at_0.01"], result
