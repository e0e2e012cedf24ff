"""*Fill*: the second stage of Hybrid Filled (Lagunas et al. 2021; nn_pruning's "hybrid filled").

:func:`fill` takes a fine-pruned (masked) checkpoint, bakes its final masks and compacts it: the
attention heads and FFN dimensions that pruning emptied *exactly* are physically removed
(never the inexact ``qk_empty`` heads). The zeros left *inside* the kept heads and FFN dimensions
(block pruning leaves many) are then filled (:class:`~nnprune.FillInit`): with small noise
(``noise``, :func:`nnprune.refill`, ``N(0, std)`` with ``std`` the model's ``initializer_range``
unless told), or with the weights the masks hid there (``weights``); that much is the public
:func:`nnprune.prepare_fill`. Then the compacted model is fine-tuned again with no pruning: the ``dense`` method, distilled from a teacher (alpha_ce 0.1,
alpha_teacher 0.9, temperature 2). Removed heads and FFN dimensions cannot come back: the
compacted layers no longer have them. The trainer (and so its optimizer) is built after
compaction, from the compacted layers' parameters.

The output folder is a compacted checkpoint like ``bertarize --compact`` writes (reloadable with
:func:`nnprune.load_pretrained`, and by stock transformers with ``trust_remote_code=True``
through the ``nnprune_modeling.py`` written beside it), with ``nnprune_results.json`` and an
``nnprune_config.json`` whose ``stages`` list records the pruning stage (the checkpoint's own
config, training and results) and the fill stage (config, training, compaction report, number
of re-initialised weights). The fill stage orders its training examples with another seed than
the run that trained the checkpoint (:func:`fresh_data_order`): it goes on to new examples
rather than the same ones again.

:func:`nnprune.workflows.fine_prune.prune_then_fill` runs both stages for a method preset marked
``fill`` (``fine-prune --method hybrid-filled``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Optional

import nnprune
from nnprune import FillInit, LatencySetting, PreparedFill, records
from nnprune.errors import NNPruneError
from nnprune.tasks import get_task
from nnprune.workflows.options import TrainingOptions
from nnprune.workflows.preflight import (cap_max_seq_length, check_data_paths, check_device,
                                         check_free_disk, check_output_dir, check_seq_lens,
                                         check_tokenizer, parameter_count, run_bytes)
from nnprune.workflows.speed import record_speed_check
from nnprune.workflows.training import claims_output, load_tokenizer, run_training, save_final

logger = logging.getLogger(__name__)

FillResult = records.FillResult  # what fill returns and records (named here for its callers)
prepare_fill_model = nnprune.prepare_fill  # the first stage (its name before it was public)


@dataclass(frozen=True)
class FillArgs:
    """One fill run (the ``nnprune fill`` command): what to fill, from which teacher, and the
    shared :class:`TrainingOptions` (``max_seq_length`` ``None``: the checkpoint's training
    length, else the task's)."""

    checkpoint: Path  # fine-pruned (masked) checkpoint; compacted or plain ones work too
    task: str
    output_dir: Path
    teacher: Optional[str] = None  # required: a fine-tuned dense checkpoint folder
    reinit_std: Optional[float] = None  # None: config.initializer_range (0.02); 0: no re-init
    fill_init: FillInit = FillInit.NOISE
    task_options: dict[str, str] = field(default_factory=dict)  # --task-option key=value
    training: TrainingOptions = field(default_factory=TrainingOptions)
    # Re-cut a masked checkpoint's scores to this speedup before compacting (latency table)
    target_speedup: Optional[float] = None
    latency: LatencySetting = field(default_factory=LatencySetting)
    latency_table: Optional[Path] = None
    # weight of the layer-wise distillation on top of the logits' (PruningConfig.alpha_hidden)
    alpha_hidden: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "checkpoint", Path(self.checkpoint))
        if self.alpha_hidden < 0:
            raise NNPruneError(f"--distill-hidden must be >= 0, got {self.alpha_hidden}")
        object.__setattr__(self, "output_dir", Path(self.output_dir))
        if self.latency_table is not None:
            object.__setattr__(self, "latency_table", Path(self.latency_table))
        if self.reinit_std is not None and self.reinit_std < 0:
            raise NNPruneError(f"--reinit-std must be >= 0, got {self.reinit_std}")
        object.__setattr__(self, "fill_init", FillInit.parse(self.fill_init, "--fill-init"))
        if self.fill_init is FillInit.WEIGHTS and self.reinit_std is not None:
            raise NNPruneError("--reinit-std is the noise of --fill-init noise; --fill-init "
                               "weights restores the masked weights instead")
        nnprune.check_speedup_target(self.target_speedup)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values, as recorded in ``nnprune_config.json``."""
        return {"checkpoint": str(self.checkpoint), "task": self.task,
                "output_dir": str(self.output_dir), "teacher": self.teacher,
                "reinit_std": self.reinit_std, "fill_init": self.fill_init.value,
                "task_options": dict(self.task_options),
                "target_speedup": self.target_speedup, "latency": self.latency.to_dict(),
                "latency_table": None if self.latency_table is None else str(self.latency_table),
                **({"alpha_hidden": self.alpha_hidden} if self.alpha_hidden else {}),
                **self.training.to_dict()}


def fill(args: FillArgs) -> FillResult:
    """Compact ``args.checkpoint``, re-initialise the zeros of its kept structures, fine-tune
    it with distillation from ``args.teacher`` and no pruning; save the compacted result in
    ``args.output_dir`` (see the module doc). What can be checked before work is first
    (:func:`check_before_work`), before the output folder is claimed."""
    return _fill_claimed(check_before_work(args))


def check_before_work(args: FillArgs) -> FillArgs:
    """What :func:`fill` checks before it loads a model or data
    (:mod:`nnprune.workflows.preflight`): the output folder and the free disk for what it writes,
    the teacher's head against the task, the latency device and length, the tokenizer against
    the vocabulary, and the sequence length against the positions (capped, with a warning).
    Returns ``args`` with the length it will use."""
    check_output_dir(args.output_dir)
    check_data_paths(args.training)
    ckpt, out = args.checkpoint, args.output_dir
    if not ckpt.exists():
        raise NNPruneError(f"checkpoint {ckpt} does not exist")
    if not args.teacher:
        raise NNPruneError("fill distils from a teacher: pass --teacher PATH (a fine-tuned dense "
                           "checkpoint)")
    if not Path(args.teacher).exists():
        raise NNPruneError(f"--teacher {args.teacher} does not exist")
    if out.exists() and out.resolve() == ckpt.resolve():
        raise NNPruneError("--output-dir must differ from the checkpoint (fill writes a new model)")
    config = nnprune.load_config(ckpt)
    task = get_task(args.task, args.task_options)
    # a teacher with another head would distil other classes
    task.check_checkpoint(nnprune.inspect_checkpoint(args.teacher).config, str(args.teacher))
    if args.target_speedup is not None and args.latency_table is None:
        check_device(args.latency.device, "--latency-device")
    check_seq_lens(config, [args.latency.seq_len], "--latency-seq-len", str(ckpt))
    record = records.read_config(ckpt) or records.RunConfig()
    recorded = record.training.max_seq_length if record.training is not None else None
    length = args.training.max_seq_length or recorded or task.default_max_seq_length
    capped = cap_max_seq_length(config, length, str(ckpt))
    if capped != length:
        args = replace(args, training=replace(args.training, max_seq_length=capped))
    check_tokenizer(_tokenizer_for(ckpt, record.base_model), config, str(ckpt))
    check_free_disk(args.output_dir, run_bytes(parameter_count(config) or 0, args.training,
                                               masked=False))
    return args


@claims_output  # the output folder is checked and locked before any work, until the last save
def _fill_claimed(args: FillArgs) -> FillResult:
    ckpt, out = args.checkpoint, args.output_dir
    task = get_task(args.task, args.task_options)
    pcfg = nnprune.method_config(  # alphas 0.1 / 0.9, T 2
        "dense", teacher=args.teacher,
        overrides={"alpha_hidden": args.alpha_hidden} if args.alpha_hidden else None)
    record = records.read_config(ckpt) or records.RunConfig()
    opts = args.training
    if opts.max_seq_length is None and record.training is not None:
        opts = replace(opts, max_seq_length=record.training.max_seq_length)
    opts = fresh_data_order(opts, record.training)
    table = None
    if args.target_speedup is not None:
        seq_len = opts.max_seq_length or task.default_max_seq_length
        table = nnprune.latency_table(nnprune.load_config(ckpt), setting=args.latency.at(seq_len),
                                      path=args.latency_table)
        if args.latency_table is None:
            logger.info("latency table %s (%s)", table.path,
                        "cached" if table.cached else f"measured in {table.seconds:.0f} s")
        table.model.budget_ms(args.target_speedup)
    prepared: PreparedFill = nnprune.prepare_fill(
        ckpt, init=args.fill_init, reinit_std=args.reinit_std, seed=args.training.seed,
        target_speedup=args.target_speedup, latency_table=table)
    tokenizer = _tokenizer_for(ckpt, record.base_model)
    run = run_training(task, str(ckpt), out, opts, pcfg, model=prepared.model, tokenizer=tokenizer)

    heads, ffn = run.count.unit_totals()
    base = run.result
    result = FillResult(
        **{f.name: getattr(base, f.name) for f in fields(base)},
        checkpoint=str(ckpt), compacted=prepared.compacted,
        heads_kept=heads[0], heads_original=heads[1], ffn_dims_kept=ffn[0],
        ffn_dims_original=ffn[1], reinitialized=prepared.reinitialized,
        reinit_std=prepared.reinit_std, fill_init=args.fill_init.value, prune=record.results)
    if run.is_main_process:
        options = records.CommandOptions({**args.to_dict(), **run.options.to_dict()})
        prune_stage = records.StageRecord(records.Stage.PRUNE, str(ckpt),
                                          masked=prepared.was_masked, pruning=record.pruning,
                                          training=record.training, results=record.results)
        fill_stage = records.StageRecord(records.Stage.FILL, str(out), pruning=pcfg,
                                         training=options, compaction=prepared.report.to_dict(),
                                         reinit_std=prepared.reinit_std,
                                         fill_init=args.fill_init.value,
                                         reinitialized=prepared.reinitialized, results=result)
        # A checkpoint that is itself a fill output brings its own stages along.
        stages = list(record.stages or [prune_stage]) + [fill_stage]
        save_final(run.model, run.tokenizer, records.RunConfig(
            pruning=pcfg, task=args.task, base_model=record.base_model or str(ckpt),
            filled_from=str(ckpt), compacted=result.compacted, results=result, training=options,
            stages=stages,
            latency_table=(records.latency_record(table.to_dict()) if table is not None
                           else None)), out)
        if table is not None:
            result.speed_check = record_speed_check(out, table)
    return result


def fresh_data_order(opts: TrainingOptions,
                     recorded: Optional[records.CommandOptions]) -> TrainingOptions:
    """``opts`` with another data order than the training run that made the checkpoint
    (``recorded``: its options) when both would use the same one. With one data seed the
    Trainer's sampler deals the same examples in the same order, so a fill stage would see the
    pruning stage's examples again and none of the next ones (hybrid-filled's 300 + 300 steps:
    300 steps' examples twice). A checkpoint trained by no run (``nnprune prune``) records no
    seed and leaves ``opts`` as it is."""
    theirs = recorded.order_seed if recorded is not None and recorded.seed is not None else None
    if theirs is None or opts.order_seed != theirs:
        return opts
    logger.info("the checkpoint was trained with data order seed %d: this stage orders its "
                "examples with %d, so it does not see the same ones again", theirs, theirs + 1)
    return replace(opts, data_seed=theirs + 1)


def _tokenizer_for(checkpoint: Path, base: Optional[str]) -> Any:
    """The checkpoint's tokenizer, else its base model's (fine-prune saves it with the model)."""
    try:
        return load_tokenizer(str(checkpoint))
    except NNPruneError:
        if not base or str(base) == str(checkpoint):
            raise
        return load_tokenizer(str(base))


__all__ = ["FillArgs", "FillInit", "FillResult", "PreparedFill", "check_before_work", "fill",
           "fresh_data_order",
           "prepare_fill_model"]
