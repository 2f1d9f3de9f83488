"""Does a conferrable fingerprint tell a thief from an innocent model? (docs/schemes/fingerprint.md)

One owner model (small-cnn, the `small-data` preset). Per key (fresh seeds), the null is measured
on 20 control models nnmark trains without the key (other seeds and architectures, the owner's
data). Then two groups of suspects are verified against it at alpha = 1e-6:

* thieves: `distill` from 30% of the training images (probabilities for 10 or 30 epochs, labels
  only for 30), through the owner's outputs;
* innocents: small-cnns trained on the training labels from other seeds (the same data and
  architecture, the hardest innocent), and a small-cnn distilled from one of them.

Per suspect the table gives the fingerprints it answers as the owner does (range over keys), the
controls' range, and how many were judged owned.

    python3 benchmarks/fingerprint_thief.py --keys 2
    python3 benchmarks/fingerprint_thief.py --keys 2 --options epsilon=0.1,surrogates=8,references=8
"""
from __future__ import annotations

import argparse
import time

import torch

from nnmark.api import generate_key, measure_null, train_model, verify_model
from nnmark.attacks import AttackContext, get_attack
from nnmark.data import load_dataset
from nnmark.training.presets import preset
from nnmark.workflows.controls import train_controls

THIEVES = [
    ("thief: distill, 10 epochs", {}, 10),
    ("thief: distill, 30 epochs, constant lr", {"schedule": "constant"}, 30),
    ("thief: distill, labels only, 30 epochs", {"answers": "labels", "schedule": "constant"}, 30),
]


def parse_options(text: str | None) -> dict:
    options = {}
    for pair in filter(None, (text or "").split(",")):
        name, value = pair.split("=")
        options[name] = value if name == "architectures" else (float(value) if "." in value else int(value))
    return options


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--keys", type=int, default=2)
    parser.add_argument("--owner-epochs", type=int, default=20)
    parser.add_argument("--controls", type=int, default=20)
    parser.add_argument("--innocents", type=int, default=3, help="Same-architecture models from other seeds.")
    parser.add_argument("--thief-epochs", type=int, default=None, help="Train every thief this many epochs "
                                                                         "(default: each its own).")
    parser.add_argument("--options", default=None, help="Keygen options, name=value,... (default: the scheme's).")
    args = parser.parse_args()
    started = time.perf_counter()
    data = load_dataset(args.dataset, args.data_dir)
    owner = train_model(data, preset("small-data", seed=0, epochs=args.owner_epochs), architecture="small-cnn")
    innocents = [train_model(data, preset("small-data", seed=50 + i, epochs=args.owner_epochs), architecture="small-cnn")
                 for i in range(args.innocents)]
    suspects = []
    for label, settings, epochs in THIEVES:
        context = AttackContext(data.subset(0.3, seed=7), owner.spec, seed=3, settings=dict(settings))
        suspects.append((label, get_attack("distill").apply(owner.model, args.thief_epochs or epochs, context)))
    suspects += [(f"innocent: small-cnn, seed {50 + i}", m.model) for i, m in enumerate(innocents)]
    context = AttackContext(data.subset(0.3, seed=7), owner.spec, seed=3, settings={"schedule": "constant"})
    suspects.append(("innocent: distilled from the seed-50 model",
                     get_attack("distill").apply(innocents[0].model, args.thief_epochs or 30, context)))
    controls = train_controls(data, args.controls, epochs=4, seed=700)
    print(f"{data.name}: owner {100 * owner.test_accuracy:.1f}%; {args.keys} keys; options {parse_options(args.options)}")
    rows: dict[str, list] = {label: [] for label, _ in suspects}
    null_ranges = []
    for index in range(args.keys):
        key = generate_key("fingerprint", num_classes=data.num_classes, input_shape=data.input_shape, dataset=data,
                           classifier=owner.model, seed=index + 1, options=parse_options(args.options))
        null = measure_null(key, controls)
        counts = null.counts().tolist()
        null_ranges.append((min(counts), max(counts)))
        print(f"  key {index}: keygen {key.params['quality']}; controls agree on {min(counts)}-{max(counts)} "
              f"of {key.item_count}", flush=True)
        for label, model in suspects:
            verdict = verify_model(model, key, null=null)
            with torch.no_grad():
                accuracy = float((model(data.test_x).argmax(1) == data.test_y).float().mean())
            rows[label].append((verdict, accuracy))
            print(f"    {label}: {verdict.matches}/{verdict.total}, p {verdict.p_value:.2g}, "
                  f"{'owned' if verdict.owned else 'not owned'}, {100 * accuracy:.1f}%", flush=True)
    print()
    low, high = min(r[0] for r in null_ranges), max(r[1] for r in null_ranges)
    print(f"controls agree on {low}-{high} fingerprints over the keys")
    print()
    print("| suspect | test accuracy | fingerprints answered as the owner | owned at 1e-6 | smallest p |")
    print("|---|---|---|---|---|")
    for label, verdicts in rows.items():
        matches = [v.matches for v, _ in verdicts]
        print(f"| {label} | {100 * verdicts[0][1]:.1f}% | {min(matches)}–{max(matches)} of {verdicts[0][0].total} | "
              f"{sum(v.owned for v, _ in verdicts)}/{len(verdicts)} | {min(v.p_value for v, _ in verdicts):.2g} |")
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
