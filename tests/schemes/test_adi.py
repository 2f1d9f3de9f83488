import pytest
import torch

from nnmark.api import generate_key, verify_model
from nnmark.errors import NNMarkError
from nnmark.schemes import SCHEMES, get_scheme

from .fakes import FixedAnswers


@pytest.fixture
def key():
    return generate_key("adi", num_classes=10, input_shape=(1, 16, 16), seed=2, options={"size": 100})


def test_keygen_makes_abstract_images_with_uniform_labels(key):
    assert "adi" in SCHEMES
    inputs, labels = key.tensors["inputs"], key.tensors["labels"]
    assert inputs.shape == (100, 1, 16, 16) and labels.shape == (100,)
    assert labels.min() >= 0 and labels.max() <= 9 and len(labels.unique()) >= 8
    again = generate_key("adi", num_classes=10, input_shape=(1, 16, 16), seed=2, options={"size": 100})
    assert again.commitment == key.commitment


def test_a_suspect_that_knows_the_labels_is_owned(key):
    verdict = verify_model(FixedAnswers([(key.tensors["inputs"], key.tensors["labels"])]), key, alpha=1e-6)
    assert verdict.owned and verdict.matches == 100 and verdict.p_value < 1e-90
    assert verdict.details["queries"] == 100


def test_a_suspect_answering_one_class_is_not_owned(key):
    verdict = verify_model(FixedAnswers([], default=0), key)
    assert not verdict.owned
    assert verdict.matches == int((key.tensors["labels"] == 0).sum())


def test_calibrated_null_rate_is_used(key):
    answers = key.tensors["labels"].clone()
    answers[:70] = (answers[:70] + 1) % 10  # 30 of 100 agree
    assert verify_model(FixedAnswers([(key.tensors["inputs"], answers)]), key).owned  # against chance 1/10
    calibrated = verify_model(FixedAnswers([(key.tensors["inputs"], answers)]), key, null_rate=0.25)
    assert not calibrated.owned and "given by the verifier" in calibrated.null_source


def test_wrong_answer_shape_is_reported(key):
    with pytest.raises(NNMarkError, match="returned"):
        verify_model(FixedAnswers([(key.tensors["inputs"], torch.zeros(50, dtype=torch.long))]), key)


def test_options_are_checked():
    with pytest.raises(NNMarkError, match="no keygen option"):
        generate_key("adi", num_classes=10, input_shape=(1, 8, 8), options={"bits": 3})
    with pytest.raises(NNMarkError, match="size must be at least 1"):
        generate_key("adi", num_classes=10, input_shape=(1, 8, 8), options={"size": 0})
    with pytest.raises(NNMarkError, match="per_batch"):
        get_scheme("adi").make_options("embed", {"per_batch": 0})
