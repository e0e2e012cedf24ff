"""Training progress as one plain log line per logging step, instead of the Trainer's prints.

The Hugging Face ``Trainer`` prints its logs as dict reprs (``{'loss': 0.41, ...}``) and draws
tqdm bars, on stdout and stderr, whoever runs it. :func:`install_progress` removes those
callbacks from a trainer and adds :class:`TrainingProgress`, which logs through the ``nnprune``
logger (library code only logs; the CLI decides what is shown)::

    step 40/600 | loss 0.412 | task_loss 0.39 | density 0.731 | threshold 0.41 | lambda 3.2 | lr 4.1e-05 | 1.92 s/step | ETA 17m32s

(only the fields present in that step's logs). A caller that draws its own progress (the CLI's
bar on a terminal) registers a :class:`ProgressDisplay` with :func:`progress_display`; it is told
of every step, and the per-step log records carry ``nnprune_progress="step"`` so a handler can
leave them to the display.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from typing import Any, Iterator, Mapping, Optional, Protocol

from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

logger = logging.getLogger(__name__)

#: ``record.nnprune_progress`` of the per-logging-step lines ("eval" and "done" lines have theirs).
STEP_RECORD = "step"

# Trainer log keys that the eval line leaves out (timings of the evaluation loop itself).
_EVAL_NOISE = ("_runtime", "_samples_per_second", "_steps_per_second")


class ProgressDisplay(Protocol):
    """Something that draws training progress (e.g. a progress bar); told of every step."""

    def start(self, total: int, completed: int) -> None: ...

    def update(self, completed: int, summary: str) -> None: ...

    def stop(self) -> None: ...


_display: Optional[ProgressDisplay] = None


@contextmanager
def progress_display(display: Optional[ProgressDisplay]) -> Iterator[None]:
    """Within the block, every training run reports its steps to ``display`` too."""
    global _display
    previous, _display = _display, display
    try:
        yield
    finally:
        _display = previous


def format_duration(seconds: float) -> str:
    """``45s``, ``17m32s``, ``2h05m``."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def step_fields(logs: Mapping[str, Any]) -> list[str]:
    """The ``name value`` fields of a training log dict, in a fixed order; absent ones skipped."""
    fields = []
    for key in ("loss", "task_loss", "distill_loss", "hidden_loss"):
        if key in logs:
            fields.append(f"{key} {logs[key]:.4g}")
    if "pruning/density" in logs:
        fields.append(f"density {logs['pruning/density']:.3f}")
    if "pruning/target_density" in logs:
        fields.append(f"target {logs['pruning/target_density']:.3f}")
    if "pruning/predicted_speedup" in logs:
        fields.append(f"speedup {logs['pruning/predicted_speedup']:.2f}x")
    if "pruning/threshold" in logs:
        fields.append(f"threshold {logs['pruning/threshold']:.3g}")
    att, ffn = logs.get("pruning/lambda_attention"), logs.get("pruning/lambda_ffn")
    if att is not None and ffn is not None and att != ffn:
        fields += [f"lambda_attn {att:.3g}", f"lambda_ffn {ffn:.3g}"]
    elif att is not None or ffn is not None:
        fields.append(f"lambda {att if att is not None else ffn:.3g}")
    if "learning_rate" in logs:
        fields.append(f"lr {logs['learning_rate']:.2g}")
    return fields


class TrainingProgress(TrainerCallback):
    """Logs one line per logging step (and per evaluation, and at the end) on the main process;
    tells the registered :class:`ProgressDisplay`, if any, of every step."""

    def __init__(self, display: Optional[ProgressDisplay] = None) -> None:
        self.display = display
        self._active: Optional[ProgressDisplay] = None
        self._start: Optional[tuple[float, int]] = None  # (time, global_step) of the first step
        self._summary = ""

    # The Trainer loads a resumed run's state after on_train_begin: time from the first step.
    def on_train_begin(self, args, state, control, **kwargs):
        self._start = None
        self._summary = ""

    def on_step_begin(self, args, state, control, **kwargs):
        if self._start is None:
            self._start = (time.perf_counter(), state.global_step)
            if state.is_world_process_zero:
                self._active = self.display or _display
                if self._active is not None:
                    self._active.start(state.max_steps, state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        if self._active is not None:
            self._active.update(state.global_step, self._summary)

    def on_train_end(self, args, state, control, **kwargs):
        if self._active is not None:
            self._active.stop()
            self._active = None

    def seconds_per_step(self, state) -> Optional[float]:
        if self._start is None or state.global_step <= self._start[1]:
            return None
        return (time.perf_counter() - self._start[0]) / (state.global_step - self._start[1])

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        where = f"step {state.global_step}/{state.max_steps}"
        per_step = self.seconds_per_step(state)
        if "loss" in logs:
            fields = step_fields(logs)
            self._summary = " | ".join(fields)
            if self._active is not None:
                self._active.update(state.global_step, self._summary)
            if per_step is not None:
                fields.append(f"{per_step:.3g} s/step")
                left = max(0, state.max_steps - state.global_step)
                fields.append(f"ETA {format_duration(per_step * left)}")
            logger.info("%s", " | ".join([where] + fields), extra={"nnprune_progress": STEP_RECORD})
        elif "train_runtime" in logs:
            done = [f"done: {state.global_step} steps in {format_duration(logs['train_runtime'])}"]
            if per_step is not None:
                done.append(f"{per_step:.3g} s/step")
            if "train_loss" in logs:
                done.append(f"train_loss {logs['train_loss']:.4g}")
            logger.info("%s", " | ".join(done), extra={"nnprune_progress": "done"})
        else:
            metrics = [f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                       for k, v in logs.items()
                       if k.startswith("eval_") and not k.endswith(_EVAL_NOISE)]
            if metrics:
                # Mid-training evaluation scores the model being trained: say so, the final
                # evaluation (final masks) can differ.
                logger.info("%s", " | ".join([f"eval {where} (masks at the current threshold)"]
                                              + metrics), extra={"nnprune_progress": "eval"})


def install_progress(trainer: Any, display: Optional[ProgressDisplay] = None) -> TrainingProgress:
    """Replace ``trainer``'s printing callbacks (dict reprs on stdout, tqdm bars) by a
    :class:`TrainingProgress`; returns it."""
    try:  # in a notebook the Trainer uses this one instead of ProgressCallback
        from transformers.utils.notebook import NotebookProgressCallback
        printing: tuple[type, ...] = (PrinterCallback, ProgressCallback, NotebookProgressCallback)
    except ImportError:  # pragma: no cover - depends on optional notebook support
        printing = (PrinterCallback, ProgressCallback)
    for callback in list(trainer.callback_handler.callbacks):
        if isinstance(callback, printing):
            trainer.remove_callback(callback)
    progress = TrainingProgress(display)
    trainer.add_callback(progress)
    return progress


__all__ = ["ProgressDisplay", "STEP_RECORD", "TrainingProgress", "format_duration",
           "install_progress", "progress_display", "step_fields"]
