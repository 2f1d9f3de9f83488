"""Zhang et al. 2018 (seed 002): three trigger sets sent to one target class (content: a text
stamp; noise: a fixed Gaussian pattern; unrelated: images from another domain) embedded while
training on MNIST and CIFAR-10, then magnitude pruning of every layer at growing rates.

Defaults train the small CNN for 20 epochs on the whole training set (the paper used small
CNNs it does not fully specify in our seed copy):

    python3 benchmarks/reproduce_zhang.py --data-dir ../shared/data --json zhang.json

A CPU-sized slice (docs/reproduction.md):

    python3 benchmarks/reproduce_zhang.py --data-dir ../shared/data --epochs 4 --datasets mnist
"""
from __future__ import annotations

from _papers import Table, arguments, load, parse, setting, train

from nnmark.api import generate_key, measure_null, verify_model
from nnmark.workflows.controls import train_controls
from nnmark.attacks import AttackContext, parse_chain, run_chain
from nnmark.models.store import ModelSpec
from nnmark.models.inference import evaluate

SCHEMES = ("content", "noise", "unrelated")


def judge(model, key, null) -> dict:
    """The verdict under the null measured on the control models (an estimated null: the probes in
    the key also catch a model that sends everything to the target class, as heavy pruning does)."""
    verdict = verify_model(model, key, null=null)
    return {"trigger_accuracy": 100 * verdict.agreement, "owned": verdict.owned, "p_value": verdict.p_value,
            "probe_target_rate": verdict.details.get("probe_target_rate")}


def main() -> None:
    parser = arguments(__doc__, model="small-cnn", epochs=20, batch_size=100, lr=0.05,
                       datasets=["mnist", "cifar10"])
    parser.add_argument("--prune-rates", type=float, nargs="+", default=[0.1, 0.3, 0.5, 0.7, 0.9])
    parser.add_argument("--controls", type=int, default=20, help="Control models that measure the null.")
    parser.add_argument("--control-epochs", type=int, default=5)
    args = parse(parser)
    table = Table("Zhang et al. 2018: content, noise and unrelated triggers, then pruning",
                  setting(args, **{"triggers": "100 per scheme, 2 per batch", "pruning": "layer-wise magnitude"}))
    for name in args.datasets:
        data, why = load(name, args)
        if data is None:
            table.add(dataset=name, scheme="-", stage=why)
            continue
        print(f"[{name}] no watermark")
        clean = train(data, args)
        print(f"[{name}] {args.controls} control models (several architectures) to measure the null")
        controls = train_controls(data, args.controls, epochs=args.control_epochs, seed=args.seed + 500)
        spec = ModelSpec(args.model, data.num_classes, data.input_shape, data.mean, data.std)
        context = AttackContext(data, spec, seed=args.seed)
        for scheme in SCHEMES:
            key = generate_key(scheme, num_classes=data.num_classes, input_shape=data.input_shape,
                               seed=args.seed + 1000, dataset=data, options={"size": 100})
            null = measure_null(key, controls)
            table.add(dataset=name, scheme=scheme, stage="no watermark", test_accuracy=100 * clean.test_accuracy,
                      **judge(clean.model, key, null))
            print(f"[{name}] {scheme}")
            marked = train(data, args, key=key, embed_options={"per_batch": 2})
            table.add(dataset=name, scheme=scheme, stage="trained", test_accuracy=100 * marked.test_accuracy,
                      **judge(marked.model, key, null))
            for rate in args.prune_rates:
                pruned = run_chain(marked.model, parse_chain("prune"), context, rate)
                accuracy = evaluate(pruned, data.test_x, data.test_y, device=args.device)
                table.add(dataset=name, scheme=scheme, stage=f"pruned {rate:.0%}", test_accuracy=100 * accuracy,
                          **judge(pruned, key, null))
    table.save(args.json)


if __name__ == "__main__":
    main()
