"""A latency table's promise checked: the speedup it predicts for a pruned checkpoint against
the one measured (:func:`check_speedup`)."""

from __future__ import annotations

from pathlib import Path

from nnprune.api.speed import SpeedCheck
from nnprune.api.speed import check_speedup as _check_speedup
from nnprune.measure.latency import LatencySetting, LatencyTable


def check_speedup(checkpoint: "str | Path", table: LatencyTable, *, warmup: int = 5,
                  iters: int = 30) -> SpeedCheck:
    """The speedup ``table`` predicts for the checkpoint folder ``checkpoint`` (from the heads
    and FFN dimensions each layer keeps) and the one measured against the dense architecture
    (random weights), both at the table's own setting (device, dtype, batch, length, threads). A
    masked checkpoint is baked and compacted first, as it would ship.

    Returns:
        ``predicted``, ``measured`` (median of per-round ratios, both models timed back to back),
        ``measured_medians``, ``measured_min``, the ``setting`` and the kept
        ``heads_per_layer`` / ``ffn_dims_per_layer``; ``to_dict()`` is what fine-prune records.

    Example::

        table = nnprune.latency_table(model, batch_size=1, seq_len=128, threads=1)
        ...  # fine-prune to target_speedup=2.0 with this table, save to "runs/x"
        check = nnprune.check_speedup("runs/x", table)
        print(f"predicted {check.predicted:.2f}x, measured {check.measured:.2f}x")
    """
    return _check_speedup(checkpoint, table.model, LatencySetting(**table.key["setting"]),
                          warmup=warmup, iters=iters)


__all__ = ["check_speedup"]
