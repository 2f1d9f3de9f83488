"""The adaptive attacker as a search: per bench cell, Optuna's TPE sampler tries the attack's
settings (its search space and the thief's share of the data) under a trial budget, and a
Hyperband pruner stops a trial whose evidence after an epoch is hopeless beside the others'.

The objective is the thief's: remove the mark, that is a verdict of "not owned" with accuracy
within the tolerance of the victim's; among the settings that do, the least evidence. In one
number (lower is better for the thief)::

    evidence - 3            removed (always below the rest)
    evidence - 2            accuracy kept, mark not removed
    -accuracy               accuracy not kept (the model was destroyed, not the mark)

The search starts where a thief would: with the attack as published (its defaults, the setting
the plain bench runs, at the thief's whole share of the data), so a tuned cell is never weaker than
the plain one; then with every setting of the attack's grid turned up to the grid's highest (the
boldest setting the grid's authors thought plausible, where removals cluster: on the digits slice
of ``benchmarks/bench_search.py`` most of the grid's removals were at its highest learning rate
and the whole share). A space with finitely many settings (choices only) gets at most one trial per
setting, each tried once: no budget is spent running the same setting twice.

After each epoch where the pruner may act (1, 3, 9, ...) a trial reports only the mark's evidence
(the share of the key the model still answers), and the pruner stops those whose mark is not
moving beside the others'; the objective above decides when a trial ends.

Trials live in Optuna's storage: an SQLite file in the bench directory by default, any
SQLAlchemy URL (PostgreSQL) when many machines share the studies. A bench killed at any point and
started again resumes: finished trials are read back, never re-run; the trial the kill
interrupted is run again with its own number and settings. Each trial's sampler is seeded from the cell and the number of
trials finished before it, so a resumed search asks exactly what an uninterrupted one would.
"""
from __future__ import annotations

import itertools
import math
import random
import time
import warnings
from collections.abc import Callable
from typing import Any

from nnmark.attacks.space import Choice, thief_objective  # noqa: F401 - thief_objective: what the bench scores trials by
from nnmark.errors import NNMarkError
from nnmark.extras import require

# Bumped when what a search tries changes, so cached tuned cells and studies of the old one are not reused
TUNER_REVISION = 2
DATA_FRACTION = "data_fraction"
RUNG_FACTOR = 3  # Hyperband's reduction factor: a third of a rung's trials go on to the next  # a setting the bench itself applies: the thief's share of the data


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


def tune_cell(name: str, storage, space: dict[str, Any], trials: int, seed: int, max_epochs: int,
              run_trial: Callable[[dict[str, Any], Callable | None], dict[str, Any]],
              score: Callable[[dict[str, Any]], float], on_trial: Callable[[str], None] | None = None,
              opening: list[dict[str, Any]] = ()) -> dict[str, Any]:
    """Search one cell: ``trials`` trials in all (those already in ``storage`` under ``name`` count;
    fewer where ``space`` has fewer settings), each running ``run_trial(settings, report)`` and
    scored by ``score(record)``. ``report(epoch, evidence)`` (``evidence()`` measures it, only
    when the pruner can use it) lets an attack that trains be pruned
    after an epoch: its trial stops when the share of the key it still answers is high beside other
    trials' at that epoch (accuracy is not asked there: a high rate costs accuracy early and wins it
    back, and such runs are often the thief's strongest). ``opening``: the settings of the first
    trials, in order (those inside the space; the rest are drawn). Returns the best trial's record with what the
    search did (trials, pruned, whether any setting removed the mark)."""
    optuna = require("optuna", "bench", "the adaptive bench's tuner")
    from optuna.trial import TrialState

    # a resumed trial's repeated reports would each warn; the bench reports what matters itself
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, max_epochs), reduction_factor=RUNG_FACTOR)
    study = optuna.create_study(study_name=name, storage=storage, direction="minimize", load_if_exists=True,
                                pruner=pruner)
    size = _settings_count(space)
    budget = trials if size is None else min(trials, size)
    if not study.get_trials(deepcopy=False):
        # queued in the storage with the study, so a resumed search finds the same opening
        for params in _opening(space, opening, budget, size, seed):
            study.enqueue_trial(params)
    finished = lambda: study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))  # noqa: E731
    # A trial a kill interrupted is run again as itself (its number and settings kept), so the pruner's
    # brackets and the sampler's history are those of an uninterrupted search. One killed before all
    # its settings were drawn cannot be finished the same way: it is failed and the next one asked.
    stale = sorted(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)), key=lambda t: t.number)
    resumable = [t for t in stale if set(space) <= set(t.params)][:1]
    for trial in stale:
        if trial not in resumable:
            study.tell(trial.number, state=TrialState.FAIL)
    while len(finished()) < budget:
        done = len(finished())
        # seeded by the cell and the trials finished before it: a resumed search asks what an uninterrupted one would
        study.sampler = optuna.samplers.TPESampler(seed=(seed * 1_000_003 + done) % 2**32,
                                                   n_startup_trials=min(4, max(1, trials // 3)))
        trial = optuna.trial.Trial(study, resumable.pop()._trial_id) if resumable else study.ask()
        settings = {name: dimension.suggest(trial, name) for name, dimension in space.items()}

        def report(epoch: int, evidence: Callable[[], float], trial=trial) -> None:
            if epoch >= max_epochs or not _is_rung(epoch):
                return  # the pruner decides only at its rungs; the last epoch's record decides, never a pruning
            with warnings.catch_warnings():
                # a resumed trial reports its epochs again: Optuna keeps the first report, the same value
                warnings.filterwarnings("ignore", message=".*is already reported")
                trial.report(evidence(), epoch)
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
            "tuned": {name: (space[name].values[param] if isinstance(space.get(name), Choice) else param)
                      for name, param in best.params.items()}}


def _is_rung(epoch: int) -> bool:
    """Whether Hyperband (resources from 1, reduction ``RUNG_FACTOR``) may stop a trial after this
    epoch: its brackets' rungs all lie at powers of the factor. Measuring the mark's evidence and
    writing it to the storage at every other epoch was a third of a small trial's time."""
    while epoch % RUNG_FACTOR == 0:
        epoch //= RUNG_FACTOR
    return epoch == 1


def _settings_count(space: dict[str, Any]) -> int | None:
    """How many settings a space of choices holds (None: it has a range, so endlessly many)."""
    if not all(isinstance(dimension, Choice) for dimension in space.values()):
        return None
    return math.prod(len(dimension.values) for dimension in space.values())


def _opening(space: dict[str, Any], opening: list[dict[str, Any]], budget: int, size: int | None,
             seed: int) -> list[dict[str, Any]]:
    """The trials a search starts with: each of ``opening`` (its settings inside the space) once,
    then, where the budget covers every setting of a space of choices, each other setting once, in
    an order drawn from ``seed``."""
    first: list[dict[str, Any]] = []
    for settings in opening:
        params = {name: space[name].encode(value) for name, value in settings.items() if name in space}
        params = {name: param for name, param in params.items() if param is not None}
        if params and params not in first:
            first.append(params)
    if size is None or size > budget:
        return first[:budget]
    names = list(space)
    every = [dict(zip(names, combination)) for combination in
             itertools.product(*(range(len(space[name].values)) for name in names))]
    random.Random(seed).shuffle(every)
    # the opening first, in its order; a setting it leaves open is the first drawn that fits
    matches = lambda params, wanted: all(params[n] == p for n, p in wanted.items())  # noqa: E731
    rank = lambda params: next((i for i, wanted in enumerate(first) if matches(params, wanted)), len(first))  # noqa: E731
    return sorted(every, key=rank)
