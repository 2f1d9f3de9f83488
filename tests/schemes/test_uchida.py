import pytest
import torch

from nnmark.api import generate_key, verify_model
from nnmark.errors import NNMarkError
from nnmark.models import ModelSpec, create_model
from nnmark.schemes import get_scheme
from nnmark.schemes.uchida import averaged_weight, message_bits

from .fakes import FixedAnswers, sign_with_regulariser

SPEC = ModelSpec("small-cnn", 10, (1, 16, 16), (0.5,), (0.5,))


def make_key(**options):
    return generate_key("uchida", num_classes=10, input_shape=(1, 16, 16), seed=1, model_spec=SPEC, options=options)


def test_default_layer_is_a_middle_conv_wide_enough():
    key = make_key(bits=64)
    # convs of small-cnn take 9, 144, 144, 288 inputs per filter; for 64 bits the middle ones qualify
    assert key.params["layer"] in ("net.features.3.weight", "net.features.7.weight")
    assert make_key(bits=256).params["layer"] == "net.features.10.weight"
    with pytest.raises(NNMarkError, match="no convolution has 512 inputs"):
        make_key(bits=512)
    assert key.tensors["projection"].shape == (64, 144)


def test_message_bits_are_deterministic_and_balanced():
    bits = message_bits("Alice Corp", 256)
    assert torch.equal(bits, message_bits("Alice Corp", 256))
    assert not torch.equal(bits, message_bits("Bob Ltd", 256))
    assert 100 < bits.sum() < 156
    assert torch.equal(make_key(message="Alice Corp").tensors["bits"], bits)


def test_unmarked_models_decode_near_half():
    key = make_key()
    ber = [verify_model(create_model(SPEC, seed=s), key).details["bit_error_rate"] for s in range(5)]
    assert all(0.35 < b < 0.65 for b in ber)
    assert not any(verify_model(create_model(SPEC, seed=s), key).owned for s in range(5))


def test_regulariser_alone_writes_the_signature():
    key = make_key(bits=128)
    model = sign_with_regulariser(create_model(SPEC, seed=0), key, steps=100)
    verdict = verify_model(model, key)
    assert verdict.matches == 128 and verdict.owned and verdict.details["layer_matched_by"] == "name"


def test_layer_found_by_shape_in_a_foreign_module():
    key = make_key(bits=128)
    model = create_model(SPEC, seed=0)
    foreign = torch.nn.Sequential(model.net.features, model.net.classifier)  # other parameter names
    verdict = verify_model(foreign, key)
    assert verdict.details["layer_matched_by"] == "shape"
    weight = dict(model.named_parameters())[key.params["layer"]].detach()
    decoded = (key.tensors["projection"] @ averaged_weight(weight) > 0).float()
    assert verdict.matches == int((decoded == key.tensors["bits"]).sum())


def test_white_box_needs_weights():
    with pytest.raises(NNMarkError, match="reads weights"):
        verify_model(FixedAnswers([]), make_key())


def test_bad_layer_and_options():
    with pytest.raises(NNMarkError, match="is not a convolution weight"):
        make_key(layer="net.classifier.1.weight")
    with pytest.raises(NNMarkError, match="strength"):
        get_scheme("uchida").make_options("embed", {"strength": -1})
    with pytest.raises(NNMarkError, match="needs the model's architecture"):
        generate_key("uchida", num_classes=10, input_shape=(1, 16, 16))
