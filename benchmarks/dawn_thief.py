"""How long must a thief train for DAWN to catch it? (docs/schemes/dawn.md)

One owner model (small-cnn, the `small-data` preset, digits) behind DAWN APIs with fresh secrets.
For each secret and each training length, a label-only thief (the `distill` attack with
answers=labels, a constant rate) extracts a model from 30% of the training images through the
API. The table shows how many of its marked answers the thief repeats, the exact p-value, the
verdict at alpha = 1e-6, and the thief's test accuracy.

    python3 benchmarks/dawn_thief.py --secrets 6 --epochs 30 60
"""
from __future__ import annotations

import argparse

from nnmark.api import generate_key, train_model
from nnmark.attacks import AttackContext
from nnmark.data import load_dataset
from nnmark.models import ModelSpec
from nnmark.schemes.dawn import DawnAPI
from nnmark.training.presets import preset
from nnmark.workflows.attack import attack_and_judge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--secrets", type=int, default=6, help="Fresh DAWN secrets to try.")
    parser.add_argument("--epochs", type=int, nargs="+", default=[30, 60], help="Thief training lengths.")
    parser.add_argument("--owner-epochs", type=int, default=20)
    args = parser.parse_args()
    data = load_dataset("digits")
    owner = train_model(data, preset("small-data", seed=0, epochs=args.owner_epochs), architecture="small-cnn")
    spec = ModelSpec("small-cnn", data.num_classes, data.input_shape, data.mean, data.std)
    print(f"owner model: {100 * owner.test_accuracy:.1f}% test accuracy")
    print("| secret | thief epochs | repeated | p-value | owned at 1e-6 | thief accuracy |")
    print("|---|---|---|---|---|---|")
    for secret in range(args.secrets):
        key = generate_key("dawn", num_classes=data.num_classes, input_shape=data.input_shape, seed=secret)
        api = DawnAPI(owner.model, key, keep_log=False)
        for epochs in args.epochs:
            context = AttackContext(data.subset(0.3, seed=7), spec, seed=0,
                                    settings={"answers": "labels", "schedule": "constant"})
            after = attack_and_judge(api, key, "distill", context, strength=epochs, test_data=data).after
            print(f"| {secret} | {epochs} | {after.matches}/{after.total} | {after.p_value:.2g} | "
                  f"{'yes' if after.owned else 'no'} | {100 * after.test_accuracy:.1f}% |", flush=True)


if __name__ == "__main__":
    main()
