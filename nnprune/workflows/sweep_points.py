"""One point of a sweep, trained and evaluated in its own folder of the work folder, wherever it
runs (a local worker process, a SLURM array task, submitit's in-process debug executor).

A point's folder holds ``sweep_point.json`` (its record: state, the key of everything its result
depends on, the result), ``sweep.log`` (its log), ``run/`` (the training command's output
folder: checkpoints while it trains, the final model, ``tensorboard/`` with ``--report-to
tensorboard``), for layer dropping the smaller start model, and for a two-step one-shot point
(``through``) its first cut, filled, in ``through/``. A record with this sweep's key
is *reused* once trained, *resumed* while only started (the training continues from its last
complete checkpoint: a killed, pre-empted or requeued point loses at most ``save_steps``
steps); any other record (another budget, another recipe) and its folder are removed first.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import traceback
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Optional

import nnprune
from nnprune import LatencySetting
from nnprune.errors import NNPruneError
from nnprune.io_utils import atomic_write_text
from nnprune.workflows.evaluate import evaluate_checkpoint
from nnprune.workflows.fine_prune import PRUNE_SUBDIR, FinePruneArgs, fine_prune
from nnprune.workflows.options import TrainingOptions
from nnprune.workflows.prune import PRUNE_TRAINING, PruneArgs, prune
from nnprune.workflows.sweep_spec import Point, RouteKind, SweepSpec
from nnprune.workflows.tracking import tracker_environment
from nnprune.workflows.training import (RESULTS_FILE, checkpoint_folders, has_complete_checkpoint,
                                        load_tokenizer)

logger = logging.getLogger(__name__)

POINT_FILE = "sweep_point.json"
LOG_FILE = "sweep.log"
RUN_DIR = "run"
COMPACT_DIR = "compact"  # a fine-pruned (masked) model compacted, to be timed
THROUGH_DIR = "through"  # a two-step one-shot point's first cut, filled: the second one's start
LOG_TAIL_LINES = 20


class State(str, Enum):
    """Where a point is: ``started`` (training, or killed while training: resumed next time),
    ``trained`` (evaluated, not timed), ``timed`` (finished), ``failed`` (its error and its log's
    last lines recorded; tried again, resuming, next time)."""

    STARTED = "started"
    TRAINED = "trained"
    TIMED = "timed"
    FAILED = "failed"


def read_record(folder: Path) -> Optional[dict[str, Any]]:
    """A point folder's record, or None (none, or unreadable: the point starts again)."""
    try:
        data = json.loads((Path(folder) / POINT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "key" in data and "state" in data else None


def write_record(folder: Path, record: dict[str, Any]) -> None:
    atomic_write_text(Path(folder) / POINT_FILE, json.dumps(record, indent=2, default=str) + "\n")


def log_tail(folder: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    """The last ``lines`` non-empty lines of a point's log (what a failed point shows)."""
    try:
        text = (Path(folder) / LOG_FILE).read_text(errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


@dataclass
class Trained:
    """What a route's training leaves: the final metric, the folder to time (relative to the
    point's folder; ``None``: the dense model itself) and a few facts."""

    metric: float
    main_metric: str
    timed_dir: Optional[str]
    train_seconds: Optional[float] = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PointContext:
    """What every point of one sweep shares: the spec and the latency table the targets are cut
    with (a file in the work folder, so every machine cuts with the same one)."""

    spec: SweepSpec
    table_path: Optional[Path]
    table_id: Optional[str]

    @property
    def setting(self) -> LatencySetting:
        lat = self.spec.latency
        return LatencySetting(batch_size=lat.batch_size, seq_len=lat.seq_len, threads=lat.threads)


def training_options(ctx: PointContext, point: Point, steps: int, resume: bool) -> TrainingOptions:
    """The point's training options: the sweep's budget, the point's seed and steps."""
    s, b = ctx.spec, ctx.spec.budget
    return TrainingOptions(
        max_steps=steps, batch_size=b.batch_size, learning_rate=point.route.learning_rate_in(b),
        seed=point.seed if point.seed is not None else 42, max_seq_length=b.max_seq_length,
        data_dir=s.data_dir, max_train_samples=b.max_train_samples,
        max_eval_samples=b.max_eval_samples, logging_steps=s.logging_every(steps),
        save_steps=s.save_steps, save_total_limit=1, resume=resume, overwrite=not resume,
        report_to=s.report_to)


def split_steps(steps: int, fill_share: float) -> tuple[int, int]:
    """(pruning steps, fill steps) of ``steps``, each at least 1."""
    fill = min(steps - 1, max(1, round(steps * fill_share)))
    return steps - fill, fill


def _finished(folder: Path) -> bool:
    return (folder / RESULTS_FILE).is_file() and (folder / "config.json").is_file()


# ------------------------------------------------------------------------------------ routes
def run_dense(ctx: PointContext, point: Point, folder: Path) -> Trained:
    s = ctx.spec
    res = evaluate_checkpoint(s.task, s.model, data_dir=s.data_dir,
                              max_eval_samples=s.budget.max_eval_samples,
                              max_seq_length=s.budget.max_seq_length,
                              task_options=dict(s.task_options))
    return Trained(res.metrics[res.main_metric], res.main_metric, None,
                   info={"num_examples": res.num_examples, "eval_seconds": round(res.seconds, 1)})


def _cut(ctx: PointContext, point: Point, checkpoint: Path, out: Path, target: float,
         steps: int, **search: Any) -> Any:
    """``nnprune prune checkpoint --target-speedup target --then-fill steps`` into ``out``, on
    the sweep's budget and table; ``search``: what the search may prune and how it is held."""
    s, b = ctx.spec, ctx.spec.budget
    # a killed point resumes: its cut is kept once recorded, its fill goes on from a checkpoint
    resume = (out / PRUNE_SUBDIR / RESULTS_FILE).is_file() or has_complete_checkpoint(out)
    opts = training_options(ctx, point, steps, resume)
    training = replace(PRUNE_TRAINING, **{k: getattr(opts, k) for k in (
        "batch_size", "max_seq_length", "seed", "data_dir", "max_train_samples",
        "max_eval_samples", "learning_rate", "save_steps", "save_total_limit", "resume",
        "overwrite", "report_to")})
    return prune(PruneArgs(
        checkpoint=str(checkpoint), task=s.task, output_dir=out, target_speedup=target,
        calibration_samples=b.calibration_samples, speed_probe=False, then_fill=steps,
        training=training, task_options=dict(s.task_options), latency=ctx.setting,
        latency_table=ctx.table_path, **search))


def _first_cut(ctx: PointContext, point: Point, out: Path, recipe: dict[str, Any],
               **search: Any) -> dict[str, Any]:
    """A two-step point's first cut (``through``), filled in ``out``: heads and FFN dimensions
    only, so the second cut can put them back. Done once: a finished one is read back."""
    if not _finished(out):
        _cut(ctx, point, ctx.spec.model, out, recipe["through"], recipe["through_steps"],
             width_depth=False, **search)
    done = nnprune.records.read_results(out)
    return {"target": recipe["through"], "metric": done.metrics[done.main_metric],
            "train_seconds": done.train_seconds}


def run_one_shot(ctx: PointContext, point: Point, folder: Path) -> Trained:
    recipe = point.route.recipe(ctx.spec.budget)
    search = dict(alpha_hidden=recipe.get("alpha_hidden", 0.0),
                  measured_target=recipe.get("measured_target", False))
    start, info = ctx.spec.model, {}
    if "through" in recipe:
        start = folder / THROUGH_DIR
        info["through"] = _first_cut(ctx, point, start, recipe, **search)
    res = _cut(ctx, point, start, folder / RUN_DIR, point.target, recipe["steps"],
               width_depth=recipe.get("width_depth", True), hidden_size=recipe.get("hidden_size"),
               **search)
    m = res.main_metric
    seconds = res.seconds.get("fill")
    if seconds is not None and info.get("through", {}).get("train_seconds") is not None:
        seconds += info["through"]["train_seconds"]  # both fills: the point's whole budget
    return Trained((res.metrics_filled or {})[m], m, RUN_DIR, seconds,
                   {"pruned_metric": res.metrics_after[m], "phases": res.seconds,
                    "calibration_examples": res.calibration_samples, **info})


def run_fine_prune(ctx: PointContext, point: Point, folder: Path) -> Trained:
    s = ctx.spec
    route = point.route
    recipe = route.recipe(s.budget)
    run = folder / RUN_DIR
    overrides = (f"score_init={recipe['score_init']}", *recipe["set"])
    common = dict(task=s.task, model=str(s.model), output_dir=run, method=route.route,
                  teacher=str(s.model), target_speedup=point.target, latency=ctx.setting,
                  latency_table=ctx.table_path, overrides=overrides,
                  task_options=dict(s.task_options))
    if route.fills:
        prune_steps, fill_steps = split_steps(recipe["steps"], recipe["fill_share"])
        resume = (has_complete_checkpoint(run / PRUNE_SUBDIR) or has_complete_checkpoint(run)
                  or _finished(run / PRUNE_SUBDIR))
        res = fine_prune(FinePruneArgs(**common, fill_max_steps=fill_steps,
                                       fill_init=recipe["fill_init"],
                                       training=training_options(ctx, point, prune_steps, resume)))
        pruned = getattr(res, "prune", None)
        return Trained(res.metrics[res.main_metric], res.main_metric, RUN_DIR,
                       _train_seconds(run),
                       {"prune_steps": prune_steps, "fill_steps": fill_steps,
                        "pruned_metric": pruned.metrics.get(res.main_metric) if pruned else None,
                        "speed_check": res.speed_check})
    res = fine_prune(FinePruneArgs(**common, training=training_options(
        ctx, point, recipe["steps"], has_complete_checkpoint(run))))
    # masked: time (and pick) it compacted
    compact = nnprune.bertarize_checkpoint(run, run / COMPACT_DIR, compact=True)
    return Trained(res.metrics[res.main_metric], res.main_metric, f"{RUN_DIR}/{COMPACT_DIR}",
                   res.train_seconds,
                   {"density": res.density, "compaction_diff": compact.max_abs_diff,
                    "speed_check": res.speed_check})


def run_layer_drop(ctx: PointContext, point: Point, folder: Path) -> Trained:
    s = ctx.spec
    table = nnprune.latency_table(nnprune.load_config(str(s.model)), path=ctx.table_path,
                                  setting=ctx.setting)
    k, predicted = nnprune.layers_for_speedup(table, point.target)
    keep = nnprune.evenly_spaced_layers(table.model.num_layers, k)
    init = folder / f"init-{k}-layers"
    if not (init / "layer_drop.json").is_file():
        small = nnprune.drop_layers(nnprune.load_pretrained(s.model, bake_masks=True), keep)
        tmp = init.with_name(init.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        small.save_pretrained(str(tmp))
        load_tokenizer(str(s.model)).save_pretrained(str(tmp))
        atomic_write_text(tmp / "layer_drop.json", json.dumps(
            {"model": str(s.model), "kept_layers": keep}, indent=2) + "\n")
        shutil.rmtree(init, ignore_errors=True)
        tmp.rename(init)
    run = folder / RUN_DIR
    steps = point.route.recipe(s.budget)["steps"]
    res = fine_prune(FinePruneArgs(
        task=s.task, model=str(init), output_dir=run, method="dense", teacher=str(s.model),
        task_options=dict(s.task_options),
        training=training_options(ctx, point, steps, has_complete_checkpoint(run))))
    return Trained(res.metrics[res.main_metric], res.main_metric, RUN_DIR, res.train_seconds,
                   {"kept_layers": keep, "predicted_at_choice": round(predicted, 3)})


RUNNERS: dict[RouteKind, Callable[[PointContext, Point, Path], Trained]] = {
    RouteKind.DENSE: run_dense, RouteKind.ONE_SHOT: run_one_shot,
    RouteKind.FINE_PRUNE: run_fine_prune, RouteKind.LAYER_DROP: run_layer_drop}


def _train_seconds(run: Path) -> Optional[float]:
    """Both stages' training seconds of a two-stage run (from their results files)."""
    total = 0.0
    for folder in (run / PRUNE_SUBDIR, run):
        try:
            results = nnprune.records.read_results(folder)
        except NNPruneError:
            return None
        total += float(getattr(results, "train_seconds", 0.0) or 0.0)
    return round(total, 1)


# ------------------------------------------------------------------------------ one point
def run_point(ctx: PointContext, point: Point, *, log_to_file: bool = False) -> dict[str, Any]:
    """Train and evaluate ``point`` in ``WORK/<point id>`` unless its record says it was, with
    this sweep's key; returns its record. A failure is recorded (state ``failed``, the error)
    and raised again. ``log_to_file``: also write nnprune's log to the point's ``sweep.log``
    (an in-process executor; a worker process has its output sent there already)."""
    spec = ctx.spec
    folder = Path(spec.work) / point.id
    key = spec.point_key(point, ctx.table_id)
    record = read_record(folder)
    if record and record["key"] == key and record["state"] in (State.TRAINED, State.TIMED):
        logger.info("%s: trained earlier with this budget, reused", point.id)
        return record
    resumed = bool(record) and record["key"] == key
    if folder.exists() and not resumed:
        # another budget or recipe (or no record of one): nothing in it may be resumed or reused;
        # the log stays (a worker's output is going there now)
        old = [e for e in folder.iterdir() if e.name != LOG_FILE]
        if old:
            logger.info("%s: left by a run of another budget, removed", point.id)
        for entry in old:
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    attempts = int(record.get("attempts", 0)) + 1 if resumed and record else 1
    base = {"id": point.id, "route": point.route.route, "label": point.route.label,
            "target": point.target, "seed": point.seed, "key": key, "attempts": attempts}
    write_record(folder, {**base, "state": State.STARTED})
    handler = _file_handler(folder) if log_to_file else None
    tracker_environment(spec.name, spec.report_to.split(",") if spec.report_to != "none" else [])
    start = time.perf_counter()
    try:
        logger.info("%s: %s (attempt %d)", point.id, "resuming" if resumed else "training", attempts)
        trained = RUNNERS[point.route.kind](ctx, point, folder)
    except Exception as exc:
        logger.error("%s failed: %s", point.id, exc)
        if not isinstance(exc, NNPruneError):
            logger.error("%s", traceback.format_exc().rstrip())
        write_record(folder, {**base, "state": State.FAILED, "error": f"{type(exc).__name__}: {exc}"
                              if not isinstance(exc, NNPruneError) else str(exc)})
        raise
    finally:
        if handler is not None:
            logging.getLogger("nnprune").removeHandler(handler)
            handler.close()
    run = folder / RUN_DIR
    for ck in checkpoint_folders(run) + checkpoint_folders(run / PRUNE_SUBDIR):
        shutil.rmtree(ck)  # only there to resume a killed run
    record = {**base, "state": State.TRAINED, "metric": trained.metric,
              "main_metric": trained.main_metric, "timed_dir": trained.timed_dir,
              "wall_seconds": round(time.perf_counter() - start, 1),  # this last attempt only
              "train_seconds": trained.train_seconds, "resumed": resumed, "info": trained.info}
    write_record(folder, record)
    logger.info("%s: %s %.4f", point.id, trained.main_metric, trained.metric)
    return record


def _file_handler(folder: Path) -> logging.Handler:
    handler = logging.FileHandler(folder / LOG_FILE)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log = logging.getLogger("nnprune")
    log.addHandler(handler)
    if log.level == logging.NOTSET or log.level > logging.INFO:
        log.setLevel(logging.INFO)
    return handler


def mark_failed(folder: Path, reason: str, key: Any) -> dict[str, Any]:
    """Record a point whose process ended without recording an outcome (killed, out of memory,
    a job cancelled, a process that could not start) as failed, with ``reason`` and its log's
    last lines; ``key``: the point's, when its process died before recording it."""
    record = read_record(folder) or {"id": folder.name, "key": key}
    if record.get("state") != State.FAILED:
        record.update(state=State.FAILED, error=reason)
    if record.get("key") is None:
        record["key"] = key
    record["log_tail"] = log_tail(folder)
    write_record(folder, record)
    return record


__all__ = ["COMPACT_DIR", "LOG_FILE", "POINT_FILE", "PointContext", "RUN_DIR", "RUNNERS", "State",
           "Trained", "log_tail", "mark_failed", "read_record", "run_point", "split_steps",
           "training_options", "write_record"]
