import pytest
import torch

from nnmark.api import calibrate_null, generate_key, verify_model
from nnmark.errors import NNMarkError
from nnmark.schemes.patterns import parse_color, text_mask
from nnmark.schemes.trojan import stamp_patch

from .fakes import FixedAnswers

ONE_TARGET = ["content", "noise", "trojan", "unrelated"]


@pytest.fixture(scope="module")
def keys(digits):
    return {name: generate_key(name, num_classes=10, input_shape=digits.input_shape, seed=3, dataset=digits,
                               options={"size": 50, "target": 4}) for name in ONE_TARGET}


@pytest.mark.parametrize("name", ONE_TARGET)
def test_triggers_are_one_target_images_of_other_classes(keys, digits, name):
    key = keys[name]
    assert key.tensors["inputs"].shape == (50, 1, 16, 16)
    assert (key.tensors["labels"] == 4).all() and key.params["target"] == 4
    assert 0 <= key.tensors["inputs"].min() and key.tensors["inputs"].max() <= 1
    if "clean_inputs" in key.tensors:
        clean = key.tensors["clean_inputs"]
        # the originals come from the training set, none of the target class
        index = {tuple(x.flatten().tolist()): int(y) for x, y in zip(digits.train_x, digits.train_y)}
        assert all(index[tuple(x.flatten().tolist())] != 4 for x in clean)
        assert not torch.equal(clean, key.tensors["inputs"])


def test_each_family_alters_images_its_own_way(keys):
    content, noise, trojan = keys["content"], keys["noise"], keys["trojan"]
    changed = (content.tensors["inputs"] != content.tensors["clean_inputs"]).any(0)[0]
    assert changed[:9].sum() == 0 and changed[10:].sum() > 0  # text box in the lower 40%
    difference = noise.tensors["inputs"] - noise.tensors["clean_inputs"]
    unclipped = (noise.tensors["clean_inputs"] > 0.3) & (noise.tensors["clean_inputs"] < 0.7)
    assert torch.allclose(difference[:, :, :, :][unclipped.expand_as(difference)].view(-1)[:1],
                          difference[unclipped.expand_as(difference)].view(-1)[:1])  # one fixed pattern
    patch = trojan.tensors["patch"]
    assert torch.equal(trojan.tensors["inputs"][:, :, -4:, -4:], patch.expand(50, -1, -1, -1))
    assert torch.equal(trojan.tensors["inputs"][:, :, :12], trojan.tensors["clean_inputs"][:, :, :12])


def test_noise_pattern_is_the_same_on_every_image(keys):
    key = keys["noise"]
    inside = (key.tensors["clean_inputs"] + key.tensors["pattern"]).clamp(0, 1)
    assert torch.allclose(inside, key.tensors["inputs"])


def test_null_from_clean_counterparts(keys):
    key = keys["content"]
    triggers, clean = key.tensors["inputs"], key.tensors["clean_inputs"]
    target = torch.full((50,), 4)
    # A suspect that sends stamped images to the target and the originals elsewhere: owned.
    owner = FixedAnswers([(triggers, target), (clean, torch.zeros(50, dtype=torch.long))])
    verdict = verify_model(owner, key)
    assert verdict.owned and "clean counterparts" in verdict.null_source
    assert verdict.details["queries"] == 100  # triggers and their counterparts
    # A suspect that sends everything to the target class: its clean rate is 100%, so no claim.
    everything = FixedAnswers([], default=4)
    assert not verify_model(everything, key).owned


def test_unrelated_needs_control_calibration(keys):
    key = keys["unrelated"]
    suspect = FixedAnswers([(key.tensors["inputs"], torch.full((50,), 4))])
    with pytest.raises(NNMarkError, match="no clean counterparts"):
        verify_model(suspect, key)
    controls = [FixedAnswers([(key.tensors["inputs"], torch.randint(0, 10, (50,), generator=torch.Generator().manual_seed(i)))])
                for i in range(3)]
    calibration = calibrate_null(key, controls)
    assert 0.1 <= calibration.rate < 0.3 and calibration.observed["controls"] == 3
    assert verify_model(suspect, key, null_rate=calibration).owned
    # a control that always answers the target makes the null so high that nothing is claimed
    biased = calibrate_null(key, [FixedAnswers([], default=4)])
    assert not verify_model(suspect, key, null_rate=biased).owned


def test_options_and_inputs_are_checked(digits):
    make = lambda name, **options: generate_key(name, num_classes=10, input_shape=digits.input_shape,  # noqa: E731
                                                dataset=digits, options=options)
    with pytest.raises(NNMarkError, match="target class out of range"):
        make("noise", target=12)
    with pytest.raises(NNMarkError, match="corner"):
        make("trojan", corner="middle")
    with pytest.raises(NNMarkError, match="field 'color'"):
        make("content", color="1,2")
    with pytest.raises(NNMarkError, match="must differ"):
        make("unrelated", source="digits")
    with pytest.raises(NNMarkError, match="needs a dataset"):
        generate_key("content", num_classes=10, input_shape=(1, 16, 16))
    with pytest.raises(NNMarkError, match="does not match"):
        generate_key("content", num_classes=10, input_shape=(3, 16, 16), dataset=digits)


def test_text_mask_and_colour_helpers():
    mask = text_mask("TEST", 8, 24)
    assert mask.shape == (8, 24) and mask.max() > 0.5 and mask.min() == 0
    assert parse_color("0.2,0.4,0.6", 3).flatten().tolist() == pytest.approx([0.2, 0.4, 0.6])
    patched = stamp_patch(torch.zeros(2, 1, 6, 6), torch.ones(1, 2, 2), "top-left")
    assert patched[:, :, :2, :2].eq(1).all() and patched.sum() == 8
