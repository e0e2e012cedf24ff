"""Speed checks recorded with a run: the final model's measured speedup against its latency
table's prediction (:func:`nnprune.check_speedup`), added to its results file; and the setting a
model was pruned to a speed for (:func:`pruned_for`), which ``nnprune speed`` times first."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

from nnprune import LatencyTable, check_speedup, records
from nnprune.errors import NNPruneError
from nnprune.workflows.tracking import TENSORBOARD_DIR, write_tensorboard_scalars

logger = logging.getLogger(__name__)
PRUNE_STAGE = "prune"  # the first stage's folder inside a two-stage output (prune --then-fill, hybrid-filled)


def record_speed_check(output_dir: Path, table: LatencyTable) -> dict[str, Any]:
    """:func:`nnprune.check_speedup` of the final model in ``output_dir`` at the table's
    setting, logged and added to its results file (``speed_check``); returns it as a dict."""
    check = check_speedup(output_dir, table)
    logger.info("speedup at batch %d x %d tokens: predicted %.2fx, measured %.2fx",
                check.setting["batch_size"], check.setting["seq_len"], check.predicted,
                check.measured)
    add_results(output_dir, speed_check=check.to_dict())
    board = Path(output_dir) / TENSORBOARD_DIR
    if board.is_dir():  # the run reports to TensorBoard: the measured speed beside its curves
        steps = getattr(records.read_results(output_dir), "steps", 0)
        write_tensorboard_scalars(board, {"measured_speedup": check.measured,
                                          "predicted_speedup": check.predicted}, steps)
    return check.to_dict()


def pruned_for(checkpoint: "str | Path") -> Optional[dict[str, Any]]:
    """The inference setting the model in ``checkpoint`` was pruned to a speed for, as its run
    record has it (a ``LatencySetting.to_dict()``: device, dtype, batch_size, seq_len, threads,
    plus ``target_speedup`` when recorded), or ``None`` (no speed target; no record; a record
    that cannot be read, which the commands that need it report).

    Where: the speed check of its results (``--target-speedup``: the final model measured at its
    table's setting), its latency table's key, ``prune``'s speed setting, else the same in the
    folder of its first stage (``prune --then-fill`` keeps the pruned model in OUTPUT/prune)."""
    folder = Path(checkpoint)
    try:
        record = records.read_config(folder)
        results = records.read_results(folder)
    except NNPruneError:
        return None
    if record is None:
        return None
    target = _target_speedup(record)
    check = getattr(results, "speed_check", None)
    setting = None
    if isinstance(check, dict) and isinstance(check.get("setting"), dict):
        setting = check["setting"]
    elif record.latency_table is not None and isinstance(record.latency_table.key, dict):
        setting = record.latency_table.key.get("setting")
    elif record.post_training is not None:
        target = record.post_training.options.value("target_speedup")
        if target is None:  # pruned to a FLOP budget: no setting it was cut for
            return None
        setting = record.post_training.speed_setting
    elif record.stages:
        # the first stage's folder as recorded (relative to where the run was started), else
        # where prune --then-fill and hybrid-filled put it
        for first in (Path(record.stages[0].checkpoint or folder), folder / PRUNE_STAGE):
            if first.is_dir() and first.resolve() != folder.resolve():
                return pruned_for(first)
        return None
    if not isinstance(setting, dict) or not setting.get("batch_size") or not setting.get("seq_len"):
        return None
    return {**setting, "target_speedup": target}


def _target_speedup(record: "records.RunConfig") -> Optional[float]:
    """The speedup the run asked for: its pruning config's (fine-prune, a fill stage's first
    stage), else the options of ``--method auto``."""
    for pruning in [record.pruning] + [s.pruning for s in record.stages]:
        value = getattr(pruning, "target_speedup", None)
        if value is not None:
            return float(value)
    if record.auto is not None:
        value = record.auto.training.value("target_speedup")
        return float(value) if value is not None else None
    return None


def add_results(output_dir: Path, **items: Any) -> None:
    """Set fields (``speed_check``, ``route``) of the results recorded in ``output_dir``."""
    records.update_results(output_dir, **items)


__all__ = ["add_results", "pruned_for", "record_speed_check"]
