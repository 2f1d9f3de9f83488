"""``nnmark demo``: the whole job on the embedded digits in well under a minute on two CPU cores.

Generate a key, put the watermark into a model, train a control model the same way without it,
verify both, and write everything (key, models, summary.json) into one output directory.

How the mark goes in is the scheme's to say, not the demo's: a scheme whose key is made from the
trained model it marks (``requirements`` includes "classifier") gets the clean model first and
marks it — directly where it has its own way (``embed_trained``, e.g. decode&inject), else by
fine-tuning it with the key's hooks; any other scheme is trained in from scratch. For a scheme
whose null must be measured on models made without the key, 20 quick controls of several
architectures measure it — never the clean model that is then judged — and the null is written
beside the key as ``null.json``.
"""
from __future__ import annotations

from dataclasses import replace

import time
from pathlib import Path
from typing import Any

from nnmark.version import __version__
from nnmark.api import TrainedModel, generate_key, measure_null, train_model, verify_model
from nnmark.data.base import load_dataset
from nnmark.io import atomic_directory, ensure_can_write, write_json
from nnmark.models.inference import evaluate
from nnmark.models.store import ModelSpec, save_model
from nnmark.schemes.base import WatermarkScheme, get_scheme
from nnmark.schemes.key import save_key
from nnmark.training.presets import preset
from nnmark.verification.nulls import save_null
from nnmark.workflows.controls import train_controls
from nnmark.workflows.embed import mark_trained, marks_a_trained_model

DEMO_PRESET = "small-data"
DEMO_ARCHITECTURE = "small-cnn"
DEMO_CONTROLS = 20
DEMO_SCREENING_MODELS = 6
DEMO_CONTROL_EPOCHS = 5


def _screening_models(implementation, data, count, seed, progress):
    """Keyless models apart from the null's controls, for a key to make its free choices (a
    one-target key's target); none for a scheme that has nothing to choose."""
    chooses = type(implementation).keygen_screened is not WatermarkScheme.keygen_screened
    if implementation.null_kind != "estimated" or not chooses or not count:
        return None
    return [c.model for c in train_controls(data, count, epochs=DEMO_CONTROL_EPOCHS,
                                            seed=seed + 3000, progress=progress)]


def _demo_null(key, data, count, seed, staging, summary, progress):
    """The measured null for a scheme without an exact one (else None)."""
    if get_scheme(key.scheme).key_null_kind(key) != "estimated":
        return None
    controls = train_controls(data, count, epochs=DEMO_CONTROL_EPOCHS, seed=seed + 2000, progress=progress)
    null = measure_null(key, controls)
    save_null(null, staging / "null.json")
    summary["null"] = {"controls": null.size, "architectures": sorted({c.architecture for c in controls}),
                       "control_counts": null.counts().tolist()}
    return null


def run_demo(out: str | Path = "nnmark-demo", *, scheme: str = "adi", dataset: str = "digits",
             data_dir: str | Path | None = None, epochs: int | None = None, seed: int = 0,
             alpha: float = 1e-6, force: bool = False, key_options: dict[str, Any] | None = None,
             controls: int = DEMO_CONTROLS, screening_models: int = DEMO_SCREENING_MODELS,
             progress=None) -> dict[str, Any]:
    """Run the demo into ``out`` (refused if it exists, unless ``force``) and return the summary it
    writes. ``key_options``: the scheme's keygen options (default: its own defaults). ``controls``
    and ``screening_models``: the keyless models of a scheme whose null is estimated."""
    started = time.perf_counter()
    ensure_can_write(out, force)  # before any training, not after it
    implementation = get_scheme(scheme)
    data = load_dataset(dataset, data_dir)
    config = preset(DEMO_PRESET, seed=seed, **({"epochs": epochs} if epochs else {}))
    spec = ModelSpec(DEMO_ARCHITECTURE, data.num_classes, data.input_shape, data.mean, data.std)
    if implementation.marks_the_api:
        return _run_api_demo(out, scheme, data, config, spec, seed=seed, alpha=alpha, force=force,
                             key_options=key_options, progress=progress, started=started)
    embed_options = implementation.recommended_embed_options(len(data.train_y))
    marks_trained = marks_a_trained_model(scheme, key_options)

    def train(name: str, key=None) -> TrainedModel:
        return train_model(data, config, architecture=DEMO_ARCHITECTURE, key=key, embed_options=embed_options,
                           progress=progress, description=f"{name:>11}")

    with atomic_directory(out, force) as staging:
        clean = train("clean") if marks_trained else None
        key = generate_key(scheme, num_classes=data.num_classes, input_shape=data.input_shape, seed=seed + 1000,
                           options=key_options, dataset=data, model_spec=spec, classifier=clean.model if clean else None,
                           screen_with=_screening_models(implementation, data, screening_models, seed, progress),
                           progress=progress)
        save_key(key, staging / "key")
        summary: dict[str, Any] = {
            "nnmark_version": __version__, "scheme": scheme, "access": implementation.access,
            "dataset": dataset, "alpha": alpha, "key_commitment": key.commitment,
            "epochs": config.epochs, "seed": seed,
        }
        if implementation.key_summary(key):
            summary["key_quality"] = implementation.key_summary(key)
        null = _demo_null(key, data, controls, seed, staging, summary, progress)
        if clean is None:
            marked = train("watermarked", key)
            models = {"watermarked": (marked.model, marked.spec, marked), "clean": None}
            clean = train("clean")
            summary["embedded_by"] = {"mode": "scratch", "embed_options": embed_options}
        elif implementation.embeds_nothing:
            # A fingerprint marks nothing: the question is whether it tells the owner's model from
            # an innocent one of the same data, architecture and recipe, trained from another seed.
            independent = train_model(data, replace(config, seed=seed + 1), architecture=DEMO_ARCHITECTURE,
                                      progress=progress, description="independent")
            models = {"owner": (clean.model, clean.spec, clean),
                      "independent": (independent.model, independent.spec, independent)}
            summary["embedded_by"] = {"mode": "fingerprinted (the model is unchanged)"}
            summary["rows"] = ["owner", "independent"]
        else:
            marked = mark_trained(key, clean, data, seed=seed, batch_size=config.batch_size, progress=progress)
            models = {"watermarked": (marked.model, marked.spec, marked.trained)}
            summary["embedded_by"] = marked.how
        if not implementation.embeds_nothing:
            models["clean"] = (clean.model, clean.spec, clean)
        for name, (model, model_spec, trained) in models.items():
            metadata = trained.metadata() if trained is not None else {"demo": name}
            save_model(model, model_spec, staging / name, metadata=metadata)
            verdict = verify_model(model, key, alpha=alpha, null=null)
            verify = {k: v for k, v in verdict.to_dict().items() if k not in ("details", "evidence")}
            verify.update(verdict.evidence.facts() if verdict.evidence is not None else {})
            summary[name] = {
                "test_accuracy": trained.test_accuracy if trained else evaluate(model, data.test_x, data.test_y),
                "verify": verify,
            }
            if trained is not None:
                summary[name]["train_seconds"] = round(trained.result.seconds, 2)
        summary["accuracy_cost"] = (0.0 if implementation.embeds_nothing else
                                    summary["clean"]["test_accuracy"] - summary["watermarked"]["test_accuracy"])
        summary["seconds"] = round(time.perf_counter() - started, 2)
        write_json(staging / "summary.json", summary)
    return summary


# The share of the training images the demo's thief queries the API with; the thief itself is
# the scheme's (``demo_thief``: the one it is made to catch).
API_THIEF_FRACTION = 0.3


def _run_api_demo(out, scheme, data, config, spec, *, seed, alpha, force, key_options, progress, started):
    """For a mark the serving API carries (DAWN, dark-knowledge): train the owner's model, serve it
    behind the keyed API, let the scheme's thief extract a model through it, take the verification
    key (DAWN's from the API's log of the thief's queries), and verify the extracted model and an
    independently trained one."""
    from nnmark.attacks.base import AttackContext
    from nnmark.workflows.attack import attack_and_judge

    implementation = get_scheme(scheme)
    thief = dict(implementation.demo_thief)
    escapes = thief.pop("escapes")

    def train(name: str, offset: int) -> TrainedModel:
        return train_model(data, preset(DEMO_PRESET, seed=seed + offset, epochs=config.epochs),
                           architecture=DEMO_ARCHITECTURE, progress=progress, description=f"{name:>11}")

    with atomic_directory(out, force) as staging:
        owner = train("owner", 0)
        key = generate_key(scheme, num_classes=data.num_classes, input_shape=data.input_shape, seed=seed + 1000,
                           options=key_options, dataset=data, classifier=owner.model, progress=progress)
        save_key(key, staging / "serving-key")
        api = implementation.serving_api(owner.model, key)
        thief_data = data.subset(API_THIEF_FRACTION, seed=seed + 7)
        context = AttackContext(thief_data, spec, seed=seed, settings=dict(thief["settings"]), progress=progress)
        outcome = attack_and_judge(api, key, thief["attack"], context, strength=thief["strength"],
                                   alpha=alpha, test_data=data)
        save_key(outcome.key, staging / "key")
        independent = train("independent", 1)
        summary: dict[str, Any] = {
            "nnmark_version": __version__, "scheme": scheme, "access": "black-box (the API)", "dataset": data.name,
            "alpha": alpha, "serving_key_commitment": key.commitment, "key_commitment": outcome.key.commitment,
            "epochs": config.epochs, "seed": seed, "rows": ["extracted", "independent"],
            "owner": {"test_accuracy": owner.test_accuracy, "api_test_accuracy": outcome.before.test_accuracy},
            "thief": {**thief, "queries": len(thief_data.train_y), **outcome.attack_facts},
            "warning": (("valid only if the log holds every query the client sent, recorded before the suspect "
                         "was queried; " if implementation.needs_query_log else "") + escapes),
        }
        models = {"owner": (owner.model, owner), "extracted": (outcome.attacked, None),
                  "independent": (independent.model, independent)}
        for name, (model, trained) in models.items():
            save_model(model, spec, staging / name, metadata=trained.metadata() if trained else {"demo": name})
            if name == "owner":
                continue
            verdict = verify_model(model, outcome.key, alpha=alpha)
            verify = {k: v for k, v in verdict.to_dict().items() if k not in ("details", "evidence")}
            summary[name] = {"test_accuracy": evaluate(model, data.test_x, data.test_y), "verify": verify}
        summary["accuracy_cost"] = owner.test_accuracy - outcome.before.test_accuracy  # what the API's wrong answers cost
        summary["seconds"] = round(time.perf_counter() - started, 2)
        write_json(staging / "summary.json", summary)
    return summary
