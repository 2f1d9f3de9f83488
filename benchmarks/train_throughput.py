"""Training throughput (images/s) of small-cnn and ResNet-18 (Adi et al.'s CIFAR variant) on
CIFAR-shaped data with a 100-image trigger set mixed in, measured in one run for:

  (a) the common loop of published watermarking code: a DataLoader with per-sample CPU
      augmentation (random crop with padding 4, horizontal flip), fp32, triggers concatenated;
  (b) nnmark's trainer (``nnmark.training.fit`` with the ``MixInSamples`` hook): data resident on
      the device, batch augmentation there, channels-last; in fp32 (the CPU default) and with bf16
      autocast (``TrainConfig(mixed_precision=True)``, ``nnmark train --mixed-precision``; the CUDA
      default); with ``--compile`` also torch.compile (CUDA graphs on a GPU);
  (c) the bare step the trainer is measured against: one resident batch, no augmentation and no
      mixing, forward, backward and SGD step only, in the trainer's precision and layout.

    python3 benchmarks/train_throughput.py [--steps 20] [--batch 100] [--triggers 2] [--device auto] [--compile]
        [--accuracy-epochs 2]

Uses the real CIFAR-10 when NNMARK_DATA (or --data-dir) holds it, else random CIFAR-shaped data
(throughput does not depend on pixel values). With --accuracy-epochs E (and the real data), each
model is also trained E epochs on 5,000 training images in fp32 and in bf16 and tested on 2,000,
so the faster precision is shown to keep accuracy. Prints one table per model.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from _papers import machine

from nnmark.data.base import Augmentation
from nnmark.errors import NNMarkError
from nnmark.models import ModelSpec, create_model
from nnmark.training import MixInSamples, TrainConfig, fit
from nnmark.models.inference import resolve_device


class PerSampleAugmented(TorchDataset):
    """What most published code does: crop and flip one image at a time on the CPU."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        image = F.pad(self.images[index], (4, 4, 4, 4))
        top, left = torch.randint(0, 9, (2,)).tolist()
        image = image[:, top:top + 32, left:left + 32]
        if torch.rand(()) < 0.5:
            image = image.flip(2)
        return image, self.labels[index]


def common_loop(model, images, labels, triggers, trigger_labels, batch, per_batch, steps, device, workers):
    loader = DataLoader(PerSampleAugmented(images, labels), batch_size=batch, shuffle=True, drop_last=True,
                        num_workers=workers, persistent_workers=workers > 0)
    model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    done, started, cursor = 0, None, 0
    for step, (x, y) in enumerate(loader):
        if step == 2:  # warm-up steps are not counted
            if device.type == "cuda":
                torch.cuda.synchronize()
            started, done = time.perf_counter(), 0
        take = torch.arange(cursor, cursor + per_batch) % len(triggers)
        cursor += per_batch
        x = torch.cat([x, triggers[take]]).to(device)
        y = torch.cat([y, trigger_labels[take]]).to(device)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss.item()  # the usual per-step logging sync
        done += len(y)
        if step + 1 >= steps + 2:
            break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return done / (time.perf_counter() - started)


def nnmark_trainer(model, images, labels, triggers, trigger_labels, batch, per_batch, steps, device,
                   compile_steps=False, bf16=None):
    hook = MixInSamples(triggers, trigger_labels, per_batch=per_batch)
    augmentation = Augmentation(crop_padding=4, horizontal_flip=True)
    n = batch * (steps + 2)
    subset_x, subset_y = images[:n], labels[:n]
    config = TrainConfig(epochs=1, batch_size=batch, lr=0.1, device=str(device), compile=compile_steps,
                         mixed_precision=bf16)
    # A compiled step is compiled (and its CUDA graph recorded) on the warm-up run, not the timed one.
    warm_steps = 4 if compile_steps else 2
    fit(model, subset_x[:warm_steps * batch], subset_y[:warm_steps * batch], config, augmentation=augmentation,
        hooks=[hook])
    result = fit(model, subset_x[:steps * batch], subset_y[:steps * batch], config, augmentation=augmentation,
                 hooks=[hook])
    return result.steps * (batch + per_batch) / result.seconds


def bare_step(model, images, labels, batch, steps, device):
    on_cuda = device.type == "cuda"
    memory_format = torch.channels_last  # the trainer's layout on every device
    model.to(device=device, memory_format=memory_format).train()
    x = images[:batch].to(device).contiguous(memory_format=memory_format)
    y = labels[:batch].to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    started = None
    for step in range(steps + 2):
        if step == 2:
            if on_cuda:
                torch.cuda.synchronize()
            started = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=on_cuda):
            loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if on_cuda:
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - started)


def accuracy(spec, data, epochs, bf16, device) -> float:
    """Test accuracy after ``epochs`` on 5,000 training images, on 2,000 test images."""
    from nnmark.models.inference import predict_logits

    model = create_model(spec, seed=0)
    config = TrainConfig(epochs=epochs, batch_size=100, lr=0.05, device=str(device), mixed_precision=bf16)
    fit(model, data.train_x[:5000], data.train_y[:5000], config, augmentation=Augmentation(4, True))
    logits = predict_logits(model, data.test_x[:2000], 500, device)
    return float((logits.argmax(1) == data.test_y[:2000]).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--triggers", type=int, default=2, help="trigger images per batch")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the common loop")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--compile", action="store_true", help="also time the trainer with torch.compile")
    parser.add_argument("--models", default="small-cnn,resnet18")
    parser.add_argument("--accuracy-epochs", type=int, default=0,
                        help="also train each model this many epochs in fp32 and bf16 and test both")
    args = parser.parse_args()
    device = resolve_device(args.device)
    count = args.batch * (args.steps + 4)
    data = None
    try:
        from nnmark.data import load_dataset

        data = load_dataset("cifar10", args.data_dir)
        images, labels, source = data.train_x[:count], data.train_y[:count], "CIFAR-10"
    except NNMarkError:  # no dataset here: shapes are all that matter for speed
        images, labels, source = torch.rand(count, 3, 32, 32), torch.randint(0, 10, (count,)), "random CIFAR-shaped"
    triggers, trigger_labels = torch.rand(100, 3, 32, 32), torch.randint(0, 10, (100,))
    name = machine(device)
    for architecture in args.models.split(","):
        spec = ModelSpec(architecture, 10, (3, 32, 32), (0.49, 0.48, 0.45), (0.25, 0.24, 0.26))
        common = (images, labels, triggers, trigger_labels, args.batch, args.triggers, args.steps, device)
        a = common_loop(create_model(spec, seed=0), *common, args.workers)
        fp32 = nnmark_trainer(create_model(spec, seed=0), *common, bf16=False)
        bf16 = nnmark_trainer(create_model(spec, seed=0), *common, bf16=True)
        compiled = nnmark_trainer(create_model(spec, seed=0), *common, compile_steps=True) if args.compile else None
        bare = bare_step(create_model(spec, seed=0), images, labels, args.batch, args.steps, device)
        print(f"{architecture}, {source}, batch {args.batch}+{args.triggers}, {args.steps} timed steps, {name}, "
              f"torch {torch.__version__}")
        print(f"{'loop':<48} {'images/s':>10}")
        print(f"{'common: DataLoader, per-sample CPU aug, fp32':<48} {a:>10.1f}")
        print(f"{'nnmark trainer, fp32, channels-last':<48} {fp32:>10.1f}")
        print(f"{'nnmark trainer, bf16 autocast, channels-last':<48} {bf16:>10.1f}")
        if compiled is not None:
            print(f"{'nnmark trainer, compiled':<48} {compiled:>10.1f}")
        print(f"{'bare step (no augmentation, no mixing)':<48} {bare:>10.1f}")
        print(f"{'ratio: trainer fp32 / common loop':<48} {fp32 / a:>10.2f}x")
        print(f"{'ratio: trainer bf16 / common loop':<48} {bf16 / a:>10.2f}x")
        print(f"{'ratio: trainer fp32 / bare step':<48} {fp32 / bare:>10.2f}")
        if args.accuracy_epochs and data is not None:
            for label, flag in (("fp32", False), ("bf16", True)):
                acc = accuracy(spec, data, args.accuracy_epochs, flag, device)
                print(f"{'test accuracy, ' + label + f', {args.accuracy_epochs} epochs on 5,000 images':<48} "
                      f"{100 * acc:>9.1f}%")
        print(flush=True)


if __name__ == "__main__":
    main()
