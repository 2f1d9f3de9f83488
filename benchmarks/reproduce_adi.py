"""Adi et al. 2018 (seed 000): 100 abstract trigger images with random labels, embedded into a
ResNet-18 on CIFAR-10 from scratch and into a trained model ("pretrained"), then the four
fine-tuning attacks (FTLL, FTAL, RTLL, RTAL).

The paper's setting (the defaults): ResNet-18, 60 epochs, SGD lr 0.1 ÷10 every 20 epochs, batch
100 plus 2 trigger images:

    python3 benchmarks/reproduce_adi.py --data-dir ../shared/data --json adi.json

A CPU-sized slice (what docs/reproduction.md reports where no GPU was at hand):

    python3 benchmarks/reproduce_adi.py --data-dir ../shared/data --model small-cnn --epochs 8 \\
        --pretrained-epochs 2 --attack-epochs 3
"""
from __future__ import annotations

from _papers import Table, adi_key, arguments, load, parse, setting, train

from nnmark.api import verify_model
from nnmark.attacks import AttackContext
from nnmark.models.store import ModelSpec
from nnmark.training.presets import preset
from nnmark.workflows.attack import attack_and_judge

ATTACKS = ("ftll", "ftal", "rtll", "rtal")


def main() -> None:
    parser = arguments(__doc__, model="resnet18", epochs=60, batch_size=100, lr=0.1,
                       datasets=["cifar10", "cifar100"])
    parser.add_argument("--pretrained-epochs", type=int, default=20,
                        help="Epochs of embedding into the trained model (our choice; lr 0.01).")
    parser.add_argument("--attack-epochs", type=int, default=20, help="Epochs of each fine-tuning attack.")
    parser.add_argument("--attacker-fraction", type=float, default=0.3,
                        help="Share of the training set the attacker fine-tunes on.")
    args = parse(parser)
    table = Table("Adi et al. 2018: trigger set of abstract images",
                  setting(args, **{"pretrained epochs": args.pretrained_epochs, "attack epochs": args.attack_epochs,
                                   "attacker data": f"{args.attacker_fraction:g} of the training set"}))
    for name in args.datasets:
        data, why = load(name, args)
        if data is None:
            table.add(dataset=name, model="-", stage=why)
            continue
        key = adi_key(data, args)
        print(f"[{name}] no watermark")
        clean = train(data, args)
        verdict = verify_model(clean.model, key)
        table.add(dataset=name, model="no watermark", stage="trained", test_accuracy=100 * clean.test_accuracy,
                  trigger_accuracy=100 * verdict.agreement, owned=verdict.owned, p_value=verdict.p_value)
        print(f"[{name}] from scratch")
        scratch = train(data, args, key=key, embed_options={"per_batch": 2})
        print(f"[{name}] pretrained")
        pretrained = train(data, args, key=key, base=clean, epochs=args.pretrained_epochs, lr=0.01,
                           schedule="constant", embed_options={"per_batch": 2})
        attacker = data.subset(args.attacker_fraction, seed=args.seed + 7)
        spec = ModelSpec(args.model, data.num_classes, data.input_shape, data.mean, data.std)
        context = AttackContext(attacker, spec, seed=args.seed,
                                train=preset("attack", epochs=args.attack_epochs, batch_size=args.batch_size,
                                             device=args.device))
        for label, marked in (("from scratch", scratch), ("pretrained", pretrained)):
            verdict = verify_model(marked.model, key)
            table.add(dataset=name, model=label, stage="trained", test_accuracy=100 * marked.test_accuracy,
                      trigger_accuracy=100 * verdict.agreement, owned=verdict.owned, p_value=verdict.p_value,
                      paper="trigger 100%, test accuracy as without the mark")
            for attack in ATTACKS:
                after = attack_and_judge(marked.model, key, attack, context, strength=float(args.attack_epochs),
                                         test_data=data).after
                table.add(dataset=name, model=label, stage=attack, test_accuracy=100 * after.test_accuracy,
                          trigger_accuracy=100 * after.evidence, owned=after.owned, p_value=after.p_value)
    table.save(args.json)


if __name__ == "__main__":
    main()
