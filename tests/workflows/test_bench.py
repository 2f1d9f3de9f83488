import json

import pytest
from typer.testing import CliRunner

from nnmark.workflows.bench import BenchConfig, _grid, mean_ci, prepare_output, run_bench, summarise
from nnmark.cli import app
from nnmark.errors import NNMarkError
from nnmark.training import TrainConfig

VICTIM = TrainConfig(epochs=6, batch_size=64, lr=0.05)


def record(**overrides):
    base = {"scheme": "adi", "attack": "prune", "strength": 0.5, "seed": 0, "test_accuracy": 0.9,
            "victim_accuracy": 0.95, "owned": True, "p_value": 1e-9, "matches": 50, "total": 100,
            "threshold": 28, "evidence": 0.5, "removed": False}
    return {**base, **overrides}


def test_mean_ci_and_summary_over_seeds():
    mean, half = mean_ci([0.9, 0.92, 0.94])
    assert mean == pytest.approx(0.92) and half == pytest.approx(4.303 * 0.02 / 3 ** 0.5, rel=1e-3)
    assert mean_ci([0.5]) == (0.5, 0.0)
    rows = summarise([record(seed=0), record(seed=1, owned=False, removed=True, evidence=0.1)])
    assert len(rows) == 1 and rows[0]["seeds"] == 2
    assert rows[0]["removed_rate"] == 0.5 and rows[0]["owned_rate"] == 0.5


def test_output_directory_rules(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(NNMarkError, match="not an nnmark bench directory"):
        prepare_output(tmp_path / "mine", force=False)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"
    prepare_output(tmp_path / "bench", force=False)
    prepare_output(tmp_path / "bench", force=False)  # a bench directory is reused


def test_bad_config_is_named():
    with pytest.raises(NNMarkError, match="unknown watermark scheme"):
        BenchConfig(["nope"])
    with pytest.raises(NNMarkError, match="unknown attack"):
        BenchConfig(["adi"], ["prune+melt"])
    with pytest.raises(NNMarkError, match="attacker_fraction"):
        BenchConfig(["adi"], attacker_fraction=0)


@pytest.mark.slow
def test_small_bench_end_to_end_and_cache(tmp_path):
    config = BenchConfig(["adi"], ["prune", "distill", "ftll:1+quantize:4"], quick=True, victim=VICTIM)
    results = run_bench(config, tmp_path / "b")
    out = tmp_path / "b"
    stored = json.loads((out / "results.json").read_text())
    assert stored["victims"]["adi"]["owned"]
    # prune at 0.5 and 0.9, distill at 10, and the chain: one record each
    assert [(r["attack"], r["strength"]) for r in stored["records"]] == [
        ("prune", 0.5), ("prune", 0.9), ("distill", 10), ("ftll:1+quantize:4", None)]
    for r in stored["records"]:
        assert {"scheme", "attack", "strength", "test_accuracy", "owned", "p_value"} <= set(r)
        assert r["removed"] == ((not r["owned"]) and r["test_accuracy"] >= r["victim_accuracy"] - 0.05)
    assert stored["records"][2]["budget"]["epochs"] == 10
    assert "| adi | prune | 0.9 |" in (out / "results.md").read_text()
    assert (out / "plots" / "adi.png").stat().st_size > 10_000
    assert results["cache"]["computed"] == 5  # the victim and four cells

    again = run_bench(BenchConfig(["adi"], ["prune", "distill", "ftll:1+quantize:4", "quantize"], quick=True,
                                  victim=VICTIM), out)
    assert again["cache"] == {"computed": 2, "reused": 5}  # only quantize at 8 and 4 are new
    assert again["records"][:4] == stored["records"]


@pytest.mark.slow
def test_attack_and_bench_commands(tmp_path):
    runner = CliRunner()
    run = lambda *args: runner.invoke(app, [str(a) for a in args])  # noqa: E731
    result = run("bench", "--schemes", "uchida", "--attacks", "quantize:4,weight-noise:0.1", "--epochs", 5,
                 "--out", tmp_path / "b")
    assert result.exit_code == 0, result.output
    assert "2 records" in result.output
    victim = next((tmp_path / "b" / "cache").glob("victim-uchida-*"))
    result = run("attack", "--model", victim / "model", "--key", victim / "key", "--attack", "prune",
                 "--strength", 0.9, "--out", tmp_path / "pruned", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["after"]["test_accuracy"] < report["before"]["test_accuracy"]
    assert (tmp_path / "pruned" / "model.safetensors").is_file()
    result = run("attack", "--model", victim / "model", "--key", victim / "key", "--attack", "prune+ftll",
                 "--strength", 0.5)
    assert result.exit_code == 2 and "single attack" in result.output
    # a query-time front end is not weights: refused, nothing written
    result = run("attack", "--model", victim / "model", "--key", victim / "key", "--attack", "input-blur:1",
                 "--out", tmp_path / "blurred")
    assert result.exit_code == 2 and "front end" in result.output and not (tmp_path / "blurred").exists()
    # extraction with the thief's own images of another domain
    result = run("attack", "--model", victim / "model", "--key", victim / "key", "--attack", "knockoff:1",
                 "--transfer-data", "digits")
    assert result.exit_code == 2 and "what distill measures" in result.output
    from tests.data.test_cifar import write_cifar10

    write_cifar10(tmp_path / "data", 20)
    result = run("attack", "--model", victim / "model", "--key", victim / "key", "--attack", "knockoff:1",
                 "--transfer-data", "cifar10", "--data-dir", tmp_path / "data", "--json")
    assert result.exit_code == 0, result.output
    assert "after" in json.loads(result.output)


@pytest.mark.slow
def test_an_attack_that_leaves_nan_weights_is_a_destroyed_model_not_a_crash(tmp_path, monkeypatch):
    import copy

    import torch

    import nnmark.workflows.attack as attack_flow

    def break_it(model, steps, context, strength):
        broken = copy.deepcopy(model)
        with torch.no_grad():
            for parameter in broken.parameters():
                parameter.fill_(float("nan"))
        return broken

    monkeypatch.setattr(attack_flow, "run_chain", break_it)
    results = run_bench(BenchConfig(["adi"], ["quantize:4"], victim=VICTIM), tmp_path / "b")
    [cell] = results["records"]
    assert not cell["owned"] and cell["statistic"] == "the attacked model outputs NaN" and not cell["removed"]


@pytest.mark.slow
def test_adaptive_bench_tries_the_grid_and_reports_the_strongest(tmp_path):
    from nnmark.attacks import get_attack

    config = BenchConfig(["adi"], ["ftal:1"], adaptive=True, search="grid", victim=VICTIM)
    results = run_bench(config, tmp_path / "b")
    grid = get_attack("ftal").search
    size = len(grid["lr"]) * len(grid["label_smoothing"]) * 2  # each at the thief's full share and at 10%
    assert len(results["settings_tried"]) == size and len(results["records"]) == 1
    [best] = results["records"]
    assert best["settings_tried"] == size
    kept = [r for r in results["settings_tried"] if r["keeps_accuracy"]]
    assert best["evidence"] == min(r["evidence"] for r in kept) or best["removed"]
    assert {(tuple(sorted(r["settings"][0].items())), r["data_fraction"]) for r in results["settings_tried"]} == {
        ((("label_smoothing", s), ("lr", lr)), f) for lr in grid["lr"] for s in grid["label_smoothing"]
        for f in (0.3, 0.1)}
    samples = {r["data_fraction"]: r["budget"]["attacker_samples"] for r in results["settings_tried"]}
    assert samples == {0.3: round(0.3 * 1437), 0.1: round(0.1 * 1437)}  # the share that ran, not only its label
    text = (tmp_path / "b" / "results.md").read_text()
    assert "best of" in text and "thief data ∈ {30%, 10%}" in text

    # the tuner in the same directory: its best setting is shown beside the grid's
    pytest.importorskip("optuna", reason="the tuner is the bench extra (pip install nnmark[bench])")
    tuned = run_bench(BenchConfig(["adi"], ["ftal:1"], adaptive=True, trials=3, victim=VICTIM), tmp_path / "b")
    [cell] = tuned["records"]
    assert cell["search"] == "tuner" and cell["trials"] == 3 and set(cell["tuned"]) == {"lr", "label_smoothing",
                                                                                           "data_fraction"}
    assert 0.1 <= cell["data_fraction"] <= 0.3 and 0.0005 <= cell["settings"][0]["lr"] <= 0.2
    assert cell["grid_best"]["settings_tried"] == size and cell["grid_best"]["evidence"] == best["evidence"]
    text = (tmp_path / "b" / "results.md").read_text()
    assert "## The tuner's best beside the grid's" in text and "(3 trials, " in text and f"({size} settings)" in text
    assert "lr log-uniform [0.0005, 0.2]" in text
    assert (tmp_path / "b" / "plots" / "search-adi.png").stat().st_size > 10_000


@pytest.mark.slow
def test_bench_thief_queries_transfer_images_of_another_domain(tmp_path):
    from tests.data.test_cifar import write_cifar10

    write_cifar10(tmp_path / "data", 40)
    with pytest.raises(NNMarkError, match="what distill measures"):
        BenchConfig(["dark-knowledge"], ["knockoff"], transfer_data="digits")
    config = BenchConfig(["dark-knowledge"], ["knockoff", "prune:0.5"], quick=True, victim=VICTIM, transfer_data="cifar10")
    results = run_bench(config, tmp_path / "b", data_dir=tmp_path / "data")
    cell = next(r for r in results["records"] if r["attack"] == "knockoff")
    assert cell["attack_facts"] == {"queries": 200, "query_source": "transfer"}  # the 5 x 40 training images
    plain = run_bench(BenchConfig(["dark-knowledge"], ["knockoff", "prune:0.5"], quick=True, victim=VICTIM), tmp_path / "b")
    assert plain["cache"]["computed"] == 1  # another thief: not the transfer cell; prune's cell is shared
    assert plain["records"][0]["attack_facts"]["query_source"] == "letters"


def test_search_fractions_stay_within_the_threat_model():
    with pytest.raises(NNMarkError, match="search_fractions"):
        BenchConfig(["adi"], ["ftal"], attacker_fraction=0.2, search_fractions=(0.5,))
    assert _grid("permute", BenchConfig(["adi"], ["permute"])) == [None]  # it needs no data: nothing to vary


def test_the_bench_refuses_torchrun_and_names_ray(tmp_path, monkeypatch):
    """Under torchrun every rank would run the whole bench into one directory: it refuses before
    writing anything, and says what shares the work instead."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(NNMarkError, match="--executor ray") as refused:
        run_bench(BenchConfig(["adi"], ["quantize"], quick=True, victim=VICTIM), tmp_path / "b")
    assert refused.value.field == "WORLD_SIZE" and not (tmp_path / "b").exists()
