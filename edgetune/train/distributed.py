"""Training on several processes with torchrun: DistributedDataParallel, never a home-made engine.

`torchrun --nproc-per-node N -m edgetune train …` sets RANK, WORLD_SIZE and LOCAL_RANK;
this module turns them into a process group (NCCL on GPUs, gloo on CPUs), a device per
process, and the few collective helpers the trainer needs. Without torchrun it is a no-op
world of one, so the trainer has a single code path.

After training, rank 0 exports alone while the others wait (`leading`, `follow`); work the
export needs from every process, quantization-aware fine-tuning, reaches them through `ask`.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta

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

    def sum(self, *values: float, group=None) -> list[float]:
        """Element-wise sum over all processes (metrics, counts), on `group` (default: the
        training's)."""
        if not self.distributed:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64)
        if dist.get_backend(group) == "nccl":
            t = t.cuda()
        dist.all_reduce(t, group=group)
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


def quiet(*_args, **_kwargs) -> None:
    """The log of a process other than rank 0: rank 0 speaks for all."""


def from_env() -> World:
    return World(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                 int(os.environ.get("LOCAL_RANK", 0)))


def current() -> World:
    """This process's World where a process group is up (inside `initialized`), else one."""
    return from_env() if dist.is_available() and dist.is_initialized() else World()


# An export can take far longer than a collective's timeout (NCCL's is 10 minutes): the others
# wait for rank 0's next request on a gloo group of their own, with a timeout to match.
EXPORT_WAIT = timedelta(days=1)
_cpu_group = None  # that group, made by every process on entering `leading` or `follow`


def cpu_group():
    """The gloo group rank 0's requests go over. The work they start runs on the CPU and
    communicates on it too: the training's group may be NCCL's, which takes CUDA tensors only."""
    global _cpu_group
    if _cpu_group is None:
        _cpu_group = dist.new_group(backend="gloo", timeout=EXPORT_WAIT)
    return _cpu_group


def _broadcast(obj=None):
    box = [obj]
    dist.broadcast_object_list(box, src=0, group=cpu_group())
    return box[0]


@contextlib.contextmanager
def leading(world: World):
    """Rank 0 works alone in the block while the others `follow`; leaving it, by an error too,
    lets them go."""
    if not world.distributed:
        yield
        return
    cpu_group()
    try:
        yield
    finally:
        _broadcast(None)


def ask(world: World, request) -> None:
    """From rank 0 inside `leading`: every other process gets `request` (pickled) in `follow`.
    A no-op elsewhere, so code that every process runs can call it."""
    if world.distributed and world.is_main:
        _broadcast(request)


def follow(world: World, work) -> None:
    """The processes other than rank 0, while it leads: `work(request)` for each request
    rank 0 `ask`s, until it leaves its block."""
    while (request := _broadcast()) is not None:
        work(request)


@contextlib.contextmanager
def initialized(device_choice: str):
    """(world, device) for this process; the process group lives for the block, or for an
    enclosing one (the pipeline's, which keeps it from training through the export)."""
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
    if not world.distributed or dist.is_initialized():
        yield world, device
        return
    if use_cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    try:
        yield world, device
    finally:
        global _cpu_group
        _cpu_group = None
        dist.destroy_process_group()
