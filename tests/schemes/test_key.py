import json

import pytest
import torch

from nnmark.errors import NNMarkError
from nnmark.schemes import WatermarkKey, load_key, save_key


SALT = bytes(range(32))


def make_key():
    return WatermarkKey("adi", 10, (1, 4, 4), {"inputs": torch.rand(3, 1, 4, 4),
                                              "labels": torch.tensor([1, 2, 3])}, {"size": 3}, salt=SALT)


def test_round_trip_keeps_commitment(tmp_path):
    key = make_key()
    save_key(key, tmp_path / "k")
    loaded = load_key(tmp_path / "k")
    assert loaded.commitment == key.commitment
    assert (tmp_path / "k" / "commitment.txt").read_text().strip() == key.commitment
    assert torch.equal(loaded.tensors["inputs"], key.tensors["inputs"])


def test_commitment_binds_every_part():
    key = make_key()
    base = key.commitment
    assert len(base) == 64
    changed_label = WatermarkKey(key.scheme, 10, key.input_shape, {**key.tensors, "labels": torch.tensor([1, 2, 4])},
                                 key.params, salt=SALT)
    changed_meta = WatermarkKey(key.scheme, 11, key.input_shape, key.tensors, key.params, salt=SALT)
    changed_dtype = WatermarkKey(key.scheme, 10, key.input_shape, {**key.tensors, "labels": key.tensors["labels"].int()},
                                 key.params, salt=SALT)
    fresh_salt = WatermarkKey(key.scheme, 10, key.input_shape, key.tensors, key.params)
    assert len({base, changed_label.commitment, changed_meta.commitment, changed_dtype.commitment,
                fresh_salt.commitment}) == 5
    # the creation time is not key material: the same key (same salt) made twice commits the same
    assert WatermarkKey(key.scheme, 10, key.input_shape, key.tensors, key.params, created_at="x",
                        salt=SALT).commitment == base


def test_tampered_material_is_refused(tmp_path):
    key = make_key()
    save_key(key, tmp_path / "k")
    from safetensors.torch import save_file
    save_file({"inputs": key.tensors["inputs"], "labels": torch.tensor([1, 2, 9])}, str(tmp_path / "k" / "key.safetensors"))
    with pytest.raises(NNMarkError, match="does not match its commitment"):
        load_key(tmp_path / "k")


def test_tampered_metadata_is_refused(tmp_path):
    save_key(make_key(), tmp_path / "k")
    meta_path = tmp_path / "k" / "key.json"
    meta = json.loads(meta_path.read_text())
    meta["num_classes"] = 2
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(NNMarkError, match="altered"):
        load_key(tmp_path / "k")


def test_missing_or_corrupt_files(tmp_path):
    with pytest.raises(NNMarkError, match="key directory does not exist"):
        load_key(tmp_path / "none")
    save_key(make_key(), tmp_path / "k")
    (tmp_path / "k" / "key.safetensors").write_bytes(b"junk")
    with pytest.raises(NNMarkError, match="key.safetensors: is not a readable safetensors file"):
        load_key(tmp_path / "k")
    (tmp_path / "k" / "key.json").write_text("[]")
    with pytest.raises(NNMarkError, match="key.json: key metadata must be a JSON object"):
        load_key(tmp_path / "k")


def test_commitment_follows_in_place_changes_and_replaced_tensors():
    import torch

    from nnmark.schemes.key import WatermarkKey

    key = WatermarkKey("adi", 10, (1, 4, 4), {"inputs": torch.rand(3, 1, 4, 4), "labels": torch.arange(3)})
    first = key.commitment
    assert key.commitment == first  # the cached tree
    key.tensors["labels"][0] = 5  # in place
    second = key.commitment
    assert second != first
    key.tensors["inputs"] = key.tensors["inputs"].clone()  # same values, new tensor: same commitment
    assert key.commitment == second
    key.params["size"] = 3
    assert key.commitment != second
