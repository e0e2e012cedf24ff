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

import inspect
import logging
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Optional

from torch import nn

import nnprune
from nnprune import LatencySetting, records
from nnprune.errors import NNPruneError
from nnprune.io_utils import OVERWRITE_HELP
from nnprune.launch import is_main_process
from nnprune.phases import PhaseClock
from nnprune.tasks import DataArgs, get_task
from nnprune.workflows.evaluate import evaluate_checkpoint, training_max_seq_length
from nnprune.workflows.options import TrainingOptions
from nnprune.workflows.preflight import (FP32_BYTES, cap_max_seq_length, check_data_paths,
                                         check_device, check_free_disk, check_output_dir,
                                         check_seq_lens, check_tokenizer, parameter_count,
                                         run_bytes)
from nnprune.workflows.training import (barrier, claims_output, collate_first, from_main_process,
                                        has_complete_checkpoint, load_tokenizer)

logger = logging.getLogger(__name__)
PruneResult = records.PruneResult

MIN_CALIBRATION_SAMPLES = 32  # below this the Fisher estimates are noise (nnprune.prune's floor)
PRUNE_SUBDIR = "prune"  # with then_fill: where the pruned (unfilled) model goes
Progress = Callable[[str, int, int], None]  # (phase, done, total)

#: The :class:`TrainingOptions` ``prune`` takes (its command-line options), and what each means
#: for it: the calibration's batch size, sequence length, seed and data, the evaluations' sample
#: count, the ``--then-fill`` stage's learning rate and checkpoints, and resuming or replacing
#: the whole job. Type, flag, default and validation are the options' own.
PRUNE_TRAINING_HELP: dict[str, str] = {
    "batch_size": "Calibration batch size, and the --then-fill stage's training batch size.",
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
    "report_to": "With --then-fill: the trackers of the fill stage's curves (none, tensorboard, "
                 "wandb, mlflow).",
    "resume": "Continue a killed run in --output-dir: a pruned model it saved is not pruned "
              "again, and --then-fill continues from its last checkpoint.",
    "overwrite": OVERWRITE_HELP,
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
    # also prune the hidden dimension and remove whole layers (False: heads and FFN only)
    width_depth: bool = True
    hidden_size: Optional[int] = None  # the stream's width to keep (None: the search chooses)
    # hold target_speedup to the speed measured here, not the table's prediction (re-searches)
    measured_target: bool = False
    speed_probe: bool = True
    then_fill: Optional[int] = None  # steps of a distilled fine-tune of the compacted model
    alpha_hidden: float = 0.0  # the fill's layer-wise distillation weight (FillArgs.alpha_hidden)
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
        nnprune.check_prune_targets(self.target_speedup, self.target_flops, self.measured_target)
        if self.calibration_samples < MIN_CALIBRATION_SAMPLES:
            raise NNPruneError(f"--calibration-samples must be >= {MIN_CALIBRATION_SAMPLES} (Fisher "
                               f"estimates from fewer examples are noise), got {self.calibration_samples}")
        if self.hidden_size is not None and not self.width_depth:
            raise NNPruneError("--hidden-size chooses the width of the stream: it needs --width-depth")
        if self.tune_samples < 1:
            raise NNPruneError(f"--tune-samples must be >= 1, got {self.tune_samples}")
        if self.then_fill is not None and self.then_fill < 1:
            raise NNPruneError(f"--then-fill takes a number of steps >= 1, got {self.then_fill}")
        if self.alpha_hidden < 0:
            raise NNPruneError(f"--distill-hidden must be >= 0, got {self.alpha_hidden}")
        if self.alpha_hidden and self.then_fill is None:
            raise NNPruneError("--distill-hidden weighs the distillation of --then-fill: add --then-fill STEPS")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values, as recorded (``post_training.options``): the options ``prune``
        takes, flat."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "training"
               and not (f.name in ("alpha_hidden", "measured_target")
                        and not getattr(self, f.name))}  # records as before
        out["latency"] = self.latency.to_dict()
        training = self.training.to_dict()
        out.update({name: training[name] for name in PRUNE_TRAINING_HELP})
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in out.items()}


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
    accepted = set(inspect.signature(model.forward).parameters)
    keep = [c for c in ds.column_names if c in accepted or c in ("label", "labels", "label_ids")]
    return collate_first(ds.select_columns(keep), data.data_collator, len(ds), opts.batch_size)


def prune(args: PruneArgs, progress: Optional[Progress] = None) -> PruneResult:
    """Run the whole post-training pruning job (see the module doc): what can be checked before
    work first (:func:`check_before_work`, before the output folder is claimed: a refused run
    leaves it as it was), then the job."""
    return _prune_claimed(check_before_work(args), progress)


def check_before_work(args: PruneArgs) -> PruneArgs:
    """What :func:`prune` checks before it loads data or a model
    (:mod:`nnprune.workflows.preflight`): the output folder and the free disk for what it writes,
    the checkpoint's head against the task, the latency device and length, the tokenizer against
    the vocabulary, and the sequence length against the positions (capped, with a warning).
    Returns ``args`` with the length it will use."""
    check_output_dir(args.output_dir)
    check_data_paths(args.training)
    info = nnprune.inspect_checkpoint(args.checkpoint)
    src = str(info.path)
    task = get_task(args.task, args.task_options)
    task.check_checkpoint(info.config, src)
    check_device(args.latency.device, "--latency-device")
    check_seq_lens(info.config, [args.latency.seq_len], "--latency-seq-len", src)
    check_tokenizer(load_tokenizer(src), info.config, src)
    length = (args.training.max_seq_length or training_max_seq_length(src)
              or task.default_max_seq_length)
    capped = cap_max_seq_length(info.config, length, src)
    if capped != length:
        args = replace(args, training=replace(args.training, max_seq_length=capped))
    # the compacted model, and with --then-fill the fill stage's checkpoints and model
    parameters = parameter_count(nnprune.load_config(src)) or 0
    fill = replace(args.training, max_steps=args.then_fill) if args.then_fill else None
    check_free_disk(args.output_dir, FP32_BYTES * parameters
                    + (run_bytes(parameters, fill, masked=False) if fill is not None else 0))
    return args


@claims_output  # the output folder is checked and locked before any work, until the last save
def _prune_claimed(args: PruneArgs, progress: Optional[Progress] = None) -> PruneResult:
    info = nnprune.inspect_checkpoint(args.checkpoint)
    src = info.path
    out = args.output_dir
    resume = args.training.resume
    if out.resolve() == src.resolve():
        raise NNPruneError("--output-dir must differ from the checkpoint")
    save_to = out / PRUNE_SUBDIR if args.then_fill else out
    saved = saved_result(save_to) if resume else None
    barrier()  # every process has checked OUTPUT before the main one writes there
    if saved is not None:
        logger.info("--resume: %s already holds the pruned model; it is not pruned again", save_to)
        result = saved
    else:
        result = _prune_once(args, info, save_to, progress)
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
        results = records.read_results(folder)
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
                         reinit_std=0.0, task_options=args.task_options, training=opts,
                         alpha_hidden=args.alpha_hidden)).metrics


def _prune_once(args: PruneArgs, info: "nnprune.CheckpointInfo", save_to: Path,
                progress: Optional[Progress]) -> PruneResult:
    """Everything but the fill: load, evaluate, cut, compact, save ``save_to``, evaluate it,
    time it; record the result in ``save_to`` last (what ``resume`` looks for)."""
    phase = PhaseClock(logger, "prune")
    seconds = phase.seconds
    task = get_task(args.task, args.task_options)
    src = info.path
    task.check_checkpoint(info.config, str(src))
    model = nnprune.load_pretrained(src, bake_masks=True)  # a masked checkpoint: masks baked in
    again = info.kind == "compacted"
    if again:
        # Pruning in steps: the dense shapes with zeros where units were removed (exact), so
        # the table, the targets and the speed probe count against the dense architecture.
        try:
            model = nnprune.expand(model)
        except NNPruneError as exc:
            raise NNPruneError(f"{src}: {exc}") from None
        logger.info("%s is compacted: pruning it again, its removed heads and FFN dimensions "
                    "back as zeros; the target counts against the dense model", src)
    seq_len = (args.training.max_seq_length or training_max_seq_length(src)
               or task.default_max_seq_length)
    tokenizer = load_tokenizer(str(src))
    batches = calibration_batches(task, tokenizer, model, args, seq_len)
    setting = args.latency.at(seq_len)
    table = None  # after the data: a bad data folder is refused before a table is measured
    if args.target_speedup is not None:
        table = nnprune.latency_table(model, setting=setting, path=args.latency_table)
    phase("load")

    eval_kw = dict(data_dir=args.training.data_dir, validation_file=args.training.validation_file,
                   max_eval_samples=args.training.max_eval_samples, max_seq_length=seq_len,
                   task_options=args.task_options)
    before = evaluate_checkpoint(args.task, src, **eval_kw).metrics
    phase("evaluate dense")
    tune = task.prune_tune if args.tune is None else args.tune

    def cut() -> dict[str, Any]:
        """Prune (the public :func:`nnprune.prune`) and save ``save_to``: what the main process
        alone does under a distributed launch (the others wait for ``save_to``, then evaluate
        and fill it with it); returns what every process reports."""
        done = nnprune.prune(model, batches, target_speedup=args.target_speedup,
                             target_flops=args.target_flops, latency_table=table,
                             seq_len=seq_len, rearrange_units=args.rearrange, tune=tune,
                             tune_samples=args.tune_samples, width_depth=args.width_depth,
                             hidden_size=args.hidden_size, measured_target=args.measured_target,
                             tokenizer=tokenizer, progress=progress)
        post = records.PostTrainingRecord(
            method="fisher+search" + ("+width+depth" if done.width_depth else "")
                   + ("+rearrange" if args.rearrange else "") + ("+lstsq" if tune else ""),
            options=records.CommandOptions(args.to_dict()),
            calibration_examples=done.calibration_samples,
            max_seq_length=seq_len, kept=done.kept,
            flops={"before": done.flops_before, "after": done.flops_after},
            predicted_speedup=done.predicted_speedup, speed_setting=setting.resolved().to_dict())
        record = records.RunConfig(
            pruning=nnprune.PruningConfig(method="post-training", binarizer="none"),
            task=args.task, base_model=str(src), post_training=post,
            training=records.CommandOptions({"max_seq_length": seq_len}),
            results=records.BeforePruning(main_metric=task.main_metric, metrics_before=before),
            latency_table=records.latency_record(table.to_dict()) if table is not None else None)
        tick = time.perf_counter()
        nnprune.save_pretrained(model, save_to, tokenizer=tokenizer, record=record)
        phases = {k: v for k, v in done.seconds.items() if k not in ("load", "compact")}
        phases["compact + save"] = round(done.seconds["compact"] + time.perf_counter() - tick, 2)
        return {**done.to_dict(), "seconds": phases}

    done = from_main_process(cut)
    seconds.update(done["seconds"])
    phase.restart()

    after = evaluate_checkpoint(args.task, save_to, **eval_kw).metrics
    phase("evaluate pruned")
    measured = done["measured_speedup"]  # measured_target timed the shape it took
    if args.speed_probe and measured is None:
        measured = from_main_process(lambda: nnprune.measure_speed(
            save_to, None if again else src, device=setting.device, dtype=setting.dtype,
            batch_sizes=[setting.batch_size], seq_lens=[setting.seq_len],
            threads=setting.threads, warmup=3, iters=10).rows[0].speedup)
        phase("speed probe")
    result = PruneResult(
        output_dir=str(args.output_dir), task=args.task, main_metric=task.main_metric,
        metrics_before=before, metrics_after=after, heads_kept=done["heads_kept"],
        heads_total=done["heads_total"], ffn_dims_kept=done["ffn_dims_kept"],
        ffn_dims_total=done["ffn_dims_total"], flops_before=done["flops_before"],
        flops_after=done["flops_after"], predicted_speedup=done["predicted_speedup"],
        measured_speedup=measured, calibration_samples=done["calibration_samples"],
        max_seq_length=seq_len, exactness=done["exactness"], seconds=seconds,
        tune_error=done["tune_error"], heads_per_layer=done["heads_per_layer"],
        ffn_dims_per_layer=done["ffn_dims_per_layer"], predicted_by=done["predicted_by"],
        speed_setting=setting.resolved().to_dict(),
        hidden_kept=done["hidden_kept"] if done["width_depth"] else None,
        hidden_total=done["hidden_total"] if done["width_depth"] else None,
        layers_removed=done["layers_removed"], speed_rounds=done["speed_rounds"],
        pruned_before=again,
        model=model if is_main_process() else None)  # the others never compacted theirs
    if is_main_process():
        records.write_results(save_to, result)
    barrier()  # resume looks for the file: every process sees it once the main one wrote it
    return result


__all__ = ["PRUNE_TRAINING", "PRUNE_TRAINING_HELP", "PruneArgs", "PruneResult", "check_before_work",
           "prune"]
