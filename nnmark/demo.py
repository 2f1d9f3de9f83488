"""``nnmark demo``: the whole job on the embedded digits in well under a minute on two CPU cores.

Generate a key, train a watermarked model and a control model the same way without it, verify
both, and write everything (key, models, summary.json) into one output directory. For a scheme
whose null must be measured on models made without the key (the one-target trigger sets), 20
quick controls of several architectures are trained to measure it — never the clean model that
is then judged — and the null is written beside the key as ``null.json``.
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from nnmark import __version__
from nnmark.api import generate_key, measure_null, train_controls, train_model, verify_model
from nnmark.data.base import load_dataset
from nnmark.io import atomic_directory, write_json
from nnmark.models.store import ModelSpec, save_model
from nnmark.schemes.base import get_scheme
from nnmark.schemes.key import save_key
from nnmark.verification.nulls import save_null
from nnmark.training.trainer import TrainConfig

DEMO_CONFIG = TrainConfig(epochs=20, batch_size=64, lr=0.05)
DEMO_ARCHITECTURE = "small-cnn"
DEMO_CONTROLS = 20
DEMO_SCREENING_MODELS = 6
DEMO_CONTROL_EPOCHS = 5


def _screening_models(scheme, data, seed, progress):
    """Keyless models apart from the null's controls, for a one-target key to pick its target."""
    if get_scheme(scheme).null_kind != "estimated":
        return None
    return [c.model for c in train_controls(data, DEMO_SCREENING_MODELS, epochs=DEMO_CONTROL_EPOCHS,
                                            seed=seed + 3000, progress=progress)]


def _demo_null(key, data, seed, staging, summary, progress):
    """The measured null for a scheme without an exact one (else None)."""
    if get_scheme(key.scheme).null_kind != "estimated":
        return None
    controls = train_controls(data, DEMO_CONTROLS, epochs=DEMO_CONTROL_EPOCHS, seed=seed + 2000, progress=progress)
    null = measure_null(key, controls)
    save_null(null, staging / "null.json")
    summary["null"] = {"controls": null.size, "architectures": sorted({c.architecture for c in controls}),
                       "control_counts": null.counts().tolist()}
    return null


def run_demo(out: str | Path = "nnmark-demo", *, scheme: str = "adi", dataset: str = "digits",
             data_dir: str | Path | None = None, epochs: int | None = None, seed: int = 0,
             alpha: float = 1e-6, force: bool = False, progress=None) -> dict[str, Any]:
    started = time.perf_counter()
    implementation = get_scheme(scheme)
    data = load_dataset(dataset, data_dir)
    config = replace(DEMO_CONFIG, seed=seed, epochs=epochs or DEMO_CONFIG.epochs)
    spec = ModelSpec(DEMO_ARCHITECTURE, data.num_classes, data.input_shape, data.mean, data.std)
    if scheme == "encoder-decoder":
        return _run_encoder_decoder_demo(out, data, config, spec, seed, alpha, force, progress, started, dataset)
    with atomic_directory(out, force) as staging:
        key = generate_key(scheme, num_classes=data.num_classes, input_shape=data.input_shape,
                           seed=seed + 1000, dataset=data, model_spec=spec,
                           screen_with=_screening_models(scheme, data, seed, progress))
        save_key(key, staging / "key")
        summary: dict[str, Any] = {
            "nnmark_version": __version__, "scheme": scheme, "access": implementation.access,
            "dataset": dataset, "alpha": alpha, "key_commitment": key.commitment,
            "epochs": config.epochs, "seed": seed,
        }

        def train(name: str, with_key, run_seed: int):
            return train_model(data, replace(config, seed=run_seed), architecture=DEMO_ARCHITECTURE,
                               key=with_key, embed_options=implementation.demo_embed_options,
                               progress=progress, description=f"{name:>11}")

        null = _demo_null(key, data, seed, staging, summary, progress)
        for name, with_key in (("watermarked", key), ("clean", None)):
            trained = train(name, with_key, seed)
            save_model(trained.model, trained.spec, staging / name, metadata=trained.metadata())
            verdict = verify_model(trained.model, key, alpha=alpha, null=null)
            summary[name] = {
                "test_accuracy": trained.test_accuracy,
                "train_seconds": round(trained.result.seconds, 2),
                "verify": {k: v for k, v in verdict.to_dict().items() if k != "details"},
            }
            if "bit_error_rate" in verdict.details:
                summary[name]["verify"]["bit_error_rate"] = verdict.details["bit_error_rate"]
        summary["accuracy_cost"] = summary["clean"]["test_accuracy"] - summary["watermarked"]["test_accuracy"]
        summary["seconds"] = round(time.perf_counter() - started, 2)
        write_json(staging / "summary.json", summary)
    return summary


def _run_encoder_decoder_demo(out, data, config, spec, seed, alpha, force, progress, started, dataset_name):
    """The paper's ownership use case: a host trained normally ("clean"), an encoder/decoder pair
    trained jointly (the host's feature maps as the content distance), the decoder implanted with
    decode&inject ("watermarked", only w trained), and both verified against the key."""
    from nnmark.schemes.encoder_decoder import implant_watermark

    with atomic_directory(out, force) as staging:
        clean = train_model(data, config, architecture=DEMO_ARCHITECTURE, progress=progress, description="      clean")
        key = generate_key("encoder-decoder", num_classes=data.num_classes, input_shape=data.input_shape,
                           seed=seed + 1000, dataset=data, classifier=clean.model, progress=progress,
                           screen_with=_screening_models("encoder-decoder", data, seed, progress))
        save_key(key, staging / "key")
        implanted, implanted_spec, info = implant_watermark(clean.model, spec, key, data.train_x)
        from nnmark.models.inference import evaluate

        quality = key.params["quality"]
        summary: dict[str, Any] = {
            "nnmark_version": __version__, "scheme": "encoder-decoder", "access": "black-box",
            "dataset": dataset_name, "alpha": alpha, "key_commitment": key.commitment, "epochs": config.epochs,
            "seed": seed, "decoding_success_marked": quality["decoding_success_marked"],
            "decoding_success_unmarked": quality["decoding_success_unmarked"], "psnr": quality["psnr"],
            "ms_ssim": quality["ms_ssim"], "entropy_ratio": quality["entropy_ratio"],
            "content_loss": quality["content_loss"], "implant": info,
        }
        null = _demo_null(key, data, seed, staging, summary, progress)
        models = {"watermarked": (implanted, implanted_spec), "clean": (clean.model, clean.spec)}
        for name, (model, model_spec) in models.items():
            save_model(model, model_spec, staging / name, metadata={"demo": name})
            verdict = verify_model(model, key, alpha=alpha, null=null)
            summary[name] = {"test_accuracy": evaluate(model, data.test_x, data.test_y),
                             "verify": {k: v for k, v in verdict.to_dict().items() if k != "details"}}
        summary["accuracy_cost"] = summary["clean"]["test_accuracy"] - summary["watermarked"]["test_accuracy"]
        summary["seconds"] = round(time.perf_counter() - started, 2)
        write_json(staging / "summary.json", summary)
    return summary
