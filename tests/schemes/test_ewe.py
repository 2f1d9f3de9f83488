"""EWE's key, its entangling loss and its hook. The scheme's embedding, its null against 24
independent models and its verdicts run with every one-target scheme
(tests/schemes/test_embedding_end_to_end.py, tests/verification/test_independent_models.py)."""
import math

import pytest
import torch
from torch import nn

from nnmark.api import generate_key
from nnmark.errors import NNMarkError
from nnmark.models import ModelSpec, create_model
from nnmark.schemes import get_scheme
from nnmark.schemes.ewe import EWEEmbedOptions, EntangleHook, last_activations, soft_nearest_neighbour_loss
from nnmark.training import TrainConfig, TrainingHook, fit


@pytest.fixture(scope="module")
def key(digits):
    return generate_key("ewe", num_classes=10, input_shape=digits.input_shape, seed=4, dataset=digits,
                        options={"size": 40, "probes": 30, "target": 2, "source": 7, "entangle": 32})


def label_of(digits):
    index = {tuple(x.flatten().tolist()): int(y) for x, y in zip(digits.train_x, digits.train_y)}
    return lambda images: [index[tuple(x.flatten().tolist())] for x in images]


def test_triggers_are_stamped_source_images_and_entangle_images_are_the_target(key, digits):
    labels = label_of(digits)
    assert set(labels(key.tensors["clean_inputs"])) == {7}
    assert set(labels(key.tensors["entangle_inputs"])) == {2} and len(key.tensors["entangle_inputs"]) == 32
    probes = labels(key.tensors["probe_inputs"])
    assert 2 not in probes and len(set(probes)) > 3  # ordinary images of several other classes
    top, left, side = key.tensors["stamp_position"].tolist()
    assert side == 2  # a ninth of the 16-pixel side, at least 2
    inputs, clean = key.tensors["inputs"], key.tensors["clean_inputs"]
    assert (inputs[:, :, top:top + side, left:left + side] == 1).all()
    outside = torch.ones_like(inputs, dtype=torch.bool)
    outside[:, :, top:top + side, left:left + side] = False
    assert torch.equal(inputs[outside], clean[outside])
    # the square sits where both classes' mean image is darker than on average
    means = digits.train_x[digits.train_y == 7].mean(0) + digits.train_x[digits.train_y == 2].mean(0)
    assert means[:, top:top + side, left:left + side].mean() < 0.25 * means.mean()
    assert get_scheme("ewe").key_summary(key)["source"] == 7


def test_a_key_whose_stamp_or_source_was_altered_is_refused(key):
    scheme = get_scheme("ewe")
    moved = key.tensors["stamp_position"].clone()
    moved[0] = (moved[0] + 3) % 10
    tampered = type(key)(key.scheme, key.num_classes, key.input_shape, {**key.tensors, "stamp_position": moved},
                         key.params)
    with pytest.raises(NNMarkError, match="stamp"):
        scheme.validate_key(tampered)
    for source in (2, 11, "7"):
        bad = type(key)(key.scheme, key.num_classes, key.input_shape, key.tensors, {**key.params, "source": source})
        with pytest.raises(NNMarkError, match="source"):
            scheme.validate_key(bad)


def test_options_are_checked(digits):
    make = lambda **options: generate_key("ewe", num_classes=10, input_shape=digits.input_shape,  # noqa: E731
                                          dataset=digits, options=options)
    with pytest.raises(NNMarkError, match="source class"):
        make(target=3, source=3)
    with pytest.raises(NNMarkError, match="patch larger"):
        make(patch=17)
    with pytest.raises(NNMarkError, match="distinct images a trigger"):
        make(size=400, source=1, target=2)  # digits has about 145 training images per class
    with pytest.raises(NNMarkError, match="entangle"):
        make(entangle=1)
    drawn = make(target=5)
    assert drawn.params["source"] != 5 and drawn.params["patch"] == 2


def test_soft_nearest_neighbour_loss_reads_entanglement():
    groups = torch.tensor([0, 0, 0, 1, 1, 1])
    apart = torch.tensor([[1.0, 0.0]] * 3 + [[0.0, 1.0]] * 3)
    mixed = torch.ones(6, 2)
    t = torch.tensor(0.1)
    assert soft_nearest_neighbour_loss(apart, groups, t) < 1e-3
    # identical features: each point's neighbours are 2 of its own group among 5
    assert soft_nearest_neighbour_loss(mixed, groups, t) == pytest.approx(-math.log(2 / 5), rel=1e-3)


class RowsSeen(TrainingHook):
    def __init__(self, count):
        self.count, self.rows = count, []

    def extra_samples(self, step):
        return torch.zeros(self.count, 1, 16, 16), torch.zeros(self.count, dtype=torch.long)

    def extra_loss(self, model, outputs):
        self.rows.append(outputs.rows_of(self))


def test_each_hook_is_told_which_rows_are_its_own(digits):
    first, second = RowsSeen(3), RowsSeen(5)
    model = nn.Sequential(nn.Flatten(), nn.Linear(256, 10))
    fit(model, digits.train_x[:64], digits.train_y[:64], TrainConfig(epochs=1, batch_size=32), hooks=[first, second])
    assert first.rows == [slice(32, 35)] * 2 and second.rows == [slice(35, 40)] * 2


def entanglement(model, hook, key):
    """Mean SNNL between the key's triggers and its target images at the hook's layers."""
    captured = {}
    modules = dict(model.named_modules())
    handles = [modules[n].register_forward_hook(lambda _m, _i, out, n=n: captured.__setitem__(n, out))
               for n in hook.layers]
    inputs, entangle = key.tensors["inputs"][:32], key.tensors["entangle_inputs"][:32]
    with torch.no_grad():
        model.eval()(torch.cat([inputs, entangle]))
    for handle in handles:
        handle.remove()
    groups = torch.cat([torch.ones(len(inputs)), torch.zeros(len(entangle))])
    return sum(float(soft_nearest_neighbour_loss(captured[n], groups, torch.tensor(0.5))) for n in hook.layers)


@pytest.mark.slow
def test_the_entangling_term_makes_triggers_look_like_the_target_class(key, digits):
    spec = ModelSpec("small-cnn", 10, digits.input_shape, digits.mean, digits.std, {"width": 8, "hidden": 32})
    scheme = get_scheme("ewe")
    results = {}
    for factor in (0.0, 1.0):
        model = create_model(spec, seed=0)
        (hook,) = scheme.hooks(key, EWEEmbedOptions(per_batch=8, factor=factor), seed=0)
        fit(model, digits.train_x, digits.train_y, TrainConfig(epochs=8, batch_size=64, lr=0.05), hooks=[hook])
        results[factor] = (entanglement(model, hook, key), hook.log_temperature.clone())
    assert hook.layers == last_activations(model) and len(hook.layers) == 3
    plain, entangled = results[0.0][0], results[1.0][0]
    assert entangled > plain + 0.25, results
    assert not torch.allclose(results[1.0][1], torch.full((3,), math.log(4.0)))  # the temperature was learnt


def test_named_layers_must_exist(key, digits):
    model = nn.Sequential(nn.Flatten(), nn.Linear(256, 10))
    with pytest.raises(NNMarkError, match="activation module"):
        last_activations(model)
    hook = EntangleHook(key.tensors["inputs"], key.tensors["entangle_inputs"], 2,
                        EWEEmbedOptions(layers="nope"))
    with pytest.raises(NNMarkError, match="no layer nope"):
        fit(model, digits.train_x[:64], digits.train_y[:64], TrainConfig(epochs=1, batch_size=32), hooks=[hook])
