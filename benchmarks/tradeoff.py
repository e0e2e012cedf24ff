"""Accuracy against *measured* speed, side by side: four routes from one fine-tuned dense model to a
faster one, each with the same training budget, the same teacher (the dense model) and the same
data, at several speed targets.

Routes (every one starts from ``--dense`` and distils from it):

* ``hybrid-filled``: ``fine-prune --method hybrid-filled --target-speedup S``: movement pruning of
  32x32 attention blocks + FFN dimensions with the masks cut in latency units (this machine's
  latency table), then *fill* (compact, re-initialise the zeros left inside kept units, distil).
  The ``--steps`` are split between the two stages (``--fill-share`` of them to fill); the mask
  scores start from the Fisher importance (``--score-init importance``).
* ``struct``: ``fine-prune --method struct --target-speedup S`` (whole heads + FFN dimensions) for
  all the steps, same ``--score-init``, then compacted (``bertarize --compact``) and timed so.
* ``layer-drop``: the DistilBERT recipe: keep ``k`` evenly spaced layers of the dense model
  (layers ``floor(i * L / k)``: every other one for ``k = L / 2``), ``k`` the one whose speedup
  the latency table predicts closest to S; the smaller model is built by copying the kept layers,
  the embeddings and the head, saved as a plain checkpoint and distilled from the dense model for
  all the steps (``fine-prune --method dense --teacher DENSE``).
* ``one-shot``: ``nnprune prune DENSE TASK --target-speedup S --then-fill STEPS``: post-training
  Fisher pruning (``--calibration-samples`` examples, mask searched under the latency table) and
  distillation of the compacted model for all the steps.
* ``dense``: the teacher itself, evaluated once (speedup 1).

Every model is timed against the dense model in one process, interleaved
(:func:`nnprune.workflows.speed.run_speed`), at batch 1 and 32, sequence ``--speed-seq``, at each
``--threads`` count; the latency table (batch 1, ``--speed-seq``, ``--latency-threads``) that the
targets are cut with also predicts each model's speedup from its per-layer sizes. Accuracy is the
run's final evaluation on the full dev set. ``--seeds 42,43`` repeats ``hybrid-filled`` and
``one-shot`` at ``--noise-target`` with every seed, to show the run-to-run noise.

Runs go in ``--work`` (one folder per route, target and seed); a finished folder (same budget) is
reused, a half-finished fine-pruning run resumes from its checkpoints, so the benchmark can be
killed and started again. ``--only`` runs a subset of the routes; the table, JSON and PNG cover
every finished point of this budget found in ``--work``. ``--set key=value`` changes the
fine-pruning routes' recipe (part of the budget: give it its own ``--work``).

Training on a GPU, timing on the CPU the latency table belongs to: ``--train-only`` trains and
evaluates every point (cutting the masks with ``--latency-table FILE``, this CPU's table) and
stops before timing; copy the run folders back without their weights (``tradeoff_trained.json``,
``config.json``, ``nnprune_*.json``, ``nnprune_modeling.py``) to the same paths and run the same
command without ``--train-only``: each model is timed on random weights of its saved shapes
(``timed_on_random_weights`` in its point), since latency depends on shapes, not values.
A finished point is timed again only at thread counts it lacks, or at every ``--threads`` with
``--retime`` (for timings a busy machine spoilt); its other timings are kept. A listed point not
trained yet is trained first, unless ``--time-only``: then it is skipped, so a quiet machine can
time a subset of a sweep still training elsewhere.

    python benchmarks/tradeoff.py --dense runs/sst2-dense --task sst2 \\
        --data-dir ../shared/data/glue/SST-2 --targets 1.5,2,3 --steps 600 --threads 1,2
    python benchmarks/tradeoff.py --dense runs/squad-dense --task squad --data-dir runs/squad-v1.1 \\
        --targets 1.5,2,3 --steps 300
    python benchmarks/tradeoff.py --smoke --dense runs/sst2-dense \\
        --data-dir ../shared/data/glue/SST-2 --work /tmp/tradeoff-smoke     # minutes, end to end

Prints a table and writes ``benchmarks/results/tradeoff_<task>.json`` and ``tradeoff_<task>.png``
(accuracy vs measured speedup at batch 1 on the first ``--threads`` count; gitignored).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import re
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no tqdm bars in the log

import torch  # noqa: E402

import nnprune  # noqa: E402
from nnprune.cli.common import quiet_libraries, setup_logging  # noqa: E402
from nnprune.errors import NNPruneError  # noqa: E402
from nnprune.io_utils import atomic_write_text  # noqa: E402
from nnprune.measure.latency import LatencySetting, LatencyTable  # noqa: E402
from nnprune.measure.timing import cpu_model_name  # noqa: E402
from nnprune.pruning_core.architectures import architecture_for, model_class_for  # noqa: E402
from nnprune.pruning_core.bertarize import bertarize  # noqa: E402
from nnprune.pruning_core.checkpoint import load_config, load_pretrained  # noqa: E402
from nnprune.pruning_core.compact import (apply_saved_layout, is_compacted,  # noqa: E402
                                          model_layout)
from nnprune.pruning_core.run_record import (RESULTS_FILE, FinePruneResult,  # noqa: E402
                                             read_results)
from nnprune.report.plots import TradeoffPoint, tradeoff_plot  # noqa: E402
from nnprune.workflows.evaluate import evaluate_checkpoint  # noqa: E402
from nnprune.workflows.fill import FillInit  # noqa: E402
from nnprune.workflows.fine_prune import PRUNE_SUBDIR, FinePruneArgs, fine_prune  # noqa: E402
from nnprune.workflows.options import TrainingOptions  # noqa: E402
from nnprune.workflows.prune import PRUNE_TRAINING, PruneArgs, prune  # noqa: E402
from nnprune.api.speed import run_speed  # noqa: E402
from nnprune.workflows.training import (checkpoint_folders, has_complete_checkpoint,  # noqa: E402
                                        load_tokenizer)

ROOT = Path(__file__).resolve().parent
ROUTES = ("hybrid-filled", "struct", "layer-drop", "one-shot")
NOISE_ROUTES = ("hybrid-filled", "one-shot")
POINT_FILE = "tradeoff_point.json"  # a finished (route, target, seed): trained, evaluated, timed
TRAINED_FILE = "tradeoff_trained.json"  # trained and evaluated, not yet timed
STARTED_FILE = ".tradeoff_started.json"  # training under this budget began (a dot file:
# save_final removes the other files it did not write)
# The README's budgets: SST-2 600 steps x 32 x 64 tokens; SQuAD v1.1 16 x 256 tokens.
TASK_DEFAULTS = {"squad": dict(batch_size=16, max_seq_length=256)}
DEFAULTS = dict(batch_size=32, max_seq_length=64)
SMOKE = dict(steps=4, max_train_samples=64, max_eval_samples=64, targets="1.5", threads="1",
             calibration_samples=64, iters=2, warmup=1, seeds="42", save_steps=10 ** 6)
NORMAL = dict(steps=600, max_train_samples=None, max_eval_samples=None, targets="1.5,2,3",
              threads=f"1,{os.cpu_count() or 1}", calibration_samples=2048, iters=10, warmup=3,
              seeds="42,43", save_steps=100)

logger = logging.getLogger("nnprune.benchmarks.tradeoff")


# ------------------------------------------------------------------------------------ budget
@dataclass(frozen=True)
class Budget:
    """Everything a point's result depends on besides its route, target and seed: a finished
    folder is reused only when its budget is this one."""

    task: str
    dense: str
    data_dir: Optional[str]
    steps: int
    batch_size: int
    max_seq_length: Optional[int]
    learning_rate: float
    fill_share: float
    score_init: str
    calibration_samples: int
    max_train_samples: Optional[int]
    max_eval_samples: Optional[int]
    speed_seq: int
    latency_threads: int
    overrides: tuple[str, ...] = ()  # --set key=value of the fine-pruning routes (a recipe change)
    fill_init: str = FillInit.NOISE.value  # hybrid-filled: what fills the zeros inside kept units

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["overrides"] = list(self.overrides)
        return d

    def matches(self, stored: Any) -> bool:
        """Whether a budget saved with a point is this one (fields added since then at the
        value they had before they existed)."""
        return isinstance(stored, dict) and {**BUDGET_BEFORE, **stored} == self.to_dict()


# Budget fields added after points were saved, at the value the runs had without them.
BUDGET_BEFORE = {"overrides": [], "fill_init": FillInit.NOISE.value}


def training(b: Budget, steps: int, seed: int, save_steps: int, resume: bool) -> TrainingOptions:
    return TrainingOptions(
        max_steps=steps, batch_size=b.batch_size, learning_rate=b.learning_rate, seed=seed,
        max_seq_length=b.max_seq_length, data_dir=Path(b.data_dir) if b.data_dir else None,
        max_train_samples=b.max_train_samples, max_eval_samples=b.max_eval_samples,
        logging_steps=max(1, min(50, steps // 10)), save_steps=save_steps, save_total_limit=1,
        resume=resume, overwrite=not resume)


def split_steps(steps: int, fill_share: float) -> tuple[int, int]:
    """(pruning steps, fill steps) of ``steps``, each at least 1."""
    fill = min(steps - 1, max(1, round(steps * fill_share)))
    return steps - fill, fill


# -------------------------------------------------------------------------------- layer drop
def kept_layers(num_layers: int, k: int) -> list[int]:
    """``k`` evenly spaced layers of ``num_layers``, from the first: every other one for half."""
    return sorted({(i * num_layers) // k for i in range(k)})


def layer_attr(config: Any) -> str:
    for name in ("num_hidden_layers", "n_layers"):
        if hasattr(config, name):
            return name
    raise NNPruneError(f"{config.model_type}: no layer count in its config")


def choose_layers(latency: LatencyTable, target: float) -> tuple[int, float]:
    """The number of layers whose predicted speedup (dropped layers: 0 heads, 0 FFN dims) is
    closest to ``target``, and that speedup."""
    m = latency.model
    best = None
    for k in range(m.num_layers - 1, 0, -1):
        pred = m.speedup([m.dense_heads] * k + [0] * (m.num_layers - k),
                         [m.dense_ffn] * k + [0] * (m.num_layers - k))
        if best is None or abs(pred - target) < abs(best[1] - target):
            best = (k, pred)
    assert best is not None
    return best


@torch.no_grad()
def drop_layers(dense: Path, out: Path, keep: list[int]) -> Path:
    """A plain checkpoint of ``dense`` with only the layers ``keep`` (renumbered 0..k-1); the
    embeddings, pooler and task head are copied as they are."""
    model = load_pretrained(dense, bake_masks=True)
    if is_compacted(model.config):
        raise NNPruneError(f"{dense} is compacted; drop layers of the full dense model")
    arch = architecture_for(model.config.model_type)
    if len(arch.stacks) != 1:
        raise NNPruneError("layer-drop covers encoder models only")
    cfg = copy.deepcopy(model.config)
    setattr(cfg, layer_attr(cfg), len(keep))
    small = model_class_for(cfg)(cfg).eval()
    pattern = re.compile(rf"(^|\.)({arch.stacks[0].layers})\.")
    new_index = {old: new for new, old in enumerate(keep)}
    state = {}
    for key, value in model.state_dict().items():
        match = pattern.search(key)
        if match is None:
            state[key] = value
            continue
        old = int(match.group(3))
        if old not in new_index:
            continue
        start, end = match.span(3)
        state[key[:start] + str(new_index[old]) + key[end:]] = value
    missing, unexpected = small.load_state_dict(state, strict=False)
    # Non-persistent buffers (position ids) may be absent from a state dict; nothing else may.
    buffers = {n for n, _ in small.named_buffers()}
    if unexpected or [k for k in missing if k not in buffers]:
        raise NNPruneError(f"layer-drop: weights do not fit (missing {missing[:3]}, unexpected "
                           f"{unexpected[:3]})")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    small.save_pretrained(str(tmp))
    load_tokenizer(str(dense)).save_pretrained(str(tmp))
    atomic_write_text(tmp / "layer_drop.json", json.dumps(
        {"dense": str(dense), "kept_layers": keep, "num_layers": len(keep)}, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


# ------------------------------------------------------------------------------------ routes
@dataclass
class Trained:
    """What a route's training stage leaves: the metric, the folder to time and a few facts."""

    metric: float
    timed_dir: str
    train_seconds: Optional[float] = None
    info: Optional[dict[str, Any]] = None


def run_hybrid_filled(b: Budget, ctx: "Context", out: Path, target: float, seed: int) -> Trained:
    prune_steps, fill_steps = split_steps(b.steps, b.fill_share)
    resume = has_complete_checkpoint(out / PRUNE_SUBDIR) or has_complete_checkpoint(out) or (
        (out / PRUNE_SUBDIR / RESULTS_FILE).is_file()
        and (out / PRUNE_SUBDIR / "config.json").is_file())
    res = fine_prune(FinePruneArgs(
        task=b.task, model=b.dense, output_dir=out, method="hybrid-filled", teacher=b.dense,
        target_speedup=target, latency=ctx.setting, latency_table=ctx.latency_table,
        overrides=(f"score_init={b.score_init}", *b.overrides), fill_max_steps=fill_steps,
        fill_init=b.fill_init,
        training=training(b, prune_steps, seed, ctx.save_steps, resume)))
    return Trained(res.metrics[res.main_metric], str(out), _train_seconds(out),
                   {"prune_steps": prune_steps, "fill_steps": fill_steps,
                    "pruned_metric": res.prune.metrics.get(res.main_metric) if res.prune else None,
                    "speed_check": res.speed_check})


def run_struct(b: Budget, ctx: "Context", out: Path, target: float, seed: int) -> Trained:
    res = fine_prune(FinePruneArgs(
        task=b.task, model=b.dense, output_dir=out, method="struct", teacher=b.dense,
        target_speedup=target, latency=ctx.setting, latency_table=ctx.latency_table,
        overrides=(f"score_init={b.score_init}", *b.overrides),
        training=training(b, b.steps, seed, ctx.save_steps, has_complete_checkpoint(out))))
    compact = bertarize(out, out / "compact", compact=True)
    return Trained(res.metrics[res.main_metric], str(out / "compact"), res.train_seconds,
                   {"density": res.density, "compaction_diff": compact.max_abs_diff,
                    "qk_empty_heads_left": compact.qk_empty, "speed_check": res.speed_check})


def run_layer_drop(b: Budget, ctx: "Context", out: Path, target: float, seed: int) -> Trained:
    k, predicted = choose_layers(ctx.table, target)
    keep = kept_layers(ctx.table.model.num_layers, k)
    init = out / f"init-{k}-layers"
    if not (init / "layer_drop.json").is_file():
        drop_layers(Path(b.dense), init, keep)
    res = fine_prune(FinePruneArgs(
        task=b.task, model=str(init), output_dir=out, method="dense", teacher=b.dense,
        training=training(b, b.steps, seed, ctx.save_steps, has_complete_checkpoint(out))))
    return Trained(res.metrics[res.main_metric], str(out), res.train_seconds,
                   {"kept_layers": keep, "predicted_at_choice": predicted})


def run_one_shot(b: Budget, ctx: "Context", out: Path, target: float, seed: int) -> Trained:
    # a killed point resumes: its cut is kept once recorded, its fill goes on from a checkpoint
    resume = (out / PRUNE_SUBDIR / RESULTS_FILE).is_file() or has_complete_checkpoint(out)
    res = prune(PruneArgs(
        checkpoint=b.dense, task=b.task, output_dir=out, target_speedup=target,
        calibration_samples=b.calibration_samples, speed_probe=False, then_fill=b.steps,
        training=replace(PRUNE_TRAINING, batch_size=b.batch_size, max_seq_length=b.max_seq_length,
                         seed=seed, data_dir=Path(b.data_dir) if b.data_dir else None,
                         max_eval_samples=b.max_eval_samples, learning_rate=b.learning_rate,
                         save_steps=ctx.save_steps, resume=resume, overwrite=not resume),
        latency=ctx.setting, latency_table=ctx.latency_table))
    m = res.main_metric
    return Trained((res.metrics_filled or {})[m], str(out), res.seconds.get("fill"),
                   {"pruned_metric": res.metrics_after[m], "phases": res.seconds,
                    "calibration_examples": res.calibration_samples})


RUNNERS: dict[str, Callable[..., Trained]] = {
    "hybrid-filled": run_hybrid_filled, "struct": run_struct, "layer-drop": run_layer_drop,
    "one-shot": run_one_shot}


def _train_seconds(out: Path) -> Optional[float]:
    """Both stages' training seconds of a hybrid-filled run (from their results files)."""
    total = 0.0
    for folder in (out / PRUNE_SUBDIR, out):
        try:
            results = read_results(folder)
        except NNPruneError:
            return None
        if not isinstance(results, FinePruneResult):
            return None
        total += float(results.train_seconds or 0.0)
    return round(total, 1)


# ----------------------------------------------------------------------------- measurement
@dataclass
class Context:
    budget: Budget
    table: LatencyTable
    setting: LatencySetting
    latency_table: Optional[Path]
    threads: list[int]
    iters: int
    warmup: int
    save_steps: int
    train_only: bool = False
    retime: bool = False
    time_only: bool = False


def shape_of(model_dir: str | Path) -> dict[str, Any]:
    """Layers, heads and FFN dimensions per layer of a (compacted or plain) model."""
    model = load_pretrained(model_dir, bake_masks=True)
    enc = model_layout(model)["stacks"]["encoder"]
    heads = [int(h) for h in enc["attention"]["self"]["heads"]]
    dims = [int(d) for d in enc["ffn"]["dims"]]
    return {"layers": len(heads), "heads_per_layer": heads, "ffn_dims_per_layer": dims,
            "heads": sum(heads), "ffn_dims": sum(dims)}


def predicted_speedup(table: LatencyTable, shape: dict[str, Any]) -> Optional[float]:
    """The latency table's speedup for ``shape`` (missing layers: no head, no FFN dimension)."""
    m = table.model
    heads, dims = shape["heads_per_layer"], shape["ffn_dims_per_layer"]
    if len(heads) > m.num_layers:
        return None
    pad = [0] * (m.num_layers - len(heads))
    return round(m.speedup(heads + pad, dims + pad), 3)


def measure(ctx: Context, model_dir: str | Path,
            threads: Optional[list[int]] = None) -> dict[str, Any]:
    """Measured speedups against the dense model, interleaved: ``{"t1": {"b1": ..., "b32":
    ...}, ...}`` per thread count (``threads``, default ``ctx.threads``)."""
    out: dict[str, Any] = {}
    for t in threads or ctx.threads:
        rep = run_speed(model_dir, ctx.budget.dense, batch_sizes=[1, 32],
                        seq_lens=[ctx.budget.speed_seq], threads=t, warmup=ctx.warmup,
                        iters=ctx.iters)
        row = {}
        for r in rep.rows:
            row[f"b{r.batch_size}"] = round(r.speedup, 3)
            row[f"b{r.batch_size}_min"] = round(r.speedup_min, 3)
            row[f"b{r.batch_size}_ms"] = round(r.model_ms, 2)
            row[f"b{r.batch_size}_dense_ms"] = round(r.baseline_ms, 2)
        row["flops"] = round(rep.rows[0].theoretical_speedup, 3)
        out[f"t{t}"] = row
    return out


def ensure_weights(model_dir: Path) -> bool:
    """Give a model folder that came back without its weights (trained and evaluated on another
    machine, ``--train-only``, only its small files copied here) random weights of its saved
    shapes, so that it can be timed here: latency depends on the shapes, not on the values.
    Returns whether it did."""
    from transformers import AutoConfig

    if any(model_dir.glob("*.safetensors")):
        return False
    config = AutoConfig.from_pretrained(str(model_dir))
    model = model_class_for(config)(config)
    if is_compacted(config):
        apply_saved_layout(model)
    tmp = model_dir.with_name(model_dir.name + ".weights.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    os.replace(next(tmp.glob("*.safetensors")), model_dir / "model.safetensors")
    shutil.rmtree(tmp)
    logger.info("%s: no weights here (trained elsewhere); timed on random weights of its shapes",
                model_dir)
    return True


def route_order(route: str) -> tuple[int, str]:
    """Table order: the four routes, then compared variants (``route (label)``) by name."""
    return (ROUTES.index(route), "") if route in ROUTES else (len(ROUTES), route)


def compared_points(specs: list[str], seed: int, budget: Budget) -> list[dict[str, Any]]:
    """``--compare LABEL=WORK``: every finished, timed point of ``seed`` in WORK from the same
    dense model and task (whatever the rest of its budget, which each point records), its route
    renamed ``route (LABEL)``."""
    out = []
    for spec in specs:
        label, sep, folder = spec.partition("=")
        if not sep or not label or not Path(folder).is_dir():
            raise NNPruneError(f"--compare takes LABEL=WORK_FOLDER (an existing folder), got "
                               f"{spec!r}")
        for p in points_in(Path(folder)):
            same = all(p.get("budget", {}).get(k) == getattr(budget, k)
                       for k in ("task", "dense", "data_dir"))
            if same and p.get("seed") == seed and p.get("speed"):
                out.append({**p, "route": f"{p['route']} ({label})"})
    return out


def points_in(work: Path) -> list[dict[str, Any]]:
    """The finished points (of any budget) of the routes in ``work``'s run folders."""
    found = (read_json(f) for f in sorted(work.glob(f"*/{POINT_FILE}")))
    return [p for p in found if p and p.get("route") in ROUTES]


def read_json(path: Path) -> Optional[dict[str, Any]]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def timed_dir(record: dict[str, Any], out: Path) -> Path:
    """The model folder a point was timed (or is to be timed) from: as recorded, or at the same
    place under ``out`` when the point folder was moved (run folders copied back from a GPU
    machine, or gathered into one --work)."""
    stored = Path(record["timed_dir"])
    if stored.exists() or out.name not in stored.parts:
        return stored
    parts = stored.parts
    return out.joinpath(*parts[len(parts) - parts[::-1].index(out.name):])


def run_point(ctx: Context, work: Path, route: str, target: float,
              seed: int) -> Optional[dict[str, Any]]:
    """Train (unless a finished folder of this budget is there), evaluate, time one point;
    None under ``--time-only`` for a point not trained yet."""
    b = ctx.budget
    out = work / f"{route}-x{target:g}-s{seed}"
    done = read_json(out / POINT_FILE)
    if done and b.matches(done.get("budget")):
        timed = {int(k[1:]) for k in done.get("speed") or {}}
        todo = [t for t in ctx.threads if ctx.retime or t not in timed]
        if not todo or ctx.train_only:
            logger.info("%s: finished earlier, reused", out.name)
            return done
        # Timed earlier at other thread counts (or --retime): time these only, keep the rest.
        done["timed_dir"] = str(timed_dir(done, out))
        ensure_weights(Path(done["timed_dir"]))
        done["speed"] = {**done.get("speed", {}), **measure(ctx, done["timed_dir"], todo)}
        done["threads"] = sorted(timed | set(ctx.threads))
        atomic_write_text(out / POINT_FILE, json.dumps(done, indent=2, default=str) + "\n")
        return done
    trained = read_json(out / TRAINED_FILE)
    if not (trained and b.matches(trained.get("budget"))):
        if ctx.time_only:
            logger.info("%s: not trained at this budget yet, skipped (--time-only)", out.name)
            return None
        started = read_json(out / STARTED_FILE)
        resumed = bool(started) and b.matches(started.get("budget"))
        if out.exists() and not resumed:
            # another budget (or no record of one): nothing in it may be resumed or reused
            logger.info("%s: left by a run of another budget, removed", out.name)
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / STARTED_FILE, json.dumps({"budget": b.to_dict()}, indent=2) + "\n")
        logger.info("%s: training (%d steps)", out.name, b.steps)
        start = time.perf_counter()
        result = RUNNERS[route](b, ctx, out, target, seed)
        wall = time.perf_counter() - start
        for f in checkpoint_folders(out) + checkpoint_folders(out / PRUNE_SUBDIR):
            shutil.rmtree(f)  # only there to resume a killed run
        trained = {"route": route, "target": target, "seed": seed, "budget": b.to_dict(),
                   "metric": result.metric, "timed_dir": result.timed_dir,
                   "wall_seconds": round(wall, 1), "train_seconds": result.train_seconds,
                   "resumed": resumed,  # wall_seconds: this last attempt only
                   "info": result.info}
        atomic_write_text(out / TRAINED_FILE, json.dumps(trained, indent=2, default=str) + "\n")
    if ctx.train_only:
        return trained
    trained["timed_dir"] = str(timed_dir(trained, out))
    random_weights = ensure_weights(Path(trained["timed_dir"]))
    shape = shape_of(trained["timed_dir"])
    point = {**trained, "shape": shape, "predicted": predicted_speedup(ctx.table, shape),
             "threads": ctx.threads, "speed": measure(ctx, trained["timed_dir"]),
             "timed_on_random_weights": random_weights}
    atomic_write_text(out / POINT_FILE, json.dumps(point, indent=2, default=str) + "\n")
    return point


def dense_point(ctx: Context, work: Path) -> dict[str, Any]:
    b = ctx.budget
    out = work / "dense"
    key = {k: getattr(b, k) for k in ("task", "dense", "data_dir", "max_seq_length",
                                      "max_eval_samples")}
    done = read_json(out / POINT_FILE)
    if done and done.get("key") == key:
        return done
    start = time.perf_counter()
    res = evaluate_checkpoint(b.task, b.dense, data_dir=Path(b.data_dir) if b.data_dir else None,
                              max_eval_samples=b.max_eval_samples, max_seq_length=b.max_seq_length)
    point = {"route": "dense", "target": 1.0, "seed": None, "key": key,
             "metric": res.metrics[res.main_metric], "main_metric": res.main_metric,
             "num_examples": res.num_examples, "eval_seconds": round(time.perf_counter() - start, 1),
             "predicted": 1.0, "shape": shape_of(b.dense)}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / POINT_FILE, json.dumps(point, indent=2) + "\n")
    return point


def finished_points(ctx: Context, work: Path) -> list[dict[str, Any]]:
    """Every point of this budget already finished in ``work``, whatever run left it (``--only``
    and ``--targets`` runs add to what earlier runs left)."""
    return [p for p in points_in(work) if ctx.budget.matches(p.get("budget"))]


# --------------------------------------------------------------------------------- reporting
def fmt_shape(p: dict[str, Any], full: dict[str, Any]) -> str:
    s = p.get("shape") or {}
    if not s:
        return "-"
    if s["layers"] != full["layers"]:
        return f"{s['layers']}/{full['layers']} layers"
    return f"{s['heads']}/{full['heads']}h {s['ffn_dims']}/{full['ffn_dims']}f"


def print_table(points: list[dict[str, Any]], dense: dict[str, Any], threads: list[int],
                scale: float, metric: str) -> None:
    cols = [f"b1/b32 @{t}t" for t in threads]
    width = max([14] + [len(p["route"]) for p in points])
    head = (f"{'route':<{width}} {'target':>6} {'seed':>4} {metric[:8]:>8} {'Δ':>6} {'shape':<22} "
            f"{'pred':>6} " + " ".join(f"{c:>13}" for c in cols) + f" {'wall s':>7}")
    print(head)
    print("-" * len(head))
    full = dense["shape"]
    rows = [dense] + sorted(points, key=lambda p: (route_order(p["route"]), p["target"], p["seed"]))
    for p in rows:
        acc = scale * p["metric"]
        delta = acc - scale * dense["metric"]
        speeds = []
        for t in threads:
            s = (p.get("speed") or {}).get(f"t{t}")
            speeds.append(f"{s['b1']:.2f}x/{s['b32']:.2f}x" if s
                          else "1x/1x" if p["route"] == "dense" else "-")
        pred = f"{p['predicted']:.2f}x" if p.get("predicted") else "-"
        seed = "-" if p.get("seed") is None else str(p["seed"])
        target = "-" if p["route"] == "dense" else f"{p['target']:g}x"
        wall = p.get("wall_seconds") or p.get("eval_seconds")
        print(f"{p['route']:<{width}} {target:>6} {seed:>4} {acc:>8.2f} {delta:>+6.2f} "
              f"{fmt_shape(p, full):<22} {pred:>6} " + " ".join(f"{s:>13}" for s in speeds)
              + f" {wall if wall is not None else '-':>7}")


def noise_report(points: list[dict[str, Any]], target: float, seeds: list[int],
                 scale: float) -> dict[str, Any]:
    """Per noise route: the metric of every seed at ``target`` and the spread (max - min)."""
    out = {}
    for route in NOISE_ROUTES:
        by_seed = {p["seed"]: scale * p["metric"] for p in points
                   if p["route"] == route and p["target"] == target and p["seed"] in seeds}
        if len(by_seed) >= 2:
            vals = list(by_seed.values())
            out[route] = {"target": target, "by_seed": by_seed,
                          "spread": round(max(vals) - min(vals), 2)}
    return out


def plot(points: list[dict[str, Any]], dense: dict[str, Any], path: Path, *, thread: int,
         scale: float, metric: str, title: str, first_seed: int) -> None:
    pts = [TradeoffPoint("dense", 1.0, scale * dense["metric"], "dense")]
    for p in points:
        if p["seed"] != first_seed:
            continue
        # Variants (--compare) share their route's colour, dashed; their targets go unlabelled.
        label = f"{p['target']:g}x" if p["route"] in ROUTES else None
        if p["route"] == "layer-drop":
            label += f": {p['shape']['layers']}L"
        pts.append(TradeoffPoint(p["route"], p["speed"][f"t{thread}"]["b1"], scale * p["metric"],
                                 label))
    tradeoff_plot(pts, path, metric=metric, title=title)


# --------------------------------------------------------------------------------------- main
def parse(argv: Optional[list[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dense", type=Path, required=True,
                   help="fine-tuned dense checkpoint: the start of every route and the teacher")
    p.add_argument("--task", default="sst2")
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--targets", default=None, help="comma-separated speedups (default 1.5,2,3)")
    p.add_argument("--steps", type=int, default=None, help="training steps of every route (600)")
    p.add_argument("--batch-size", type=int, default=None, help="32 (SQuAD 16)")
    p.add_argument("--max-seq-length", type=int, default=None, help="training and evaluation "
                   "tokens: 64 (SQuAD 256)")
    p.add_argument("--learning-rate", type=float, default=5e-5)
    p.add_argument("--fill-share", type=float, default=0.5,
                   help="hybrid-filled: share of the steps given to the fill stage")
    p.add_argument("--score-init", default="importance",
                   help="hybrid-filled and struct: initial mask scores (importance, constant)")
    p.add_argument("--calibration-samples", type=int, default=None,
                   help="one-shot: examples scored (2048)")
    p.add_argument("--max-train-samples", type=int, default=None)
    p.add_argument("--max-eval-samples", type=int, default=None,
                   help="default: the full dev set")
    p.add_argument("--seeds", default=None, help="comma-separated; the first for every point, "
                   "all of them at --noise-target for hybrid-filled and one-shot (42,43)")
    p.add_argument("--noise-target", type=float, default=None, help="(2, else the only target)")
    p.add_argument("--threads", default=None,
                   help="thread counts to time at (1,<all cores>); the first is the plot's")
    p.add_argument("--speed-seq", type=int, default=128, help="sequence length of the timing "
                   "and of the latency table")
    p.add_argument("--latency-threads", type=int, default=1,
                   help="threads of the latency table the targets are cut with")
    p.add_argument("--latency-table", type=Path, default=None,
                   help="a saved latency table instead of the cached / measured one")
    p.add_argument("--iters", type=int, default=None, help="timed rounds per model (10)")
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--save-steps", type=int, default=None,
                   help="checkpoint every N steps, to resume a killed run (100)")
    p.add_argument("--only", default=None, help=f"comma-separated subset of {','.join(ROUTES)}")
    p.add_argument("--work", type=Path, default=None,
                   help="run folders (benchmarks/results/tradeoff_runs/<task>)")
    p.add_argument("--out", type=Path, default=None, help="JSON path (the PNG goes beside it)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="pruning-config override of the fine-pruning routes (a recipe change, "
                        "e.g. attention_lambda=0); part of the budget, so use another --work")
    p.add_argument("--fill-init", default=FillInit.NOISE.value, choices=[f.value for f in FillInit],
                   help="hybrid-filled: what fills the zeros inside kept heads / FFN dims")
    p.add_argument("--compare", action="append", default=[], metavar="LABEL=WORK",
                   help="also show the finished points of another --work (a recipe change: "
                        "--set, --fill-share, ...), as 'route (LABEL)' in the table and the PNG")
    p.add_argument("--retime", action="store_true",
                   help="time every finished point again at --threads (a busy machine spoilt "
                        "them), keeping its timings at other thread counts")
    p.add_argument("--train-only", action="store_true",
                   help="train and evaluate, do not time: for training on another machine (a "
                        "GPU); a later run without it times the points here, on random weights "
                        "of their shapes if only their small files were copied back")
    p.add_argument("--time-only", action="store_true",
                   help="time the trained points only: a listed point not trained yet is "
                        "skipped, not started (timing a subset on a quiet machine)")
    p.add_argument("--smoke", action="store_true",
                   help="tiny budget, end to end in minutes: 4 steps, 64 train / 64 eval "
                        "examples, target 1.5, one thread")
    p.add_argument("--quiet", action="store_true", help="no library log lines")
    a = p.parse_args(argv)
    for k, v in (SMOKE if a.smoke else NORMAL).items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    for k, v in {**DEFAULTS, **TASK_DEFAULTS.get(a.task, {})}.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    if a.noise_target is None:
        targets = [float(t) for t in a.targets.split(",")]
        a.noise_target = 2.0 if 2.0 in targets or len(targets) > 1 else targets[0]
    return a


def main(argv: Optional[list[str]] = None) -> int:
    a = parse(argv)
    quiet_libraries()
    if not a.quiet:
        setup_logging()
    targets = [float(t) for t in a.targets.split(",")]
    seeds = [int(s) for s in a.seeds.split(",")]
    threads = list(dict.fromkeys(int(t) for t in a.threads.split(",")))
    routes = [r.strip() for r in a.only.split(",")] if a.only else list(ROUTES)
    bad = [r for r in routes if r not in ROUTES]
    if bad:
        p = f"unknown route(s) {', '.join(bad)}; choose from {', '.join(ROUTES)}"
        print(f"error: {p}", file=sys.stderr)
        return 2
    if a.time_only and a.train_only:
        print("error: --time-only and --train-only exclude each other", file=sys.stderr)
        return 2
    if not 0 < a.fill_share < 1 or a.steps < 2:
        print("error: --fill-share must be in (0, 1) and --steps >= 2", file=sys.stderr)
        return 2
    suffix = "_smoke" if a.smoke else ""
    work = a.work or ROOT / "results" / "tradeoff_runs" / f"{a.task}{suffix}"
    out_json = a.out or ROOT / "results" / f"tradeoff_{a.task}{suffix}.json"
    out_png = out_json.with_suffix(".png")
    dense = a.dense.resolve()
    if work.resolve() == dense or dense in work.resolve().parents:
        print("error: --work must not be inside the dense model's folder", file=sys.stderr)
        return 2
    budget = Budget(task=a.task, dense=str(dense),
                    data_dir=str(a.data_dir.resolve()) if a.data_dir else None, steps=a.steps,
                    batch_size=a.batch_size, max_seq_length=a.max_seq_length,
                    learning_rate=a.learning_rate, fill_share=a.fill_share,
                    score_init=a.score_init, calibration_samples=a.calibration_samples,
                    max_train_samples=a.max_train_samples, max_eval_samples=a.max_eval_samples,
                    speed_seq=a.speed_seq, latency_threads=a.latency_threads,
                    overrides=tuple(a.set), fill_init=a.fill_init)
    try:
        compared = compared_points(a.compare, seeds[0], budget)
    except NNPruneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    setting = LatencySetting(batch_size=1, seq_len=a.speed_seq, threads=a.latency_threads)
    table = nnprune.latency_table(load_config(str(dense)), setting=setting, path=a.latency_table)
    ctx = Context(budget, table, setting, a.latency_table, threads, a.iters, a.warmup,
                  a.save_steps, a.train_only, a.retime, a.time_only)
    work.mkdir(parents=True, exist_ok=True)

    plan = [(r, t, seeds[0]) for t in targets for r in ROUTES]
    plan += [(r, a.noise_target, s) for r in NOISE_ROUTES for s in seeds
             if (r, a.noise_target, s) not in plan]
    started = time.perf_counter()
    dense_pt = dense_point(ctx, work)
    for route, target, seed in plan:
        if route not in routes:
            continue
        point = run_point(ctx, work, route, target, seed)
        if point is None:
            continue
        speed = point.get("speed", {}).get(f"t{threads[0]}", {}).get("b1")
        logger.info("%s x%g seed %d: %s %.4f, b1 %s (1st thread count), %s s", route, target,
                    seed, dense_pt["main_metric"], point["metric"],
                    f"{speed:.2f}x" if speed else "not timed", point["wall_seconds"])
    points = finished_points(ctx, work)
    scale = 100.0 if dense_pt["metric"] <= 1 else 1.0  # accuracy is a fraction, F1 in points
    metric = dense_pt["main_metric"] + (" (%)" if scale == 100.0 else "")
    noise = noise_report(points, a.noise_target, seeds, scale)

    steps_desc = (f"{a.steps} steps x batch {a.batch_size} x seq {a.max_seq_length}"
                  + (f", {a.max_train_samples} train ex." if a.max_train_samples else ""))
    print(f"\n{a.task}: {steps_desc}, lr {a.learning_rate:g}, teacher {dense}; hybrid-filled "
          f"{'/'.join(map(str, split_steps(a.steps, a.fill_share)))} prune/fill steps, "
          f"score_init={a.score_init}; one-shot {a.calibration_samples} calibration examples")
    print(f"speed: measured vs dense, interleaved, batch 1 / 32 x seq {a.speed_seq}; pred = "
          f"latency table (batch 1, {a.latency_threads} thread(s)); {cpu_model_name()}; "
          f"wall s = the run's wall time (training + evaluations)")
    print_table(points + compared, dense_pt, threads, scale, metric)
    for route, n in noise.items():
        vals = ", ".join(f"seed {s}: {v:.2f}" for s, v in n["by_seed"].items())
        print(f"noise {route} @ {n['target']:g}x: {vals}; spread {n['spread']:.2f}")
    out_json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_json, json.dumps({
        "task": a.task, "dense": dense_pt, "budget": budget.to_dict(), "cpu": cpu_model_name(),
        "threads": threads, "latency_table": table.path, "latency_setting": setting.to_dict(),
        "targets": targets, "seeds": seeds, "noise_target": a.noise_target, "noise": noise,
        "points": points, "compared": compared,
        "wall_seconds": round(time.perf_counter() - started, 1)},
        indent=2, default=str) + "\n")
    # Two lines at most: tradeoff_plot leaves room for no more above its axes.
    title = f"{a.task}, {steps_desc}, every route distilled from the dense model\n" + (
        f"speed: batch 1 x seq {a.speed_seq}, {threads[0]} thread{'s' if threads[0] > 1 else ''}")
    if noise:
        title += f"; seed noise @{a.noise_target:g}x: " + ", ".join(
            f"{r} {n['spread']:.2f}" for r, n in noise.items()) + " points"
    if points:
        plot(points + compared, dense_pt, out_png, thread=threads[0], scale=scale, metric=metric,
             title=title, first_seed=seeds[0])
        print(f"wrote {out_json} and {out_png}")
    else:
        print(f"wrote {out_json} (no finished point to plot)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
