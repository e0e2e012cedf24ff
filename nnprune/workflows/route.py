"""Which route to a speed target a training budget should take: ``fine-prune --method auto``,
the default with ``--target-speedup``.

Two routes reach a measured speedup from a fine-tuned checkpoint:

* :attr:`Route.ONE_SHOT`: score every head and FFN dimension once (Fisher information of the
  task loss on calibration examples, :func:`nnprune.workflows.prune.prune`), cut to the speed,
  compact, then distil the compacted model from the checkpoint for the whole budget
  (:func:`nnprune.workflows.fill.fill`): ``nnprune prune --target-speedup S --then-fill N``;
* :attr:`Route.HYBRID_FILLED`: movement pruning while fine-tuning (scores initialised from the
  same Fisher importance, masks cut in latency units at every step), then fill.

``benchmarks/tradeoff.py`` measured both on SST-2 with MiniLM at 1.5x, 2x and 3x (README,
"Accuracy against measured speed"): with up to :data:`ONE_SHOT_MAX_EXAMPLES` training examples
in the budget, one-shot was as accurate as hybrid-filled (within seed noise) and trains in about
half the time, because most of its steps run on the already small model. So ``auto`` takes
one-shot when the model has a trained head for the task (one-shot scores what the model already
knows; a base model has no task loss to score) and the budget is within that; hybrid-filled
otherwise, distilled from ``--teacher``, else from the model itself when it is fine-tuned.

The budget is what ``--method hybrid-filled`` would train in total: the pruning stage
(``--max-steps`` / ``--epochs``) plus the fill stage (``--fill-max-steps`` / ``--fill-epochs``,
by default as long as the pruning stage). One-shot gives all of it to the distillation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from enum import Enum
from typing import Any, Callable, Optional

from nnprune.errors import NNPruneError
from nnprune.tasks import TaskAdapter
from nnprune.workflows.options import TrainingOptions

AUTO_METHOD = "auto"

# The longest budget (training examples seen: steps x batch x processes) at which the benchmark
# measured one-shot + distillation at least as accurate as hybrid-filled (README).
ONE_SHOT_MAX_EXAMPLES = 76_800


class Route(str, Enum):
    ONE_SHOT = "one-shot"  # prune once (Fisher), compact, distil for the whole budget
    HYBRID_FILLED = "hybrid-filled"  # fine-prune (movement, latency cut), then fill


@dataclass(frozen=True)
class Budget:
    """A run's training budget: the options of each stage and what they add up to."""

    prune_stage: TrainingOptions
    fill_stage: TrainingOptions
    examples: int  # training examples both stages see together (steps x batch x processes)
    epochs: Optional[float]  # the same in epochs, when the training set's size was counted

    def one_shot(self, world_size: int = 1) -> TrainingOptions:
        """The options of a one-shot run's distillation: both stages' budget in one stage."""
        a, b = self.prune_stage, self.fill_stage
        if a.max_steps is not None and b.max_steps is not None:
            return replace(a, max_steps=a.max_steps + b.max_steps)
        if a.max_steps is None and b.max_steps is None:
            return replace(a, epochs=a.epochs + b.epochs)
        return replace(a, max_steps=math.ceil(self.examples / (a.batch_size * world_size)))


def stage_examples(opts: TrainingOptions, n_train: Callable[[], int], world_size: int = 1) -> int:
    """Training examples one stage sees: ``max_steps x batch x processes``, else
    ``epochs x`` the training set (``n_train()`` counts it; called only then)."""
    if opts.max_steps is not None:
        return opts.max_steps * opts.batch_size * world_size
    return int(round(opts.epochs * n_train()))


def budget_of(prune_stage: TrainingOptions, fill_stage: TrainingOptions,
              n_train: Callable[[], int], world_size: int = 1) -> Budget:
    counted: list[int] = []

    def count() -> int:
        if not counted:
            counted.append(n_train())
        return counted[0]

    examples = (stage_examples(prune_stage, count, world_size)
                + stage_examples(fill_stage, count, world_size))
    epochs = examples / counted[0] if counted and counted[0] else None
    return Budget(prune_stage, fill_stage, examples, epochs)


def has_task_head(task: TaskAdapter, config: dict[str, Any]) -> bool:
    """Whether a checkpoint's ``config.json`` (as a dict) names a model with ``task``'s head
    that the task accepts (label count): a fine-tuned model one-shot pruning can score."""
    archs = [str(a) for a in config.get("architectures") or []]
    if not task.head_suffix or not any(a.endswith(task.head_suffix) for a in archs):
        return False
    try:
        task.check_checkpoint(config, "")
    except NNPruneError:
        return False
    return True


@dataclass(frozen=True)
class RouteChoice:
    """What ``auto`` chose, and the facts it chose on (saved in the results)."""

    route: Route
    teacher: str
    examples: int
    epochs: Optional[float]
    fine_tuned: bool  # the model has a trained head for the task
    reason: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["route"] = self.route.value
        d["one_shot_max_examples"] = ONE_SHOT_MAX_EXAMPLES
        return d


def choose_route(task: TaskAdapter, model: str, config: dict[str, Any], budget: Budget,
                 teacher: Optional[str] = None) -> RouteChoice:
    """The route for ``model`` (its ``config.json`` as a dict) on ``task`` with ``budget`` (see
    the module doc). Refuses (one line) a model neither route can start from."""
    fine_tuned = has_task_head(task, config)
    size = f"{budget.examples:,} training examples" + (
        f", {budget.epochs:.2f} epochs" if budget.epochs is not None else "")
    if fine_tuned and budget.examples <= ONE_SHOT_MAX_EXAMPLES:
        reason = (f"a fine-tuned model and a budget of {size}: up to {ONE_SHOT_MAX_EXAMPLES:,}, "
                  "one-shot pruning + distillation measured as accurate as fine-pruning, in "
                  "about half the time")
        return RouteChoice(Route.ONE_SHOT, teacher or model, budget.examples, budget.epochs,
                           True, reason)
    if not fine_tuned and not teacher:
        raise NNPruneError(
            f"--method auto: {model} has no trained {task.name} head to prune once, and "
            "fine-pruning it distils from a teacher: pass --teacher PATH (a fine-tuned dense "
            "checkpoint), or start from the fine-tuned model")
    reason = (f"a budget of {size}, beyond the {ONE_SHOT_MAX_EXAMPLES:,} where one-shot pruning "
              "measured as accurate" if fine_tuned else
              f"{model} has no trained {task.name} head for one-shot pruning to score")
    return RouteChoice(Route.HYBRID_FILLED, teacher or model, budget.examples, budget.epochs,
                       fine_tuned, reason)


__all__ = ["AUTO_METHOD", "ONE_SHOT_MAX_EXAMPLES", "Budget", "Route", "RouteChoice",
           "budget_of", "choose_route", "has_task_head", "stage_examples"]
