"""The fast recipe of issue 7 against the paper's schedule: the same network, data and trigger set
(Adi et al. 2018's 100 abstract images), trained both ways in one run.

- paper: SGD lr 0.1 ÷10 at each third of the run, batch 100 plus 2 triggers (Adi et al.: 60 epochs).
- fast: one-cycle schedule, label smoothing, a large batch and more triggers per batch, for a
  fraction of the epochs.

Each row reports the epochs, the training wall time (data already in memory, evaluation not
counted), the test accuracy, the share of triggers given their key label, and the verdict. The
defaults are the GPU setting (ResNet-18 on CIFAR-10):

    python3 benchmarks/fast_recipe.py --data-dir ../shared/data --compile

The CPU slice in docs/reproduction.md:

    python3 benchmarks/fast_recipe.py --data-dir ../shared/data --model small-cnn --fast-epochs 6 \\
        --fast-batch 256 --fast-per-batch 20 --fast-lr 0.2 --threads 2
"""
from __future__ import annotations

from _papers import Table, adi_key, arguments, load, parse, setting, train

from nnmark.api import verify_model


def main() -> None:
    parser = arguments(__doc__, model="resnet18", epochs=60, batch_size=100, lr=0.1, datasets=["cifar10"])
    parser.add_argument("--paper-per-batch", type=int, default=2, help="Triggers per batch, paper's run.")
    parser.add_argument("--skip-paper", action="store_true", help="Run only the fast recipe.")
    parser.add_argument("--fast-epochs", type=int, default=18)
    parser.add_argument("--fast-batch", type=int, default=512)
    parser.add_argument("--fast-lr", type=float, default=0.4, help="Peak learning rate of the one cycle.")
    parser.add_argument("--fast-per-batch", type=int, default=16, help="Triggers per batch, fast recipe.")
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--compile", action="store_true", help="torch.compile both runs (CUDA graphs on GPUs).")
    args = parse(parser)
    table = Table("Fast recipe vs the paper's schedule (Adi et al. trigger set)",
                  setting(args, **{"fast": f"{args.fast_epochs} epochs, one-cycle to lr {args.fast_lr:g}, "
                                           f"batch {args.fast_batch} + {args.fast_per_batch}, "
                                           f"label smoothing {args.label_smoothing:g}",
                                   "compile": args.compile}))
    for name in args.datasets:
        data, why = load(name, args)
        if data is None:
            table.add(dataset=name, recipe="-", epochs=why)
            continue
        key = adi_key(data, args)
        runs = [] if args.skip_paper else [
            ("paper", dict(epochs=args.epochs, embed_options={"per_batch": args.paper_per_batch}))]
        runs.append(("fast", dict(epochs=args.fast_epochs, batch_size=args.fast_batch, lr=args.fast_lr,
                                  schedule="onecycle", label_smoothing=args.label_smoothing,
                                  embed_options={"per_batch": args.fast_per_batch})))
        seconds = {}
        for recipe, options in runs:
            print(f"[{name}] {recipe}")
            trained = train(data, args, key=key, compile=args.compile, **options)
            verdict = verify_model(trained.model, key)
            seconds[recipe] = trained.result.seconds
            table.add(dataset=name, recipe=recipe, epochs=options["epochs"],
                      batch=f"{options.get('batch_size', args.batch_size)} + {options['embed_options']['per_batch']}",
                      train_seconds=round(trained.result.seconds, 1),
                      test_accuracy=100 * trained.test_accuracy, trigger_accuracy=100 * verdict.agreement,
                      owned=verdict.owned, p_value=verdict.p_value)
        if len(seconds) == 2:
            print(f"[{name}] the fast recipe trained in {seconds['fast'] / seconds['paper']:.2f} of the paper "
                  "schedule's time")
    table.save(args.json)


if __name__ == "__main__":
    main()
