"""Training on several processes with torchrun: DistributedDataParallel, never a home-made engine.

`torchrun --nproc-per-node N -m edgetune train …` sets RANK, WORLD_SIZE and LOCAL_RANK;
this module turns them into a process group (NCCL on GPUs, gloo on CPUs), a device per
process, and the few collective helpers the trainer needs. Without torchrun it is a no-op
world of one, so the trainer has a single code path.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from edgetune.errors import ConfigError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def sum(self, *values: float) -> list[float]:
        """Element-wise sum over all processes (metrics, counts)."""
        if not self.distributed:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64)
        if dist.get_backend() == "nccl":
            t = t.cuda()
        dist.all_reduce(t)
        return t.cpu().tolist()

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def shard(self, items: list, pad: bool) -> list:
        """This process's share, items[rank::size]; `pad` repeats items so every share is
        the same length (DistributedSampler's rule), which DDP's lockstep steps need."""
        if not self.distributed:
            return list(items)
        if pad and len(items) % self.size:
            total = -(-len(items) // self.size) * self.size
            items = list(items) + list(items)[: total - len(items)]
        return list(items)[self.rank::self.size]


def from_env() -> World:
    return World(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                 int(os.environ.get("LOCAL_RANK", 0)))


@contextlib.contextmanager
def initialized(device_choice: str):
    """(world, device) for this process; the process group lives for the block."""
    world = from_env()
    if device_choice == "cuda" and not torch.cuda.is_available():
        launcher = "torchrun" if world.distributed else "this run"
        raise ConfigError(f"--device cuda: no CUDA GPU is visible to PyTorch in {launcher}; "
                          "use --device cpu (gloo) or auto")
    use_cuda = device_choice == "cuda" or (device_choice == "auto" and torch.cuda.is_available())
    if use_cuda and world.distributed and world.local_rank >= torch.cuda.device_count():
        raise ConfigError(f"torchrun started {world.size} processes per node but this node has "
                          f"{torch.cuda.device_count()} GPU(s); use --nproc-per-node "
                          f"{torch.cuda.device_count()}")
    device = torch.device(f"cuda:{world.local_rank}" if use_cuda else "cpu")
    if not world.distributed:
        yield world, device
        return
    if use_cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    try:
        yield world, device
    finally:
        dist.destroy_process_group()
