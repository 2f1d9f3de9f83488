"""dark-knowledge: the API keeps every top class and puts a keyed class second; its exact null
against models nnmark did not make; which thieves inherit the mark; hostile keys and suspects."""
from pathlib import Path
from unittest import mock

import pytest
import torch
from scipy import stats

from nnmark.api import generate_key, train_model, verify_model
from nnmark.attacks import AttackContext
from nnmark.errors import NNMarkError
from nnmark.models import LoadedModel, ModelSpec
from nnmark.schemes import WatermarkKey, get_scheme
from nnmark.schemes.dark_knowledge import DarkKnowledgeAPI, cells_of, rank_points
from nnmark.training.presets import preset
from nnmark.verification.suspects import PredictorSuspect
from nnmark.workflows.attack import attack_and_judge

pytestmark = pytest.mark.slow  # the owner is the shared trained digits model


def _key(digits, owner, cells: str, secret: int) -> WatermarkKey:
    """Keygen draws its keyed classes from `secrets`; a fixed draw makes what the tests measure the
    same every run."""
    with mock.patch("nnmark.schemes.dark_knowledge.secrets.randbits", return_value=secret):
        return generate_key("dark-knowledge", num_classes=10, input_shape=digits.input_shape, dataset=digits,
                            classifier=owner, options={"cells": cells})


@pytest.fixture(scope="module")
def class_key(digits, digits_host):
    return _key(digits, digits_host.model, "class", 3)


@pytest.fixture(scope="module")
def runner_up_key(digits, digits_host):
    return _key(digits, digits_host.model, "runner-up", 4)


def test_the_api_keeps_every_top_class_and_moves_the_mass_to_the_keyed_class(digits, digits_host, runner_up_key):
    api = DarkKnowledgeAPI(digits_host.model, runner_up_key)
    images = digits.test_x
    with torch.no_grad():
        plain = torch.softmax(digits_host.model(images), 1)
        answered = torch.softmax(api(images), 1)
    assert torch.equal(answered.argmax(1), plain.argmax(1))  # the API's accuracy is the model's
    assert torch.allclose(answered.sum(1), torch.ones(len(images)), atol=1e-5)
    top2 = plain.topk(2, dim=1).indices
    tops, runners, keyed = cells_of(runner_up_key)
    table = {(t, r): k for t, r, k in zip(tops.tolist(), runners.tolist(), keyed.tolist())}
    target = torch.tensor([table.get((t, r), -1) for t, r in top2.tolist()])
    keyed_cell = target >= 0  # cells too rare among the probes to count carry no mark
    assert keyed_cell.float().mean() > 0.9
    assert torch.allclose(answered[~keyed_cell], plain[~keyed_cell], atol=1e-6)
    rows = torch.arange(len(images))
    values = plain.topk(2, dim=1).values
    confident = (values[:, 0] > 0.5) & (values[:, 1] < 0.1) & keyed_cell
    assert confident.float().mean() > 0.85
    target = target.clamp_min(0)
    # Where the owner is confident the keyed class gets the whole mass (0.2) and becomes second.
    mass = runner_up_key.params["mass"]
    assert mass == 0.2
    assert torch.allclose(answered[rows, target][confident], ((1 - mass) * plain[rows, target] + mass)[confident],
                          atol=1e-5)
    second = answered.topk(2, dim=1).indices[:, 1]
    assert bool((second[confident] == target[confident]).all())
    assert {int(k) for k in keyed} <= set(range(10)) and not bool(((keyed == tops) | (keyed == runners)).any())


@pytest.fixture(scope="module")
def students(digits, digits_host, nnmark_controls):
    """2 students of an independent teacher and 2 of the owner's model distilled without its API."""
    teacher = _loaded(nnmark_controls[0].model, digits)
    owner = _loaded(digits_host.model, digits)
    return [train_model(digits, preset("small-data", seed=s, epochs=8), mode="distill", base=base,
                        architecture="small-cnn").model for s, base in enumerate((teacher, teacher, owner, owner))]


@pytest.mark.parametrize("which", ["class_key", "runner_up_key"])
def test_no_model_made_without_the_api_is_accused_and_the_null_bounds_them(request, which, independent_models,
                                                                          nnmark_controls, students):
    """48 models that never saw the API's answers: 24 plain-PyTorch networks of other architectures,
    seeds and optimisers, nnmark's 20 controls, 2 students of an independent teacher, and 2
    students of the owner's own model distilled without its API (the hardest negatives: the
    owner's natural dark knowledge, without the keyed part)."""
    key = request.getfixturevalue(which)
    suspects = [m for _, m in independent_models] + [c.model for c in nnmark_controls] + students
    verdicts = [verify_model(m, key) for m in suspects]
    assert len(verdicts) == 48 and not any(v.owned for v in verdicts)
    assert min(v.p_value for v in verdicts) > 1e-6
    # Pooled over the 48 models, the cells are still independent trials of the null: neither the
    # keyed classes ranked first nor the points of all ranks come out higher than it allows.
    ranks = torch.cat([v.evidence.keyed_ranks for v in verdicts])
    bound = get_scheme("dark-knowledge").exact_null_rate(key)
    candidates = 9 if which == "class_key" else 8
    assert bound == 1 / candidates
    assert stats.binomtest(int((ranks == 1).sum()), len(ranks), bound, alternative="greater").pvalue > 1e-3
    scale = rank_points(candidates)
    points = scale[ranks.numpy() - 1]
    assert sum(v.matches for v in verdicts) == int(points.sum())
    # The models share one key, so their cells are not independent of each other's: a normal check
    # of the mean, which correlated models would make fail more often, not less.
    spread = scale.std() / len(points) ** 0.5
    assert stats.norm.sf((points.mean() - scale.mean()) / spread) > 1e-3


def _loaded(model, digits):
    return LoadedModel(model, ModelSpec("small-cnn", 10, digits.input_shape, digits.mean, digits.std), {},
                       Path("<teacher>"))


def test_a_thief_fitting_the_apis_probabilities_is_caught_and_a_labels_only_one_is_not(digits, digits_host, class_key):
    """What docs/schemes/dark-knowledge.md reports on digits: distilling the probabilities for 30
    epochs inherits every keyed class; learning the labels alone inherits none."""
    api = get_scheme("dark-knowledge").serving_api(digits_host.model, class_key)
    context = AttackContext(digits.subset(0.3, seed=0), digits_host.spec, seed=0, settings={"schedule": "constant"})
    caught = attack_and_judge(api, class_key, "distill", context, strength=30, test_data=digits)
    assert caught.before.owned and caught.before.test_accuracy == pytest.approx(digits_host.test_accuracy)
    assert caught.after.owned and caught.after.test_accuracy > digits_host.test_accuracy - 0.05
    labels = AttackContext(digits.subset(0.3, seed=0), digits_host.spec, seed=0,
                           settings={"answers": "labels", "schedule": "constant"})
    escaped = attack_and_judge(api, class_key, "distill", labels, strength=30, test_data=digits)
    assert not escaped.after.owned and escaped.after.matches < caught.after.matches
    with pytest.raises(NNMarkError, match="not applicable"):
        attack_and_judge(api, class_key, "ftal", context, test_data=digits)
    with pytest.raises(NNMarkError, match="behind its API"):
        attack_and_judge(digits_host.model, class_key, "distill", context, strength=1, test_data=digits)


def _altered(key: WatermarkKey, **tensors) -> WatermarkKey:
    return WatermarkKey(key.scheme, key.num_classes, key.input_shape, {**key.tensors, **tensors},
                        dict(key.params))


def test_hostile_keys_are_refused_before_any_query(digits_host, runner_up_key):
    tops, runners, keyed = cells_of(runner_up_key)
    probes = runner_up_key.tensors["probes"]
    bad = {
        "keyed class is the top": _altered(runner_up_key, keyed_class=tops.clone()),
        "class out of range": _altered(runner_up_key, keyed_class=keyed.clone().fill_(10)),
        "holds a cell twice": _altered(runner_up_key, cell_top=torch.cat([tops[:1], tops[:-1]]),
                                       cell_runner_up=torch.cat([runners[:1], runners[:-1]]),
                                       keyed_class=torch.cat([keyed[:1], keyed[:-1]])),
        "NaN": _altered(runner_up_key, probes=probes.clone().index_fill_(0, torch.tensor([0]), float("nan"))),
        "differ in length": _altered(runner_up_key, keyed_class=keyed[:-1].clone()),
    }
    for words, key in bad.items():
        with pytest.raises(NNMarkError, match=words.split()[-1]):
            verify_model(digits_host.model, key)
    params = WatermarkKey(runner_up_key.scheme, 10, runner_up_key.input_shape, dict(runner_up_key.tensors),
                          {**runner_up_key.params, "mass": True})
    with pytest.raises(NNMarkError, match="mass"):
        verify_model(digits_host.model, params)


def test_a_suspect_that_answers_labels_only_is_refused_in_words(digits_host, class_key):
    class LabelsOnly:
        def predict(self, images):
            return digits_host.model(images).argmax(1)

    with pytest.raises(NNMarkError, match="labels only"):
        verify_model(PredictorSuspect(LabelsOnly(), "a labels-only endpoint"), class_key)


def test_a_constant_suspect_is_never_owned(digits, class_key):
    """Ties count against the key: a model that answers the same scores for everything ranks no
    keyed class first."""
    class Constant(torch.nn.Module):
        def forward(self, x):
            return torch.zeros(len(x), 10)

    verdict = verify_model(Constant(), class_key)
    assert verdict.matches == 0 and not verdict.owned
    assert verdict.evidence.keyed_ranks.tolist() == [9] * len(verdict.evidence.keyed_ranks)


def test_keygen_serve_and_verify_over_http_from_the_command_line(tmp_path, digits_host, nnmark_controls):
    """As a user runs it: `nnmark keygen dark-knowledge --model`, `nnmark serve --api-mark` (a real
    server on loopback, no query log needed), and `nnmark verify` reading the endpoint's scores:
    the API itself carries every keyed class; the bare model and an independent one do not."""
    import json

    from typer.testing import CliRunner

    from nnmark.cli import app
    from nnmark.models import save_model
    from tests.serving.servers import start_cli_server, stop

    save_model(digits_host.model, digits_host.spec, tmp_path / "owner")
    save_model(nnmark_controls[2].model, nnmark_controls[2].spec, tmp_path / "independent")
    runner = CliRunner()
    made = runner.invoke(app, ["keygen", "dark-knowledge", "--model", str(tmp_path / "owner"), "--data", "digits",
                               "--out", str(tmp_path / "key")])
    assert made.exit_code == 0, made.output
    process, port = start_cli_server(str(tmp_path / "owner"), "--api-mark", str(tmp_path / "key"))
    try:
        served = runner.invoke(app, ["verify", "--key", str(tmp_path / "key"), "--endpoint",
                                     f"http://127.0.0.1:{port}", "--model-name", "owner", "--json",
                                     "--report", str(tmp_path / "report")])
    finally:
        stop(process)
    assert served.exit_code == 0, served.output
    records = {"api": json.loads(served.output)}
    for name in ("owner", "independent"):
        result = runner.invoke(app, ["verify", "--model", str(tmp_path / name), "--key", str(tmp_path / "key"), "--json"])
        assert result.exit_code == 0, result.output
        records[name] = json.loads(result.output)
    evidence = records["api"]["evidence"]  # auto: class cells, every keyed class ranked first
    assert records["api"]["owned"] and evidence["keyed_ranks"] == [1] * 10 and evidence["cells_ranked_first"] == 10
    assert records["api"]["matches"] == records["api"]["total"] == 10 * rank_points(9)[0]
    page = (tmp_path / "report" / "report.html").read_text()
    assert f"scored {records['api']['matches']} of the key's {records['api']['total']} points" in page
    assert "<h2>Cells</h2>" in page and page.count("<td>1</td></tr>") == 10  # each keyed class ranked first
    assert not records["owner"]["owned"] and not records["independent"]["owned"]
    assert "labels alone" in records["api"]["null_source"]
