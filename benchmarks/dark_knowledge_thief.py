"""Which thieves does a dark-knowledge API catch? (docs/schemes/dark-knowledge.md)

One owner model (small-cnn, the `small-data` preset) behind dark-knowledge APIs with fresh keys.
For each key, every thief extracts a model through the API: `distill` from 30% of the training
images in several settings (the adaptive bench's search: rate, temperature, another architecture,
labels only), and `knockoff`, which queries images of another domain. Per thief, the table gives
the verdicts at alpha = 1e-6 over the keys (with a 95% Clopper-Pearson interval on the share
owned), the cells whose keyed class the thief ranks first and the median rank of the keyed
classes (the verdict scores every rank), the largest p-value, and the thief's test accuracy
against the owner's. Per key it prints each cell's rank.

    python3 benchmarks/dark_knowledge_thief.py --keys 5 --cells class
    python3 benchmarks/dark_knowledge_thief.py --dataset mnist --data-dir ../shared/data --keys 3 \\
        --cells runner-up --owner-epochs 5

With ``--transfer-data cifar10`` (from ``--data-dir``) the thieves also include knockoff on the
50,000 CIFAR-10 training images at the victim's size, the out-of-domain thief of Knockoff Nets, in
grey and as edge maps (bright strokes on black, which steal a pen-stroke model better);
``--thieves transfer`` runs only those.

With ``--with-dawn`` the API also carries a fresh DAWN key per key (``stacked_api``; rate 0.05),
and each thief is judged by both marks: its DAWN key is derived from the API's log of that
thief's queries. The table then adds DAWN's verdicts and those owned by either mark.

    python3 benchmarks/dark_knowledge_thief.py --keys 3 --with-dawn

``--thief-seeds N`` runs N thieves of each kind per key (each its own share of the images and
seed) and ``--fraction`` sets that share; the rate the README states for the pair of marks:

    python3 benchmarks/dark_knowledge_thief.py --keys 20 --thief-seeds 2 --with-dawn --thieves 5,6
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import time
from types import SimpleNamespace

from scipy import stats

from nnmark.api import generate_key, train_model, verify_model
from nnmark.attacks import AttackContext, get_attack
from nnmark.data import load_dataset
from nnmark.schemes.base import get_scheme, stacked_api
from nnmark.schemes.dawn import derive_key
from nnmark.training.presets import preset
from nnmark.workflows.attack import attack_and_judge, judge_model

# (label, attack, strength, settings): the distill settings the adaptive bench searches, plus
# longer training, labels only, and out-of-domain queries.
THIEVES = [
    ("distill, 10 epochs, lr 0.05 (bench default)", "distill", 10, {}),
    ("distill, 10 epochs, lr 0.1", "distill", 10, {"lr": 0.1}),
    ("distill, 10 epochs, temperature 4", "distill", 10, {"temperature": 4.0}),
    ("distill, 10 epochs, mlp student", "distill", 10, {"architecture": "mlp"}),
    ("distill, 20 epochs", "distill", 20, {}),
    ("distill, 30 epochs, constant lr", "distill", 30, {"schedule": "constant"}),
    ("distill, labels only, 30 epochs", "distill", 30, {"answers": "labels", "schedule": "constant"}),
    ("knockoff (letters), 10 epochs", "knockoff", 10, {}),
]
# With --transfer-data: knockoff on the thief's own images of another domain.
TRANSFER_THIEVES = [
    ("knockoff ({name} in grey, all {count}), 30 epochs", "knockoff", 30, {"queries": "transfer"}),
    ("knockoff ({name} as edge maps, all {count}), 30 epochs", "knockoff", 30, {"queries": "transfer-edges"}),
]


def _owner(data, args):
    from pathlib import Path

    from nnmark.models.inference import evaluate
    from nnmark.models.store import load_model, save_model

    cache = Path(args.owner_cache) if args.owner_cache else None
    if cache is not None and cache.is_dir():
        loaded = load_model(cache)
        return SimpleNamespace(model=loaded.model, spec=loaded.spec,
                               test_accuracy=evaluate(loaded.model, data.test_x, data.test_y))
    owner = train_model(data, preset("small-data", seed=0, epochs=args.owner_epochs), architecture="small-cnn")
    if cache is not None:
        save_model(owner.model, owner.spec, cache)
    return owner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--keys", type=int, default=5, help="Fresh keys to try.")
    parser.add_argument("--cells", default="class", choices=["class", "runner-up"])
    parser.add_argument("--owner-epochs", type=int, default=20)
    parser.add_argument("--mass", type=float, default=None, help="The key's mass (default: the scheme's).")
    parser.add_argument("--thieves", default=None, help="Comma-separated row numbers of THIEVES (then of "
                                                        "TRANSFER_THIEVES, from 8), or 'transfer' for those only (default all).")
    parser.add_argument("--transfer-data", default=None, help="A dataset of another domain for knockoff (e.g. cifar10).")
    parser.add_argument("--owner-cache", default=None, help="Model directory: load the owner from it, or save it "
                                                            "there after training (so a re-run does not retrain).")
    parser.add_argument("--with-dawn", action="store_true", help="Stack a DAWN key on each API and judge every "
                                                                  "thief by both marks.")
    parser.add_argument("--dawn-rate", type=float, default=0.05, help="The stacked DAWN key's rate.")
    parser.add_argument("--fraction", type=float, default=0.3, help="Share of the training images each thief queries.")
    parser.add_argument("--thief-seeds", type=int, default=1, help="Thieves of each kind per key, each with its own "
                                                                   "share of the training images and seed.")
    args = parser.parse_args()
    started = time.perf_counter()
    data = load_dataset(args.dataset, args.data_dir)
    owner = _owner(data, args)
    scheme = get_scheme("dark-knowledge")
    transfer, extra = None, []
    if args.transfer_data:
        from nnmark.data.transfer import transfer_images

        transfer = transfer_images(load_dataset(args.transfer_data, args.data_dir), data.input_shape)
        extra = [(label.format(name=args.transfer_data, count=len(transfer)), *rest) for label, *rest in TRANSFER_THIEVES]
    every = THIEVES + extra  # the transfer thieves are rows 8 and 9 when --transfer-data is given
    chosen = (every if args.thieves is None else extra if args.thieves == "transfer"
              else [every[int(i)] for i in args.thieves.split(",")])
    print(f"{data.name}: owner model {100 * owner.test_accuracy:.1f}% test accuracy; {args.cells} cells; "
          f"mass {args.mass or 'default'}; "
          f"{args.keys} fresh keys x {args.thief_seeds} thieves of each kind; thieves query "
          f"{round(args.fraction * len(data.train_y))} training images")
    rows = {label: [] for label, *_ in chosen}
    dawn_rows = {label: [] for label, *_ in chosen}
    for index in range(args.keys):
        key = generate_key("dark-knowledge", num_classes=data.num_classes, input_shape=data.input_shape,
                           dataset=data, classifier=owner.model, options={"cells": args.cells, **({"mass": args.mass} if args.mass else {})})
        dawn_key = generate_key("dawn", num_classes=data.num_classes, input_shape=data.input_shape,
                                options={"rate": args.dawn_rate}) if args.with_dawn else None
        api = scheme.serving_api(owner.model, key) if dawn_key is None else stacked_api(owner.model, [key, dawn_key])
        for (label, attack, strength, settings), thief in itertools.product(chosen, range(args.thief_seeds)):
            # thief 0 of key i draws what a single thief always drew (subset 7 + i, seed i)
            subset_seed, seed = 7 + index + 1000 * thief, index + 1000 * thief
            context = AttackContext(data.subset(args.fraction, seed=subset_seed), owner.spec, seed=seed, settings=dict(settings),
                                    transfer=transfer)
            dawn_words = ""
            if dawn_key is None:
                outcome = attack_and_judge(api, key, attack, context, strength=strength, test_data=data)
                after, attacked = outcome.after, outcome.attacked
            else:  # one thief through the stacked API, judged by each mark
                api.log.clear()
                api.keep_log = True
                attacked = get_attack(attack).apply(api, strength, context)
                api.keep_log = False
                after = judge_model(attacked, key, data)
                dawn_after = judge_model(attacked, derive_key(dawn_key, owner.model, api.queries()), data)
                dawn_rows[label].append(dawn_after)
                dawn_words = (f"; DAWN {dawn_after.matches}/{dawn_after.total} marked answers, p "
                              f"{dawn_after.p_value:.2g}, {'owned' if dawn_after.owned else 'not owned'}")
            ranks = verify_model(attacked, key).evidence.keyed_ranks.tolist()
            rows[label].append(after)
            print(f"  key {index}, thief {thief}: {label}: {after.facts['cells_ranked_first']}/{after.facts['cells']} ranked next, "
                  f"{after.matches}/{after.total} points, p {after.p_value:.2g}, "
                  f"{'owned' if after.owned else 'not owned'}, {100 * after.test_accuracy:.1f}%; keyed ranks "
                  f"{ranks}{dawn_words}", flush=True)
    print()
    print("| thief | owned at 1e-6 (95% CI) | cells ranked next | median rank | largest p | thief accuracy (mean, min) |")
    print("|---|---|---|---|---|---|")
    for label, verdicts in rows.items():
        owned = sum(v.owned for v in verdicts)
        interval = stats.binomtest(owned, len(verdicts)).proportion_ci(method="exact")
        accuracy = [100 * v.test_accuracy for v in verdicts]
        medians = [v.facts["median_keyed_rank"] for v in verdicts]
        print(f"| {label} | {owned}/{len(verdicts)} ({100 * interval.low:.0f}–{100 * interval.high:.0f}%) | "
              f"{min(v.facts['cells_ranked_first'] for v in verdicts)}–"
              f"{max(v.facts['cells_ranked_first'] for v in verdicts)} of {verdicts[0].facts['cells']} | "
              f"{min(medians):g}–{max(medians):g} | "
              f"{max(v.p_value for v in verdicts):.2g} | {statistics.mean(accuracy):.1f}%, {min(accuracy):.1f}% |")
    if args.with_dawn:
        print()
        print("| thief | dark-knowledge owned | DAWN owned (95% CI) | DAWN repeats, median (range) | owned by either (95% CI) | largest DAWN p |")
        print("|---|---|---|---|---|---|")
        for label, verdicts in rows.items():
            dawn = dawn_rows[label]
            either = sum(a.owned or b.owned for a, b in zip(verdicts, dawn))
            interval = stats.binomtest(either, len(dawn)).proportion_ci(method="exact")
            dawn_owned = sum(v.owned for v in dawn)
            dawn_interval = stats.binomtest(dawn_owned, len(dawn)).proportion_ci(method="exact")
            shares = sorted(v.matches / v.total for v in dawn)
            print(f"| {label} | {sum(v.owned for v in verdicts)}/{len(verdicts)} | {dawn_owned}/{len(dawn)} "
                  f"({100 * dawn_interval.low:.0f}–{100 * dawn_interval.high:.0f}%) | "
                  f"{100 * statistics.median(shares):.0f}% ({100 * shares[0]:.0f}–{100 * shares[-1]:.0f}%) of "
                  f"{min(v.total for v in dawn)}–{max(v.total for v in dawn)} marked | "
                  f"{either}/{len(dawn)} ({100 * interval.low:.0f}–{100 * interval.high:.0f}%) | "
                  f"{max(v.p_value for v in dawn):.2g} |")
    print(f"\nowner {100 * owner.test_accuracy:.1f}%; {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
