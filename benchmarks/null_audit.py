"""The auditor's measurement of every scheme's false-positive rate, as printed in
docs/verification.md: keys against models nnmark did not make (plain PyTorch, other
architectures, optimisers and seeds; ``tests/independent.py``), never shown any key.

Keys are seeded (1000 + target, 2000 + i, 3000 + i) so a run reproduces the table.
For each one-target scheme one key per target class, for adi ten keys, each verified against
every independent model; uchida (white-box) against nnmark's architecture trained by a plain
loop. Printed per scheme: the null used, pairs tested, owned at alpha = 1e-6 and at 0.01, the
smallest p-value, and for the one-target schemes what the old pooled null (one binomial at the
99.9% upper bound of the controls' pooled rate, at least 1/K) would have accused.

    python3 benchmarks/null_audit.py                      # digits, 24 models, 20 controls
    python3 benchmarks/null_audit.py --models 48 --controls 40
    python3 benchmarks/null_audit.py --simulate           # only the simulation of over-dispersed models

The simulation draws per-model agreement rates from Beta mixtures (models that differ from one
another, as real ones do), 20 controls and one suspect per trial, and counts how often each null
accuses the suspect.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/independent.py: the auditor's models

from _papers import machine  # noqa: E402

from nnmark.api import generate_key, measure_null, verify_model  # noqa: E402
from nnmark.workflows.controls import train_controls  # noqa: E402
from nnmark.data import load_dataset  # noqa: E402
from nnmark.models import ModelSpec  # noqa: E402
from nnmark.verification.stats import binomial_tail  # noqa: E402
from tests.independent import train_independent_models, train_same_architecture  # noqa: E402

ONE_TARGET = {"noise": {}, "content": {}, "trojan": {}, "unrelated": {},
              "encoder-decoder": {"epochs": 5, "blocks": 2, "width": 8, "decoder_size": 3, "content": "pixel"}}


def pooled_p(control_counts, matches, total, classes):
    hits = int(sum(control_counts))
    bound = stats.binomtest(hits, total * len(control_counts)).proportion_ci(0.999, method="exact").high
    return binomial_tail(matches, total, max(bound, 1 / classes))


def simulate(trials: int = 4000) -> None:
    import numpy as np

    from nnmark.verification.stats import control_p_value

    rng = np.random.default_rng(0)
    print(f"simulation: 100 items, 20 controls, {trials} trials per mixture; share of independent suspects accused")
    print(f"{'rates ~':<14} {'old@1e-6':>9} {'old@0.01':>9} {'new@1e-6':>9} {'new@0.01':>9} {'new@0.05':>9}")
    for a, b in ((0.5, 4.5), (2.0, 18.0), (0.3, 0.3), (5.0, 5.0), (0.05, 2.0)):
        counts = rng.binomial(100, rng.beta(a, b, size=(trials, 21)))
        old = np.array([pooled_p(c[:20], int(c[20]), 100, 10) for c in counts])
        new = np.array([control_p_value(c[:20], int(c[20]), 100)["p_value"] for c in counts])
        print(f"Beta({a:g},{b:g}){'':<{14 - len(f'Beta({a:g},{b:g})')}} {np.mean(old <= 1e-6):>9.4f} "
              f"{np.mean(old <= 0.01):>9.4f} {np.mean(new <= 1e-6):>9.4f} {np.mean(new <= 0.01):>9.4f} "
              f"{np.mean(new <= 0.05):>9.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="digits")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--models", type=int, default=24, help="Independent models (plain PyTorch).")
    parser.add_argument("--controls", type=int, default=20, help="nnmark's controls for the estimated nulls.")
    parser.add_argument("--control-epochs", type=int, default=4)
    parser.add_argument("--simulate", action="store_true", help="Only the simulation.")
    parser.add_argument("--trials", type=int, default=4000, help="Simulated suspects per mixture.")
    args = parser.parse_args()
    simulate(args.trials)
    if args.simulate:
        return
    started = time.perf_counter()
    data = load_dataset(args.data, args.data_dir)
    models = [m for _, m in train_independent_models(data, args.models)]
    controls = train_controls(data, args.controls, epochs=args.control_epochs, seed=700)
    print(f"{args.data}: {len(models)} independent models, {len(controls)} controls; {machine()}")
    print(f"{'scheme':<16} {'null':<10} {'pairs':>5} {'owned@1e-6':>10} {'owned@0.01':>10} {'smallest p':>11} "
          f"{'old null@1e-6':>13}")
    rows = []
    for scheme, options in ONE_TARGET.items():
        verdicts, old = [], 0
        for target in range(data.num_classes):
            key = generate_key(scheme, num_classes=data.num_classes, input_shape=data.input_shape, dataset=data,
                               seed=1000 + target,
                               options={"target": target, **options})
            null = measure_null(key, controls)
            for model in models:
                verdict = verify_model(model, key, null=null)
                verdicts.append(verdict)
                old += pooled_p(null.counts(), verdict.matches, verdict.total, data.num_classes) <= 1e-6
        rows.append((scheme, "estimated", verdicts, old))
    adi = []
    for index in range(10):
        key = generate_key("adi", num_classes=data.num_classes, input_shape=data.input_shape, seed=2000 + index)
        adi += [verify_model(model, key) for model in models]
    rows.append(("adi", "exact", adi, None))
    spec = ModelSpec("small-cnn", data.num_classes, data.input_shape, data.mean, data.std)
    signed = train_same_architecture(data, 6)
    uchida = []
    for index in range(40):
        key = generate_key("uchida", num_classes=data.num_classes, input_shape=data.input_shape, model_spec=spec,
                           seed=3000 + index)
        uchida += [verify_model(model, key) for model in signed]
    rows.append(("uchida", "exact", uchida, None))
    for scheme, kind, verdicts, old in rows:
        strict = sum(v.owned for v in verdicts)
        loose = sum(v.p_value <= 0.01 for v in verdicts)
        print(f"{scheme:<16} {kind:<10} {len(verdicts):>5} {strict:>10} {loose:>10} "
              f"{min(v.p_value for v in verdicts):>11.3g} {'-' if old is None else old:>13}")
    print(f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
