"""The adaptive attacker as a tuner (Optuna) on a task engine (Ray): its objective, its search
spaces, resuming after a kill with the same results, pruning, error rows, a worker lost mid-trial."""
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna", reason="the tuner is the bench extra (pip install nnmark[bench])")

from nnmark.attacks import get_attack  # noqa: E402
from nnmark.attacks.space import Choice, LogUniform, Uniform, from_grid  # noqa: E402
from nnmark.errors import NNMarkError  # noqa: E402
from nnmark.training import TrainConfig  # noqa: E402
from nnmark.training.presets import preset  # noqa: E402
from nnmark.workflows.bench import BenchConfig, run_bench  # noqa: E402
from nnmark.workflows.tuner import DATA_FRACTION, open_storage, thief_objective, tune_cell  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
VICTIM = TrainConfig(epochs=6, batch_size=64, lr=0.05)


def judged(accuracy, evidence, owned):
    return {"test_accuracy": accuracy, "evidence": evidence, "owned": owned}


def test_the_thief_prefers_removal_then_less_evidence_and_never_a_wrecked_model():
    removed = thief_objective(judged(0.93, 0.30, False), 0.95, 0.05)
    kept = thief_objective(judged(0.95, 0.20, True), 0.95, 0.05)
    weaker = thief_objective(judged(0.95, 0.60, True), 0.95, 0.05)
    wrecked = thief_objective(judged(0.10, 0.00, False), 0.95, 0.05)
    assert removed < kept < weaker < wrecked
    # the less accuracy a wrecked model kept, the worse
    assert wrecked > thief_objective(judged(0.80, 0.0, False), 0.95, 0.05)


def test_spaces_search_rates_on_a_log_scale_and_keep_what_the_grid_restricts():
    space = from_grid({"lr": (0.001, 0.1), "label_smoothing": (0.0, 0.1), "architecture": (None, "mlp")})
    assert space["lr"] == LogUniform(0.001, 0.1) and space["label_smoothing"] == Uniform(0.0, 0.1)
    assert space["architecture"] == Choice((None, "mlp"))
    with pytest.raises(NNMarkError, match="0 < low < high"):
        LogUniform(0.0, 1.0)
    assert isinstance(get_attack("ftal").search_space(False)["lr"], LogUniform)
    # every attack the adaptive attacker searches has a space the tuner can draw from
    for name in ("ftal", "rtal", "prune-tune", "distill", "regularised", "label-noise", "knockoff"):
        assert get_attack(name).search_space(False), name
    knockoff = get_attack("knockoff")
    assert knockoff.search_space(False)["queries"] == Choice(tuple(knockoff.search_grid(False)["queries"]))


def _fake_attack(calls, interrupt_at=None, epochs=3):
    """A stand-in for an attack's run whose outcome is a pure function of its settings; it reports
    after every epoch, as a training attack does."""
    class Killed(Exception):
        pass

    def run_trial(settings, report):
        calls.append(dict(settings))
        if interrupt_at is not None and len(calls) == interrupt_at:
            raise Killed  # leaves the trial RUNNING in the storage, as a SIGKILL does
        evidence = abs(settings["lr"] - 0.02) * 10 + 0.1 * settings[DATA_FRACTION]
        for epoch in range(1, epochs + 1):
            if report:
                report(epoch, lambda: min(1.0, evidence + 0.3 / epoch))
        return judged(0.95, min(1.0, evidence), evidence > 0.05) | {"removed": evidence <= 0.05}

    return run_trial, Killed


def _search(storage, calls, interrupt_at=None, trials=8):
    run_trial, killed = _fake_attack(calls, interrupt_at)
    space = {"lr": LogUniform(0.001, 0.2), DATA_FRACTION: Choice((0.3, 0.1))}
    return tune_cell("cell", storage, space, trials, 7, 3, run_trial, lambda record: thief_objective(record, 0.95, 0.05),
                     opening=[{"lr": 0.1, DATA_FRACTION: 0.3, "not_searched": 1}, {"lr": 0.5}]), killed


def test_a_search_interrupted_mid_trial_resumes_as_if_never_stopped(tmp_path):
    straight: list[dict] = []
    uninterrupted, _ = _search(open_storage(f"sqlite:///{tmp_path / 'a.db'}"), straight)

    resumed_calls: list[dict] = []
    storage = open_storage(f"sqlite:///{tmp_path / 'b.db'}")
    with pytest.raises(Exception) as stopped:
        _search(storage, resumed_calls, interrupt_at=4)
    assert type(stopped.value).__name__ == "Killed"
    assert len(resumed_calls) == 4
    resumed, _ = _search(open_storage(f"sqlite:///{tmp_path / 'b.db'}"), resumed_calls)
    # the three finished trials were not run again; the interrupted fourth was, with its own settings
    assert resumed_calls[:4] == straight[:4] and resumed_calls[4:] == straight[3:]
    assert resumed == uninterrupted
    assert uninterrupted["trials"] == 8 and uninterrupted["search"] == "tuner"
    assert set(uninterrupted["tuned"]) == {"lr", DATA_FRACTION} and uninterrupted["tuned"][DATA_FRACTION] in (0.3, 0.1)
    assert straight[0] == {"lr": 0.1, DATA_FRACTION: 0.3}  # the thief's obvious setting first
    # a finished search is not run again at all
    again: list[dict] = []
    assert _search(open_storage(f"sqlite:///{tmp_path / 'b.db'}"), again)[0] == uninterrupted and again == []


def test_hopeless_trials_are_pruned_and_a_finished_one_never_is(tmp_path):
    calls: list[dict] = []
    best, _ = _search(open_storage(f"sqlite:///{tmp_path / 't.db'}"), calls, trials=16)
    assert best["pruned"] > 0 and best["trials"] == 16
    study = optuna.load_study(study_name="cell", storage=f"sqlite:///{tmp_path / 't.db'}")
    for trial in study.trials:
        if trial.state == optuna.trial.TrialState.PRUNED:
            assert max(trial.intermediate_values) < 3  # stopped before its last epoch decided it
    # the search moved towards what removes the mark (lr near 0.02): the best beats the first random draws
    assert best["evidence"] <= min(abs(c["lr"] - 0.02) * 10 + 0.1 * c[DATA_FRACTION] for c in calls[:4])


def test_a_space_of_choices_is_tried_once_per_setting_and_never_more(tmp_path):
    calls: list[dict] = []
    space = {"queries": Choice(("letters", "noise")), DATA_FRACTION: Choice((0.3, 0.1))}

    def run_trial(settings, report):
        calls.append(dict(settings))
        return judged(0.95, 0.5 if settings["queries"] == "letters" else 0.2 + settings[DATA_FRACTION], True)

    best = tune_cell("choices", open_storage(f"sqlite:///{tmp_path / 'c.db'}"), space, 12, 3, 0, run_trial,
                     lambda record: thief_objective(record, 0.95, 0.05),
                     opening=[{"queries": "noise", DATA_FRACTION: 0.3}, {"queries": "letters"}])
    assert best["trials"] == 4 and len(calls) == 4 and calls[0] == {"queries": "noise", DATA_FRACTION: 0.3}
    assert calls[1]["queries"] == "letters"  # the opening's second, its share drawn
    assert sorted(map(lambda c: tuple(c.values()), calls)) == sorted(
        [(q, f) for q in ("letters", "noise") for f in (0.3, 0.1)])
    assert best["tuned"] == {"queries": "noise", DATA_FRACTION: 0.1} and best["evidence"] == pytest.approx(0.3)
    # nothing to search: one trial, not twelve of the same
    once: list[dict] = []
    tune_cell("nothing", open_storage(f"sqlite:///{tmp_path / 'c.db'}"), {}, 12, 3, 0,
              lambda settings, report: once.append(settings) or judged(0.95, 0.5, True),
              lambda record: thief_objective(record, 0.95, 0.05))
    assert once == [{}]


def test_the_default_budget_is_half_the_grid():
    from nnmark.workflows.bench import default_trials

    config = BenchConfig(["adi"], ["ftal", "quantize", "prune-tune"], adaptive=True)
    assert default_trials("ftal", config) == 8  # 4 rates x 2 smoothings x 2 shares, halved
    assert default_trials("prune-tune", config) == 2 and default_trials("quantize", config) == 2
    assert BenchConfig(["adi"], ["ftal"], adaptive=True, trials=5).trials == 5


def test_bad_search_options_are_named(tmp_path):
    with pytest.raises(NNMarkError, match="--search"):
        BenchConfig(["adi"], ["ftal"], search="random")
    with pytest.raises(NNMarkError, match="--executor"):
        BenchConfig(["adi"], ["ftal"], executor="slurm")
    with pytest.raises(NNMarkError, match="--trials"):
        BenchConfig(["adi"], ["ftal"], trials=0)
    with pytest.raises(NNMarkError, match="--plugin"):
        BenchConfig(["adi"], ["ftal"], plugins=("no_such_module_here",))
    with pytest.raises(NNMarkError, match="--storage"):
        open_storage("postgresql://nobody@127.0.0.1:1/none")


def _bench_command(out, log, *extra):
    return [sys.executable, "-m", "nnmark", "bench", "--schemes", "adi", "--attacks", "logged-ftal:2",
            "--epochs", "6", "--adaptive", "--trials", "4", "--plugin", "tests.workflows.bench_plugins",
            "--out", str(out), *extra]


def _environment(log):
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "NNMARK_TEST_TRIAL_LOG": str(log)}


def _comparable(results):
    return [{k: v for k, v in record.items() if k != "seconds"} for record in results["records"]]


@pytest.mark.slow
def test_a_bench_killed_with_sigkill_resumes_without_rerunning_a_finished_trial(tmp_path, monkeypatch, plugins):
    import torch

    straight_log, killed_log = tmp_path / "straight.log", tmp_path / "killed.log"
    # the uninterrupted run in this process, with the one thread the command's processes get
    monkeypatch.setenv(plugins.TRIAL_LOG, str(straight_log))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_bench(BenchConfig(["adi"], ["logged-ftal:2"], adaptive=True, trials=4, victim=preset("small-data", epochs=6),
                              plugins=("tests.workflows.bench_plugins",)), tmp_path / "a")
    finally:
        torch.set_num_threads(threads)
    straight = straight_log.read_text().splitlines()
    assert len(straight) == 4

    # the same bench in a fresh directory, its victim copied (its training is not what is tested)
    (tmp_path / "b" / "cache").mkdir(parents=True)
    shutil.copy(tmp_path / "a" / ".nnmark-bench", tmp_path / "b")
    for victim in (tmp_path / "a" / "cache").glob("victim-*"):
        shutil.copytree(victim, tmp_path / "b" / "cache" / victim.name)
    running = subprocess.Popen(_bench_command(tmp_path / "b", killed_log), cwd=ROOT, env=_environment(killed_log),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and running.poll() is None:
        if killed_log.exists() and len(killed_log.read_text().splitlines()) >= 3:
            break  # the third trial has started: two are finished
        time.sleep(0.02)
    running.send_signal(signal.SIGKILL)
    running.wait()
    before = killed_log.read_text().splitlines()
    assert len(before) == 3 and not (tmp_path / "b" / "results.json").exists()

    done = subprocess.run(_bench_command(tmp_path / "b", killed_log), cwd=ROOT, env=_environment(killed_log),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    after = killed_log.read_text().splitlines()
    # trials 1 and 2 ran once; the third, interrupted, ran again with its own settings, then the fourth
    assert after == straight[:3] + straight[2:]
    a = json.loads((tmp_path / "a" / "results.json").read_text())
    b = json.loads((tmp_path / "b" / "results.json").read_text())
    assert _comparable(a) == _comparable(b) and a["records"][0]["trials"] == 4


@pytest.fixture
def plugins(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    import tests.workflows.bench_plugins as module

    yield module
    module.unregister()


@pytest.mark.slow
def test_on_ray_a_lost_worker_is_retried_and_a_raising_cell_is_an_error_row(tmp_path, monkeypatch, plugins):
    ray = pytest.importorskip("ray", reason="--executor ray is the bench extra (pip install nnmark[bench])")
    import torch
    from rich.console import Console
    from rich.progress import Progress

    marker = tmp_path / "died"
    monkeypatch.setenv(plugins.DIE_MARKER, str(marker))
    monkeypatch.setenv(plugins.TRIAL_LOG, str(tmp_path / "trials.log"))
    attacks = ["logged-ftal:1", "dies-once:1", "always-raises:1"]
    config = dict(adaptive=True, trials=3, victim=VICTIM, plugins=("tests.workflows.bench_plugins",))

    # in this process, one thread as a Ray worker has, and nothing dies (its marker is there)
    marker.write_text("not this time\n")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    screen = io.StringIO()
    try:
        with Progress(console=Console(file=screen, force_terminal=True, width=200)) as progress:
            local = run_bench(BenchConfig(["adi"], attacks, **config), tmp_path / "local", progress=progress)
    finally:
        torch.set_num_threads(threads)
    assert "cells 2 done, 0 running, 1 failed" in screen.getvalue() and "pruned" in screen.getvalue()

    (tmp_path / "ray" / "cache").mkdir(parents=True)
    shutil.copy(tmp_path / "local" / ".nnmark-bench", tmp_path / "ray")
    for victim in (tmp_path / "local" / "cache").glob("victim-*"):
        shutil.copytree(victim, tmp_path / "ray" / "cache" / victim.name)
    marker.unlink()
    # a local Ray on loopback; its workers find the plugin module on the path given to them
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = run_bench(BenchConfig(["adi"], attacks, executor="ray", **config), tmp_path / "ray")
    finally:
        ray.shutdown()
    assert marker.read_text() == "died once\n"  # a worker did die mid-trial, and its task was run again
    assert _comparable(remote) == _comparable(local) and len(remote["records"]) == 2
    [error] = remote["errors"]
    assert error["attack"] == "always-raises:1" and "a bug in the user's attack" in error["error"]
    assert [e["error"] for e in local["errors"]] == [error["error"]]
    assert "| adi | always-raises:1 | 1 | RuntimeError: a bug in the user's attack |" in \
        (tmp_path / "ray" / "results.md").read_text()
