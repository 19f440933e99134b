"""Running on several processes (torchrun) and stopping cleanly on signals.

Everything the training loop needs to work under torchrun lives here, so the loop itself reads as the
algorithm: which process this is (`DistInfo`), setting up devices and the process group
(`compute_init`), wrapping the model in DistributedDataParallel, giving each process its share of the
evaluation windows, adding up sums across processes, and turning SIGUSR1 / SIGTERM / SIGINT into "finish
this step, write last.pt, exit 75" (sbatch.sh requeues the job on 75). Without torchrun every function
here is a no-op for the one process of rank 0.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from gpt.utils import choose_device, keep_freed_memory

STOP_SIGNALS = ("SIGUSR1", "SIGTERM", "SIGINT")


class Preempted(Exception):
    """Training stopped on a signal (Slurm preemption or time limit, kill, Ctrl-C) after writing last.pt."""
    exit_code = 75   # EX_TEMPFAIL: "try again later"; sbatch.sh requeues the job on it


@dataclass
class DistInfo:
    """Where this process sits in a torchrun job (rank 0 of 1 without torchrun)."""
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "DistInfo":
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)),
                   int(os.environ.get("WORLD_SIZE", 1)))


def compute_init(device: str = "auto") -> tuple[DistInfo, torch.device, bool]:
    """(dist info, this process' device, whether we started the process group).

    Under torchrun each process takes the GPU of its local rank and joins the process group (nccl
    on CUDA, gloo on the CPU), unless the caller already started one.
    """
    dist = DistInfo.from_env()
    dev = choose_device(device)
    if dev.type == "cpu":
        keep_freed_memory()   # a CPU step's large tensors reuse the last step's pages (see there)
    if dist.world_size > 1 and dev.type == "cuda":
        dev = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(dev)
    started = False
    if dist.world_size > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        started = True
    return dist, dev, started


def compute_cleanup(started: bool) -> None:
    if started and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def wrap_ddp(model: nn.Module, dist: DistInfo, device: torch.device) -> nn.Module:
    """The model in DistributedDataParallel under torchrun (backward averages gradients), else itself."""
    if dist.world_size == 1:
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


class MicroBatches(list):
    """The micro-batches of one optimizer step. Under DistributedDataParallel, backward() also averages
    the gradients across processes; between micro-batches that is wasted work, so iterating tells DDP
    to skip it for all but the last (what `model.no_sync()` does, without a context around the loop)."""

    def __init__(self, batches, model: nn.Module):
        super().__init__(batches)
        self.model = model

    def __iter__(self):
        ddp = isinstance(self.model, DistributedDataParallel)
        for k, batch in enumerate(super().__iter__()):
            if ddp:
                self.model.require_backward_grad_sync = k == len(self) - 1
            yield batch


def shard(items, dist: DistInfo):
    """This process' share of an iterable: items rank, rank + world_size, ..."""
    for k, item in enumerate(items):
        if k % dist.world_size == dist.rank:
            yield item


def sum_across(dist: DistInfo, *values: float, device: torch.device | str = "cpu") -> list[float]:
    """Each value added up over all processes (float64, so counts of tokens stay exact)."""
    if dist.world_size == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return t.tolist()


def mean_across(dist: DistInfo, value: torch.Tensor) -> torch.Tensor:
    """The mean of a tensor over all processes."""
    if dist.world_size > 1:
        value = value.clone()
        torch.distributed.all_reduce(value)
        value /= dist.world_size
    return value


def any_process(dist: DistInfo, flag: bool, device: torch.device | str = "cpu") -> bool:
    """True on every process if `flag` is true on any (so that all stop at the same step)."""
    if dist.world_size == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item())


class StopRequest:
    """Set by a signal handler; the training loop acts on it between steps."""
    signal: str | None = None


@contextlib.contextmanager
def stop_on_signals():
    """While inside, SIGUSR1 / SIGTERM / SIGINT only record their name in the yielded StopRequest."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():   # signals reach the main thread only
        yield request
        return

    def handler(signum, frame):
        request.signal = signal.Signals(signum).name
    previous = {name: signal.signal(getattr(signal, name), handler) for name in STOP_SIGNALS if hasattr(signal, name)}
    try:
        yield request
    finally:
        for name, h in previous.items():
            signal.signal(getattr(signal, name), h)
