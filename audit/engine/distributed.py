"""torch.distributed for an audit started by torchrun: who we are, and the few collectives the runner needs.

``torchrun --nproc-per-node R -m audit MODEL ...`` sets WORLD_SIZE, RANK and LOCAL_RANK; the audit then starts
the process group, splits the work by whole batches and adds up its sums at the end (``gather``). A failure on
one rank reaches every rank at the next ``sync``, so all end with the same one-line error instead of waiting for
each other.

Where each rank runs is one pure function, ``audit.options.placement`` (``--device``, the world size, the local
rank, the GPUs visible): on CPU the backend is gloo; with CUDA (``--device cuda``, or ``auto`` where a GPU is visible) it
is NCCL with one GPU per process, ``cuda:LOCAL_RANK`` (made the current device, so NCCL and the audit use the
same GPU). ``--device cuda:N`` names one GPU for every process and is refused under torchrun, as is a node that
starts more processes than it has GPUs. ``audit.options.resolve_device`` asks the same function, so the audit's
tensors and the process group agree.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from datetime import timedelta

import torch

from audit.errors import AuditError
from audit.options import this_placement


@dataclass
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def active(self) -> bool:
        return self.size > 1

    def mine(self, batch: int) -> bool:
        """Whether this rank audits batch number ``batch`` (batches r, r+R, r+2R, ...)."""
        return batch % self.size == self.rank

    def gather(self, obj) -> list:
        """Every rank's ``obj`` (picklable, produced by this program), in rank order."""
        if not self.active:
            return [obj]
        out = [None] * self.size
        torch.distributed.all_gather_object(out, obj)
        return out

    def sync(self, error: str | None) -> None:
        """Raise on every rank the first rank's error, if any rank had one."""
        if not self.active:
            if error:
                raise AuditError(error)
            return
        errors = [e for e in self.gather(error) if e]
        if errors:
            raise AuditError(errors[0])

    def describe(self) -> dict:
        return {"world_size": self.size, "backend": self.backend}


def world(device: str = "auto") -> World:
    """The world of this process; under torchrun the process group is started on first use."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    where = this_placement(device)
    if where.gpu is not None:
        torch.cuda.set_device(where.gpu)
    if not torch.distributed.is_initialized():
        timeout = timedelta(seconds=int(os.environ.get("AUDIT_DIST_TIMEOUT", "3600")))
        torch.distributed.init_process_group(where.backend, timeout=timeout)
        # a process that exits with its group still up can abort in the backend's threads ("terminate called
        # without an active exception"): the group the audit started ends with the process, CLI or API alike
        atexit.register(shutdown)
    return World(rank, size, local, torch.distributed.get_backend())


def shutdown() -> None:
    """End the process group, when one is up."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
