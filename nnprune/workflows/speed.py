"""Speed checks recorded with a run: the final model's measured speedup against its latency
table's prediction, added to its results file. The timing itself is the public API's
(:func:`nnprune.measure_speed`, :mod:`nnprune.api.speed`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from nnprune.api.speed import SpeedCheck, check_speedup, run_speed
from nnprune.measure.latency import LatencySetting, LatencyTable
from nnprune.pruning_core.run_record import update_results

logger = logging.getLogger(__name__)


def record_speed_check(output_dir: Path, table: LatencyTable) -> dict[str, Any]:
    """:func:`check_speedup` of the final model in ``output_dir`` at the table's setting, logged
    and added to its results file (``speed_check``); returns it as a dict."""
    check = check_speedup(output_dir, table.model, LatencySetting(**table.key["setting"]))
    logger.info("speedup at batch %d x %d tokens: predicted %.2fx, measured %.2fx",
                check.setting["batch_size"], check.setting["seq_len"], check.predicted,
                check.measured)
    add_results(output_dir, speed_check=check.to_dict())
    return check.to_dict()


def add_results(output_dir: Path, **items: Any) -> None:
    """Set fields (``speed_check``, ``route``) of the results recorded in ``output_dir``."""
    update_results(output_dir, **items)


# SpeedCheck, check_speedup and run_speed moved to the public API's module (nnprune.api.speed);
# named here too while commands and benchmarks still import them from this module.
__all__ = ["SpeedCheck", "add_results", "check_speedup", "record_speed_check", "run_speed"]
