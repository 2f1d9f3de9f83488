"""The conferrable fingerprint: its key, what a verifier refuses, and that it puts nothing into
the model. Its null against independent models is in tests/verification/test_independent_models.py;
what it tells apart is measured in docs/schemes/fingerprint.md."""
import pytest
import torch

from nnmark.api import generate_key
from nnmark.errors import NNMarkError
from nnmark.schemes import get_scheme
from nnmark.workflows.keygen import make_key

pytestmark = pytest.mark.slow  # keygen reads the shared trained digits model and trains stand-ins

SMALL = {"size": 30, "candidates": 120, "surrogates": 2, "references": 2, "epochs": 3, "steps": 20}


@pytest.fixture(scope="module")
def key(digits, digits_host):
    return generate_key("fingerprint", num_classes=10, input_shape=digits.input_shape, dataset=digits,
                        classifier=digits_host.model, seed=2, options=SMALL)


def test_fingerprints_are_small_moves_that_change_the_owners_answer(key, digits_host):
    inputs, originals, labels = key.tensors["inputs"], key.tensors["originals"], key.tensors["labels"]
    assert inputs.shape == originals.shape == (30, 1, 16, 16)
    assert float((inputs - originals).abs().amax()) <= key.params["epsilon"] + 1e-6
    with torch.no_grad():
        on_fingerprints, on_originals = digits_host.model(inputs), digits_host.model(originals)
    assert torch.equal(on_fingerprints.argmax(1), labels)  # labelled with the owner's own answer
    assert bool((on_originals.argmax(1) != labels).all())  # ... which is not its answer on the original
    assert torch.equal(on_originals.topk(2, dim=1).indices[:, 1], labels)  # the runner-up it was pushed to
    quality = get_scheme("fingerprint").key_summary(key)
    assert set(quality) == {"mean_conferrability", "surrogates_agree", "references_agree"}
    assert quality["surrogates_agree"] > quality["references_agree"]  # keygen's stand-ins are told apart


def test_a_key_of_arbitrary_images_is_refused(key):
    scheme = get_scheme("fingerprint")
    far = key.tensors["inputs"].clone()
    far[0] = 1 - key.tensors["originals"][0]
    crafted = type(key)(key.scheme, key.num_classes, key.input_shape, {**key.tensors, "inputs": far}, key.params)
    with pytest.raises(NNMarkError, match="outside the key's radius"):
        scheme.validate_key(crafted)
    widened = type(key)(key.scheme, key.num_classes, key.input_shape, key.tensors, {**key.params, "epsilon": 2})
    with pytest.raises(NNMarkError, match="radius"):
        scheme.validate_key(widened)


def test_nothing_goes_into_the_model_and_keygen_needs_the_model_itself(key, digits, digits_host):
    scheme = get_scheme("fingerprint")
    options = scheme.make_options("embed", {})
    with pytest.raises(NNMarkError, match="nothing into the model"):
        scheme.hooks(key, options)
    model, spec, how = scheme.embed_trained(digits_host.model, digits_host.spec, key, digits)
    assert model is digits_host.model and "unchanged" in how["mode"]
    with pytest.raises(NNMarkError, match="give --model"):
        make_key("fingerprint", dataset=digits, options=SMALL)
    with pytest.raises(NNMarkError, match="candidates moved|correctly"):
        generate_key("fingerprint", num_classes=10, input_shape=digits.input_shape, dataset=digits,
                     classifier=digits_host.model, seed=2, options={**SMALL, "epsilon": 0.001, "steps": 1})
