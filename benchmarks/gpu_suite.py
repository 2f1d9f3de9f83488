"""Every GPU figure nnmark claims, in one run (issue 29; docs/benchmarks.md, "GPU"), written as
JSON and a Markdown table into ``--out``:

1. training throughput of ResNet-18 (Adi et al.'s CIFAR variant) at batch 100 + 2 triggers and at
   batch 512 + 16: the common loop (DataLoader, per-sample CPU augmentation, fp32), nnmark's trainer
   (fp32, bf16, compiled) and the bare bf16 channels-last step, with the ratios trainer / common
   and trainer / bare;
2. time to accuracy: CIFAR-10 with an adi trigger set embedded from scratch by nnmark's fast
   recipe (one cycle, label smoothing, batch 512 + 16): test and trigger accuracy after every
   epoch against training seconds (evaluation not counted), the time to 94% with every trigger
   learnt, or what 60 s reached;
3. verification: queries/s of a 100-item key against ResNet-18 on the GPU, and the wall time of
   ``nnmark verify`` as a user runs it (a fresh process, start-up included);
4. the own-loop overhead of ``nnmark.Watermarker`` (benchmarks/own_loop_overhead.py) on the GPU.

The GPU host has no network and only the project's working tree travels (64 MiB), so the data
comes along as a compact file made here: ``--pack`` writes ``.gpu-data/cifar10.npz`` (uint8) from
``--data-dir``, as many training images as fit the limit (16,000 of 50,000) and 2,000 test images;
the accuracy figure is then that of a model trained on 16,000 images, which does not reach 94%.

    python3 benchmarks/gpu_suite.py --pack --data-dir ../shared/data     # here, once
    python3 benchmarks/gpu_suite.py --out "$OUT"                          # on the GPU
    python3 benchmarks/gpu_suite.py --dry-run --out /tmp/gpu-dry          # every path, tiny, on the CPU
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _papers import machine  # noqa: E402
from own_loop_overhead import setting as own_loop_setting  # noqa: E402
from train_throughput import bare_step, common_loop, nnmark_trainer  # noqa: E402

import nnmark  # noqa: E402
from nnmark.data.base import Augmentation, Dataset  # noqa: E402
from nnmark.errors import NNMarkError  # noqa: E402
from nnmark.models import ModelSpec, create_model, save_model  # noqa: E402
from nnmark.models.inference import evaluate, resolve_device  # noqa: E402
from nnmark.training import TrainConfig, fit  # noqa: E402

PACKED = Path(__file__).resolve().parents[1] / ".gpu-data" / "cifar10.npz"
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def pack(data_dir: str, train_images: int, test_images: int) -> None:
    from nnmark.data import load_dataset

    cifar = load_dataset("cifar10", data_dir)
    as_bytes = lambda x: (x * 255).round().to(torch.uint8).numpy()  # noqa: E731
    PACKED.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(PACKED, train_x=as_bytes(cifar.train_x[:train_images]), train_y=cifar.train_y[:train_images].numpy(),
                        test_x=as_bytes(cifar.test_x[:test_images]), test_y=cifar.test_y[:test_images].numpy())
    print(f"wrote {PACKED} ({PACKED.stat().st_size / 2**20:.1f} MiB): {train_images} training and {test_images} test images")


def load_packed(path: Path, dry_run: bool) -> tuple[Dataset, str]:
    if dry_run and not path.exists():
        generator = torch.Generator().manual_seed(0)
        x, y = torch.rand(192, 3, 32, 32, generator=generator), torch.randint(0, 10, (192,), generator=generator)
        return Dataset("random CIFAR-shaped", x[:128], y[:128], x[128:], y[128:], 10, CIFAR_MEAN, CIFAR_STD,
                       Augmentation(4, True)), "random CIFAR-shaped (dry run)"
    arrays = np.load(path)
    tensor = lambda a: torch.from_numpy(a).float().div_(255)  # noqa: E731
    data = Dataset("cifar10", tensor(arrays["train_x"]), torch.from_numpy(arrays["train_y"]).long(),
                   tensor(arrays["test_x"]), torch.from_numpy(arrays["test_y"]).long(), 10, CIFAR_MEAN, CIFAR_STD,
                   Augmentation(4, True))
    return data, f"CIFAR-10, {len(data.train_y)} training and {len(data.test_y)} test images"


def throughput(data: Dataset, device, sizes, steps: int, workers: int, width: int, compile_steps: bool = True
               ) -> list[dict]:
    spec = ModelSpec("resnet18", 10, (3, 32, 32), CIFAR_MEAN, CIFAR_STD, {"width": width})
    rows = []
    for batch, per_batch in sizes:
        count = batch * (steps + 4)
        images, labels = data.train_x[:count], data.train_y[:count]
        if len(labels) < count:  # fewer images than the timed steps need: repeat them
            repeat = -(-count // len(labels))
            images, labels = images.repeat(repeat, 1, 1, 1)[:count], labels.repeat(repeat)[:count]
        triggers, trigger_labels = torch.rand(100, 3, 32, 32), torch.randint(0, 10, (100,))
        common = (images, labels, triggers, trigger_labels, batch, per_batch, steps, device)
        row = {"batch": f"{batch} + {per_batch}",
               "common loop": common_loop(create_model(spec, seed=0), *common, workers),
               "trainer fp32": nnmark_trainer(create_model(spec, seed=0), *common, bf16=False),
               "trainer bf16": nnmark_trainer(create_model(spec, seed=0), *common, bf16=True)}
        row["trainer compiled"] = None
        try:
            if compile_steps:
                row["trainer compiled"] = nnmark_trainer(create_model(spec, seed=0), *common, compile_steps=True)
        except NNMarkError as refused:  # the trainer's own check found the compiled step wrong here
            row["compile refused"] = str(refused)
        row["bare bf16 step"] = bare_step(create_model(spec, seed=0), images, labels, batch, steps, device)
        best = max(value for key, value in row.items() if key.startswith("trainer") and isinstance(value, float))
        row["trainer / common"] = best / row["common loop"]
        row["trainer / bare"] = best / row["bare bf16 step"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def time_to_accuracy(data: Dataset, device, epochs: int, budget_s: float, width: int, compile_steps: bool) -> dict:
    spec = ModelSpec("resnet18", 10, (3, 32, 32), CIFAR_MEAN, CIFAR_STD, {"width": width})
    model = create_model(spec, seed=0)
    key = nnmark.generate_key("adi", num_classes=10, input_shape=(3, 32, 32), seed=1, options={"size": 100})
    config = TrainConfig(epochs=epochs, batch_size=512, lr=0.4, schedule="onecycle", label_smoothing=0.1,
                         device=str(device), compile=compile_steps)
    history, clock = [], {"started": time.perf_counter(), "evaluating": 0.0}

    def after_epoch(record, trained):
        began = time.perf_counter()
        seconds = began - clock["started"] - clock["evaluating"]  # training alone, evaluation not counted
        test = evaluate(trained, data.test_x, data.test_y, device=device)
        triggers = evaluate(trained, key.tensors["inputs"], key.tensors["labels"], device=device)
        clock["evaluating"] += time.perf_counter() - began
        history.append({"epoch": record.epoch, "train_seconds": round(seconds, 2), "test_accuracy": test,
                        "trigger_accuracy": triggers})
        print(json.dumps(history[-1]), flush=True)

    with nnmark.Watermarker(key, model, options={"per_batch": 16}) as watermarker:
        fit(model, data.train_x, data.train_y, config, augmentation=data.augmentation, watermark=watermarker,
            on_epoch_end=after_epoch)
    reached = next((row for row in history if row["test_accuracy"] >= 0.94 and row["trigger_accuracy"] == 1.0), None)
    within = [row for row in history if row["train_seconds"] <= budget_s]
    return {"epochs": history, "seconds_to_94_with_every_trigger": reached and reached["train_seconds"],
            f"best_within_{budget_s:g}_s": max(within, key=lambda row: row["test_accuracy"]) if within else None,
            "verified": nnmark.verify_model(model, key).to_dict()["p_value_text"]}


def verification(device, width: int, repeats: int) -> dict:
    spec = ModelSpec("resnet18", 10, (3, 32, 32), CIFAR_MEAN, CIFAR_STD, {"width": width})
    model = create_model(spec, seed=0).to(device).eval()
    key = nnmark.generate_key("adi", num_classes=10, input_shape=(3, 32, 32), seed=1, options={"size": 100})
    nnmark.verify_model(model, key)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    began = time.perf_counter()
    for _ in range(repeats):
        nnmark.verify_model(model, key)
    seconds = (time.perf_counter() - began) / repeats
    with tempfile.TemporaryDirectory() as folder:
        save_model(model.cpu(), spec, Path(folder) / "model")
        nnmark.save_key(key, Path(folder) / "key")
        began = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "nnmark", "verify", "--model", str(Path(folder) / "model"),
                               "--key", str(Path(folder) / "key"), "--device", str(device)],
                              capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        wall = time.perf_counter() - began
    return {"queries_per_s": 100 / seconds, "verify_model_ms": 1000 * seconds,
            "nnmark_verify_wall_s": wall, "nnmark_verify_exit": done.returncode}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.environ.get("OUT", "gpu-suite"))
    parser.add_argument("--data", default=str(PACKED))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dry-run", action="store_true", help="Every path at tiny sizes (on the CPU).")
    parser.add_argument("--no-compile", action="store_true", help="Leave torch.compile out (a quicker dry run).")
    parser.add_argument("--pack", action="store_true", help="Write the compact CIFAR-10 file from --data-dir.")
    parser.add_argument("--data-dir", default=os.environ.get("NNMARK_DATA"))
    parser.add_argument("--train-images", type=int, default=16000)
    args = parser.parse_args()
    if args.pack:
        pack(args.data_dir, args.train_images, 2000)
        return
    started = time.perf_counter()
    device = torch.device("cpu") if args.dry_run else resolve_device(args.device)
    data, source = load_packed(Path(args.data), args.dry_run)
    tiny = args.dry_run
    results = {"machine": machine(device), "torch": torch.__version__, "data": source,
               "date": time.strftime("%Y-%m-%d"), "dry_run": tiny}
    results["throughput"] = throughput(data, device, [(16, 2)] if tiny else [(100, 2), (512, 16)],
                                       2 if tiny else 100, 0 if tiny else 8, 8 if tiny else 64,
                                       compile_steps=not args.no_compile)
    results["time_to_accuracy"] = time_to_accuracy(data, device, 1 if tiny else 18, 60.0, 8 if tiny else 64,
                                                   compile_steps=not (tiny or args.no_compile))
    results["verification"] = verification(device, 8 if tiny else 64, 1 if tiny else 20)

    class Args:  # own_loop_overhead's arguments
        steps, repeats = (2, 1) if tiny else (50, 3)

    spec = ModelSpec("resnet18", 10, (3, 32, 32), CIFAR_MEAN, CIFAR_STD, {"width": 8 if tiny else 64})
    batch = 16 if tiny else 100
    results["own_loop"] = own_loop_setting(f"ResNet-18, batch {batch} + 2", spec, data.train_x[:batch * 60],
                                           data.train_y[:batch * 60], batch, 2, Args, device)
    results["seconds"] = round(time.perf_counter() - started, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_suite.json").write_text(json.dumps(results, indent=2, default=str))
    (out / "gpu_suite.md").write_text(markdown(results))
    print(markdown(results))


def markdown(results: dict) -> str:
    lines = [f"{results['machine']}, torch {results['torch']}, {results['data']}, {results['date']}"
             + (" (DRY RUN: tiny sizes, not figures)" if results["dry_run"] else ""), "",
             "| batch | common loop | trainer fp32 | trainer bf16 | trainer compiled | bare bf16 step | trainer / common | "
             "trainer / bare |", "|---|---|---|---|---|---|---|---|"]
    for row in results["throughput"]:
        compiled = ("refused" if "compile refused" in row else "-") if row["trainer compiled"] is None \
            else f"{row['trainer compiled']:.0f}"
        lines.append(f"| {row['batch']} | {row['common loop']:.0f} | {row['trainer fp32']:.0f} | {row['trainer bf16']:.0f} "
                     f"| {compiled} | {row['bare bf16 step']:.0f} | {row['trainer / common']:.2f}x | "
                     f"{100 * row['trainer / bare']:.0f}% |")
    accuracy = results["time_to_accuracy"]
    best = next((value for key, value in accuracy.items() if key.startswith("best_within")), None)
    lines += ["", f"Time to 94% with every trigger learnt: {accuracy['seconds_to_94_with_every_trigger']} s; "
                  f"best within 60 s: {best}", "",
              f"Verification: {results['verification']['queries_per_s']:.0f} queries/s "
              f"({results['verification']['verify_model_ms']:.1f} ms for a 100-item key); `nnmark verify` wall time "
              f"{results['verification']['nnmark_verify_wall_s']:.1f} s", "",
              f"Own loop: Watermarker {results['own_loop']['Watermarker ms/step']:.2f} ms/step, by hand "
              f"{results['own_loop']['by hand ms/step']:.2f} ms/step, ratio {results['own_loop']['ratio']:.3f}", "",
              f"{results['seconds']} s in all"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
