"""The adaptive attacker as a search: per bench cell, Optuna's TPE sampler tries the attack's
settings (its search space and the thief's share of the data) under a trial budget, and a
Hyperband pruner stops a trial whose evidence after an epoch is hopeless beside the others'.

The objective is the thief's: remove the mark, that is a verdict of "not owned" with accuracy
within the tolerance of the victim's; among the settings that do, the least evidence. In one
number (lower is better for the thief)::

    evidence - 1            removed (always below the rest)
    evidence                 accuracy kept, mark not removed
    1 + accuracy lost        accuracy not kept (the model was destroyed, not the mark)

After each epoch a trial reports only the mark's evidence (the share of the key the model still
answers), and the pruner stops those whose mark is not moving beside the others'; the objective
above decides when a trial ends.

Trials live in Optuna's storage: an SQLite file in the bench directory by default, any
SQLAlchemy URL (PostgreSQL) when many machines share the studies. A bench killed at any point and
started again resumes: finished trials are read back, never re-run; the trial the kill
interrupted is run again with its own number and settings. Each trial's sampler is seeded from the cell and the number of
trials finished before it, so a resumed search asks exactly what an uninterrupted one would.
"""
from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

from nnmark.errors import NNMarkError
from nnmark.extras import require

DATA_FRACTION = "data_fraction"  # a setting the bench itself applies: the thief's share of the data


def thief_objective(judgement: dict[str, Any], victim_accuracy: float, tolerance: float) -> float:
    """The thief's score of a judged attacked model (lower is better): see the module docstring."""
    accuracy, evidence = judgement["test_accuracy"], judgement["evidence"]
    if accuracy < victim_accuracy - tolerance:
        return 1.0 + (victim_accuracy - accuracy)
    return evidence - 1.0 if not judgement["owned"] else evidence


def open_storage(url: str):
    optuna = require("optuna", "bench", "the adaptive bench's tuner")
    kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {}
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        except Exception as exc:  # SQLAlchemy and driver errors come in many types
            # workers opening a new database together race to make its tables: the loser tries again
            if attempt < 4 and "already exists" in str(exc):
                time.sleep(0.5 * (attempt + 1))
                continue
            raise NNMarkError(f"cannot open the tuner's storage ({str(exc).splitlines()[0][:200]})",
                              field="--storage", got=url) from None


def tune_cell(name: str, storage, space: dict[str, Any], fractions: tuple[float, float] | None, trials: int,
              seed: int, max_epochs: int, run_trial: Callable[[dict[str, Any], Callable | None], dict[str, Any]],
              score: Callable[[dict[str, Any]], float], on_trial: Callable[[str], None] | None = None
              ) -> dict[str, Any]:
    """Search one cell: ``trials`` trials in all (those already in ``storage`` under ``name`` count),
    each running ``run_trial(settings, report)`` and scored by ``score(record)``. ``report(epoch,
    evidence)`` lets an attack that trains be pruned after an epoch: its trial stops when the share
    of the key it still answers is high beside other trials' at that epoch (accuracy is not asked
    there: a high rate costs accuracy early and wins it back, and such runs are often the thief's
    strongest). ``fractions``: the range of the
    thief's data share to search (None: the attack uses no training data). Returns the best trial's
    record with what the search did (trials, pruned, whether any setting removed the mark)."""
    optuna = require("optuna", "bench", "the adaptive bench's tuner")
    from optuna.trial import TrialState

    # a resumed trial's repeated reports would each warn; the bench reports what matters itself
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, max_epochs), reduction_factor=3)
    study = optuna.create_study(study_name=name, storage=storage, direction="minimize", load_if_exists=True,
                                pruner=pruner)
    finished = lambda: study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))  # noqa: E731
    names = [*space, *([DATA_FRACTION] if fractions is not None else [])]
    # A trial a kill interrupted is run again as itself (its number and settings kept), so the pruner's
    # brackets and the sampler's history are those of an uninterrupted search. One killed before all
    # its settings were drawn cannot be finished the same way: it is failed and the next one asked.
    stale = sorted(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)), key=lambda t: t.number)
    resumable = [t for t in stale if set(names) <= set(t.params)][:1]
    for trial in stale:
        if trial not in resumable:
            study.tell(trial.number, state=TrialState.FAIL)
    while len(finished()) < trials:
        done = len(finished())
        # seeded by the cell and the trials finished before it: a resumed search asks what an uninterrupted one would
        study.sampler = optuna.samplers.TPESampler(seed=(seed * 1_000_003 + done) % 2**32,
                                                   n_startup_trials=min(4, max(1, trials // 3)))
        trial = optuna.trial.Trial(study, resumable.pop()._trial_id) if resumable else study.ask()
        settings = {name: dimension.suggest(trial, name) for name, dimension in space.items()}
        if fractions is not None:
            settings[DATA_FRACTION] = trial.suggest_float(DATA_FRACTION, *fractions)  # low == high: that share

        def report(epoch: int, evidence: float, trial=trial) -> None:
            if epoch >= max_epochs:
                return  # the trial is done: its final record decides, never a pruning
            with warnings.catch_warnings():
                # a resumed trial reports its epochs again: Optuna keeps the first report, the same value
                warnings.filterwarnings("ignore", message=".*is already reported")
                trial.report(evidence, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        try:
            record = run_trial(settings, report if max_epochs > 0 else None)
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED)
            if on_trial:
                on_trial("pruned")
            continue
        trial.set_user_attr("record", record)
        study.tell(trial, score(record))
        if on_trial:
            on_trial("complete")
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    pruned = len(study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)))
    if not complete:
        raise NNMarkError(f"every trial of {name} was pruned: no setting finished", field="trials")
    best = min(complete, key=lambda t: (t.value, t.number))
    records = [t.user_attrs["record"] for t in complete]
    return {**best.user_attrs["record"], "search": "tuner", "trials": len(complete) + pruned, "pruned": pruned,
            "settings_tried": len(complete) + pruned,
            "removed_by_any_setting": any(r.get("removed") for r in records),
            "tuned": {k: v for k, v in best.params.items()}}
