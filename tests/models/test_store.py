import json

import pytest
import torch

from nnmark.errors import NNMarkError
from nnmark.models import ModelSpec, create_model, load_model, save_model


@pytest.fixture
def spec():
    return ModelSpec("small-cnn", 10, (1, 16, 16), (0.3,), (0.3,))


def test_round_trip_without_pickle(tmp_path, spec):
    model = create_model(spec, seed=1).eval()
    save_model(model, spec, tmp_path / "m", metadata={"note": "x"})
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.json", "model.safetensors"]
    loaded = load_model(tmp_path / "m")
    x = torch.rand(3, 1, 16, 16)
    assert torch.equal(loaded.model(x), model(x))
    assert loaded.spec == spec and loaded.metadata == {"note": "x"}


def test_seeded_creation_is_reproducible_and_leaves_global_rng(spec):
    torch.manual_seed(5)
    expected_next = torch.rand(1)
    torch.manual_seed(5)
    a, b = create_model(spec, seed=7), create_model(spec, seed=7)
    assert torch.rand(1) == expected_next
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_normalisation_lives_in_the_model(spec):
    model = create_model(spec, seed=0).eval()
    x = torch.rand(2, 1, 16, 16)
    assert torch.allclose(model(x), model.net((x - 0.3) / 0.3))


def test_weights_that_do_not_fit_are_reported(tmp_path, spec):
    save_model(create_model(spec, seed=0), spec, tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    meta["model"]["kwargs"] = {"width": 8}
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
    with pytest.raises(NNMarkError, match="weights do not fit architecture 'small-cnn'.*wrong shape"):
        load_model(tmp_path / "m")


def test_bad_metadata_fields_are_named(tmp_path, spec):
    save_model(create_model(spec, seed=0), spec, tmp_path / "m")
    path = tmp_path / "m" / "model.json"
    meta = json.loads(path.read_text())
    meta["model"]["input_shape"] = [1, 16]
    path.write_text(json.dumps(meta))
    with pytest.raises(NNMarkError, match="model.json: field 'model.input_shape'"):
        load_model(tmp_path / "m")
    meta["format"] = "something-else"
    path.write_text(json.dumps(meta))
    with pytest.raises(NNMarkError, match="is not an nnmark model"):
        load_model(tmp_path / "m")


def test_corrupt_weights_are_reported(tmp_path, spec):
    save_model(create_model(spec, seed=0), spec, tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(NNMarkError, match="model.safetensors: is not a readable safetensors file"):
        load_model(tmp_path / "m")


def test_save_refuses_to_clobber(tmp_path, spec):
    model = create_model(spec, seed=0)
    save_model(model, spec, tmp_path / "m")
    with pytest.raises(NNMarkError, match="already exists"):
        save_model(model, spec, tmp_path / "m")
    save_model(model, spec, tmp_path / "m", force=True)


@pytest.mark.parametrize("field, value, message", [
    ("std", [0.0], "field 'model.std': must be 1 finite numbers above 0"),
    ("mean", ["x"], "field 'model.mean.0'"),
    ("kwargs", {"width": -4}, "bad arguments for model 'small-cnn'"),
])
def test_hostile_model_json_is_refused_by_name(tmp_path, spec, field, value, message):
    save_model(create_model(spec, seed=0), spec, tmp_path / "m")
    path = tmp_path / "m" / "model.json"
    meta = json.loads(path.read_text())
    meta["model"][field] = value
    path.write_text(json.dumps(meta))
    with pytest.raises(NNMarkError, match=message):
        load_model(tmp_path / "m")


def test_nan_weights_are_refused(tmp_path, spec):
    model = create_model(spec, seed=0)
    with torch.no_grad():
        next(model.parameters())[0] = float("nan")
    save_model(model, spec, tmp_path / "m")
    with pytest.raises(NNMarkError, match="weights hold NaN or infinite values"):
        load_model(tmp_path / "m")
