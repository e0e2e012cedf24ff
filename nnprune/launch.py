"""Which process of a launch this is: torchrun, accelerate and SLURM scripts set ``RANK`` and
``WORLD_SIZE`` for every process they start; a plain ``python`` / ``nnprune`` run is rank 0 of 1.

The workflows use it to let one process write what all would write alike (checkpoints, latency
tables) and the CLI to let one process print the results."""

from __future__ import annotations

import atexit
import os
from typing import Any, Callable, TypeVar

from nnprune.errors import NNPruneError

T = TypeVar("T")


def is_main_process() -> bool:
    """Rank 0 of a distributed launch, or a single process."""
    return int(os.environ.get("RANK", "0")) == 0


def world_size() -> int:
    """Processes of a distributed launch, else 1."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def _process_group() -> bool:
    """Whether this is one process of several; if so, the process group exists after the call
    (created by accelerate's ``PartialState``, the one the Trainer then reuses)."""
    if world_size() <= 1:
        return False
    import torch.distributed as dist

    if not dist.is_initialized():
        from accelerate import PartialState

        PartialState()
        # Left to the interpreter's teardown, gloo's threads are destroyed still joinable now
        # and then (C++ abort, exit code -6, after all the work is done): close it first.
        atexit.register(_close_process_group)
    return True


def _close_process_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every process of a distributed launch (no-op for one process)."""
    if _process_group():
        import torch.distributed as dist

        dist.barrier()


def from_main_process(fn: Callable[[], T]) -> T:
    """``fn()`` run on the main process only, its (picklable) result given to every process: one
    answer for all (a latency table measured once, not once per process on a shared machine,
    and the same masks everywhere). A failure there is raised on every process."""
    if not _process_group():
        return fn()
    import torch.distributed as dist

    box: list[Any] = [None]
    if is_main_process():
        try:
            box[0] = (True, fn())
        except Exception as exc:
            box[0] = (False, str(exc) if isinstance(exc, NNPruneError) else
                      f"the main process failed: {type(exc).__name__}: {exc}")
            dist.broadcast_object_list(box, src=0)
            raise
    dist.broadcast_object_list(box, src=0)
    ok, value = box[0]
    if not ok:
        raise NNPruneError(value)
    return value


__all__ = ["barrier", "from_main_process", "is_main_process", "world_size"]
