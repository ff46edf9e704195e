"""torchrun support: which rank this process is, and the few collectives the streaming evaluation needs.

Under ``torchrun --nproc-per-node N [--nnodes M ...]`` the environment names the rank and world size; the process
group uses NCCL when the rank has a GPU and gloo otherwise. Without torchrun (or with one process) every call here
is a local no-op, and torch is not imported at all. Collectives move Python objects (counts, top-k lists,
relevant vectors): small next to the corpus, which never travels between ranks.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

from .errors import XlirError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def owns(self, shard: int) -> bool:
        """Shards are dealt round-robin, so every rank gets a share of every language."""
        return shard % self.size == self.rank

    def all_gather(self, obj) -> list:
        if self.size == 1:
            return [obj]
        import torch.distributed as dist

        out: list = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj):
        if self.size == 1:
            return obj
        import torch.distributed as dist

        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def agree(self, error: str | None, what: str) -> None:
        """Every rank reports its error (or None); if any failed, all stop with the first message."""
        errors = [e for e in self.all_gather(error) if e]
        if errors:
            raise XlirError(errors[0] if error else f"{what} failed on another rank: {errors[0]}")

    def bind_device(self, device: str) -> str:
        """Under torchrun with CUDA each rank takes its LOCAL_RANK's GPU (``cuda`` becomes ``cuda:<local rank>``)."""
        if self.size <= 1 or not device.startswith("cuda"):
            return device
        import torch

        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return f"cuda:{local}"

    def same_everywhere(self, value, what: str) -> None:
        """Refuse to go on when the ranks disagree about ``value`` (the suite, the model, the options)."""
        values = self.all_gather(value)
        if any(v != values[0] for v in values):
            raise XlirError(f"torchrun ranks disagree about {what}: every rank must run the same command")


def current(device: str = "cpu") -> World:
    """The torchrun world of this process, initialising the process group on first use."""
    size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if size <= 1:
        return World()
    import torch
    import torch.distributed as dist

    init_group("nccl" if device.startswith("cuda") and torch.cuda.is_available() else "gloo")
    return World(dist.get_rank(), dist.get_world_size())


def init_group(backend: str) -> None:
    """The process group of this torchrun rank (once), destroyed again when the process exits (:func:`_close`)."""
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
        atexit.register(_close)


def _close() -> None:
    """Destroy the process group before the interpreter tears down: left to exit, gloo's threads were sometimes
    destroyed while still joinable and a rank died with SIGABRT ("terminate called without an active exception")
    after its work was done, so torchrun reported a failed run (1 in 3 two-rank runs on a busy 2-core machine).
    Local to the rank, no collective: a rank that stops with an error must not wait here for the others."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
