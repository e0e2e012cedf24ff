"""Speed checks recorded with a run: the final model's measured speedup against its latency
table's prediction (:func:`nnprune.check_speedup`), added to its results file."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from nnprune import LatencyTable, check_speedup, records
from nnprune.workflows.tracking import TENSORBOARD_DIR, write_tensorboard_scalars

logger = logging.getLogger(__name__)


def record_speed_check(output_dir: Path, table: LatencyTable) -> dict[str, Any]:
    """:func:`nnprune.check_speedup` of the final model in ``output_dir`` at the table's
    setting, logged and added to its results file (``speed_check``); returns it as a dict."""
    check = check_speedup(output_dir, table)
    logger.info("speedup at batch %d x %d tokens: predicted %.2fx, measured %.2fx",
                check.setting["batch_size"], check.setting["seq_len"], check.predicted,
                check.measured)
    board = Path(output_dir) / TENSORBOARD_DIR
    if board.is_dir():  # the run reports to TensorBoard: the measured speed beside its curves
        steps = getattr(records.read_results(output_dir), "steps", 0)
        write_tensorboard_scalars(board, {"measured_speedup": check.measured,
                                          "predicted_speedup": check.predicted}, steps)
    add_results(output_dir, speed_check=check.to_dict())
    return check.to_dict()


def add_results(output_dir: Path, **items: Any) -> None:
    """Set fields (``speed_check``, ``route``) of the results recorded in ``output_dir``."""
    records.update_results(output_dir, **items)


__all__ = ["add_results", "record_speed_check"]
