"""DAWN: the API's keyed wrong answers, the verification key derived from a query log, its exact
null against models nnmark did not make, and what an extracted model keeps."""
from dataclasses import replace

import pytest
import torch
from scipy import stats

from nnmark.api import generate_key, verify_model
from nnmark.attacks import AttackContext
from nnmark.errors import NNMarkError
from nnmark.models import ModelSpec
from nnmark.schemes import WatermarkKey
from nnmark.schemes.dawn import DawnAPI, derive_key, keyed_marks
from nnmark.workflows.attack import attack_and_judge

pytestmark = pytest.mark.slow  # the owner is the shared trained digits model


@pytest.fixture(scope="module")
def serving_key(digits):
    """A fixed secret, so what the tests measure is the same every run (keygen draws a fresh one)."""
    made = generate_key("dawn", num_classes=10, input_shape=digits.input_shape, seed=1)
    assert made.tensors["secret"].dtype == torch.uint8 and len(made.tensors["secret"]) == 32
    return WatermarkKey("dawn", 10, digits.input_shape, {"secret": torch.arange(32, dtype=torch.uint8) * 7},
                        {"rate": 0.05, "kind": "serving"})


def test_the_api_answers_a_keyed_share_wrongly_and_always_alike(digits, digits_host, serving_key):
    api = DawnAPI(digits_host.model, serving_key)
    images = digits.train_x
    with torch.no_grad():
        plain, answered, again = digits_host.model(images), api(images), api(images.flip(0)).flip(0)
    # The same query gets the same answer wherever it sits in a batch: the same label, and the same
    # scores up to the last bits a CPU's batched kernels may change (docs/schemes/dawn.md)
    assert torch.equal(answered.argmax(1), again.argmax(1))
    assert torch.allclose(answered, again, rtol=0, atol=1e-4)
    marked, _ = keyed_marks(api.secret, images, api.rate, 10)
    changed = answered.argmax(1) != plain.argmax(1)
    assert torch.equal(changed, marked)  # exactly the marked queries are answered wrongly, the rest untouched
    assert torch.equal(answered[~marked], plain[~marked])
    assert stats.binomtest(int(marked.sum()), len(marked), 0.05).pvalue > 1e-3  # the share is the rate
    assert len(api.log) == 2 and torch.equal(api.queries()[:len(images)], images)


def test_the_verification_key_is_the_logged_marked_queries(digits, digits_host, serving_key):
    api = DawnAPI(digits_host.model, serving_key)
    log = torch.cat([digits.train_x[:400], digits.train_x[:50], torch.zeros(3, *digits.input_shape)])
    with torch.no_grad():
        api(log)
    key = derive_key(serving_key, digits_host.model, api.queries())
    assert key.params["log_queries"] == 453 and key.params["distinct_queries"] == 400  # repeats and blanks dropped
    marked, _ = keyed_marks(api.secret, digits.train_x[:400], api.rate, 10)
    assert key.item_count == int(marked.sum())
    verdict = verify_model(api, key)
    assert verdict.owned and verdict.matches == key.item_count  # the API repeats its own marks
    with torch.no_grad():
        owner = digits_host.model(key.tensors["inputs"]).argmax(1)
    assert bool((key.tensors["labels"] != owner).all())  # never the owner model's own answer
    with pytest.raises(NNMarkError, match="serving key"):
        verify_model(digits_host.model, serving_key)
    with pytest.raises(NNMarkError, match="none of the"):
        derive_key(serving_key, digits_host.model, digits.train_x[:3])


def test_no_independent_model_is_accused_and_the_null_bounds_them(digits, serving_key, independent_models,
                                                                    nnmark_controls, digits_host):
    """44 models made without the API's answers (24 plain-PyTorch networks of other architectures,
    seeds and optimisers, and nnmark's 20 controls), plus 4 distilled from an independent teacher."""
    from nnmark.api import train_model
    from nnmark.training.presets import preset

    key = derive_key(serving_key, digits_host.model, digits.train_x)  # every training image queried
    assert key.item_count >= 50
    teacher = nnmark_controls[0].model
    students = [train_model(digits, preset("small-data", seed=s, epochs=8), mode="distill", base=_loaded(teacher, digits),
                            architecture="small-cnn").model for s in range(4)]
    suspects = [m for _, m in independent_models] + [c.model for c in nnmark_controls] + students
    verdicts = [verify_model(m, key) for m in suspects]
    assert not any(v.owned for v in verdicts)
    matches, trials = sum(v.matches for v in verdicts), sum(v.total for v in verdicts)
    # Pooled, they agree no more often than the bound 1/(K-1) says (one-sided, generous to noise).
    assert stats.binomtest(matches, trials, 1 / 9, alternative="greater").pvalue > 1e-3
    assert min(v.p_value for v in verdicts) > 1e-6


def _loaded(model, digits):
    from pathlib import Path

    from nnmark.models import LoadedModel

    return LoadedModel(model, ModelSpec("small-cnn", 10, digits.input_shape, digits.mean, digits.std), {},
                       Path("<independent teacher>"))


def test_an_extracted_model_keeps_the_marks_only_if_it_fits_the_apis_answers(digits, digits_host, serving_key):
    """What docs/schemes/dawn.md reports: a thief that learns the API's labels until it reproduces
    them is caught; one distilling its probabilities for 10 epochs keeps its accuracy and loses
    the marks."""
    api = DawnAPI(digits_host.model, serving_key, keep_log=False)
    spec = ModelSpec("small-cnn", 10, digits.input_shape, digits.mean, digits.std)
    context = AttackContext(digits.subset(0.3, seed=0), spec, seed=0)
    fitting = replace(context, settings={"answers": "labels", "schedule": "constant"})
    caught = attack_and_judge(api, serving_key, "distill", fitting, strength=30, test_data=digits)
    assert caught.after.owned and caught.after.test_accuracy > caught.before.test_accuracy - 0.06
    short = attack_and_judge(api, serving_key, "distill", context, strength=10, test_data=digits)
    assert short.after.total == caught.after.total == short.attack_facts["marked_queries"] >= 10
    assert short.after.test_accuracy > 0.9 and not short.after.owned and short.after.matches < caught.after.matches
    with pytest.raises(NNMarkError, match="not applicable"):
        attack_and_judge(api, serving_key, "ftal", context, test_data=digits)


def test_serve_derive_and_verify_from_the_command_line(tmp_path, digits, digits_host, serving_key, nnmark_controls):
    """The whole DAWN path as a user runs it: `nnmark serve --dawn --query-log` (a real server on
    loopback), a thief taking labels over HTTP, `nnmark dawn derive` from the log, `nnmark verify`."""
    import json

    from typer.testing import CliRunner

    from nnmark.cli import app
    from nnmark.models import create_model, save_model
    from nnmark.schemes import save_key
    from nnmark.training import TrainConfig, fit
    from nnmark.verification.http import HttpSuspect
    from tests.serving.servers import start_cli_server

    save_model(digits_host.model, digits_host.spec, tmp_path / "owner")
    save_key(serving_key, tmp_path / "serving")
    runner = CliRunner()
    refused = runner.invoke(app, ["serve", str(tmp_path / "owner"), "--dawn", str(tmp_path / "serving")])
    assert refused.exit_code == 2 and "--query-log" in refused.output
    process, port = start_cli_server(str(tmp_path / "owner"), "--dawn", str(tmp_path / "serving"),
                                     "--query-log", str(tmp_path / "log"))
    try:
        queries = digits.subset(0.3, seed=4).train_x
        labels = HttpSuspect(f"http://127.0.0.1:{port}", "owner").predict(queries)  # the thief sees labels only
    finally:
        process.terminate()
        process.wait(timeout=10)
    student = create_model(digits_host.spec, seed=11)
    fit(student, queries, labels, TrainConfig(epochs=30, batch_size=64, lr=0.05, schedule="constant"))
    save_model(student, digits_host.spec, tmp_path / "student")
    save_model(nnmark_controls[1].model, nnmark_controls[1].spec, tmp_path / "independent")
    derived = runner.invoke(app, ["dawn", "derive", "--key", str(tmp_path / "serving"), "--log", str(tmp_path / "log"),
                                  "--model", str(tmp_path / "owner"), "--out", str(tmp_path / "key")])
    assert derived.exit_code == 0, derived.output
    assert "every query the client sent" in derived.output
    records = {}
    for name in ("student", "independent"):
        result = runner.invoke(app, ["verify", "--model", str(tmp_path / name), "--key", str(tmp_path / "key"), "--json"])
        assert result.exit_code == 0, result.output
        records[name] = json.loads(result.output)
    assert records["student"]["owned"] and not records["independent"]["owned"]
    assert "recorded before the suspect was queried" in records["student"]["null_source"]
    again = runner.invoke(app, ["dawn", "derive", "--key", str(tmp_path / "serving"), "--log", str(tmp_path / "log"),
                                "--model", str(tmp_path / "owner"), "--out", str(tmp_path / "key")])
    assert again.exit_code == 2 and "already exists" in again.output  # nothing overwritten without --force
