"""Each scheme embedded for real on the embedded digits: the watermarked model is owned (at
1e-6 under an exact null, at 1e-4 under one estimated on controls), a control trained the same way without the key is not, and the watermark costs at most
three points of test accuracy. Schemes without an exact null are judged against the null measured
on 20 control models of several architectures."""
from dataclasses import replace
from pathlib import Path

import pytest

from nnmark.api import generate_key, measure_null, train_model, verify_model
from nnmark.training.presets import preset
from nnmark.workflows.demo import DEMO_ARCHITECTURE, DEMO_PRESET

DEMO_CONFIG = preset(DEMO_PRESET)
from nnmark.models import LoadedModel, ModelSpec
from nnmark.schemes import SCHEMES, get_scheme

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def spec(digits):
    return ModelSpec(DEMO_ARCHITECTURE, 10, digits.input_shape, digits.mean, digits.std)


@pytest.fixture(scope="module")
def control(digits_host):
    return digits_host


# Shorter keygen where a scheme trains something for its key (the mark is learnt all the same).
KEY_OPTIONS = {"encoder-decoder": {"epochs": 4, "blocks": 2, "attempts": 1}}


# frontier stitching marks the trained model its key was made from (tests/schemes/test_frontier.py);
# dawn and dark-knowledge put nothing into the model, its API carries the mark (tests/schemes/test_dawn.py,
# tests/schemes/test_dark_knowledge.py); a fingerprint puts nothing into it at all (tests/schemes/test_fingerprint.py).
@pytest.mark.parametrize("name", [n for n in SCHEMES.names() if n != "frontier" and not get_scheme(n).marks_the_api
                                  and not get_scheme(n).embeds_nothing])
def test_scheme_embeds_and_control_is_not_owned(name, digits, spec, control, nnmark_controls, screening_models):
    scheme = get_scheme(name)
    # the documented workflow: one-target keys take a target keyless models rarely send triggers to
    # (a scheme whose key reads a trained classifier's features gets the control's)
    key = generate_key(name, num_classes=10, input_shape=digits.input_shape, seed=11, dataset=digits, model_spec=spec,
                       classifier=control.model, screen_with=screening_models, options=KEY_OPTIONS.get(name))
    # 12 of the demo's 20 epochs: enough for every mark to take, at a point of accuracy at most
    marked = train_model(digits, replace(DEMO_CONFIG, epochs=12), architecture=DEMO_ARCHITECTURE, key=key,
                         embed_options=scheme.recommended_embed_options(len(digits.train_y)))
    null = measure_null(key, nnmark_controls) if scheme.null_kind == "estimated" else None
    # An estimated null from 20 controls reaches 1e-6 only for some keys (docs/verification.md
    # measures how often); what every one-target mark must do is beat every control and reach 1e-4.
    alpha = 1e-6 if scheme.null_kind == "exact" else 1e-4
    owned = verify_model(marked.model, key, null=null, alpha=alpha)
    judged_control = verify_model(control.model, key, null=null, alpha=alpha)
    assert owned.owned, owned
    if null is not None:
        assert owned.matches > max(null.counts()) and owned.details["rank_p_value"] == pytest.approx(1 / 21)
    assert not judged_control.owned, judged_control
    # 12 epochs marked against the host's 20 unmarked: a few points at most (2.2 for encoder-decoder
    # with AVX2 kernels, where the host reached 100%; one test image is 0.28). Paired costs over
    # seeds are measured in docs/robustness.md, "Embedding cost".
    assert marked.test_accuracy >= control.test_accuracy - 0.03


def test_uchida_embeds_when_fine_tuning(digits, spec, control):
    key = generate_key("uchida", num_classes=10, input_shape=digits.input_shape, seed=12, model_spec=spec)
    assert not verify_model(control.model, key).owned
    import copy
    base = LoadedModel(copy.deepcopy(control.model), control.spec, {}, Path("<control>"))
    tuned = train_model(digits, replace(DEMO_CONFIG, epochs=5, lr=0.005, schedule="constant"), key=key,
                        mode="pretrained", base=base)
    verdict = verify_model(tuned.model, key)
    assert verdict.owned and verdict.p_value < 1e-6
    assert tuned.test_accuracy >= control.test_accuracy - 0.02


def test_uchida_embeds_while_distilling(digits, spec, control):
    key = generate_key("uchida", num_classes=10, input_shape=digits.input_shape, seed=13, model_spec=spec)
    teacher = LoadedModel(control.model, control.spec, {}, Path("<teacher>"))
    student = train_model(digits, replace(DEMO_CONFIG, epochs=6, seed=5), key=key, mode="distill",
                          base=teacher, architecture=DEMO_ARCHITECTURE)
    plain_student = train_model(digits, replace(DEMO_CONFIG, epochs=6, seed=5), mode="distill",
                                base=teacher, architecture=DEMO_ARCHITECTURE)
    assert verify_model(student.model, key).owned
    assert not verify_model(plain_student.model, key).owned
    assert student.test_accuracy >= plain_student.test_accuracy - 0.02
