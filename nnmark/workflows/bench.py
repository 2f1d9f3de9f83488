"""The robustness benchmark: train (or reuse) one watermarked victim per scheme, run each attack
over its strength sweep, and record test accuracy and watermark evidence after every step
(:func:`~nnmark.workflows.attack.attack_and_judge`: an attack removes a mark only when the
verdict flips while accuracy stays within ``tolerance``).

Everything expensive is cached in the output directory by a hash of what determines it, so a
re-run with one more attack trains nothing it already has.

Past one process the bench runs on Ray (``executor="ray"``): victims, cells and trials are tasks,
a lost worker is retried, and a cell that raises is an error row. It does not run under torchrun
(it used to deal cells out among ranks statically, where one crashed rank ended the whole run).
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import math
import os
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from nnmark.version import __version__
from nnmark.api import generate_key, measure_null, train_model, verify_model
from nnmark.attacks.space import Choice, record_score
from nnmark.attacks.base import THIEF_SAMPLE, AttackContext, get_attack, parse_chain, resolve_strengths, standard_attacks
from nnmark.data.base import Dataset, load_dataset
from nnmark.data.streaming import as_tensors, train_size
from nnmark.errors import NNMarkError
from nnmark.extras import require
from nnmark.io import atomic_directory, atomic_write_text, read_json, write_json
from nnmark.models.store import ModelSpec, load_model, save_model
from nnmark.schemes.base import SCHEMES, get_scheme
from nnmark.schemes.key import load_key, save_key
from nnmark.training.distributed import launched_by_torchrun
from nnmark.training.presets import preset
from nnmark.training.trainer import TrainConfig
from nnmark.workflows.attack import Judgement, attack_and_judge, mark_evidence
from nnmark.workflows.tuner import DATA_FRACTION, TUNER_REVISION, open_storage, thief_objective, tune_cell
from nnmark.workflows.controls import train_control
from nnmark.workflows.embed import mark_trained, marks_a_trained_model

MARKER = ".nnmark-bench"
SCREENING_MODELS = 6


@dataclass
class BenchConfig:
    schemes: list[str]
    attacks: list[str] = field(default_factory=standard_attacks)
    dataset: str = "digits"
    architecture: str = "small-cnn"
    attacker_fraction: float = 0.3
    seeds: int = 1
    quick: bool = False
    tolerance: float = 0.05
    alpha: float = 1e-6
    controls: int = 20  # control models for schemes whose null is estimated
    control_epochs: int = 5
    adaptive: bool = False  # per cell, try every setting in each attack's search grid; report the strongest
    # Smaller shares of the training set the adaptive attacker also tries, for attacks that train on
    # the thief's data (``attacker_fraction`` is the most the threat model allows, and always tried).
    # None: a third of it.
    search_fractions: tuple[float, ...] | None = None
    victim: TrainConfig = field(default_factory=lambda: preset("small-data"))
    attack_train: TrainConfig = field(default_factory=lambda: preset("attack"))
    # A dataset of another domain whose training images the thief holds (converted to the victim's
    # inputs), for extraction attacks that query without the victim's data (knockoff). None: none.
    transfer_data: str | None = None
    # How the adaptive attacker searches: "tuner" (Optuna, ``trials`` per cell, pruned early; its
    # studies in ``storage``, by default an SQLite file in the bench directory) or "grid" (every
    # setting of each attack's grid, as published numbers were made).
    search: str = "tuner"
    # Tuner trials per cell; None: half the settings of the attack's grid (at least 2), the budget
    # benchmarks/bench_search.py measured against the grid.
    trials: int | None = None
    storage: str | None = None
    # Where cells run: "local" (this process) or "ray" (tasks on a local Ray, or the cluster at
    # ``address``). ``plugins``: modules that register attacks or schemes of the user's, imported
    # in this process and in every worker.
    executor: str = "local"
    address: str | None = None
    plugins: tuple[str, ...] = ()

    @property
    def tunes(self) -> bool:
        """Each cell is one tuner search (its record the best trial's)."""
        return self.adaptive and self.search == "tuner"

    @property
    def walks_grid(self) -> bool:
        """Each cell is every setting of its attack's grid (the strongest reported)."""
        return self.adaptive and self.search == "grid"

    def __post_init__(self) -> None:
        if not 0 < self.attacker_fraction <= 1:
            raise NNMarkError("must be in (0, 1]", field="attacker_fraction", got=self.attacker_fraction)
        if self.seeds < 1:
            raise NNMarkError("must be at least 1", field="seeds", got=self.seeds)
        if self.search_fractions is None:
            self.search_fractions = (round(self.attacker_fraction / 3, 4),)
        self.search_fractions = tuple(float(f) for f in self.search_fractions)
        if any(not 0 < f <= self.attacker_fraction for f in self.search_fractions):
            raise NNMarkError(f"each must be in (0, attacker_fraction = {self.attacker_fraction:g}]",
                              field="search_fractions", got=list(self.search_fractions))
        if not 0 <= self.tolerance < 1:
            raise NNMarkError("must be in [0, 1)", field="tolerance", got=self.tolerance)
        if self.transfer_data is not None and self.transfer_data == self.dataset:
            raise NNMarkError("is the victim's own dataset; extraction with it is what distill measures",
                              field="transfer_data", expected="a dataset of another domain", got=self.transfer_data)
        if self.search not in ("tuner", "grid"):
            raise NNMarkError("must be tuner or grid", field="--search", got=self.search)
        if self.trials is not None and self.trials < 1:
            raise NNMarkError("must be at least 1", field="--trials", got=self.trials)
        if self.executor not in ("local", "ray"):
            raise NNMarkError("must be local or ray", field="--executor", got=self.executor)
        import_plugins(self.plugins)
        for name in self.schemes:
            get_scheme(name)
        for spec in self.attacks:
            parse_chain(spec)


@dataclass
class Victim:
    """A watermarked model under attack, with what judging its attacked copies needs."""

    scheme: str
    name: str  # its cache name, which hashes how it was trained
    model: Any
    key: Any
    accuracy: float
    null: Any = None  # a ControlNull, for schemes whose null is measured on control models
    judgement: Judgement | None = None  # the victim's own accuracy and verdict: owned, or no attack can remove it

    @property
    def owned(self) -> bool:
        return self.judgement is None or self.judgement.owned


def _digest(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _sweep(attack_spec: str, quick: bool) -> list[float | None]:
    steps = parse_chain(attack_spec)
    if len(steps) > 1 or steps[0].strength is not None:
        return [None]  # a chain, or one fixed strength: a single cell
    attack = get_attack(steps[0].attack)
    return list(attack.quick_strengths if quick else attack.strengths)


class Bench:
    def __init__(self, config: BenchConfig, out: str | Path, data_dir: str | Path | None = None,
                 progress=None, log=None) -> None:
        self.config, self.out = config, Path(out)
        self.progress = progress
        self.log = log or (lambda message: None)
        self.data: Dataset = load_dataset(config.dataset, data_dir)
        self.spec = ModelSpec(config.architecture, self.data.num_classes, self.data.input_shape,
                              self.data.mean, self.data.std)
        self.transfer = None
        if config.transfer_data is not None:
            from nnmark.data.transfer import transfer_images

            self.transfer = transfer_images(load_dataset(config.transfer_data, data_dir), self.data.input_shape)
        self.cache = self.out / "cache"
        self.computed = self.reused = 0
        self.cells_done = self.cells_failed = 0
        self.trials: dict[str, int] = {}
        self._bar = None
        self._storage = None

    # Cached artefacts -------------------------------------------------------------------

    def _cached_model(self, name: str, train) -> tuple[Any, dict]:
        directory = self.cache / name
        if (directory / "model" / "model.json").is_file():
            self.reused += 1
            loaded = load_model(directory / "model")
            return loaded.model, loaded.metadata
        model, metadata = train()
        key = metadata.pop("key", None)
        spec = metadata.pop("spec", None) or self.spec

        def save() -> None:
            with atomic_directory(directory, force=True) as staging:
                save_model(model, spec, staging / "model", metadata=metadata)
                if key is not None:
                    save_key(key, staging / "key")

        save()
        self.computed += 1
        return model, metadata

    def keyless(self, count: int, first: int = 0) -> list:
        """Models trained without any key (control recipes ``first`` .. ``first + count - 1``),
        cached; none of them saw a key, so one set serves every scheme."""
        config = self.config
        models = []
        for index in range(first, first + count):
            name = "control-" + _digest(config.dataset, index, config.control_epochs, config.victim.seed, __version__)

            def train(index=index):
                self.log(f"training keyless model {index + 1} (a control)")
                trained = train_control(self.data, index, epochs=config.control_epochs,
                                        seed=config.victim.seed + 5000, progress=self.progress)
                return trained.model, {"test_accuracy": trained.test_accuracy, "architecture": trained.architecture,
                                       "spec": trained.spec}

            model, _ = self._cached_model(name, train)
            models.append(model)
        return models

    def controls(self) -> list:
        """The controls that measure the null of every scheme without an exact one."""
        return self.keyless(self.config.controls)

    def screening(self) -> list:
        """Other keyless models, which pick a one-target key's target (never the null's controls)."""
        return self.keyless(SCREENING_MODELS, first=self.config.controls)

    def victim(self, scheme: str) -> Victim:
        config = self.config
        # "key/2": salted keys whose one-target victims are screened (older caches retrain once).
        # "marks-trained": a scheme keyed off a trained model marks that model (older caches retrain once).
        marks = ("marks-trained",) if marks_a_trained_model(scheme) else ()
        name = f"victim-{scheme}-" + _digest(scheme, config.dataset, config.architecture, asdict(config.victim),
                                             "key/2", *marks)
        implementation = get_scheme(scheme)

        def train():
            self.log(f"training the {scheme} victim")
            screen_with = self.screening() if implementation.null_kind == "estimated" else None
            # A scheme whose key is made from a trained model marks that model (see workflows.embed).
            host = (train_model(self.data, config.victim, architecture=config.architecture, progress=self.progress,
                                description=f"host {scheme}")
                    if marks_a_trained_model(scheme) else None)
            key = generate_key(scheme, num_classes=self.data.num_classes, input_shape=self.data.input_shape,
                               seed=config.victim.seed + 1000, dataset=self.data, model_spec=self.spec,
                               screen_with=screen_with, classifier=host.model if host else None)
            if host is not None:
                marked = mark_trained(key, host, self.data, seed=config.victim.seed, batch_size=config.victim.batch_size,
                                      progress=self.progress)
                return marked.model, {"test_accuracy": marked.test_accuracy, "key": key, "spec": marked.spec,
                                      "embedded_by": marked.how}
            api_mark = implementation.marks_the_api  # nothing to train in: the API carries it
            trained = train_model(self.data, config.victim, architecture=config.architecture,
                                  key=None if api_mark else key,
                                  embed_options=implementation.recommended_embed_options(train_size(self.data)),
                                  progress=self.progress,
                                  description=f"victim {scheme}")
            return trained.model, {"test_accuracy": trained.test_accuracy, "key": key}

        model, metadata = self._cached_model(name, train)
        key = load_key(self.cache / name / "key")
        if implementation.marks_the_api:
            model = implementation.serving_api(model, key)  # what a thief can reach: the model behind its API
        return Victim(scheme, name, model, key, metadata["test_accuracy"])

    def _verification_key(self, victim: Victim):
        """The key a verdict on the victim uses: its own, or for a mark carried by the API, one
        derived from the log of a typical thief's queries (the API repeats its own marks)."""
        implementation = get_scheme(victim.scheme)
        if not implementation.marks_the_api:
            return victim.key
        thief = as_tensors(self.data.subset(self.config.attacker_fraction, seed=0), THIEF_SAMPLE)
        return implementation.verification_key(victim.key, victim.model.model, thief.train_x)

    # Cells -------------------------------------------------------------------------------

    def _cell_path(self, victim: Victim, attack_spec: str, strength: float | None, seed: int,
                   settings: dict[str, Any] | None = None) -> Path:
        config = self.config
        # The victim's cache name covers how it was trained; a retrained victim gets fresh cells.
        parts = (victim.scheme, victim.name, victim.key.commitment, attack_spec, strength, seed,
                 config.attacker_fraction, asdict(config.attack_train), config.alpha, __version__)
        # Only cells whose attack queries the transfer images depend on them; the rest stay shared
        # with benches run without --transfer-data.
        if config.transfer_data is not None and any(get_attack(step.attack).uses_transfer
                                                    for step in parse_chain(attack_spec)):
            parts = (*parts, f"transfer={config.transfer_data}")
        ident = _digest(*parts, settings) if settings else _digest(*parts)
        return self.cache / "cells" / f"{ident}.json"

    def attack_record(self, victim: Victim, attack_spec: str, strength: float | None, seed: int,
                      settings: dict[str, Any] | None = None, report=None) -> dict[str, Any]:
        """Run the attack with ``settings`` and judge the result: the record a cell keeps.
        ``report(epoch, judgement)`` is told the attacked model's standing after each epoch."""
        config = self.config
        started = time.perf_counter()
        settings = dict(settings or {})
        fraction = settings.pop(DATA_FRACTION, config.attacker_fraction)
        attacker_data = self.data.subset(fraction, seed=seed)
        watch = None
        steps = parse_chain(attack_spec)
        if report is not None and not get_scheme(victim.scheme).marks_the_api \
                and all(get_attack(step.attack).prunable for step in steps):
            epochs_done = itertools.count(1)  # counted here: an attack of two phases numbers each phase's from 1

            def watch(epoch_record, model):
                report(next(epochs_done), lambda: mark_evidence(model, victim.key, null=victim.null, alpha=config.alpha))
        context = AttackContext(attacker_data, self.spec, seed=seed, train=config.attack_train,
                                victim_key=victim.key, progress=self.progress, settings=settings,
                                transfer=self.transfer, on_epoch_end=watch)
        try:
            outcome = attack_and_judge(victim.model, victim.key, attack_spec, context, strength=strength,
                                       null=victim.null, alpha=config.alpha, test_data=self.data,
                                       before=victim.judgement, tolerance=config.tolerance)
        except NNMarkError as why:  # an attack that cannot run on this victim (its architecture)
            return {"scheme": victim.scheme, "attack": attack_spec, "strength": strength, "seed": seed,
                    "not_applicable": str(why)}
        return {
            "scheme": victim.scheme, "attack": attack_spec, "strength": strength, "seed": seed,
            **outcome.after.to_dict(), "victim_accuracy": victim.accuracy,
            "removed": outcome.removed, "victim_owned": victim.owned, "keeps_accuracy": outcome.keeps_accuracy,
            "data_fraction": fraction,
            "budget": {"attacker_samples": train_size(attacker_data), "epochs": outcome.epochs},
            "settings": outcome.settings, "attack_facts": outcome.attack_facts,
            "seconds": round(time.perf_counter() - started, 3),
        }

    def cell(self, victim: Victim, attack_spec: str, strength: float | None, seed: int,
             settings: dict[str, Any] | None = None) -> dict[str, Any]:
        """One setting of one cell, cached."""
        path = self._cell_path(victim, attack_spec, strength, seed, settings)
        if path.is_file():
            self.reused += 1
            return read_json(path, "cached result")
        record = self.attack_record(victim, attack_spec, strength, seed, settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, record)
        self.computed += 1
        return record

    def tuned_cell(self, victim: Victim, attack_spec: str, strength: float | None, seed: int) -> dict[str, Any]:
        """One cell searched by the tuner (nnmark.workflows.tuner), cached once its search is done;
        until then its trials are in the tuner's storage, and a re-run carries on from them."""
        config = self.config
        path = self._job_path((victim, attack_spec, strength, seed, None))
        if path.is_file():
            self.reused += 1
            return read_json(path, "cached result")
        steps = parse_chain(attack_spec)
        attack = get_attack(steps[0].attack)
        single = len(steps) == 1
        space = attack.search_space(config.transfer_data is not None) if single else {}
        if single and attack.uses_training_data:
            # the grid's shares as a choice: a share in between has never been the thief's best
            space[DATA_FRACTION] = Choice(tuple(dict.fromkeys((config.attacker_fraction, *config.search_fractions))))
        probe = AttackContext(self.data, self.spec, train=config.attack_train)
        epochs = sum(step.epochs(value, probe) for step, value in resolve_strengths(steps, strength))

        class NotApplicable(Exception):
            pass

        def run_trial(settings, report):
            record = self.attack_record(victim, attack_spec, strength, seed, settings, report)
            if "not_applicable" in record:
                raise NotApplicable(record)
            return record

        try:
            record = tune_cell(path.stem, self.storage(), space, self.trial_budget(attack_spec), int(path.stem[:8], 16),
                               epochs, run_trial,
                               lambda judged: thief_objective(judged, victim.accuracy, config.tolerance),
                               on_trial=self._trial_done,
                               opening=_opening(attack, probe, config) if single else [])
        except NotApplicable as refused:
            record = refused.args[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, record)
        self.computed += 1
        return record

    def _grid_best(self, victim: Victim, attack_spec: str, strength: float | None, seed: int) -> dict | None:
        """The strongest grid setting of this cell, where an earlier grid run left it in the cache."""
        found = []
        for settings in _grid(attack_spec, self.config):
            path = self._cell_path(victim, attack_spec, strength, seed, settings)
            if not path.is_file():
                return None  # only a whole grid says what the grid's best is
            found.append(read_json(path, "cached result"))
        found = [r for r in found if "not_applicable" not in r]
        if not found:
            return None
        best = strongest(found)[0]
        return {k: best[k] for k in ("evidence", "test_accuracy", "removed", "owned", "keeps_accuracy", "settings",
                                     "data_fraction")
                if k in best} | {"settings_tried": len(found)}

    def _beside_grid(self, job: tuple, record: dict[str, Any]) -> dict[str, Any]:
        """A tuned cell's record with the grid's best beside it where the cache holds a whole grid
        run of the cell (read at each run, not cached with the cell: a grid run made later shows too)."""
        if not self.config.tunes or "error" in record \
                or "not_applicable" in record:
            return record
        victim, attack_spec, strength, seed, _ = job
        grid = self._grid_best(victim, attack_spec, strength, seed)
        return record if grid is None else {**record, "grid_best": grid}

    def _job_path(self, job: tuple) -> Path:
        victim, attack_spec, strength, seed, settings = job
        if self.config.tunes:
            settings = {"search": "tuner", "trials": self.trial_budget(attack_spec), "tuner": TUNER_REVISION}
        return self._cell_path(victim, attack_spec, strength, seed, settings)

    def trial_budget(self, attack_spec: str) -> int:
        """The tuner's trials for a cell of this attack: ``--trials``, or half its grid's settings."""
        return self.config.trials or default_trials(attack_spec, self.config)

    def storage(self):
        if self._storage is None:
            self._storage = open_storage(self.config.storage or f"sqlite:///{(self.out / 'tuner.db').resolve()}")
        return self._storage

    def _trial_done(self, kind: str) -> None:
        self.trials[kind] = self.trials.get(kind, 0) + 1
        self._show(running=1)

    def _show(self, running: int = 0) -> None:
        if self.progress is None or self._bar is None:
            return
        trials = sum(self.trials.values())
        self.progress.update(self._bar, completed=self.cells_done + self.cells_failed,
                             description=f"bench · cells {self.cells_done} done, {running} running, "
                                         f"{self.cells_failed} failed · trials {trials} "
                                         f"({self.trials.get('pruned', 0)} pruned)")

    def run_job(self, job: tuple) -> dict[str, Any]:
        """One cell (tuned, one grid setting, or the plain cell); an error is a row, not the end."""
        victim, attack_spec, strength, seed, settings = job
        try:
            if self.config.tunes:
                return self._beside_grid(job, self.tuned_cell(victim, attack_spec, strength, seed))
            return self.cell(victim, attack_spec, strength, seed, settings)
        except Exception as error:  # noqa: BLE001 - the bench records it and goes on
            return _error_row(job, error)

    def _run_jobs(self, jobs: list[tuple]) -> list[dict[str, Any]]:
        self._bar = self.progress.add_task("bench", total=len(jobs)) if self.progress is not None else None
        if self.config.tunes:
            self.storage()  # its tables are made here, once, before any worker opens it
        if self.config.executor == "ray":
            return self._run_on_ray(jobs)
        results = []
        for job in jobs:
            victim, attack_spec, strength, seed, settings = job
            self.log(f"{victim.scheme}: {attack_spec}{'' if strength is None else f' at {strength:g}'}"
                     f"{f' (seed {seed})' if self.config.seeds > 1 else ''}{f' {settings}' if settings else ''}")
            self._show(running=1)
            results.append(self.run_job(job))
            self._count(results[-1])
        return results

    def _count(self, record: dict[str, Any]) -> None:
        if "error" in record:
            self.cells_failed += 1
            self.log(f"error in {record['scheme']} / {record['attack']}: {record['error']}")
        else:
            self.cells_done += 1
        self._show()

    def _detached(self) -> "Bench":
        """This bench as a Ray task receives it: no display, no console, no process group."""
        clone = copy.copy(self)
        clone.progress, clone.log, clone._bar, clone._storage = None, _silent, None, None
        clone.trials = {}
        return clone

    def _ray(self):
        ray = require("ray", "bench", "--executor ray")
        if not ray.is_initialized():
            # A local Ray binds to the machine's network address unless told otherwise: keep it on loopback.
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
            ray.init(address=self.config.address, include_dashboard=False, log_to_driver=False,
                     ignore_reinit_error=True)
        return ray

    def _run_on_ray(self, jobs: list[tuple]) -> list[dict[str, Any]]:
        ray = self._ray()
        task = ray.remote(max_retries=3, num_cpus=1)(_remote_job)
        bench = ray.put(self._detached())
        pending = {task.remote(bench, job): index for index, job in enumerate(jobs)}
        results: list[dict[str, Any] | None] = [None] * len(jobs)
        workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        while pending:
            self._show(running=min(len(pending), workers))
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                index = pending.pop(ref)
                try:
                    results[index] = ray.get(ref)
                except Exception as error:  # noqa: BLE001 - a task that failed past its retries
                    results[index] = _error_row(jobs[index], error)
                record = results[index]
                path = self._job_path(jobs[index])
                if "error" not in record and not path.is_file():
                    # a worker on another machine cached it there: keep it here too, so a re-run reuses it
                    path.parent.mkdir(parents=True, exist_ok=True)
                    write_json(path, {k: v for k, v in record.items() if k != "grid_best"})
                self.trials["complete"] = self.trials.get("complete", 0) + record.get("trials", 0) \
                    - record.get("pruned", 0)
                self.trials["pruned"] = self.trials.get("pruned", 0) + record.get("pruned", 0)
                self._count(record)
        self.computed += sum(1 for r in results if "error" not in r)
        return results

    def _train_victims_on_ray(self) -> None:
        """Every scheme's victim trained as a Ray task of its own (into the cache the bench reads)."""
        ray = self._ray()
        task = ray.remote(max_retries=3, num_cpus=1)(_remote_victim)
        bench = ray.put(self._detached())
        ray.get([task.remote(bench, scheme) for scheme in self.config.schemes])

    def run(self) -> dict[str, Any]:
        config = self.config
        cells, victims = [], {}
        controls = None
        if config.executor == "ray":
            self._train_victims_on_ray()
        for scheme in config.schemes:
            victim = self.victim(scheme)
            if get_scheme(scheme).key_null_kind(victim.key) == "estimated":
                controls = controls if controls is not None else self.controls()
                victim.null = measure_null(victim.key, controls)
            baseline = verify_model(victim.model, self._verification_key(victim), alpha=config.alpha, null=victim.null)
            victim.judgement = Judgement(victim.accuracy, baseline.owned, baseline.p_value, baseline.matches,
                                         baseline.total, baseline.threshold, baseline.statistic, baseline.agreement)
            victims[scheme] = {"test_accuracy": victim.accuracy, "owned": baseline.owned,
                               "p_value": baseline.p_value, "matches": baseline.matches,
                               "total": baseline.total, "statistic": baseline.statistic,
                               "null_source": baseline.null_source, "null_kind": baseline.null_kind}
            if not baseline.owned:
                continue  # nothing to remove: its row says "victim not owned", and no cell is spent on it
            for attack_spec in config.attacks:
                grid = _grid(attack_spec, config) if config.walks_grid else [None]
                for strength in _sweep(attack_spec, config.quick):
                    cells.extend((victim, attack_spec, strength, seed, settings)
                                 for seed in range(config.seeds) for settings in grid)
        records = self._run_jobs(cells)
        counts = [self.computed, self.reused]
        not_applicable = [r for r in records if "not_applicable" in r]
        errors = [r for r in records if "error" in r]
        records = [r for r in records if "not_applicable" not in r and "error" not in r]
        tried = records
        records = strongest(records) if config.walks_grid else records
        return {"nnmark_version": __version__, "config": asdict(config), "victims": victims,
                "records": records, "summary": summarise(records),
                **({"settings_tried": tried} if config.walks_grid else {}),
                "not_applicable": not_applicable, "errors": errors,
                "cache": {"computed": counts[0], "reused": counts[1]}}


def _silent(_message: str) -> None:
    pass


def _error_row(job: tuple, error: Exception | str) -> dict[str, Any]:
    """A job that failed, as the row results.md lists: what it was and the first line of why."""
    victim, attack_spec, strength, seed, settings = job
    text = error if isinstance(error, str) else f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:300]}"
    return {"scheme": victim.scheme, "attack": attack_spec, "strength": strength, "seed": seed,
            "settings": settings, "error": text}


def _in_worker(bench: Bench) -> Bench:
    """A Ray worker's setup: one CPU thread per worker (Ray gives each task one CPU), the user's plugins
    imported (the config was unpickled here, so its own import of them did not run)."""
    import torch

    torch.set_num_threads(1)
    import_plugins(bench.config.plugins)
    return bench


def _remote_job(bench: Bench, job: tuple) -> dict[str, Any]:
    return _in_worker(bench).run_job(job)


def _remote_victim(bench: Bench, scheme: str) -> None:
    _in_worker(bench).victim(scheme)


def import_plugins(modules) -> None:
    """Import the modules that register a user's own attacks or schemes (in every worker too)."""
    import importlib

    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise NNMarkError(f"cannot import plugin module ({exc})", field="--plugin", got=module) from None


def _grid(attack_spec: str, config: BenchConfig) -> list[dict[str, Any] | None]:
    """Every combination of a single attack's search grid (a chain runs at its defaults), each also
    with every smaller share of the training data in ``config.search_fractions`` when the attack
    trains on the thief's data. The full share is the grid entry without ``data_fraction``."""
    steps = parse_chain(attack_spec)
    attack = get_attack(steps[0].attack)
    search = attack.search_grid(config.transfer_data is not None) if len(steps) == 1 else {}
    names = sorted(search)
    grid: list[dict[str, Any] | None] = (
        [dict(zip(names, values)) for values in itertools.product(*(search[n] for n in names))] if search else [None])
    if len(steps) > 1 or not attack.uses_training_data:
        return grid
    smaller = [f for f in dict.fromkeys(config.search_fractions) if f != config.attacker_fraction]
    return grid + [{**(settings or {}), DATA_FRACTION: f} for f in smaller for settings in grid]


def default_trials(attack_spec: str, config: BenchConfig) -> int:
    """Half the settings of the attack's grid, at least 2 (a space of fewer settings is tried once
    each): at that budget the tuner matched the grid's removals on the digits slice, not cell for
    cell (docs/robustness.md, "The tuner beside the grid")."""
    return max(2, math.ceil(len(_grid(attack_spec, config)) / 2))


def _opening(attack, context: AttackContext, config: BenchConfig) -> list[dict[str, Any]]:
    """A tuned cell's first two trials: the attack's defaults, then its grid's boldest setting (each
    number at the grid's highest), both at the thief's whole share of the data."""
    whole = {DATA_FRACTION: config.attacker_fraction}
    grid = attack.search_grid(config.transfer_data is not None)
    boldest = {name: max(values) for name, values in grid.items()
               if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)}
    return [{**attack.resolved_settings(context), **whole}, {**attack.resolved_settings(context), **boldest, **whole}]


def strongest(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per scheme x attack x strength x seed, the setting that did the most, in the thief's order the
    tuner also optimises (``nnmark.attacks.space.thief_score``): one that removes the mark (the
    least evidence left; then the more accurate), else the lowest evidence among those keeping
    accuracy, else the least accuracy lost. Each kept record says how many settings were tried and
    whether any removed the mark."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault((record["scheme"], record["attack"], record["strength"], record["seed"]), []).append(record)
    chosen = []
    for group in groups.values():
        best = min(group, key=lambda r: (record_score(r), -r["test_accuracy"]))
        chosen.append({**best, "settings_tried": len(group), "removed_by_any_setting": any(r["removed"] for r in group)})
    return chosen


def mean_ci(values: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of a Student-t confidence interval (0 for a single value)."""
    array = np.asarray(values, dtype=float)
    if len(array) < 2:
        return float(array.mean()), 0.0
    half = stats.t.ppf((1 + confidence) / 2, len(array) - 1) * array.std(ddof=1) / np.sqrt(len(array))
    return float(array.mean()), float(half)


def summarise(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per scheme x attack x strength, aggregated over seeds."""
    groups: dict[tuple, list[dict]] = {}
    for record in records:
        groups.setdefault((record["scheme"], record["attack"], record["strength"]), []).append(record)
    rows = []
    for (scheme, attack, strength), group in groups.items():
        # The settings shown: those of a seed where the mark was removed, if any was.
        shown = next((r for r in group if r["removed"]), group[0])
        accuracy, accuracy_ci = mean_ci([r["test_accuracy"] for r in group])
        evidence, evidence_ci = mean_ci([r["evidence"] for r in group])
        # Over the seeds where the mark was removed: the accuracy the successful thief kept (the
        # others' strongest setting may be one that wrecked the model, which says nothing of it).
        removed_accuracy = mean_ci([r["test_accuracy"] for r in group if r["removed"]]) if shown["removed"] else None
        rows.append({"scheme": scheme, "attack": attack, "strength": strength, "seeds": len(group),
                     "test_accuracy": accuracy, "test_accuracy_ci95": accuracy_ci,
                     "evidence": evidence, "evidence_ci95": evidence_ci,
                     "owned_rate": float(np.mean([r["owned"] for r in group])),
                     "removed_rate": float(np.mean([r["removed"] for r in group])),
                     "removed_test_accuracy": removed_accuracy[0] if removed_accuracy else None,
                     "removed_test_accuracy_ci95": removed_accuracy[1] if removed_accuracy else None,
                     "max_p_value": max(r["p_value"] for r in group),
                     "victim_accuracy": group[0]["victim_accuracy"],
                     "settings": shown.get("settings"), "settings_tried": shown.get("settings_tried"),
                     "search": shown.get("search"), "pruned": shown.get("pruned"),
                     "grid_best": shown.get("grid_best"),
                     "data_fraction": shown.get("data_fraction"),
                     "threshold_fraction": max(r["threshold"] / r["total"] for r in group)})
    return rows


def prepare_output(out: str | Path, force: bool) -> Path:
    """A bench directory is a workspace reused across runs (it holds the cache). Refuse any other
    non-empty directory unless ``force``."""
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise NNMarkError("exists and is not a directory", path=out)
        if not (out / MARKER).exists() and any(out.iterdir()) and not force:
            raise NNMarkError("exists and is not an nnmark bench directory; refusing to write into it "
                              "(pass --force, or choose another --out)", path=out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("nnmark bench workspace: results.json, results.md, plots/, cache/\n")
    return out


def run_bench(config: BenchConfig, out: str | Path, *, data_dir: str | Path | None = None,
              force: bool = False, progress=None, log=None) -> dict[str, Any]:
    """Run the benchmark into ``out`` (reusing its cache) and write results.json, results.md and
    plots/. Returns the results."""
    from nnmark.reporting.robustness import markdown_table, plot_results, plot_search

    if launched_by_torchrun():
        # every rank would run the whole bench into one directory
        raise NNMarkError("the bench does not run under torchrun; to share its work among processes or "
                          "machines, use --executor ray (one process per CPU, retried when one dies)",
                          field="WORLD_SIZE", got=os.environ.get("WORLD_SIZE"))
    prepare_output(out, force)
    out = Path(out)
    results = Bench(config, out, data_dir, progress, log).run()
    write_json(out / "results.json", results)
    atomic_write_text(out / "results.md", markdown_table(results))
    results["plots"] = [str(p) for p in [*plot_results(results, out / "plots"), *plot_search(results, out / "plots")]]
    return results


def bench_to_directory(out: str | Path, *, schemes: str = "adi,uchida", attacks: str | None = None,
                       data: str = "digits", data_dir: str | Path | None = None, architecture: str = "small-cnn",
                       epochs: int = 20, fraction: float = 0.3, transfer_data: str | None = None, seeds: int = 1,
                       tolerance: float = 0.05, alpha: float = 1e-6, quick: bool = False, adaptive: bool = False,
                       search: str = "tuner", trials: int | None = None, storage: str | None = None, executor: str = "local",
                       address: str | None = None, plugins: tuple[str, ...] = (), force: bool = False,
                       progress=None, log=None) -> dict[str, Any]:
    """``nnmark bench``: the schemes (comma-separated names, or "all") against the attacks
    (comma-separated names or chains; default the standard set). Returns the results."""
    scheme_list = SCHEMES.names() if schemes == "all" else [s.strip() for s in schemes.split(",") if s.strip()]
    attack_list = [a.strip() for a in attacks.split(",") if a.strip()] if attacks else standard_attacks()
    config = BenchConfig(scheme_list, attack_list, dataset=data, architecture=architecture, attacker_fraction=fraction,
                         seeds=seeds, quick=quick, tolerance=tolerance, alpha=alpha, adaptive=adaptive,
                         victim=preset("small-data", epochs=epochs), transfer_data=transfer_data, search=search,
                         trials=trials, storage=storage, executor=executor, address=address, plugins=tuple(plugins))
    return run_bench(config, out, data_dir=data_dir, force=force, progress=progress, log=log)
