import pytest
import torch

from nnmark.api import generate_key, verify_model
from nnmark.errors import NNMarkError
from nnmark.models import ModelSpec, create_model
from nnmark.schemes import get_scheme
from nnmark.schemes.uchida import averaged_weight, choose_layer, message_bits

from .fakes import FixedAnswers, sign_with_regulariser

SPEC = ModelSpec("small-cnn", 10, (1, 16, 16), (0.5,), (0.5,))


def make_key(**options):
    return generate_key("uchida", num_classes=10, input_shape=(1, 16, 16), seed=1, model_spec=SPEC, options=options)


def test_default_layer_is_the_declared_one_else_a_middle_weight_wide_enough():
    # small-cnn declares features.10 (288 inputs per filter), where 256 bits fit
    assert make_key(bits=64).params["layer"] == make_key(bits=256).params["layer"] == "net.features.10.weight"
    # beyond it, the rule: no conv or hidden linear weight takes 512 inputs (the output layer is never chosen)
    with pytest.raises(NNMarkError, match="no weight has 512 inputs"):
        make_key(bits=512)
    # a module of the user's, declaring nothing: the weight nearest the middle with enough inputs
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 16, 3), torch.nn.ReLU(),
                              torch.nn.Flatten(), torch.nn.Linear(16 * 12 * 12, 64), torch.nn.ReLU(),
                              torch.nn.Linear(64, 10))
    assert choose_layer(net, 64) == "2.weight" and choose_layer(net, 1000) == "5.weight"
    key = generate_key("uchida", num_classes=10, input_shape=(1, 16, 16), seed=1, classifier=net, options={"bits": 64})
    assert key.params["layer"] == "2.weight" and key.tensors["projection"].shape == (64, 72)


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


def test_a_suspect_without_the_keyed_layer_is_refused_unless_the_verifier_names_one():
    """The audit's case: with the key's layer absent or of another shape, verify used to read some
    other layer of the same shape and give a verdict about a weight the signature was never in."""
    from nnmark.errors import MarkNotFound

    key = make_key(bits=128)
    model = create_model(SPEC, seed=0)
    foreign = torch.nn.Sequential(model.net.features, model.net.classifier)  # other parameter names
    with pytest.raises(MarkNotFound, match="cannot verify: the signature is in layer .* it has no .* name it"):
        verify_model(foreign, key)
    wider = create_model(ModelSpec("small-cnn", 10, (1, 16, 16), (0.5,), (0.5,), {"width": 24}), seed=0)
    with pytest.raises(MarkNotFound, match="has shape"):  # the key's layer name, another shape
        verify_model(wider, key)
    renamed = {name: p for name, p in foreign.named_parameters()
               if tuple(p.shape) == tuple(key.params["weight_shape"])}
    with pytest.raises(MarkNotFound, match="not a weight of the key's shape"):
        verify_model(foreign, key, layer="0.0.weight")
    chosen = next(iter(renamed)) if len(renamed) == 1 else None
    assert chosen is not None
    verdict = verify_model(foreign, key, layer=chosen)
    assert verdict.details["layer_matched_by"] == "named by the verifier"
    weight = dict(model.named_parameters())[key.params["layer"]].detach()
    decoded = (key.tensors["projection"] @ averaged_weight(weight) > 0).float()
    assert verdict.matches == int((decoded == key.tensors["bits"]).sum())


def test_white_box_needs_weights():
    with pytest.raises(NNMarkError, match="reads weights"):
        verify_model(FixedAnswers([]), make_key())


def test_bad_layer_and_options():
    with pytest.raises(NNMarkError, match="is not a convolution or linear weight"):
        make_key(layer="net.classifier.1.bias")
    with pytest.raises(NNMarkError, match="strength"):
        get_scheme("uchida").make_options("embed", {"strength": -1})
    with pytest.raises(NNMarkError, match="needs the model"):
        generate_key("uchida", num_classes=10, input_shape=(1, 16, 16))
