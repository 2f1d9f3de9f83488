import pytest
import torch

from nnmark.api import generate_key, measure_null, verify_model
from nnmark.errors import NNMarkError
from nnmark.schemes.patterns import parse_color, text_mask
from nnmark.data.stamps import stamp_patch

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
    pattern = noise.tensors["pattern"].expand_as(difference)
    inside = ((noise.tensors["clean_inputs"] + pattern) > 0) & ((noise.tensors["clean_inputs"] + pattern) < 1)
    assert inside.float().mean() > 0.3 and torch.allclose(difference[inside], pattern[inside], atol=1e-6)  # one fixed pattern
    patch = trojan.tensors["patch"]
    assert torch.equal(trojan.tensors["inputs"][:, :, -4:, -4:], patch.expand(50, -1, -1, -1))
    assert torch.equal(trojan.tensors["inputs"][:, :, :12], trojan.tensors["clean_inputs"][:, :, :12])


def test_noise_pattern_is_the_same_on_every_image(keys):
    key = keys["noise"]
    inside = (key.tensors["clean_inputs"] + key.tensors["pattern"]).clamp(0, 1)
    assert torch.allclose(inside, key.tensors["inputs"])


def control_null(key, agree_counts):
    """A measured null whose controls sent ``agree_counts[i]`` triggers to the target."""
    from nnmark.verification import ControlNull, ControlRecord

    n = key.item_count
    return ControlNull(key.commitment, [ControlRecord(f"c{i}", [1] * c + [0] * (n - c), 0.0)
                                        for i, c in enumerate(agree_counts)])


@pytest.mark.parametrize("name", ONE_TARGET)
def test_verdict_needs_a_null_measured_on_controls(keys, name):
    key = keys[name]
    suspect = FixedAnswers([(key.tensors["inputs"], torch.full((50,), 4))])
    with pytest.raises(NNMarkError, match="no exact null"):
        verify_model(suspect, key)
    with pytest.raises(NNMarkError, match="needs at least 10"):
        verify_model(suspect, key, null=control_null(key, [0, 1, 0]))
    verdict = verify_model(suspect, key, null=control_null(key, [0, 1, 0, 2, 0, 0, 1, 0, 3, 0, 0, 1, 0, 0, 2, 0, 0, 1, 0, 0]))
    assert verdict.owned and verdict.null_kind == "estimated" and verdict.false_positive_rate is None
    assert "ESTIMATED, NOT EXACT" in verdict.guarantee and "20 control models" in verdict.null_source
    # triggers and probes, shuffled together: the originals of the stamped images are never sent
    assert verdict.details["queries"] == 50 + len(key.tensors["probe_inputs"])


def test_controls_that_send_triggers_to_the_target_mean_no_claim(keys):
    key = keys["noise"]
    suspect = FixedAnswers([(key.tensors["inputs"], torch.full((50,), 4))])
    spread = control_null(key, [0, 0, 40, 0, 0, 12, 0, 0, 30, 0, 0, 0, 25, 0, 0, 0, 0, 5, 0, 0])
    assert not verify_model(suspect, key, null=spread).owned


def test_a_suspect_answering_the_target_for_everything_is_refused(keys):
    key = keys["trojan"]
    verdict = verify_model(FixedAnswers([], default=4), key, null=control_null(key, [0] * 20))
    assert verdict.matches == 50 and not verdict.owned
    assert "not specific" in verdict.details["refused"]


def test_a_null_for_another_key_is_refused(keys):
    with pytest.raises(NNMarkError, match="another key"):
        verify_model(FixedAnswers([]), keys["content"], null=control_null(keys["noise"], [0] * 20))


def test_measure_null_records_each_control_per_item(keys):
    key = keys["unrelated"]
    inputs = key.tensors["inputs"]
    answers = [torch.randint(0, 10, (50,), generator=torch.Generator().manual_seed(i)) for i in range(12)]
    controls = [FixedAnswers([(inputs, a)]) for a in answers]
    null = measure_null(key, controls)
    assert null.size == 12 and len(null.controls[0].hits) == 50
    # each control's record is, item by item, whether its own answer was the target (4)
    assert all(c.hits == (a == 4).int().tolist() for c, a in zip(null.controls, answers))
    assert null.counts().tolist() == [int((a == 4).sum()) for a in answers]
    assert all(c.probe_target_rate == 0.0 for c in null.controls)  # probes answered 0, target is 4


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
    with pytest.raises(NNMarkError, match="needs the training dataset"):
        generate_key("content", num_classes=10, input_shape=(1, 16, 16))
    with pytest.raises(NNMarkError, match="does not match"):
        generate_key("content", num_classes=10, input_shape=(3, 16, 16), dataset=digits)


def test_text_mask_and_colour_helpers():
    mask = text_mask("TEST", 8, 24)
    assert mask.shape == (8, 24) and mask.max() > 0.5 and mask.min() == 0
    assert parse_color("0.2,0.4,0.6", 3).flatten().tolist() == pytest.approx([0.2, 0.4, 0.6])
    patched = stamp_patch(torch.zeros(2, 1, 6, 6), torch.ones(1, 2, 2), "top-left")
    assert patched[:, :, :2, :2].eq(1).all() and patched.sum() == 8


def test_screening_picks_a_target_keyless_models_avoid(digits):
    attracted = [FixedAnswers([], default=c) for c in (0, 1, 2, 3, 5, 6, 7, 8, 9)]  # nothing goes to 4
    key = generate_key("trojan", num_classes=10, input_shape=digits.input_shape, dataset=digits,
                       options={"size": 30, "probes": 10}, screen_with=attracted)
    assert key.params["target"] == 4
    assert key.params["target_screening"]["most_and_total_per_target"][4] == [0, 0]
    fixed = generate_key("trojan", num_classes=10, input_shape=digits.input_shape, dataset=digits,
                         options={"size": 30, "probes": 10, "target": 2}, screen_with=attracted)
    assert fixed.params["target"] == 2  # an explicit target is kept


def test_a_disclosed_subset_is_judged_by_the_controls_on_those_items(keys):
    from nnmark.schemes import get_scheme

    key = keys["trojan"]
    null = control_null(key, [0, 1, 0, 2, 0, 0, 1, 0, 3, 0, 0, 1, 0, 0, 2, 0, 0, 1, 0, 0])
    part = get_scheme("trojan").subset(key, 20, "sha256:cd")
    verdict = verify_model(FixedAnswers([], default=4), part, null=null)
    assert verdict.total == 20 and verdict.details["control_counts"] == null.counts(part.params["subset"]["indices"]).tolist()
    short = type(null)(null.key_commitment, [type(c)(c.name, c.hits[:30], 0.0) for c in null.controls])
    with pytest.raises(NNMarkError, match="do not cover the key's items"):
        verify_model(FixedAnswers([], default=4), part, null=short)
