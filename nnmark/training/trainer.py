"""The one training loop every scheme and attack uses.

The whole training set is moved to the device once; each step slices a shuffled index, augments
the batch there, and runs forward/backward with no host synchronisation (losses are summed on the
device and read once per epoch). On CUDA it uses bf16 autocast and channels-last memory.

Given a :class:`~nnmark.training.distributed.Distributed` handle, the same loop runs
data-parallel: the model is wrapped in DistributedDataParallel, ``batch_size`` is the global
batch, and each rank takes its own slice of every global batch from one shuffled order that all
ranks draw alike, so an epoch covers the data once across ranks as it does in one process.
"""
from __future__ import annotations

import contextlib
import bisect
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from nnmark.data.augment import augment
from nnmark.data.base import Augmentation
from nnmark.errors import NNMarkError
from nnmark.models.inference import resolve_device
from nnmark.training.distributed import Distributed, split_batch
from nnmark.training.hooks import StepOutputs, TrainingHook


@dataclass
class TrainConfig:
    """Defaults follow Adi et al. 2018: SGD, momentum 0.9, lr 0.1 divided by 10 at each third of
    the run (their 60 epochs: every 20), batch 100."""

    epochs: int = 20
    batch_size: int = 100
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: Literal["step", "onecycle", "constant"] = "step"
    lr_step_every: int | None = None  # epochs between ÷10 drops; None: a third of the run
    lr_gamma: float = 0.1
    # epochs after which the lr is multiplied by lr_gamma (a "step" schedule at uneven points, e.g.
    # Uchida et al.'s published 60, 120, 160 of 200 with gamma 0.2); overrides lr_step_every
    lr_milestones: tuple[int, ...] | None = None
    label_smoothing: float = 0.0
    augment: bool = True
    seed: int = 0
    device: str = "auto"
    mixed_precision: bool | None = None  # None: on for CUDA
    # None: on. oneDNN's CPU convolutions and cuDNN's both run faster on NHWC: on this project's
    # 2-core CPU small-cnn trains 1.6x faster (docs/benchmarks.md)
    channels_last: bool | None = None
    # torch.compile the forward and backward passes. On CUDA this records CUDA graphs
    # (mode "reduce-overhead"): at small batches such as the paper's 100+2 a step is bound by
    # kernel launches, and replaying a graph removes them. Off by default: compiling costs
    # time up front (and a C++ compiler on CPU) that short runs do not win back.
    compile: bool = False

    def __post_init__(self) -> None:
        for name, value, ok, expected in (
            ("epochs", self.epochs, self.epochs >= 1, "at least 1"),
            ("batch_size", self.batch_size, self.batch_size >= 1, "at least 1"),
            ("lr", self.lr, self.lr > 0, "a positive number"),
            ("schedule", self.schedule, self.schedule in ("step", "onecycle", "constant"),
             "step, onecycle or constant"),
            ("lr_milestones", self.lr_milestones, self.lr_milestones is None or (
                all(isinstance(m, int) and m >= 1 for m in self.lr_milestones)
                and list(self.lr_milestones) == sorted(set(self.lr_milestones))), "increasing positive epochs"),
        ):
            if not ok:
                raise NNMarkError("invalid training setting", field=name, expected=expected, got=value)


@dataclass
class EpochRecord:
    epoch: int
    loss: float
    lr: float


@dataclass
class TrainResult:
    history: list[EpochRecord] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0
    samples: int = 0
    processes: int = 1


def _lr_lambda(config: TrainConfig, steps_per_epoch: int):
    step_every = config.lr_step_every or max(1, math.ceil(config.epochs / 3))
    milestones = config.lr_milestones

    def factor(step: int) -> float:
        epoch = step // steps_per_epoch
        if milestones is not None:
            return config.lr_gamma ** bisect.bisect_right(milestones, epoch)
        return config.lr_gamma ** (epoch // step_every)

    return factor


def fit(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    config: TrainConfig,
    *,
    augmentation: Augmentation | None = None,
    hooks: Sequence[TrainingHook] = (),
    parameters: Iterable[nn.Parameter] | None = None,
    freeze_batchnorm: bool = False,
    progress=None,  # rich.progress.Progress, or None for silence
    description: str = "training",
    distributed: Distributed | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``inputs`` (N,C,H,W in [0, 1]) and ``targets``.

    ``targets`` are class indices, or class probabilities (N, K) for distillation. ``parameters``
    restricts which parameters the optimiser updates (default: all); ``freeze_batchnorm`` also
    keeps batch-norm running statistics as they are (for fine-tuning the last layer only).
    ``distributed``: train data-parallel with the other ranks of that group, on its device (every
    rank must call ``fit`` with the same arguments); progress is shown by the main rank only.
    """
    world_size, rank = (distributed.world_size, distributed.rank) if distributed else (1, 0)
    device = distributed.device if distributed else resolve_device(config.device)
    on_cuda = device.type == "cuda"
    use_amp = on_cuda if config.mixed_precision is None else config.mixed_precision
    channels_last = True if config.channels_last is None else config.channels_last
    memory_format = torch.channels_last if channels_last else torch.contiguous_format

    model.to(device=device, memory_format=memory_format)
    inputs, targets = inputs.to(device), targets.to(device)
    for hook in hooks:
        hook.setup(model, device)

    trainable = list(parameters) if parameters is not None else list(model.parameters())
    optimizer = torch.optim.SGD(trainable, lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay, nesterov=False)
    n = len(targets)
    batch = min(config.batch_size, n)
    local_batch = split_batch(batch, world_size)
    steps_per_epoch = n // batch  # the remainder is drawn in a later epoch's shuffle
    total_steps = steps_per_epoch * config.epochs
    if config.schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr,
                                                        total_steps=total_steps)
    elif config.schedule == "step":
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(config, steps_per_epoch))
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)

    augmentation = augmentation if (augmentation and config.augment) else Augmentation()
    result = TrainResult()
    show = progress is not None and rank == 0
    task = progress.add_task(description, total=total_steps) if show else None
    network = model
    if distributed is not None:
        from torch.nn.parallel import DistributedDataParallel

        for hook in hooks:
            hook.shard(rank, world_size)
        network = DistributedDataParallel(model, device_ids=[device.index] if on_cuda else None)
    if config.compile:
        # Shapes never change within a run (every step is a full batch plus the same number of
        # mixed-in samples), so one static graph serves every step.
        network = torch.compile(network, mode="reduce-overhead" if on_cuda else "default", dynamic=False)
    start = time.perf_counter()
    rng_devices = [device] if on_cuda else []
    with _capture_features(model, hooks) as captured, torch.random.fork_rng(devices=rng_devices):
        torch.manual_seed(config.seed + rank)
        generator = torch.Generator(device=device).manual_seed(config.seed)
        # Ranks share the shuffle (so their slices are disjoint) but not the augmentation draws.
        augment_generator = generator if distributed is None else \
            torch.Generator(device=device).manual_seed(config.seed + 7919 * (rank + 1))
        model.train()
        if freeze_batchnorm:
            for module in model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        step = 0
        for epoch in range(config.epochs):
            order = torch.randperm(n, device=device, generator=generator)
            loss_sum = torch.zeros((), device=device)
            for index in range(steps_per_epoch):
                first = index * batch + rank * local_batch
                take = order[first:first + local_batch]
                x = augment(inputs[take], augmentation, augment_generator)
                y = targets[take]
                loss = _step_loss(network, model, x, y, hooks, step, config.label_smoothing, use_amp,
                                  device, memory_format, captured, check_compiled=config.compile and step == 0)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                loss_sum += loss.detach()
                step += 1
                if task is not None:
                    progress.advance(task)
            if distributed is not None:
                loss_sum = distributed.sum(loss_sum) / world_size
            mean_loss = (loss_sum / steps_per_epoch).item()
            result.history.append(EpochRecord(epoch + 1, mean_loss, optimizer.param_groups[0]["lr"]))
            if task is not None:
                progress.update(task, description=f"{description} · epoch {epoch + 1} loss {mean_loss:.3f}")
    result.seconds = time.perf_counter() - start
    result.steps = step
    result.samples = step * batch
    result.processes = world_size
    if channels_last:
        # the caller gets the usual layout back: code that views weights flat (torch's own pruning
        # utilities among it) fails on channels-last tensors
        model.to(memory_format=torch.contiguous_format)
    model.eval()
    return result


def _step_loss(network, model, x, y, hooks, step, label_smoothing, use_amp, device, memory_format, captured,
               check_compiled=False):
    """``network`` runs the forward pass (the DDP wrapper when data-parallel); hooks see the bare
    ``model``. ``captured`` is filled by forward hooks on the layers hooks asked to read.
    ``check_compiled``: ``network`` is compiled; compare its first answers with the eager model's."""
    extras, mixed_in, offset = [], {}, len(y)
    for hook in hooks:
        sample = hook.extra_samples(step)
        if sample is not None:
            extras.append(sample)
            mixed_in[id(hook)] = slice(offset, offset + len(sample[1]))
            offset += len(sample[1])
    batch_inputs = torch.cat([x] + [ex for ex, _ in extras]) if extras else x
    batch_inputs = batch_inputs.contiguous(memory_format=memory_format)
    expected = _eager_reference(model, batch_inputs, use_amp, device) if check_compiled else None
    captured.clear()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
        try:
            logits = network(batch_inputs)
        except Exception as exc:  # torch.compile fails at the first call, in many exception types
            if not check_compiled:
                raise
            raise NNMarkError(f"torch.compile could not compile the training step on this machine "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); train without compile",
                              field="compile") from None
    logits = logits.float()
    if expected is not None:
        _check_compiled_answers(logits, expected, use_amp)
    count = len(y)
    # Data and mixed-in samples are scored separately so soft (distillation) targets and integer
    # trigger labels can share one forward pass; the mean is over every sample in the batch.
    loss = F.cross_entropy(logits[:count], y, label_smoothing=label_smoothing) * count
    offset = count
    for _, extra_y in extras:
        part = logits[offset:offset + len(extra_y)]
        loss = loss + F.cross_entropy(part, extra_y, reduction="sum")
        offset += len(extra_y)
    loss = loss / offset
    outputs = StepOutputs(batch_inputs, y, logits, count, step, dict(captured), mixed_in)
    for hook in hooks:
        term = hook.extra_loss(model, outputs)
        if term is not None:
            loss = loss + term
    return loss


@torch.no_grad()
def _eager_reference(model: nn.Module, inputs: torch.Tensor, use_amp: bool, device: torch.device) -> torch.Tensor:
    """The bare model's answers on a training batch, leaving its state as it was (batch norm's
    running statistics move on every training-mode forward, and the real step follows)."""
    saved = [(buffer, buffer.clone()) for buffer in model.buffers()]
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
        expected = model(inputs).float()
    for buffer, value in saved:
        buffer.copy_(value)
    return expected


def _check_compiled_answers(compiled: torch.Tensor, eager: torch.Tensor, use_amp: bool) -> None:
    """Refuse a compiled step whose answers are not the eager model's. torch.compile's generated
    CPU code depends on the instruction set: with PyTorch 2.13's AVX2 kernels, a channels-last
    small-cnn in training mode answered NaN where the eager model answered finite logits
    (tests/training), which would have trained a model of NaN without a word."""
    tolerance = (5e-2 if use_amp else 1e-3) * (1.0 + float(eager.abs().max()))
    difference = float((compiled.detach() - eager).abs().max())
    if not bool(torch.isfinite(compiled).all()) or not difference <= tolerance:
        raise NNMarkError(f"torch.compile's training step answers differently from the model it compiles on this "
                          f"machine (largest difference {difference:.3g}, allowed {tolerance:.3g}): a known kind of "
                          "compiler fault that depends on the CPU's instruction set; train without compile",
                          field="compile")


@contextlib.contextmanager
def _capture_features(model: nn.Module, hooks: Sequence[TrainingHook]) -> Iterator[dict[str, torch.Tensor]]:
    """Forward hooks that keep the outputs of every layer a training hook asked for."""
    wanted = sorted({name for hook in hooks for name in hook.feature_layers()})
    modules = dict(model.named_modules())
    missing = [name for name in wanted if name not in modules]
    if missing:
        raise NNMarkError(f"the model has no layer {', '.join(missing)} for a training hook to read",
                          field="feature_layers", expected=", ".join(list(modules)[1:12]))
    captured: dict[str, torch.Tensor] = {}
    handles = [modules[name].register_forward_hook(
        lambda _module, _inputs, output, name=name: captured.__setitem__(name, output)) for name in wanted]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()
