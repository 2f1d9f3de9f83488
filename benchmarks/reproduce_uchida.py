"""Uchida et al. 2017 (seed 004): a 256-bit signature embedded by a regulariser (λ = 0.01) into
the second convolution of the first residual group of a wide ResNet (N = 1, k = 4; M = 576) on
CIFAR-10, as the authors' published code does, then layer-wise magnitude pruning up to 65% and
fine-tuning. The paper reports the signature complete (bit error rate 0) after 65% of the
parameters are pruned.

Defaults, the published code's: WRN-10-4, 200 epochs, SGD lr 0.1 multiplied by 0.2 after epochs
60, 120 and 160 (with --epochs E: after 30%, 60% and 80% of E), batch 64:

    python3 benchmarks/reproduce_uchida.py --data-dir ../shared/data --json uchida.json

A CPU-sized slice (docs/reproduction.md):

    python3 benchmarks/reproduce_uchida.py --data-dir ../shared/data --model-arg widen=1 --epochs 3 \\
        --train-fraction 0.4 --fine-tune-epochs 2 --threads 2
"""
from __future__ import annotations

from _papers import Table, arguments, load, model_kwargs, parse, setting, train

from nnmark.api import generate_key, verify_model
from nnmark.attacks import AttackContext
from nnmark.models.store import ModelSpec
from nnmark.models.wide_resnet import UCHIDA_LAYER
from nnmark.training.presets import preset
from nnmark.workflows.attack import attack_and_judge


def published_schedule(epochs: int) -> dict:
    """The authors' schedule: lr x0.2 after epochs 60, 120 and 160 of 200 (30%, 60%, 80% of the run)."""
    milestones = sorted({max(1, round(epochs * share)) for share in (0.3, 0.6, 0.8)})
    return {"lr_milestones": tuple(m for m in milestones if m < epochs) or None, "lr_gamma": 0.2}


def main() -> None:
    parser = arguments(__doc__, model="wide-resnet", epochs=200, batch_size=64, lr=0.1, datasets=["cifar10"])
    parser.add_argument("--prune-rates", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.4, 0.5, 0.65])
    parser.add_argument("--fine-tune-epochs", type=int, default=20)
    parser.add_argument("--strength", type=float, default=0.01, help="λ of the regulariser (the paper: 0.01).")
    args = parse(parser)
    table = Table("Uchida et al. 2017: 256-bit weight signature, then pruning and fine-tuning",
                  setting(args, **{"λ": args.strength, "fine-tune epochs": args.fine_tune_epochs}))
    for name in args.datasets:
        data, why = load(name, args)
        if data is None:
            table.add(dataset=name, stage=why)
            continue
        spec = ModelSpec(args.model, data.num_classes, data.input_shape, data.mean, data.std,
                         model_kwargs(args.model_arg))
        options = {"bits": 256, **({"layer": "net." + UCHIDA_LAYER} if args.model == "wide-resnet" else {})}
        key = generate_key("uchida", num_classes=data.num_classes, input_shape=data.input_shape,
                           seed=args.seed + 1000, model_spec=spec, options=options)
        print(f"[{name}] no watermark; signature in {key.params['layer']}")
        clean = train(data, args, **published_schedule(args.epochs))
        verdict = verify_model(clean.model, key)
        table.add(dataset=name, stage="no watermark", test_accuracy=100 * clean.test_accuracy,
                  bit_error_rate=verdict.details["bit_error_rate"], owned=verdict.owned, p_value=verdict.p_value)
        print(f"[{name}] embedded")
        marked = train(data, args, key=key, embed_options={"strength": args.strength}, **published_schedule(args.epochs))
        verdict = verify_model(marked.model, key)
        table.add(dataset=name, stage="embedded", test_accuracy=100 * marked.test_accuracy,
                  bit_error_rate=verdict.details["bit_error_rate"], owned=verdict.owned, p_value=verdict.p_value,
                  paper="BER 0, accuracy as without the mark")
        context = AttackContext(data.subset(0.5, seed=args.seed + 7), spec, seed=args.seed,
                                train=preset("attack", epochs=args.fine_tune_epochs, batch_size=args.batch_size,
                                             device=args.device))
        stages = [(f"pruned {rate:.0%}", "prune", rate) for rate in args.prune_rates]
        stages.append((f"fine-tuned {args.fine_tune_epochs} epochs", "ftal", float(args.fine_tune_epochs)))
        for stage, attack, strength in stages:
            after = attack_and_judge(marked.model, key, attack, context, strength=strength, test_data=data).after
            table.add(dataset=name, stage=stage, test_accuracy=100 * after.test_accuracy,
                      bit_error_rate=after.facts["bit_error_rate"], owned=after.owned, p_value=after.p_value,
                      paper="BER 0 up to 65%" if stage.startswith("pruned") else "")
    table.save(args.json)


if __name__ == "__main__":
    main()
