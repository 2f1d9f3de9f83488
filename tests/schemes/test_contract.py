"""The contract every registered scheme keeps, checked the same way for each (a new scheme file is
picked up here with no edit): keygen from what the workflow resolves, save and load, the
commitment, a disclosed subset, hooks the trainer can run, and verdicts on stand-in suspects."""
import json
from pathlib import Path

import pytest
import torch

from nnmark.api import measure_null, verify_model
from nnmark.errors import NNMarkError
from nnmark.models import LoadedModel, ModelSpec, create_model
from nnmark.schemes import SCHEMES, get_scheme, load_key, save_key
from nnmark.schemes.commitment import check_disclosure
from nnmark.training import TrainConfig, TrainingHook, fit
from nnmark.verification.evidence import Evidence
from nnmark.verification.stats import Verdict
from nnmark.workflows.keygen import make_key
from tests.schemes.fakes import FixedAnswers, FixedScores

pytestmark = pytest.mark.slow  # every test here uses a model trained for it

# Small keys, so every scheme's keygen takes a second or so; a scheme not listed uses its defaults.
SMALL_OPTIONS = {
    "adi": {"size": 12},
    "uchida": {"bits": 16},
    "encoder-decoder": {"size": 12, "probes": 12, "epochs": 1, "blocks": 1, "width": 4, "content": "pixel",
                        "attempts": 1},
    "frontier": {"size": 12, "epsilon": 0.2},
    **{name: {"size": 12, "probes": 12} for name in ("content", "ewe", "noise", "trojan", "unrelated")},
    "dawn": {"rate": 0.1},
    "fingerprint": {"size": 12, "candidates": 60, "surrogates": 1, "references": 1, "epochs": 1, "steps": 10},
}


@pytest.fixture(scope="module")
def host(digits):
    """A briefly trained small-cnn: the classifier schemes key off, and the model hooks train."""
    spec = ModelSpec("small-cnn", 10, digits.input_shape, digits.mean, digits.std, {"width": 8, "hidden": 32})
    model = create_model(spec, seed=0)
    fit(model, digits.train_x, digits.train_y, TrainConfig(epochs=2, batch_size=64, lr=0.05))
    return LoadedModel(model, spec, {}, Path("<host>"))


@pytest.fixture(scope="module", params=SCHEMES.names())
def made(request, digits, host):
    name = request.param
    key = make_key(name, dataset=digits, model=host, seed=3, options=SMALL_OPTIONS.get(name, {}))
    scheme = get_scheme(name)
    if scheme.marks_the_api:  # its keygen makes the API's key; a verifier holds the one the scheme gives
        if scheme.needs_query_log:  # DAWN: derived from the log of a thief's queries
            with pytest.raises(NNMarkError, match="serving key"):
                scheme.check_key(key)
        key = scheme.verification_key(key, host.model, digits.train_x[:300])
    return name, get_scheme(name), key


def test_keygen_declares_and_meets_its_needs(made, digits):
    name, scheme, key = made
    assert key.scheme == name and key.num_classes == 10 and tuple(key.input_shape) == digits.input_shape
    assert scheme.null_kind in ("exact", "estimated") and scheme.access in ("black-box", "white-box")
    assert scheme.requirements(scheme.make_options("keygen", SMALL_OPTIONS.get(name, {}))) <= {
        "dataset", "model", "classifier"}
    scheme.check_key(key)
    assert key.item_tensors and key.item_count >= 8
    assert scheme.query_count(key) == (0 if scheme.access == "white-box" else scheme.query_count(key))
    # a scheme that needs something refuses, by name, to make a key without it
    for need in scheme.requirements(scheme.make_options("keygen", SMALL_OPTIONS.get(name, {}))):
        from nnmark.api import generate_key

        given = {"dataset": digits, "model_spec": host_spec(digits), "classifier": None}
        given["model_spec" if need == "model" else need] = None
        with pytest.raises(NNMarkError, match="needs"):
            generate_key(name, num_classes=10, input_shape=digits.input_shape, seed=3,
                         options=SMALL_OPTIONS.get(name, {}), **given)


def host_spec(digits):
    return ModelSpec("small-cnn", 10, digits.input_shape, digits.mean, digits.std, {"width": 8, "hidden": 32})


def test_save_load_and_commitment(made, tmp_path):
    _, _, key = made
    save_key(key, tmp_path / "key")
    loaded = load_key(tmp_path / "key")
    assert loaded.commitment == key.commitment and set(loaded.tensors) == set(key.tensors)
    assert all(torch.equal(loaded.tensors[n], key.tensors[n]) for n in key.tensors)
    # one changed item changes the commitment, so a swapped key cannot pass for the published one
    first = key.item_tensors[0]
    tampered = dict(key.tensors)
    tampered[first] = key.tensors[first].clone()
    tampered[first].view(-1)[0] += 1
    assert type(key)(key.scheme, key.num_classes, key.input_shape, tampered, key.params, key.created_at,
                     key.salt, key.item_tensors).commitment != key.commitment


def test_subset_is_checked_against_the_commitment(made):
    _, scheme, key = made
    part = scheme.subset(key, 5, "sha256:suspect")
    assert part.item_count == 5
    scheme.check_key(part)
    items = {name: part.tensors[name] for name in part.item_tensors}
    assert check_disclosure(part.params["subset"]["disclosure"], items, key.commitment) == []


def test_hooks_train(made, host, digits):
    _, scheme, key = made
    options = scheme.make_options("embed", scheme.recommended_embed_options(len(digits.train_y)))
    if scheme.marks_the_api or scheme.embeds_nothing:
        with pytest.raises(NNMarkError, match="nothing into the model"):
            scheme.hooks(key, options, seed=0)
        return
    hooks = scheme.hooks(key, options, seed=0)
    assert hooks and all(isinstance(h, TrainingHook) for h in hooks)
    import copy

    model = copy.deepcopy(host.model)
    result = fit(model, digits.train_x[:256], digits.train_y[:256], TrainConfig(epochs=1, batch_size=64, lr=0.01),
                 hooks=hooks)
    assert result.steps == 4 and all(torch.isfinite(p).all() for p in model.parameters())


def _agreeing_and_random(key, scheme):
    """A suspect answering every key item as the key does, and one answering at random."""
    if "keyed_class" in key.tensors:  # dark-knowledge reads scores: the keyed class next after the top
        from nnmark.schemes.dark_knowledge import cell_table

        probes, tops, runners = key.tensors["probes"], key.tensors["probe_top"], key.tensors["probe_runner_up"]
        keyed = cell_table(key)[tops, torch.where(runners < 0, key.num_classes, runners)]
        scores = torch.zeros(len(probes), key.num_classes)
        scores[torch.arange(len(probes)), tops] = 5.0
        scores[torch.arange(len(probes)), keyed] = 3.0
        generator = torch.Generator().manual_seed(1)
        return FixedScores(probes, scores), [FixedScores(probes, torch.randn(len(probes), key.num_classes,
                                                                             generator=generator)) for _ in range(12)]
    inputs, labels = key.tensors["inputs"], key.tensors["labels"]
    probes = key.tensors.get("probe_inputs")
    sets = [(inputs, labels)] + ([(probes, (labels[0] + 1 + torch.arange(len(probes)) % 9) % 10)]
                                 if probes is not None else [])
    agreeing = FixedAnswers(sets)
    generator = torch.Generator().manual_seed(1)
    randoms = [FixedAnswers([(inputs, torch.randint(0, 10, (len(labels),), generator=generator))] +
                            ([(probes, torch.randint(0, 10, (len(probes),), generator=generator))]
                             if probes is not None else [])) for _ in range(12)]
    return agreeing, randoms


def test_verdicts_on_stand_in_suspects(made, host):
    name, scheme, key = made
    if scheme.access == "white-box":
        verdict = verify_model(host.model, key)  # a model that never saw the key
        assert isinstance(verdict, Verdict) and not verdict.owned
        assert isinstance(verdict.evidence, Evidence) and verdict.evidence.total == key.item_count
        json.dumps(verdict.to_dict())
        return
    agreeing, randoms = _agreeing_and_random(key, scheme)
    null = measure_null(key, randoms[:10]) if scheme.null_kind == "estimated" else None
    if null is None:
        with pytest.raises(NNMarkError, match="exact null"):
            verify_model(agreeing, key, null=measure_null(key, randoms[:10]))
    else:
        with pytest.raises(NNMarkError, match="no exact null"):
            verify_model(agreeing, key)
    owned = verify_model(agreeing, key, null=null, alpha=0.01)
    assert owned.owned and owned.evidence.matches == key.item_count and owned.null_kind == scheme.null_kind
    if owned.null_rate is not None:  # a count of items; dark-knowledge scores points
        assert owned.matches == owned.evidence.matches
    else:
        assert owned.matches == owned.total and owned.null_law
    assert agreeing.queries == scheme.query_count(key)  # what it declares is what it spends
    assert not verify_model(randoms[11], key, null=null, alpha=0.01).owned
    assert isinstance(owned.evidence, Evidence) and owned.evidence.total == key.item_count
    assert isinstance(owned.evidence.render_html(key), str)
    record = owned.to_dict()
    json.dumps(record)
    assert record["evidence"]["matches"] == owned.evidence.matches


def test_every_attack_declares_its_sweep():
    from nnmark.attacks import ATTACKS, get_attack
    from nnmark.attacks.base import standard_attacks

    for name in ATTACKS.names():
        attack = get_attack(name)
        assert attack.summary and attack.strength_meaning, name
        assert attack.strengths and set(attack.quick_strengths) <= set(attack.strengths) | set(attack.quick_strengths)
        assert attack.chain_strength is not None, name
    assert set(standard_attacks()) <= set(ATTACKS.names()) and "ftal" in standard_attacks()
