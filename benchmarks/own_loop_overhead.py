"""What the Watermarker costs a user's own training loop: the time per step of a plain PyTorch loop
that uses ``nnmark.Watermarker`` (mix + loss) against the same loop with the trigger mixing written
by hand (a gather of the triggers and a concatenation: the least mixing can cost), in one run.

Two settings: small-cnn on the embedded digits (batch 64 + 16 triggers) and ResNet-18 (Adi et al.'s
CIFAR variant) on CIFAR-10 (batch 100 + 2), on the CPU by default; ``--device cuda`` takes the
same figures on a GPU. CIFAR-10 is read from ``--data-dir`` (or NNMARK_DATA) when it is there,
else CIFAR-shaped random images stand in (time does not depend on pixel values).

    python3 benchmarks/own_loop_overhead.py [--steps 30] [--repeats 5] [--device cpu]

Each loop runs ``--steps`` timed steps after 3 warm-up steps, ``--repeats`` times alternating, and
the medians are compared. Target: Watermarker / by hand ≤ 1.05.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from _papers import machine

import nnmark
from nnmark.data import load_dataset
from nnmark.errors import NNMarkError
from nnmark.models import ModelSpec, create_model
from nnmark.models.inference import resolve_device


def run(model, images, labels, batch, steps, device, mixing) -> float:
    """Seconds per step of ``steps`` steps, after three warm-up steps; ``mixing(x, y, step) -> (x, y, extra)``."""
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    started = None
    for step in range(steps + 3):
        if step == 3:
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
        first = (step * batch) % (len(labels) - batch)
        x, y = images[first:first + batch], labels[first:first + batch]
        x, y, extra = mixing(x, y, step)
        loss = F.cross_entropy(model(x), y) + extra()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / steps


def by_hand(triggers: torch.Tensor, trigger_labels: torch.Tensor, per_batch: int):
    def mix(x, y, step):
        take = (torch.arange(per_batch, device=x.device) + step * per_batch) % len(trigger_labels)
        return torch.cat([x, triggers[take]]), torch.cat([y, trigger_labels[take]]), lambda: 0.0
    return mix


def watermarked(watermarker):
    def mix(x, y, step):
        x, y = watermarker.mix(x, y)
        return x, y, watermarker.loss
    return mix


def setting(name, spec, images, labels, batch, per_batch, args, device) -> dict:
    key = nnmark.generate_key("adi", num_classes=spec.num_classes, input_shape=spec.input_shape, seed=1,
                              options={"size": 100})
    triggers, trigger_labels = key.tensors["inputs"].to(device), key.tensors["labels"].to(device)
    images, labels = images.to(device), labels.to(device)
    times = {"by hand": [], "Watermarker": []}
    for _ in range(args.repeats):
        for label in times:
            model = create_model(spec, seed=0).to(device)
            if label == "by hand":
                mixing = by_hand(triggers, trigger_labels, per_batch)
                times[label].append(run(model, images, labels, batch, args.steps, device, mixing))
            else:
                with nnmark.Watermarker(key, model, options={"per_batch": per_batch}) as watermarker:
                    times[label].append(run(model, images, labels, batch, args.steps, device,
                                            watermarked(watermarker)))
    medians = {label: statistics.median(values) for label, values in times.items()}
    return {"setting": name, **{f"{label} ms/step": 1000 * value for label, value in medians.items()},
            "ratio": medians["Watermarker"] / medians["by hand"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--settings", default="digits,cifar10")
    parser.add_argument("--resnet-width", type=int, default=64, help="ResNet-18's width (64 as in the paper).")
    args = parser.parse_args()
    device = resolve_device(args.device)
    rows = []
    if "digits" in args.settings:
        digits = load_dataset("digits")
        spec = ModelSpec("small-cnn", 10, digits.input_shape, digits.mean, digits.std)
        rows.append(setting("small-cnn, digits, batch 64 + 16", spec, digits.train_x, digits.train_y, 64, 16, args,
                            device))
    if "cifar10" in args.settings:
        count = 100 * (args.steps + 4)
        try:
            cifar = load_dataset("cifar10", args.data_dir)
            images, labels, source = cifar.train_x[:count], cifar.train_y[:count], "CIFAR-10"
        except NNMarkError:
            images, labels, source = torch.rand(count, 3, 32, 32), torch.randint(0, 10, (count,)), "random CIFAR-shaped"
        spec = ModelSpec("resnet18", 10, (3, 32, 32), (0.49, 0.48, 0.45), (0.25, 0.24, 0.26), {"width": args.resnet_width})
        rows.append(setting(f"ResNet-18, {source}, batch 100 + 2", spec, images, labels, 100, 2, args, device))
    print(f"{machine(device)}, torch {torch.__version__}, {args.steps} timed steps x {args.repeats} repeats (medians)")
    print("| setting | by hand, ms/step | Watermarker, ms/step | Watermarker / by hand |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row['setting']} | {row['by hand ms/step']:.1f} | {row['Watermarker ms/step']:.1f} | {row['ratio']:.3f} |")


if __name__ == "__main__":
    main()
