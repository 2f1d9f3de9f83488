"""``nnmark demo``: the whole job on the embedded digits in about a minute on two CPU cores.

Generate a key, train a watermarked model and a control model the same way without it, verify
both, and write everything (key, models, summary.json) into one output directory.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from nnmark import __version__
from nnmark.api import generate_key, train_model, verify_model
from nnmark.data.base import load_dataset
from nnmark.io import atomic_directory, write_json
from nnmark.models.store import save_model
from nnmark.schemes.base import get_scheme
from nnmark.schemes.key import save_key
from nnmark.training.trainer import TrainConfig

DEMO_CONFIG = TrainConfig(epochs=20, batch_size=64, lr=0.05)


def run_demo(out: str | Path = "nnmark-demo", *, scheme: str = "adi", dataset: str = "digits",
             data_dir: str | Path | None = None, epochs: int | None = None, seed: int = 0,
             alpha: float = 1e-6, force: bool = False, progress=None) -> dict[str, Any]:
    started = time.perf_counter()
    data = load_dataset(dataset, data_dir)
    config = TrainConfig(**{**DEMO_CONFIG.__dict__, "seed": seed,
                            **({"epochs": epochs} if epochs else {})})
    with atomic_directory(out, force) as staging:
        key = generate_key(scheme, num_classes=data.num_classes, input_shape=data.input_shape,
                           seed=seed + 1000, dataset=data)
        save_key(key, staging / "key")
        summary: dict[str, Any] = {
            "nnmark_version": __version__, "scheme": scheme, "dataset": dataset, "alpha": alpha,
            "key_commitment": key.commitment, "epochs": config.epochs, "seed": seed,
        }
        embed = get_scheme(scheme).demo_embed_options
        for name, with_key in (("watermarked", key), ("clean", None)):
            trained = train_model(data, config, key=with_key, embed_options=embed,
                                  progress=progress, description=f"{name:>11}")
            save_model(trained.model, trained.spec, staging / name, metadata=trained.metadata())
            verdict = verify_model(trained.model, key, alpha=alpha)
            summary[name] = {
                "test_accuracy": trained.test_accuracy,
                "train_seconds": round(trained.result.seconds, 2),
                "verify": {k: v for k, v in verdict.to_dict().items() if k != "details"},
            }
        summary["accuracy_cost"] = summary["clean"]["test_accuracy"] - summary["watermarked"]["test_accuracy"]
        summary["seconds"] = round(time.perf_counter() - started, 2)
        write_json(staging / "summary.json", summary)
    return summary
