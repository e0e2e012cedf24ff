"""Training curves in an experiment tracker (``--report-to``), through the Hugging Face
``Trainer``'s own integrations: TensorBoard, Weights & Biases, MLflow.

What a run reports: every training log (loss, task and distillation loss, learning rate and the
pruning scalars :meth:`nnprune.FinePruning.stats` adds at each logging step: density overall and
per group, threshold, lambda, scheduled and predicted speedup, heads and FFN dimensions kept),
every evaluation, and at the end the final evaluation and the measured speed
(:func:`log_final`). TensorBoard writes under the run's own folder (``OUTPUT/tensorboard``, no
account, offline), so ``tensorboard --logdir`` over a sweep's folder shows its runs side by
side; W&B and MLflow name each run after its folder (:func:`run_name`) and a sweep groups them
(:func:`tracker_environment`). See docs/tracking.md.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from nnprune.errors import NNPruneError

logger = logging.getLogger(__name__)

TENSORBOARD_DIR = "tensorboard"  # a run's TensorBoard event files, under its output folder
FINAL_PREFIX = "eval_final_"  # the end-of-run scalars (final evaluation, measured speed)
_INSTALL = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


def check_trackers(trackers: Sequence[str]) -> None:
    """Refuse (one line, before any work) a tracker whose package is not installed."""
    if not trackers:
        return
    from transformers.integrations import (is_mlflow_available, is_tensorboard_available,
                                           is_wandb_available)

    available = {"tensorboard": is_tensorboard_available, "wandb": is_wandb_available,
                 "mlflow": is_mlflow_available}
    for name in trackers:
        if not available[name]():
            extra = " (or pip install 'nnprune[tracking]')" if name == "tensorboard" else ""
            raise NNPruneError(f"--report-to {name}: the {name} package is not installed; "
                               f"pip install {_INSTALL[name]}{extra}, or pass --report-to none")


def run_name(output_dir: Path) -> str:
    """A run's name in a tracker: its output folder's last two path parts (``runs/sst2-os-2``;
    a sweep's ``one-shot-x2-s42/run``; a hybrid-filled stage's ``run/prune``): unique within a
    sweep, readable beside the others."""
    parts = Path(output_dir).resolve().parts
    return "/".join(parts[-2:])


def place_tensorboard(trainer: Any, output_dir: Path) -> Optional[Path]:
    """Point the trainer's TensorBoard callback (if it reports there) at
    ``output_dir/tensorboard`` instead of a new ``runs/<date>_<host>`` folder per process start:
    one folder per run, which a resumed run goes on writing in. Returns it, or ``None``."""
    from transformers.integrations import TensorBoardCallback

    folder = Path(output_dir) / TENSORBOARD_DIR
    found = False
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback):
            callback.logging_dir = str(folder)
            found = True
    return folder if found else None


def log_final(trainer: Any, scalars: Mapping[str, float]) -> None:
    """Log end-of-run ``scalars`` (the final evaluation, with the final masks) to ``trainer``'s
    trackers at its last step, as ``eval_final_<name>`` (``eval/final_<name>`` in TensorBoard and
    W&B); the trainer's own log history and progress lines are left alone."""
    values = {f"{FINAL_PREFIX}{k}": float(v) for k, v in scalars.items()
              if isinstance(v, (int, float)) and v == v}
    trackers = [cb for cb in trainer.callback_handler.callbacks
                if type(cb).__module__.startswith("transformers.integrations")]
    for callback in trackers if values else []:
        callback.on_log(trainer.args, trainer.state, trainer.control, logs=dict(values))


def write_tensorboard_scalars(folder: Path, scalars: Mapping[str, float], step: int) -> Path:
    """Add ``scalars`` (plain names) at ``step`` to the TensorBoard run in ``folder`` as
    ``eval/final_<name>``, as :func:`log_final` names them (a new event file beside the run's
    others: TensorBoard reads them as one run). For values known only after the run ended: a
    sweep's measured speed, timed in its own phase."""
    from torch.utils.tensorboard import SummaryWriter

    folder.mkdir(parents=True, exist_ok=True)
    writer = SummaryWriter(log_dir=str(folder))
    try:
        for key, value in scalars.items():
            if isinstance(value, (int, float)) and value == value:
                writer.add_scalar(f"eval/final_{key}", float(value), step)
    finally:
        writer.close()
    return folder


def tracker_environment(group: str, trackers: Sequence[str]) -> None:
    """Group this process's runs under ``group`` in W&B (run group) and MLflow (experiment),
    unless the user set them already: a sweep's points, side by side. TensorBoard needs nothing
    (the runs share a parent folder)."""
    if "wandb" in trackers:
        os.environ.setdefault("WANDB_RUN_GROUP", group)
        os.environ.setdefault("WANDB_PROJECT", "nnprune")
    if "mlflow" in trackers:
        os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", group)


__all__ = ["FINAL_PREFIX", "TENSORBOARD_DIR", "check_trackers", "log_final", "place_tensorboard",
           "run_name", "tracker_environment", "write_tensorboard_scalars"]
