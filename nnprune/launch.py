"""Which process of a launch this is: torchrun, accelerate and SLURM scripts set ``RANK`` and
``WORLD_SIZE`` for every process they start; a plain ``python`` / ``nnprune`` run is rank 0 of 1.

The workflows use it to let one process write what all would write alike (checkpoints, latency
tables) and the CLI to let one process print the results."""

from __future__ import annotations

import os


def is_main_process() -> bool:
    """Rank 0 of a distributed launch, or a single process."""
    return int(os.environ.get("RANK", "0")) == 0


def world_size() -> int:
    """Processes of a distributed launch, else 1."""
    return int(os.environ.get("WORLD_SIZE", "1"))


__all__ = ["is_main_process", "world_size"]
