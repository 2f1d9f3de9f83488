"""Keys that would frame an innocent model are refused before any query, naming the field, even
though their commitments are valid (a commitment only dates a key; it does not vouch for it)."""
import pytest
import torch
from typer.testing import CliRunner

from nnmark.api import generate_key, verify_model
from nnmark.cli import app
from nnmark.errors import NNMarkError
from nnmark.models import ModelSpec, create_model, save_model
from nnmark.schemes import WatermarkKey, save_key
from nnmark.verification import ControlNull, ControlRecord

from ..schemes.fakes import FixedAnswers


def remade(key, **tensors):
    """The key with some tensors replaced, committed afresh as a dishonest owner would."""
    return WatermarkKey(key.scheme, key.num_classes, key.input_shape, {**key.tensors, **tensors}, dict(key.params))


@pytest.fixture(scope="module")
def adi(digits):
    return generate_key("adi", num_classes=10, input_shape=digits.input_shape, options={"size": 40})


@pytest.fixture(scope="module")
def trojan(digits):
    return generate_key("trojan", num_classes=10, input_shape=digits.input_shape, dataset=digits,
                        options={"size": 40, "target": 3, "probes": 40})


def counting_suspect():
    return FixedAnswers([], default=3)


@pytest.mark.parametrize("change, field", [
    (lambda k: {"inputs": torch.full_like(k.tensors["inputs"], float("nan"))}, "inputs"),
    (lambda k: {"inputs": k.tensors["inputs"] * 3}, "inputs"),
    (lambda k: {"labels": torch.full_like(k.tensors["labels"], 3)}, "labels"),
    (lambda k: {"inputs": k.tensors["inputs"][[0] * 40].clone()}, "inputs"),
])
def test_crafted_adi_keys_are_refused(adi, change, field):
    crafted = remade(adi, **change(adi))
    suspect = counting_suspect()
    with pytest.raises(NNMarkError, match=f"field '{field}'"):
        verify_model(suspect, crafted)
    assert suspect.queries == 0


def test_a_trojan_key_whose_labels_disagree_with_its_target_is_refused(trojan):
    labels = trojan.tensors["labels"].clone()
    labels[:20] = 7
    crafted = remade(trojan, labels=labels)
    null = ControlNull(crafted.commitment, [ControlRecord(f"c{i}", [0] * 40, 0.0) for i in range(20)])
    with pytest.raises(NNMarkError, match="disagree with the key's declared target"):
        verify_model(FixedAnswers([], default=7), crafted, null=null)


def test_one_target_triggers_must_be_their_originals_stamped(trojan):
    inputs = trojan.tensors["inputs"].clone()
    inputs[5] = torch.rand_like(inputs[5])
    with pytest.raises(NNMarkError, match="originals with the key's stamp"):
        verify_model(counting_suspect(), remade(trojan, inputs=inputs))
    probes = trojan.tensors["probe_inputs"].clone()
    probes[0] = float("nan")
    with pytest.raises(NNMarkError, match="field 'probe_inputs'"):
        verify_model(counting_suspect(), remade(trojan, probe_inputs=probes))


def test_a_crafted_uchida_projection_is_refused(digits):
    spec = ModelSpec("small-cnn", 10, digits.input_shape, digits.mean, digits.std)
    key = generate_key("uchida", num_classes=10, input_shape=digits.input_shape, model_spec=spec,
                       options={"bits": 64})
    model = create_model(spec, seed=0)
    weight = dict(model.named_parameters())[key.params["layer"]].detach().mean(0).flatten()
    # rows aligned with the suspect's own weights read the key's bits out of any model
    aligned = torch.where(key.tensors["bits"][:, None] > 0, 1.0, -1.0) * weight.sign()[None, :]
    with pytest.raises(NNMarkError, match="field 'projection'"):
        verify_model(model, remade(key, projection=aligned))


def test_nan_answers_are_not_read_as_labels(adi):
    class NanSuspect(FixedAnswers):
        def predict(self, inputs):
            self.queries += len(inputs)
            return torch.full((len(inputs),), float("nan"))

    with pytest.raises(NNMarkError, match="answered NaN"):
        verify_model(NanSuspect([]), adi)


def test_the_cli_refuses_a_nan_key_in_one_line(tmp_path, adi, digits):
    save_key(remade(adi, inputs=torch.full_like(adi.tensors["inputs"], float("nan"))), tmp_path / "k")
    spec = ModelSpec("small-cnn", 10, digits.input_shape, digits.mean, digits.std)
    save_model(create_model(spec, seed=0), spec, tmp_path / "m")
    result = CliRunner().invoke(app, ["verify", "--model", str(tmp_path / "m"), "--key", str(tmp_path / "k")])
    assert result.exit_code == 2 and "field 'inputs'" in result.output and "NaN" in result.output
    assert "Traceback" not in result.output


def test_nan_logits_from_a_module_are_refused(adi, digits):
    spec = ModelSpec("small-cnn", 10, digits.input_shape, digits.mean, digits.std)
    model = create_model(spec, seed=0)
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    with pytest.raises(NNMarkError, match="NaN or infinite logits"):
        verify_model(model, adi)


def test_any_object_with_predict_is_a_suspect(adi):
    class Bare:  # no description, no query counter
        def predict(self, inputs):
            return torch.zeros(len(inputs), dtype=torch.long)

    verdict = verify_model(Bare(), adi)
    assert verdict.details["queries"] == 40 and verdict.details["suspect"] == "Bare"
    with pytest.raises(NNMarkError, match="cannot query a suspect of type int"):
        verify_model(3, adi)


def test_answers_outside_the_keys_classes_are_refused(adi):
    with pytest.raises(NNMarkError, match="answered class 999, but the key is for a model of 10 classes"):
        verify_model(FixedAnswers([], default=999), adi)
