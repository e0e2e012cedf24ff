"""``nnprune prune``: a smaller, faster model from a fine-tuned checkpoint in minutes, without
retraining (post-training pruning, :mod:`nnprune.pruning_core.post_training`).

Phases, each timed: evaluate the dense model; score every head and FFN dimension on the
calibration examples (per-example Fisher information of the task loss); search the mask under the
budget (``target_speedup``: milliseconds from this machine's latency table; ``target_flops``:
FLOPs); rearrange it per layer; tune the kept units layer by layer with least squares; compact
(exactly: the logits of the compacted model are checked against the masked one); save (stock
``trust_remote_code`` reload, ``nnprune_config.json`` saying how it was made); evaluate it; time it
against the dense model on a probe. ``then_fill`` adds a short distilled fine-tune of the compacted
model (the ``fill`` stage) for users who can afford a few minutes more.

Under a distributed launch (torchrun) every process runs :func:`prune`: the main process alone
measures the latency table, scores, searches, tunes, saves and times (one mask; processes timing
side by side would disturb each other), the others wait for it; all of them evaluate and fill
(the Trainer's collectives) and report the same result.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from nnprune.errors import NNPruneError
from nnprune.launch import is_main_process
from nnprune.measure.flops import flop_profile
from nnprune.measure.latency import LatencySetting, resolve_table
from nnprune.pruning_core.checkpoint import (CheckpointKind, check_dir, load_model,
                                             read_config_json, save_checkpoint)
from nnprune.pruning_core.compact import compact_exactly
from nnprune.pruning_core.config import BinarizerKind, PruningConfig, check_speedup_target
from nnprune.pruning_core.latency_model import LatencyModel
from nnprune.pruning_core.post_training import (MaskGroup, UnitCosts, align_ffn, apply_masks,
                                                fisher_information, mask_groups, model_inputs,
                                                rearrange, search_masks, tune_layerwise)
from nnprune.pruning_core.pruner import unpatch_model
from nnprune.pruning_core.run_record import (BeforePruning, CommandOptions, PostTrainingRecord,
                                             PruneResult, RunConfig, latency_record,
                                             read_results, write_results)
from nnprune.tasks import DataArgs, get_task
from nnprune.workflows.evaluate import evaluate_checkpoint, training_max_seq_length
from nnprune.workflows.options import TrainingOptions
from nnprune.workflows.training import (barrier, collate_first, from_main_process,
                                        has_complete_checkpoint, load_tokenizer)

logger = logging.getLogger(__name__)

MIN_CALIBRATION_SAMPLES = 32  # below this the Fisher estimates are noise
FFN_MULTIPLE = 8  # FFN sizes kept by the search: multiples of 8 (fast CPU kernels, no padding)
PRUNE_SUBDIR = "prune"  # with then_fill: where the pruned (unfilled) model goes
MAX_BUDGET_ROUNDS = 6  # target_speedup: re-searches with a lower linear budget (see _search)
BUDGET_SLACK = 0.005  # the table's prediction may exceed the budget by this fraction
Progress = Callable[[str, int, int], None]  # (phase, done, total)

#: The :class:`TrainingOptions` ``prune`` takes (its command-line options), and what each means
#: for it: the calibration's batch size, sequence length, seed and data, the evaluations' sample
#: count, the ``--then-fill`` stage's learning rate and checkpoints, and resuming or replacing
#: the whole job. Type, flag, default and validation are the options' own.
PRUNE_TRAINING_HELP: dict[str, str] = {
    "batch_size": "Calibration batch size.",
    "max_seq_length": "Tokens per example (default: the checkpoint's training length, else the "
                      "task's).",
    "seed": "Seed of the calibration sample.",
    "data_dir": "Task data folder (calibration from its train split, evaluation from its dev "
                "split).",
    "train_file": "Calibration file.",
    "validation_file": "Evaluation file.",
    "max_eval_samples": "Evaluate on at most this many examples.",
    "learning_rate": "Learning rate of --then-fill.",
    "save_steps": "With --then-fill: save a checkpoint every N fill steps (for --resume).",
    "resume": "Continue a killed run in --output-dir: a pruned model it saved is not pruned "
              "again, and --then-fill continues from its last checkpoint.",
    "overwrite": "Replace a non-empty --output-dir.",
}
#: ``prune``'s defaults of them: the --then-fill stage is short, and learns faster than a run
PRUNE_TRAINING = TrainingOptions(learning_rate=5e-5)


@dataclass(frozen=True)
class PruneArgs:
    """One post-training pruning job. Exactly one of ``target_speedup`` (speedup of the whole
    forward at the ``latency`` setting, > 1, predicted by the machine's latency table) and
    ``target_flops`` (fraction of the dense FLOPs to keep, in (0, 1)).

    ``training``: the calibration data (``batch_size``, ``max_seq_length``: ``None`` for the
    checkpoint's training length, else the task's; ``seed``, the data files), the evaluations'
    ``max_eval_samples``, the options of the ``then_fill`` stage (``learning_rate``,
    ``save_steps``, ...) and ``resume`` / ``overwrite``: with ``resume`` a pruned model already
    saved (its results recorded) is not pruned again, and the fill stage continues from its last
    complete checkpoint (:data:`PRUNE_TRAINING_HELP`)."""

    checkpoint: str
    task: str
    output_dir: Path
    target_speedup: Optional[float] = None
    target_flops: Optional[float] = None
    calibration_samples: int = 2048
    tune_samples: int = 256  # of the calibration examples, used by the least-squares tuning
    rearrange: bool = True
    # least-squares tuning; None: the task's choice (TaskAdapter.prune_tune), measured per task:
    # it cost SST-2 0.5-1.3 points and gave the SQuAD v1.1 split 1.2 F1 at 1.5x (README)
    tune: Optional[bool] = None
    speed_probe: bool = True
    then_fill: Optional[int] = None  # steps of a distilled fine-tune of the compacted model
    training: TrainingOptions = PRUNE_TRAINING
    task_options: dict[str, str] = field(default_factory=dict)
    # where the speed counts (target_speedup and the speed probe); its default sequence length
    # is the calibration one
    latency: LatencySetting = field(default_factory=LatencySetting)
    latency_table: Optional[Path] = None  # a saved table instead of the cached / measured one

    def __post_init__(self) -> None:
        object.__setattr__(self, "output_dir", Path(self.output_dir))
        if self.latency_table is not None:
            object.__setattr__(self, "latency_table", Path(self.latency_table))
        if (self.target_speedup is None) == (self.target_flops is None):
            raise NNPruneError("pass one target: --target-speedup S (e.g. 2) or --target-flops F "
                               "(fraction of the dense FLOPs to keep, e.g. 0.5)")
        check_speedup_target(self.target_speedup)
        if self.target_flops is not None and not 0 < self.target_flops < 1:
            raise NNPruneError(f"--target-flops is the fraction of FLOPs kept, in (0, 1); got "
                               f"{self.target_flops}")
        if self.calibration_samples < MIN_CALIBRATION_SAMPLES:
            raise NNPruneError(f"--calibration-samples must be >= {MIN_CALIBRATION_SAMPLES} (Fisher "
                               f"estimates from fewer examples are noise), got {self.calibration_samples}")
        if self.tune_samples < 1:
            raise NNPruneError(f"--tune-samples must be >= 1, got {self.tune_samples}")
        if self.then_fill is not None and self.then_fill < 1:
            raise NNPruneError(f"--then-fill takes a number of steps >= 1, got {self.then_fill}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values, as recorded (``post_training.options``): the options ``prune``
        takes, flat."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "training"}
        out["latency"] = self.latency.to_dict()
        training = self.training.to_dict()
        out.update({name: training[name] for name in PRUNE_TRAINING_HELP})
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in out.items()}


def unit_costs(model: nn.Module, groups: list[MaskGroup], seq_len: int) -> UnitCosts:
    """The FLOP model of ``speed`` / ``count-params`` (:mod:`nnprune.measure.flops`), read as a
    cost per head and per FFN dimension at batch 1 x ``seq_len``. Refuses models whose heads (or
    FFN dimensions) cost different FLOPs."""
    profile = flop_profile(model)
    full = profile.count(1, seq_len).total
    heads = {g.key: g.size for g in groups if g.is_heads}
    ffn = {g.key[:2]: g.size for g in groups if not g.is_heads}
    head_costs, ffn_costs = set(), set()
    for key, n in heads.items():
        head_costs.add(round(full - profile.resized({key: n - 1}, {}).count(1, seq_len).total, 3))
    for key, n in ffn.items():
        ffn_costs.add(round(full - profile.resized({}, {key: n - 1}).count(1, seq_len).total, 3))
    if len(head_costs) != 1 or len(ffn_costs) != 1:
        raise NNPruneError("post-training pruning needs every head (and every FFN dimension) to "
                           "cost the same FLOPs; this model's do not")
    head, dim = head_costs.pop(), ffn_costs.pop()
    fixed = full - head * sum(heads.values()) - dim * sum(ffn.values())
    return UnitCosts(head, dim, fixed, seq_len)


def calibration_batches(task: Any, tokenizer: Any, model: nn.Module, args: PruneArgs,
                        max_seq_length: int) -> list[dict[str, Any]]:
    """``args.calibration_samples`` training examples (shuffled with the training options'
    ``seed``), tokenized and collated into batches of their ``batch_size``."""
    opts = args.training
    data = task.load_data(tokenizer, DataArgs(
        data_dir=opts.data_dir, train_file=opts.train_file, validation_file=opts.validation_file,
        max_train_samples=args.calibration_samples, max_seq_length=max_seq_length, seed=opts.seed))
    ds = data.train
    if ds is None or len(ds) < MIN_CALIBRATION_SAMPLES:
        raise NNPruneError(f"only {0 if ds is None else len(ds)} calibration examples; "
                           f"post-training pruning needs at least {MIN_CALIBRATION_SAMPLES}")
    if len(ds) < args.calibration_samples:
        logger.warning("using the %d training examples there are (asked for %d)", len(ds),
                       args.calibration_samples)
    keep = [c for c in ds.column_names if c in model_inputs(model, dict.fromkeys(ds.column_names))
            or c in ("label", "labels", "label_ids")]
    return collate_first(ds.select_columns(keep), data.data_collator, len(ds), opts.batch_size)


def prune(args: PruneArgs, progress: Optional[Progress] = None) -> PruneResult:
    """Run the whole post-training pruning job (see the module doc)."""
    src = check_dir(args.checkpoint)
    out = args.output_dir
    resume = args.training.resume
    if out.exists() and any(out.iterdir()) and not (args.training.overwrite or resume):
        raise NNPruneError(f"{out} is not empty; pass --overwrite to replace it or --resume to "
                           "continue the run that wrote it")
    if out.resolve() == src.resolve():
        raise NNPruneError("--output-dir must differ from the checkpoint")
    save_to = out / PRUNE_SUBDIR if args.then_fill else out
    saved = saved_result(save_to) if resume else None
    barrier()  # every process has checked OUTPUT before the main one writes there
    if saved is not None:
        logger.info("--resume: %s already holds the pruned model; it is not pruned again", save_to)
        result = saved
    else:
        result = _prune_once(args, src, save_to, progress)
    if args.then_fill:
        tick = time.perf_counter()
        result.metrics_filled = _fill(args, src, save_to, result.max_seq_length)
        result.seconds["fill"] = round(time.perf_counter() - tick, 2)
        logger.info("prune: fill done in %.1f s", result.seconds["fill"])
    return result


def saved_result(folder: Path) -> Optional[PruneResult]:
    """The result :func:`prune` recorded in ``folder`` once its pruned model was saved,
    evaluated and timed (``nnprune_results.json``, written last), or None: no results, another
    command's (fine-prune, fill), or a file that cannot be read (pruned again)."""
    if not (folder / "config.json").is_file():
        return None
    try:
        results = read_results(folder)
    except NNPruneError as exc:
        logger.warning("--resume: %s; pruning again", exc)
        return None
    return results if isinstance(results, PruneResult) else None


def _fill(args: PruneArgs, src: Path, pruned: Path, seq_len: int) -> dict[str, float]:
    """``then_fill``: distil the compacted model in ``pruned`` from ``src`` into OUTPUT."""
    from nnprune.workflows.fill import FillArgs, fill

    out = args.output_dir
    resume = args.training.resume and has_complete_checkpoint(out)
    opts = replace(args.training, max_steps=args.then_fill, max_seq_length=seq_len,
                   logging_steps=max(1, args.then_fill // 10), resume=resume)
    return fill(FillArgs(checkpoint=pruned, task=args.task, output_dir=out, teacher=str(src),
                         reinit_std=0.0, task_options=args.task_options, training=opts)).metrics


def _prune_once(args: PruneArgs, src: Path, save_to: Path,
                progress: Optional[Progress]) -> PruneResult:
    """Everything but the fill: load, evaluate, cut, compact, save ``save_to``, evaluate it,
    time it; record the result in ``save_to`` last (what ``resume`` looks for)."""
    seconds: dict[str, float] = {}
    tick = time.perf_counter()

    def phase(name: str) -> None:
        nonlocal tick
        now = time.perf_counter()
        seconds[name] = round(now - tick, 2)
        tick = now
        logger.info("prune: %s done in %.1f s", name, seconds[name])

    task = get_task(args.task, args.task_options)
    task.check_checkpoint(read_config_json(src), str(src))
    loaded = load_model(src)
    if loaded.kind is CheckpointKind.COMPACTED:
        raise NNPruneError(f"{src} is already compacted; prune the fine-tuned model it came from")
    model = loaded.model
    if loaded.is_masked:
        unpatch_model(model, apply_masks=True)
    model.eval()
    groups = mask_groups(model)
    seq_len = (args.training.max_seq_length or training_max_seq_length(src)
               or task.default_max_seq_length)
    flops = unit_costs(model, groups, seq_len)
    heads_total = sum(g.size for g in groups if g.is_heads)
    dims_total = sum(g.size for g in groups if not g.is_heads)
    full = flops.total(heads_total, dims_total)
    tokenizer = load_tokenizer(str(src))
    batches = calibration_batches(task, tokenizer, model, args, seq_len)
    n_examples = sum(int(b["input_ids"].shape[0]) for b in batches)
    setting = args.latency.at(seq_len)
    table = None  # after the data: a bad data folder is refused before a table is measured
    if args.target_speedup is not None:
        # measured once (processes timing side by side disturb each other): one mask for all
        table = from_main_process(lambda: resolve_table(model.config, setting, args.latency_table))
        costs, budget = UnitCosts.from_latency(table.model, seq_len), table.model.budget_ms(
            args.target_speedup)
    else:
        costs, budget = flops, full * args.target_flops
    phase("load")

    eval_kw = dict(data_dir=args.training.data_dir, validation_file=args.training.validation_file,
                   max_eval_samples=args.training.max_eval_samples, max_seq_length=seq_len,
                   task_options=args.task_options)
    before = evaluate_checkpoint(args.task, src, **eval_kw).metrics
    phase("evaluate dense")

    def cut() -> dict[str, Any]:
        """Score, search, tune, compact and save ``save_to``: what the main process alone does
        under a distributed launch (the others wait for ``save_to``, then evaluate and fill it
        with it); returns what every process reports."""
        before_cut = set(seconds)
        done = [0]

        def scored(n: int) -> None:
            done[0] += n
            if progress is not None:
                progress("score", done[0], n_examples)

        importance = fisher_information(model, batches, groups, progress=scored)
        phase("score")
        kept = _search(importance, groups, costs, budget, args.rearrange,
                       table.model if table is not None else None)
        phase("search")
        tune_report = None
        tune = task.prune_tune if args.tune is None else args.tune
        if tune:
            dense = copy.deepcopy(model)
            tuned = [0]

            def tune_step(n: int) -> None:
                tuned[0] += n
                if progress is not None:
                    progress("tune", tuned[0], len(groups))

            tune_batches = _first_examples(batches, args.tune_samples)
            tune_report = tune_layerwise(model, dense, groups, kept, tune_batches, progress=tune_step)
            del dense
        else:
            apply_masks(model, groups, kept)
        phase("tune")

        _, diff = compact_exactly(model, tokenizer=tokenizer, ffn_multiple=FFN_MULTIPLE,
                                  refusal="nothing was written")
        shape = _kept_shape(groups, kept, flops, table.model if table is not None else None)
        post = PostTrainingRecord(
            method="fisher+search" + ("+rearrange" if args.rearrange else "")
                   + ("+lstsq" if tune else ""),
            options=CommandOptions(args.to_dict()), calibration_examples=n_examples,
            max_seq_length=seq_len, kept={g.label: kept[g.key] for g in groups},
            flops={"before": full, "after": shape.flops}, predicted_speedup=shape.predicted,
            speed_setting=setting.resolved().to_dict())
        record = RunConfig(
            pruning=PruningConfig(method="post-training", binarizer=BinarizerKind.NONE),
            task=args.task, base_model=str(src), post_training=post,
            training=CommandOptions({"max_seq_length": seq_len}),
            results=BeforePruning(main_metric=task.main_metric, metrics_before=before),
            latency_table=latency_record(table.to_dict()) if table is not None else None)
        save_checkpoint(model, save_to, tokenizer=tokenizer, record=record)
        phase("compact + save")
        return {"shape": shape, "exactness": diff, "seconds": {
            k: v for k, v in seconds.items() if k not in before_cut},
            "tune_error": {} if tune_report is None else {
                k: [tune_report.before[k], tune_report.after[k]] for k in tune_report.before}}

    summary = from_main_process(cut)
    seconds.update(summary["seconds"])
    tick = time.perf_counter()
    shape: KeptShape = summary["shape"]

    after = evaluate_checkpoint(args.task, save_to, **eval_kw).metrics
    phase("evaluate pruned")
    measured = None
    if args.speed_probe:
        from nnprune.workflows.speed import run_speed

        measured = from_main_process(lambda: run_speed(
            save_to, src, device=setting.device, dtype=setting.dtype,
            batch_sizes=[setting.batch_size], seq_lens=[setting.seq_len],
            threads=setting.threads, warmup=3, iters=10).rows[0].speedup)
        phase("speed probe")
    result = PruneResult(
        output_dir=str(args.output_dir), task=args.task, main_metric=task.main_metric,
        metrics_before=before, metrics_after=after, heads_kept=sum(shape.heads_per_layer),
        heads_total=heads_total, ffn_dims_kept=sum(shape.ffn_dims_per_layer),
        ffn_dims_total=dims_total, flops_before=full, flops_after=shape.flops,
        predicted_speedup=shape.predicted, measured_speedup=measured,
        calibration_samples=n_examples, max_seq_length=seq_len, exactness=summary["exactness"],
        seconds=seconds, tune_error=summary["tune_error"], heads_per_layer=shape.heads_per_layer,
        ffn_dims_per_layer=shape.ffn_dims_per_layer,
        predicted_by="flops" if table is None else "latency table",
        speed_setting=setting.resolved().to_dict(),
        model=model if is_main_process() else None)  # the others never compacted theirs
    if is_main_process():
        write_results(save_to, result)
    barrier()  # resume looks for the file: every process sees it once the main one wrote it
    return result


@dataclass(frozen=True)
class KeptShape:
    """What a search kept: units per layer, the FLOPs of one forward (batch 1, the search's
    sequence length) and the predicted speedup (latency table, else the FLOP ratio)."""

    heads_per_layer: list[int]
    ffn_dims_per_layer: list[int]
    flops: float
    predicted: float


def _kept_shape(groups: list[MaskGroup], kept: dict[Any, list[int]], flops: UnitCosts,
                latency: Optional[LatencyModel]) -> KeptShape:
    heads, dims = _per_layer(groups, kept)
    after = flops.total(sum(heads), sum(dims))
    full = flops.total(sum(g.size for g in groups if g.is_heads),
                       sum(g.size for g in groups if not g.is_heads))
    return KeptShape(heads, dims, after,
                     latency.speedup(heads, dims) if latency is not None else full / after)


def _per_layer(groups: list[MaskGroup], kept: dict[Any, list[int]]) -> tuple[list[int], list[int]]:
    """Heads and FFN dimensions kept per layer, in layer order."""
    return ([len(kept[g.key]) for g in groups if g.is_heads],
            [len(kept[g.key]) for g in groups if not g.is_heads])


def _search(importance: Any, groups: list[MaskGroup], costs: UnitCosts, budget: float,
            rearrange_units: bool, latency: Optional[LatencyModel]) -> dict[Any, list[int]]:
    """Search, align the FFN widths and rearrange. The search prices units linearly; with a
    latency table, whose per-layer curves are not lines, the mask is then priced by the table
    and the linear budget lowered by the overshoot until the table's prediction fits."""
    linear_budget = budget
    for _ in range(MAX_BUDGET_ROUNDS):
        kept = search_masks(importance, groups, costs, linear_budget)
        kept = align_ffn(importance, groups, kept, costs, linear_budget, multiple=FFN_MULTIPLE)
        if rearrange_units:
            kept = rearrange(importance, groups, kept)
        if latency is None:
            return kept
        over = latency.predict(*_per_layer(groups, kept)) - budget
        if over <= BUDGET_SLACK * budget:
            return kept
        linear_budget -= over
    return kept


def _first_examples(batches: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    out, seen = [], 0
    for b in batches:
        if seen >= n:
            break
        k = min(int(b["input_ids"].shape[0]), n - seen)
        out.append({key: (v[:k] if isinstance(v, torch.Tensor) else v) for key, v in b.items()})
        seen += k
    return out


__all__ = ["PRUNE_TRAINING", "PRUNE_TRAINING_HELP", "PruneArgs", "PruneResult", "prune",
           "unit_costs"]
