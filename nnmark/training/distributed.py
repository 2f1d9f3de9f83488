"""Data-parallel training across processes started by ``torchrun``.

``torchrun --nproc-per-node N`` starts N copies of a command and describes the group in
environment variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``).
:func:`join_from_environment` turns that into a :class:`Distributed` handle, joining the process
group with NCCL when each rank has a GPU and gloo otherwise. The handle is passed explicitly to
:func:`nnmark.training.fit` (and to the API functions that train); nothing here switches on by
itself, so the same process can still run single-process work (the bench runs its attack cells
that way, one share per rank).
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from nnmark.errors import NNMarkError


@dataclass(frozen=True)
class Distributed:
    """This process's place in a data-parallel group."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """The one rank that writes outputs and prints."""
        return self.rank == 0

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over ranks (in place, and returned)."""
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def sum_counts(self, counts: list[int]) -> list[int]:
        """Each count summed over ranks; every rank gets the totals."""
        return self.sum(torch.tensor(counts, device=self.device)).tolist()

    def count_failures(self, ok: bool) -> int:
        """How many ranks report ``ok`` false; every rank learns it, so that a failure on one rank
        stops all of them together instead of leaving the others waiting in a collective."""
        return self.sum_counts([0 if ok else 1])[0]


def split_batch(batch: int, world_size: int, field: str = "batch_size") -> int:
    """Each rank's share of a global batch, which must split evenly."""
    if batch % world_size:
        raise NNMarkError("the global batch must split evenly over the processes", field=field,
                          expected=f"a multiple of {world_size}", got=batch)
    return batch // world_size


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def join_from_environment(device: str = "auto", timeout_s: float = 600.0) -> Distributed | None:
    """Join the process group torchrun describes; None when this is a single process.

    ``device``: "auto" gives each rank the GPU ``LOCAL_RANK`` when CUDA is present (NCCL),
    otherwise the CPU (gloo); "cpu" forces gloo on CPU.
    """
    if not launched_by_torchrun():
        return None
    try:
        rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    except (KeyError, ValueError) as exc:
        raise NNMarkError("torchrun's environment is incomplete or malformed", field=str(exc),
                          expected="RANK, WORLD_SIZE and LOCAL_RANK as integers") from None
    use_cuda = torch.cuda.is_available() and device != "cpu" and not device.startswith("cpu")
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise NNMarkError("more processes on this node than GPUs", field="--nproc-per-node",
                              expected=f"at most {torch.cuda.device_count()}", got=local_rank + 1)
        torch.cuda.set_device(local_rank)
        rank_device = torch.device("cuda", local_rank)
    else:
        rank_device = torch.device("cpu")
    if not dist.is_initialized():
        backend = "nccl" if use_cuda else "gloo"
        options = {"device_id": rank_device} if use_cuda else {}
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s), **options)
    return Distributed(rank, world_size, local_rank, rank_device)


def leave(group: Distributed | None) -> None:
    """Leave the process group (a no-op for a single process)."""
    if group is not None and dist.is_initialized():
        dist.destroy_process_group()


def run_on_main(group: Distributed | None, work):
    """Run ``work()`` on rank 0 only (all of it for a single process) and let every rank know
    whether it succeeded: rank 0 re-raises its own error, the others raise one pointing to it.
    Returns what ``work`` returned on rank 0, None elsewhere. Ends with the ranks in step, so
    what rank 0 wrote can be read by all once this returns."""
    if group is None:
        return work()
    result, error = None, None
    if group.is_main:
        try:
            result = work()
        except Exception as why:  # noqa: BLE001 - re-raised below, after the other ranks know
            error = why
    if group.count_failures(error is None):
        if error is not None:
            raise error
        raise NNMarkError("rank 0 failed; its error above says why")
    return result
