"""Commitments that hide the key (no seed search inverts them) and bind each item (a revealed
subset is proven against the published digest alone)."""
import json

import pytest
import torch
from typer.testing import CliRunner

from nnmark.api import generate_key, train_model
from nnmark.cli import app
from nnmark.errors import NNMarkError
from nnmark.models import save_model
from nnmark.schemes import get_scheme, load_key, save_key
from nnmark.schemes.commitment import audit_path, check_disclosure, merkle_root, root_from_path
from nnmark.schemes.key import LEGACY_WARNING, WatermarkKey


def tiny_adi(seed=None):
    return generate_key("adi", num_classes=10, input_shape=(1, 4, 4), seed=seed, options={"size": 2})


def test_trying_the_2000_smallest_seeds_does_not_find_the_key():
    published = tiny_adi(seed=1234)  # a seed small enough to be found, were the digest unsalted
    target = published.commitment
    tries = [tiny_adi(seed=s).commitment for s in range(2_000)]  # the published seed among them
    assert target not in tries
    # the material itself is rebuilt exactly from the seed: only the salt keeps the digest hidden
    assert torch.equal(tiny_adi(seed=1234).tensors["labels"], published.tensors["labels"])


def test_salt_is_kept_and_binds(tmp_path):
    key = tiny_adi()
    save_key(key, tmp_path / "k")
    loaded = load_key(tmp_path / "k")
    assert loaded.salt == key.salt and len(key.salt) == 32 and loaded.commitment == key.commitment
    meta = json.loads((tmp_path / "k" / "key.json").read_text())
    meta["salt"] = "00" * 32
    (tmp_path / "k" / "key.json").write_text(json.dumps(meta))
    with pytest.raises(NNMarkError, match="altered"):
        load_key(tmp_path / "k")
    meta["salt"] = "zz"
    (tmp_path / "k" / "key.json").write_text(json.dumps(meta))
    with pytest.raises(NNMarkError, match="field 'salt'"):
        load_key(tmp_path / "k")


def test_a_legacy_key_still_loads_and_says_what_it_lacks(tmp_path):
    key = WatermarkKey("adi", 10, (1, 4, 4), dict(tiny_adi(seed=3).tensors), {"size": 2, "seed": 3}, salt=b"")
    save_key(key, tmp_path / "old")
    assert json.loads((tmp_path / "old" / "key.json").read_text())["format"] == "nnmark-key/1"
    loaded = load_key(tmp_path / "old")
    assert loaded.legacy and loaded.legacy_warning == LEGACY_WARNING and loaded.commitment == key.commitment


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8, 13])
def test_every_audit_path_leads_to_the_root(count):
    leaves = [bytes([i]) * 32 for i in range(count)]
    root = merkle_root(leaves)
    for index in range(count):
        assert root_from_path(leaves[index], index, count, audit_path(leaves, index)) == root
        if count > 1:
            assert root_from_path(leaves[index], (index + 1) % count, count, audit_path(leaves, index)) != root


def test_a_disclosed_subset_is_proven_and_a_forgery_fails(digits):
    key = generate_key("adi", num_classes=10, input_shape=digits.input_shape, options={"size": 30})
    scheme = get_scheme("adi")
    part = scheme.subset(key, 8, "sha256:" + "ab" * 32)
    record = part.params["subset"]["disclosure"]
    items = {name: part.tensors[name] for name in part.item_tensors}
    assert check_disclosure(record, items, key.commitment) == []
    assert not part.salt  # the revealed part cannot recompute the hidden leaves
    forged = {**items, "labels": items["labels"].clone()}
    forged["labels"][0] = (forged["labels"][0] + 1) % 10
    problems = check_disclosure(record, forged, key.commitment)
    assert len(problems) == 1 and f"item {record['indices'][0]}" in problems[0]
    assert check_disclosure(record, items, "0" * 64) != []
    moved = {**record, "indices": [record["indices"][1], record["indices"][0], *record["indices"][2:]]}
    assert check_disclosure(moved, items, key.commitment) != []


def test_the_subset_is_fixed_by_commitment_and_suspect_not_chosen(digits):
    key = generate_key("adi", num_classes=10, input_shape=digits.input_shape, options={"size": 30})
    scheme = get_scheme("adi")
    first = scheme.subset(key, 10, "sha256:aa").params["subset"]["indices"]
    assert scheme.subset(key, 10, "sha256:aa").params["subset"]["indices"] == first
    assert scheme.subset(key, 10, "sha256:bb").params["subset"]["indices"] != first
    # other sizes for the same suspect are nested: one order, cut at another length
    assert set(first) <= set(scheme.subset(key, 12, "sha256:aa").params["subset"]["indices"])


@pytest.mark.slow
def test_check_disclosure_command(tmp_path, digits):
    from nnmark.training import TrainConfig

    key = generate_key("adi", num_classes=10, input_shape=digits.input_shape, options={"size": 30})
    model = train_model(digits, TrainConfig(epochs=1, batch_size=64, lr=0.05))
    save_key(key, tmp_path / "k")
    save_model(model.model, model.spec, tmp_path / "m")
    runner = CliRunner()
    result = runner.invoke(app, ["verify", "--model", str(tmp_path / "m"), "--key", str(tmp_path / "k"),
                                 "--subset", "10", "--report", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    ok = runner.invoke(app, ["check-disclosure", str(tmp_path / "r"), "--commitment", key.commitment])
    assert ok.exit_code == 0 and "all 10 revealed items are proven" in ok.output
    bad = runner.invoke(app, ["check-disclosure", str(tmp_path / "r"), "--commitment", "1" * 64])
    assert bad.exit_code == 2 and "published commitment" in bad.output
