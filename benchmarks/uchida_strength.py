"""Uchida signature on the embedded digits: bits recovered and accuracy against λ.

    python3 benchmarks/uchida_strength.py [--strengths 0.01 0.05 0.1] [--epochs 20]
"""
from __future__ import annotations

import argparse

import torch

from nnmark.api import generate_key, train_model, verify_model
from nnmark.data import load_dataset
from nnmark.models import ModelSpec
from nnmark.training.presets import preset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.01, 0.05, 0.1])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset("digits")
    spec = ModelSpec("small-cnn", 10, data.input_shape, data.mean, data.std)
    key = generate_key("uchida", num_classes=10, input_shape=data.input_shape, seed=5, model_spec=spec)
    config = preset("small-data", epochs=args.epochs)
    control = train_model(data, config)
    print(f"layer {key.params['layer']}, T = {key.params['bits']}, epochs {args.epochs}")
    print(f"{'lambda':>8} {'test acc':>9} {'bits':>8} {'BER':>7} {'p-value':>9}")
    print(f"{'control':>8} {100 * control.test_accuracy:8.1f}% {verify_model(control.model, key).matches:>4}/256")
    for strength in args.strengths:
        marked = train_model(data, config, key=key, embed_options={"strength": strength})
        verdict = verify_model(marked.model, key)
        print(f"{strength:>8g} {100 * marked.test_accuracy:8.1f}% {verdict.matches:>4}/{verdict.total} "
              f"{verdict.details['bit_error_rate']:7.3f} {verdict.p_value:9.2g}")


if __name__ == "__main__":
    main()
