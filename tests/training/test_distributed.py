"""Data-parallel training: the trigger share of each global batch, and real 2-process runs under
torchrun with gloo on CPU (the CI's set-up) checked against a one-process run."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nnmark.api import verify_model
from nnmark.models.store import load_model
from nnmark.schemes.key import load_key
from nnmark.training import MixInSamples


def _hook(per_batch: int, rank: int = 0, world_size: int = 1, size: int = 10) -> MixInSamples:
    hook = MixInSamples(torch.arange(size).float().view(size, 1, 1, 1), torch.arange(size), per_batch, seed=3)
    hook.setup(torch.nn.Identity(), torch.device("cpu"))
    if world_size > 1:
        hook.shard(rank, world_size)
    return hook


@pytest.mark.parametrize("per_batch,world_size", [(2, 2), (4, 2), (3, 3), (6, 4)])
def test_ranks_share_each_global_trigger_draw(per_batch, world_size):
    single = _hook(per_batch)
    ranks = [_hook(per_batch, rank, world_size) for rank in range(world_size)]
    local = -(-per_batch // world_size)
    seen = []
    for step in range(12):
        parts = [hook.extra_samples(step)[1] for hook in ranks]
        assert all(len(part) == local for part in parts)
        joined = torch.cat(parts)
        assert len(set(joined.tolist())) == len(joined), "two ranks mixed in the same trigger"
        seen.extend(joined.tolist())
        if local * world_size == per_batch:  # an even split draws exactly what one process draws
            assert torch.equal(joined, single.extra_samples(step)[1])
    assert set(seen) == set(range(10)), "every trigger is visited"


def test_more_ranks_than_triggers_still_fills_every_rank():
    ranks = [_hook(2, rank, 4, size=3) for rank in range(4)]
    for step in range(5):
        assert all(len(hook.extra_samples(step)[1]) == 1 for hook in ranks)


def _run(arguments: list[str], cwd: Path, processes: int | None = None) -> subprocess.CompletedProcess:
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
                 "-m", "nnmark"] if processes else [sys.executable, "-m", "nnmark"])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_COLOR": "1"}
    result = subprocess.run(launcher + arguments, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


TRAIN = ["train", "--watermark", "key", "--embed", "per_batch=16", "--epochs", "5", "--batch-size", "64",
         "--lr", "0.05", "--quiet"]


@pytest.mark.slow
def test_torchrun_two_cpu_processes_train_an_owned_model_like_one_process(tmp_path):
    _run(["keygen", "adi", "--num-classes", "10", "--input-shape", "1,16,16", "--seed", "5", "--out", "key"], tmp_path)
    _run(TRAIN + ["--out", "two"], tmp_path, processes=2)
    key = load_key(tmp_path / "key")
    two = load_model(tmp_path / "two")
    # the same recipe in one process, through the API the command calls
    from nnmark.api import train_model
    from nnmark.data import load_dataset
    from nnmark.training.presets import preset

    one = train_model(load_dataset("digits"), preset("paper", epochs=5, batch_size=64, lr=0.05), key=key,
                      embed_options={"per_batch": 16})
    assert two.metadata["training"]["processes"] == 2 and one.result.processes == 1
    assert abs(two.metadata["test_accuracy"] - one.test_accuracy) <= 0.03
    verdicts = [verify_model(model, key) for model in (two.model, one.model)]
    assert all(verdict.owned for verdict in verdicts)
    assert abs(verdicts[0].matches - verdicts[1].matches) <= 20
    # only rank 0 wrote: one model directory, no stray staging folders
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key", "two"]
