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
    assert torch.equal(again.tensors["inputs"], inputs) and torch.equal(again.tensors["labels"], labels)
    assert again.commitment != key.commitment  # the same material under a fresh salt


def test_a_suspect_that_knows_the_labels_is_owned(key):
    verdict = verify_model(FixedAnswers([(key.tensors["inputs"], key.tensors["labels"])]), key, alpha=1e-6)
    assert verdict.owned and verdict.matches == 100 and verdict.p_value < 1e-90
    assert verdict.details["queries"] == 100


def test_a_suspect_answering_one_class_is_not_owned(key):
    verdict = verify_model(FixedAnswers([], default=0), key)
    assert not verdict.owned
    assert verdict.matches == int((key.tensors["labels"] == 0).sum())


def test_a_family_of_tests_holds_each_to_alpha_over_tests(key):
    answers = key.tensors["labels"].clone()
    answers[:78] = (answers[:78] + 1) % 10  # 22 of 100 agree: p about 3e-4
    suspect = FixedAnswers([(key.tensors["inputs"], answers)])
    alone = verify_model(suspect, key, alpha=1e-3)
    family = verify_model(suspect, key, alpha=1e-3, tests=1000)
    assert alone.owned and not family.owned and family.alpha_per_test == pytest.approx(1e-6)
    assert family.threshold > alone.threshold and family.false_positive_rate <= 1e-6
    assert "1000 tests" in family.guarantee
    with pytest.raises(NNMarkError, match="control models do not apply"):
        verify_model(suspect, key, null=object())


def test_a_query_budget_is_checked_before_any_query(key):
    suspect = FixedAnswers([(key.tensors["inputs"], key.tensors["labels"])], query_budget=99)
    with pytest.raises(NNMarkError, match="needs 100 queries"):
        verify_model(suspect, key)
    assert suspect.queries == 0


def test_wrong_answer_shape_is_reported(key):
    class HalfAnswers(FixedAnswers):
        def predict(self, inputs):
            return super().predict(inputs)[:50]

    with pytest.raises(NNMarkError, match="returned"):
        verify_model(HalfAnswers([]), key)


def test_options_are_checked():
    with pytest.raises(NNMarkError, match="no keygen option"):
        generate_key("adi", num_classes=10, input_shape=(1, 8, 8), options={"bits": 3})
    with pytest.raises(NNMarkError, match="size must be at least 1"):
        generate_key("adi", num_classes=10, input_shape=(1, 8, 8), options={"size": 0})
    with pytest.raises(NNMarkError, match="per_batch"):
        get_scheme("adi").make_options("embed", {"per_batch": 0})
