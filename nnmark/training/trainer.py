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

import bisect
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from nnmark.data.augment import augment
from nnmark.data.base import Augmentation
from nnmark.errors import NNMarkError
from nnmark.models.inference import modes_of, resolve_device, restore_modes
from nnmark.training.distributed import Distributed
from nnmark.training.embedding import Embedding, logits_of
from nnmark.training.hooks import TrainingHook


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
    # Decay biases and normalisation scales too (off: only weight matrices and kernels are decayed).
    decay_norm_and_bias: bool = False
    # Workers of the DataLoader nnmark makes for streamed data (a Dataset given to ``fit``).
    loader_workers: int = 2
    # Steps in one epoch of an IterableDataset, which has no length (streamed data only).
    steps_per_epoch: int | None = None

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
    skipped: int = 0  # unreadable images a streamed dataset skipped (``--skip-bad-images``)


def _lr_lambda(config: TrainConfig, steps_per_epoch: int):
    step_every = config.lr_step_every or max(1, math.ceil(config.epochs / 3))
    milestones = config.lr_milestones

    def factor(step: int) -> float:
        epoch = step // steps_per_epoch
        if milestones is not None:
            return config.lr_gamma ** bisect.bisect_right(milestones, epoch)
        return config.lr_gamma ** (epoch // step_every)

    return factor


OptimizerFactory = Callable[[list[dict[str, Any]]], torch.optim.Optimizer]
LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
EpochCallback = Callable[[EpochRecord, nn.Module], None]


def parameter_groups(parameters: Iterable[tuple[str, nn.Parameter]], weight_decay: float,
                     decay_norm_and_bias: bool = False) -> list[dict[str, Any]]:
    """Optimiser groups: weight decay on weight matrices and kernels only. Biases and the scales of
    normalisation layers (every parameter of one dimension) are not decayed by default, as is
    common practice (decay pulls a batch-norm scale towards zero, which is not regularisation)."""
    decayed, kept = [], []
    for _name, parameter in parameters:
        if not parameter.requires_grad:
            continue
        (decayed if decay_norm_and_bias or parameter.ndim > 1 else kept).append(parameter)
    groups = [{"params": decayed, "weight_decay": weight_decay}]
    if kept:
        groups.append({"params": kept, "weight_decay": 0.0})
    return groups


def sgd(config: TrainConfig) -> OptimizerFactory:
    """The default optimiser: SGD with the config's learning rate and momentum."""
    return lambda groups: torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=False)


def cross_entropy(config: TrainConfig) -> LossFunction:
    """The default loss: cross-entropy with the config's label smoothing, on class indices or
    class probabilities (distillation)."""
    return lambda logits, targets: F.cross_entropy(logits, targets, label_smoothing=config.label_smoothing)


def fit(
    model: nn.Module,
    inputs: torch.Tensor | TorchDataset | DataLoader,
    targets: torch.Tensor | None = None,
    config: TrainConfig | None = None,
    *,
    augmentation: Augmentation | None = None,
    hooks: Sequence[TrainingHook] = (),
    watermark: Embedding | None = None,
    parameters: Iterable[nn.Parameter] | None = None,
    freeze_batchnorm: bool = False,
    optimizer: OptimizerFactory | None = None,
    loss: LossFunction | None = None,
    on_epoch_end: EpochCallback | None = None,
    targets_from: Callable[[torch.Tensor], torch.Tensor] | None = None,
    progress=None,  # rich.progress.Progress, or None for silence
    description: str = "training",
    distributed: Distributed | None = None,
) -> TrainResult:
    """Train ``model`` on ``inputs`` (images in [0, 1]) and ``targets``.

    Data: a tensor of images (N, C, H, W) with ``targets`` (class indices, or class probabilities
    (N, K) for distillation), moved to the device once (the fast path); or any
    ``torch.utils.data`` Dataset, IterableDataset or DataLoader of (images, labels) pairs,
    streamed batch by batch (``targets`` None), for data larger than memory.

    The mark goes in through ``watermark`` (an :class:`~nnmark.training.embedding.Embedding`,
    e.g. ``nnmark.Watermarker(key, model)``, the object a user's own loop holds too) or ``hooks``
    (an Embedding is made of them). ``optimizer`` (a factory of parameter groups) and ``loss``
    default to SGD and cross-entropy as ``config`` sets them; weight decay skips biases and
    normalisation scales unless ``config.decay_norm_and_bias``. ``parameters`` restricts what is
    trained; ``freeze_batchnorm`` also keeps batch-norm statistics as they are.
    ``on_epoch_end(record, model)`` is called after every epoch (it may raise to stop).
    ``targets_from(images)``: each batch's targets, computed from its images (a teacher's answers,
    for distilling from streamed data) in place of its labels.

    Every sample is used each epoch, the last batch too unless it holds fewer than 2 samples per
    process (batch norm cannot train on one). The model comes back on the device and in the mode
    it came in. ``distributed``: train data-parallel with the other ranks of that group (every rank
    calls ``fit`` alike; ``config.batch_size`` is the global batch).
    """
    config = config or TrainConfig()
    world_size, rank = (distributed.world_size, distributed.rank) if distributed else (1, 0)
    device = distributed.device if distributed else resolve_device(config.device)
    on_cuda = device.type == "cuda"
    use_amp = on_cuda if config.mixed_precision is None else config.mixed_precision
    channels_last = True if config.channels_last is None else config.channels_last
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    batches = _batches(inputs, targets, config, device, world_size, rank)

    modes = modes_of(model)
    home = next((p.device for p in model.parameters()), torch.device("cpu"))
    model.to(device=device, memory_format=memory_format)
    embedding = watermark
    if embedding is None and hooks:
        embedding = Embedding(hooks, model, distributed=(rank, world_size))
    elif embedding is not None and hooks:
        raise NNMarkError("give a watermark or hooks, not both", field="hooks")
    if embedding is not None:
        for hook in embedding.hooks:  # the samples and learnt state follow the model to the device
            hook.setup(model, device)
        embedding.rank, embedding.world_size = rank, world_size

    named = [(name, p) for name, p in model.named_parameters()]
    if parameters is not None:
        chosen = {id(p) for p in parameters}
        named = [(name, p) for name, p in named if id(p) in chosen]
    groups = parameter_groups(named, config.weight_decay, config.decay_norm_and_bias)
    optimiser = (optimizer or sgd(config))(groups)
    criterion = loss or cross_entropy(config)
    total_steps = batches.steps_per_epoch * config.epochs
    if config.schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=config.lr, total_steps=total_steps)
    elif config.schedule == "step":
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, _lr_lambda(config, batches.steps_per_epoch))
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: 1.0)

    augmentation = augmentation if (augmentation and config.augment) else Augmentation()
    result = TrainResult()
    show = progress is not None and rank == 0
    task = progress.add_task(description, total=total_steps) if show else None
    network = model
    if distributed is not None:
        from torch.nn.parallel import DistributedDataParallel

        network = DistributedDataParallel(model, device_ids=[device.index] if on_cuda else None)
    if config.compile:
        # Shapes change only at an epoch's last, smaller batch, which compiles once more.
        network = torch.compile(network, mode="reduce-overhead" if on_cuda else "default", dynamic=False)
    start = time.perf_counter()
    rng_devices = [device] if on_cuda else []
    try:
        with torch.random.fork_rng(devices=rng_devices):
            torch.manual_seed(config.seed + rank)
            # Ranks share the shuffle (so their slices are disjoint) but not the augmentation draws.
            augment_generator = torch.Generator(device=device).manual_seed(config.seed + 7919 * rank)
            model.train()
            if freeze_batchnorm:
                for module in model.modules():
                    if isinstance(module, nn.modules.batchnorm._BatchNorm):
                        module.eval()
            step = 0
            for epoch in range(config.epochs):
                loss_sum = torch.zeros((), device=device)
                count = 0
                for x, y in batches.epoch(epoch):
                    x = augment(x, augmentation, augment_generator)
                    if targets_from is not None:
                        y = targets_from(x)
                    step_loss = _step_loss(network, model, x, y, embedding, criterion, use_amp, device, memory_format,
                                           check_compiled=config.compile and step == 0)
                    optimiser.zero_grad(set_to_none=True)
                    step_loss.backward()
                    optimiser.step()
                    scheduler.step()
                    loss_sum += step_loss.detach()
                    step += 1
                    count += 1
                    if task is not None:
                        progress.advance(task)
                if distributed is not None:
                    loss_sum = distributed.sum(loss_sum) / world_size
                mean_loss = (loss_sum / max(1, count)).item()
                record = EpochRecord(epoch + 1, mean_loss, optimiser.param_groups[0]["lr"])
                result.history.append(record)
                if task is not None:
                    progress.update(task, description=f"{description} · epoch {epoch + 1} loss {mean_loss:.3f}")
                if on_epoch_end is not None:
                    on_epoch_end(record, model)
                    model.train()
                    if freeze_batchnorm:
                        for module in model.modules():
                            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                                module.eval()
            result.seconds = time.perf_counter() - start
            result.steps = step
            result.samples = batches.samples_seen
            result.skipped = batches.skipped
            result.processes = world_size
    finally:
        # The caller gets the model back where and as it was: on its device, in its mode, in the
        # usual layout (code that views weights flat, torch's own pruning among it, fails on
        # channels-last tensors).
        model.to(device=home, memory_format=torch.contiguous_format)
        restore_modes(modes)
    return result


def worker_error(error: NNMarkError) -> NNMarkError:
    """A DataLoader re-raises a worker's error with the worker's traceback in its message; the
    user gets the error's own last line."""
    last = str(error).strip().splitlines()[-1]
    prefix = f"{type(error).__module__}.{type(error).__name__}: "
    return type(error)(last[len(prefix):] if last.startswith(prefix) else last)


class _Batches:
    """Where the batches come from: resident tensors sliced on the device, or a DataLoader."""

    steps_per_epoch: int
    samples_seen: int = 0
    skipped: int = 0  # unreadable files a streamed dataset skipped

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        raise NotImplementedError


class _Resident(_Batches):
    def __init__(self, inputs, targets, config, device, world_size, rank) -> None:
        if targets is None or len(targets) != len(inputs):
            raise NNMarkError("resident training data needs one target per input", field="targets",
                              expected=f"{len(inputs)} targets", got=None if targets is None else len(targets))
        self.inputs, self.targets = inputs.to(device), targets.to(device)
        self.world_size, self.rank = world_size, rank
        n = len(targets)
        self.batch = min(config.batch_size, n)
        sizes = [min(self.batch, n - start) for start in range(0, n, self.batch)]
        # A last batch too small to give each process two samples is drawn in a later epoch's shuffle.
        self.batches = [size for size in sizes if size >= 2 * world_size] or sizes[:1]
        self.steps_per_epoch = len(self.batches)
        self.generator = torch.Generator(device=device).manual_seed(config.seed)

    def epoch(self, epoch: int):
        order = torch.randperm(len(self.targets), device=self.targets.device, generator=self.generator)
        for index, size in enumerate(self.batches):
            local = -(-size // self.world_size)
            first = index * self.batch + self.rank * local
            last = min(index * self.batch + size, first + local)
            take = order[first:last]
            self.samples_seen += size if self.rank == 0 else 0
            yield self.inputs[take], self.targets[take]


class _Streamed(_Batches):
    def __init__(self, source, config, device, world_size, rank) -> None:
        from torch.utils.data import DistributedSampler, IterableDataset

        self.device = device
        if isinstance(source, DataLoader):
            self.loader = source
        else:
            local = config.batch_size // world_size if world_size > 1 else config.batch_size
            sampler = None
            if world_size > 1 and not isinstance(source, IterableDataset):
                sampler = DistributedSampler(source, num_replicas=world_size, rank=rank, shuffle=True,
                                             seed=config.seed)
            shuffle = sampler is None and not isinstance(source, IterableDataset)
            generator = torch.Generator().manual_seed(config.seed)
            workers = config.loader_workers
            self.loader = DataLoader(source, batch_size=max(1, local), shuffle=shuffle, sampler=sampler,
                                     num_workers=workers, persistent_workers=workers > 0, generator=generator,
                                     pin_memory=device.type == "cuda", drop_last=False,
                                     collate_fn=getattr(source, "collate_fn", None))
        try:
            self.steps_per_epoch = len(self.loader)
        except TypeError:
            if config.steps_per_epoch is None:
                raise NNMarkError("an IterableDataset has no length: give the steps one epoch takes",
                                  field="steps_per_epoch") from None
            self.steps_per_epoch = config.steps_per_epoch

    def epoch(self, epoch: int):
        sampler = getattr(self.loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        batches = iter(self.loader)
        for index in range(self.steps_per_epoch):
            try:
                batch = next(batches)
            except StopIteration:
                break
            except NNMarkError as error:  # raised in a DataLoader worker: say it as the worker did, in one line
                raise worker_error(error) from None
            if isinstance(batch, dict):
                batch = (batch.get("pixel_values", batch.get("image")), batch.get("labels", batch.get("label")))
            if not isinstance(batch, (tuple, list)) or len(batch) < 2 or not isinstance(batch[0], torch.Tensor):
                raise NNMarkError("each batch must be (images, labels)", field="data",
                                  got=type(batch).__name__)
            if len(batch) == 3 and isinstance(batch[2], int):  # (images, labels, unreadable files skipped)
                self.skipped += batch[2]
            x, y = batch[0], torch.as_tensor(batch[1])
            if x.ndim != 4 or y.ndim not in (1, 2) or len(y) != len(x):
                raise NNMarkError("the dataset's batch is not images (N, C, H, W) with one label each", field="data",
                                  expected="images N x C x H x W and N labels",
                                  got=f"images {list(x.shape)}, labels {list(y.shape)}")
            if len(x) < 2:
                continue  # batch norm cannot train on one sample
            self.samples_seen += len(x)
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def _batches(inputs, targets, config, device, world_size, rank) -> _Batches:
    if isinstance(inputs, torch.Tensor):
        return _Resident(inputs, targets, config, device, world_size, rank)
    if targets is not None:
        raise NNMarkError("a Dataset or DataLoader carries its own labels: targets must be None", field="targets")
    if isinstance(inputs, (TorchDataset, DataLoader)):
        return _Streamed(inputs, config, device, world_size, rank)
    raise NNMarkError(f"cannot train on a {type(inputs).__name__}", field="data",
                      expected="a tensor of images, or a torch Dataset, IterableDataset or DataLoader")


def _step_loss(network, model, x, y, embedding, criterion, use_amp, device, memory_format, check_compiled=False):
    """``network`` runs the forward pass (the DDP or compiled wrapper); the embedding sees the bare
    ``model``. ``check_compiled``: ``network`` is compiled; compare its first answers with the eager
    model's."""
    if embedding is not None:
        x, y = embedding.mix(x, y)
    x = x.contiguous(memory_format=memory_format)
    expected = _eager_reference(model, x, use_amp, device) if check_compiled else None
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
        try:
            outputs = network(x)
        except Exception as exc:  # torch.compile fails at the first call, in many exception types
            if not check_compiled:
                raise
            raise NNMarkError(f"torch.compile could not compile the training step on this machine "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); train without compile",
                              field="compile") from None
    logits = logits_of(outputs).float()
    if expected is not None:
        _check_compiled_answers(logits, expected, use_amp)
    total = criterion(logits, y)
    if embedding is not None:
        total = total + embedding.loss(logits)
    return total


@torch.no_grad()
def _eager_reference(model: nn.Module, inputs: torch.Tensor, use_amp: bool, device: torch.device) -> torch.Tensor:
    """The bare model's answers on a training batch, leaving its state as it was (batch norm's
    running statistics move on every training-mode forward, and the real step follows)."""
    saved = [(buffer, buffer.clone()) for buffer in model.buffers()]
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
        expected = logits_of(model(inputs)).float()
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
