"""Frontier stitching for real on digits: keygen from the trained model, the stitching fine-tune,
and the verdict against a null measured on keyless controls."""
from pathlib import Path

import pytest
import torch

from nnmark.api import measure_null, train_model, verify_model
from nnmark.errors import NNMarkError
from nnmark.models import LoadedModel
from nnmark.models.inference import predict_logits
from nnmark.schemes import get_scheme
from nnmark.training.presets import preset
from nnmark.workflows.keygen import make_key

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def key(digits, digits_host):
    return make_key("frontier", dataset=digits, classifier=digits_host.model, seed=5)


def test_key_straddles_the_host_boundary(key, digits_host):
    crossed = key.tensors["crossed"].bool()
    assert key.item_count == 100 and int(crossed.sum()) == 50
    answers = predict_logits(digits_host.model, key.tensors["inputs"]).argmax(1)
    labels = key.tensors["labels"]
    # true adversaries cross the host's boundary, false ones stay; all keep their original label
    assert bool((answers[crossed] != labels[crossed]).all()) and bool((answers[~crossed] == labels[~crossed]).all())


def test_stitching_marks_the_model_and_the_null_is_measured(key, digits, digits_host, nnmark_controls):
    scheme = get_scheme("frontier")
    base = LoadedModel(digits_host.model, digits_host.spec, {}, Path("<host>"))
    marked = train_model(digits, preset("fine-tune", epochs=5, batch_size=64, seed=1), key=key, mode="pretrained",
                         base=base, embed_options=scheme.recommended_embed_options(len(digits.train_y)))
    assert marked.test_accuracy >= digits_host.test_accuracy - 0.02
    with pytest.raises(NNMarkError, match="no exact null"):
        verify_model(marked.model, key)
    null = measure_null(key, nnmark_controls)
    owned = verify_model(marked.model, key, null=null, alpha=0.01)
    host = verify_model(digits_host.model, key, null=null, alpha=0.01)
    assert owned.matches > max(null.counts()) and owned.owned, owned
    assert host.matches == 50 and not host.owned  # the unmarked host gets every true adversary wrong
    # the honest limit: keyless models already agree with most of the key (true labels), so
    # 20 controls cannot bring the p-value anywhere near 1e-6 (docs/extending.md)
    assert min(null.counts()) > 50 and owned.p_value > 1e-6


def test_keygen_needs_the_classifier_and_enough_adversaries(digits, digits_host):
    from nnmark.api import generate_key

    with pytest.raises(NNMarkError, match="needs a trained classifier"):
        generate_key("frontier", num_classes=10, input_shape=digits.input_shape, seed=5, dataset=digits)
    with pytest.raises(NNMarkError, match="from the trained model it marks: give --model"):
        make_key("frontier", dataset=digits, seed=5)  # never a stand-in trained on the spot
    with pytest.raises(NNMarkError, match="true adversaries at ε = 0.0001"):
        make_key("frontier", dataset=digits, classifier=digits_host.model, seed=5, options={"epsilon": 0.0001})
    assert all(p.requires_grad for p in digits_host.model.parameters())  # keygen left the model as it was
    assert torch.isfinite(next(digits_host.model.parameters())).all()
